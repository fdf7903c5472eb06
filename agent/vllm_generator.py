"""`VLLMGenerator`: an in-process vLLM engine behind the `Generator` contract.

This is the only module in turngym that touches vLLM internals (engine construction and the weight
reload call). vLLM is imported when a generator is created, never at import time, so turngym works
without it (e.g. with `HFGenerator` on a machine where vLLM is not installed).
"""

from __future__ import annotations

import difflib
import itertools
import logging
import os
from collections.abc import Hashable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from turngym.agent.generator import Completion, SamplingParams, cut_at_stop

if TYPE_CHECKING:
    import torch

# Hugging Face names of the input embedding and LM head in Llama-family models (Llama, Qwen2,
# Mistral, SmolLM2), which share one tensor when `tie_word_embeddings` is set.
EMBEDDING_NAME, HEAD_NAME = "model.embed_tokens.weight", "lm_head.weight"


class VLLMGenerator:
    """Sample completions with an in-process `vllm.LLM` and sync trainer weights into it.

    Args:
        model: a local Hugging Face model directory or an alias accepted by `resolve_model`.
        dtype: weights and activations dtype inside vLLM: `"auto"` (bf16 where the hardware computes
            it natively: CUDA, CPUs with AVX-512 BF16 or AMX; else float32), `"bfloat16"`, `"float32"`.
        max_model_len: context length (prompt + completion) the engine supports (default: the
            model's own maximum).
        kv_cache_gib: memory reserved for the KV cache. vLLM's own default on CPU takes almost all
            RAM, leaving nothing for a trainer in the same process.
        seed: engine seed, used for requests without a per-request seed.
        enforce_eager: disable graph capture; default True on CPU, False on CUDA.
        **engine_kwargs: passed to `vllm.LLM` unchanged.

    Example:
        >>> gen = VLLMGenerator("smollm2-135m")  # doctest: +SKIP
        >>> gen.generate([[1, 2, 3]], SamplingParams(max_tokens=8))[0].token_ids  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str,
        *,
        dtype: str = "auto",
        max_model_len: int | None = None,
        kv_cache_gib: float = 2.0,
        seed: int = 0,
        enforce_eager: bool | None = None,
        **engine_kwargs: Any,
    ) -> None:
        from turngym.agent.hardware import resolve_dtype
        from turngym.agent.logs import quiet_libraries
        from turngym.agent.models import resolve_model

        # The engine must live in this process so `load_weights` can hand it tensors directly.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        quiet_libraries()  # vLLM and torch read their logging settings at import
        import torch
        import vllm

        on_cuda = torch.cuda.is_available()
        self.model_path = resolve_model(model)
        self.llm = vllm.LLM(
            model=self.model_path,
            dtype=resolve_dtype(dtype, "cuda" if on_cuda else "cpu"),
            max_model_len=max_model_len,
            kv_cache_memory_bytes=int(kv_cache_gib * 2**30),
            seed=seed,
            enforce_eager=(not on_cuda) if enforce_eager is None else enforce_eager,
            # Report logprobs of the distribution actually sampled from (after temperature/top-p),
            # which is what importance ratios against the behaviour policy need.
            logprobs_mode="processed_logprobs",
            # With chunked prefill, a seeded request whose prefill is split crashes the CPU
            # sampler ("CPU Generator does not use offset"); whole-prompt prefill avoids it.
            enable_chunked_prefill=on_cuda,
            **{"use_tqdm_on_load": False, **_cpu_block_size(on_cuda), **engine_kwargs},
        )
        self.tokenizer = self.llm.get_tokenizer()
        model_config = self.llm.llm_engine.model_config
        self.max_model_len: int = model_config.max_model_len
        self.dtype = model_config.dtype
        self.tied_embeddings = bool(getattr(model_config.hf_config, "tie_word_embeddings", False))
        # What `load_weights` may be given: the checkpoint's tensor names and shapes (None for a hub id).
        self.expected_shapes = _checkpoint_shapes(self.model_path, self.tied_embeddings)
        # Layers a reload leaves alone (rotary caches; with LoRA, all but the adapted ones) are reported; expected.
        for name in ("layerwise", "inplace"):
            logging.getLogger(f"vllm.model_executor.model_loader.reload.{name}").addFilter(_PARTIAL_RELOAD_FILTER)

    def generate(self, prompts: Sequence[Sequence[int]], sampling: SamplingParams) -> list[Completion]:
        """Sample `sampling.n` completions per prompt in one batched engine call (see `Generator`)."""
        from vllm.inputs import TokensPrompt

        requests, params = [], []
        for i, prompt in enumerate(prompts):
            self._check_prompt(i, prompt)
            for j in range(sampling.n):
                requests.append(TokensPrompt(prompt_token_ids=list(prompt)))
                params.append(
                    _vllm_params(sampling, None if sampling.seed is None else sampling.seed + i * sampling.n + j)
                )
        if not requests:
            return []
        self._ensure_distributed_state()
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        return [self._to_completion(out.outputs[0], sampling.stop) for out in outputs]

    def stream(self) -> VLLMStream:
        """A `RequestStream` on this engine: requests join the running batch as they are submitted."""
        self._ensure_distributed_state()
        return VLLMStream(self)

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load Hugging Face-named weights into the running engine, in place.

        `model.load_weights` (what colocated trainers often call) fails on the CPU backend after
        the first load because the CPU backend repacks linear weights; vLLM's `reload_weights`
        re-runs the checkpoint loader and the repacking, and works on CPU and CUDA.

        Only the tensors given are replaced; the rest keep their weights (a LoRA sync sends only the
        layers its adapter changes). With tied embeddings, `model.named_parameters()` lists the shared
        tensor once, as
        `model.embed_tokens.weight`; vLLM's reload would then keep the old LM head, so the head is
        sent under its own name too.

        Raises:
            ValueError: a name the model does not have, a shape other than the checkpoint's, or a
                tensor that is not floating point (one line naming it). Nothing reaches the engine
                then: it keeps its weights and stays usable.
        """
        named = list(named_tensors)  # (name, tensor) references: checked in full before anything is sent
        _check_weights(named, self.expected_shapes)
        self._ensure_distributed_state()
        weights = _detached(named, self.dtype)  # cast here: the engine keeps only its dtype
        if self.tied_embeddings:
            weights = _with_tied_head(weights)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True})
        # Cached KV blocks were computed with the old weights.
        if not self.llm.reset_prefix_cache():  # refused while requests hold cache blocks
            raise RuntimeError(
                "vLLM kept its prefix cache after new weights (requests still running?); it would serve keys and "
                "values of the old weights"
            )

    def _ensure_distributed_state(self) -> None:
        """Restore vLLM's process-wide parallel state if another in-process engine tore it down.

        In-process engines share it, and an engine's shutdown (e.g. when another VLLMGenerator is
        garbage-collected) destroys it, after which this engine fails with "pipeline model parallel
        group is not initialized". Rebuilding it from the worker's own settings is cheap and lets
        several generators live and die in one process.
        """
        from vllm.distributed import parallel_state

        if not parallel_state.model_parallel_is_initialized():
            self.llm.collective_rpc(_init_worker_distributed_state)

    def _to_completion(self, output: Any, stop: tuple[str, ...]) -> Completion:
        if output.finish_reason not in ("stop", "length"):
            raise RuntimeError(f"vLLM request ended with finish_reason={output.finish_reason!r}")
        token_ids = list(output.token_ids)
        logprobs = [step[token].logprob for step, token in zip(output.logprobs, token_ids, strict=True)]
        # Decode ourselves rather than use vLLM's incremental text, which holds back a trailing
        # incomplete UTF-8 sequence; this keeps `text` identical across generators.
        text, _ = cut_at_stop(self.tokenizer.decode(token_ids, skip_special_tokens=True), stop)
        return Completion(token_ids=token_ids, logprobs=logprobs, finish_reason=output.finish_reason, text=text)

    def _check_prompt(self, index: int, prompt: Sequence[int]) -> None:
        if len(prompt) == 0:
            raise ValueError(f"prompt {index} is empty; a prompt needs at least one token")
        if len(prompt) >= self.max_model_len:
            raise ValueError(
                f"prompt {index} has {len(prompt)} tokens but max_model_len is {self.max_model_len}; "
                "shorten the conversation or raise max_model_len"
            )


_REQUEST_IDS = itertools.count()  # our own request ids: the engine reports finished requests by them


class VLLMStream:
    """`RequestStream` on a `VLLMGenerator`'s engine: `add_request` queues a request, `step` runs one engine step.

    vLLM's scheduler adds new requests to the running batch at every step (continuous batching), so
    a turn submitted while others are mid-completion starts at once instead of waiting for them.
    """

    def __init__(self, generator: VLLMGenerator) -> None:
        self.generator = generator
        self._keys: dict[str, tuple[Hashable, tuple[str, ...]]] = {}  # request id -> key, stop strings

    @property
    def pending(self) -> int:
        """Requests submitted and not yet returned by `step`."""
        return len(self._keys)

    def submit(self, key: Hashable, prompt: Sequence[int], sampling: SamplingParams) -> None:
        """Queue one completion of `prompt`, seeded with `sampling.seed` itself."""
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        self.generator._check_prompt(len(self._keys), prompt)
        params = _vllm_params(sampling, sampling.seed)
        params.output_kind = RequestOutputKind.FINAL_ONLY  # one output per request, when it finishes
        request_id = f"turngym-stream-{next(_REQUEST_IDS)}"
        self.generator.llm.llm_engine.add_request(request_id, TokensPrompt(prompt_token_ids=list(prompt)), params)
        self._keys[request_id] = (key, sampling.stop)

    def step(self) -> list[tuple[Hashable, Completion]]:
        """One engine step; the completions that finished in it."""
        done = []
        for output in self.generator.llm.llm_engine.step():
            if output.finished and output.request_id in self._keys:
                key, stop = self._keys[output.request_id]
                done.append((key, self.generator._to_completion(output.outputs[0], stop)))
                del self._keys[output.request_id]
        return done

    def close(self) -> None:
        """Abort the requests still running (a rollout cut short), so the engine's next call does not see them."""
        if self._keys:
            self.generator.llm.llm_engine.abort_request(list(self._keys), internal=False)
            self._keys.clear()


def _vllm_params(sampling: SamplingParams, seed: int | None) -> Any:
    """The vLLM sampling parameters of one completion of `sampling`, with `seed`."""
    from vllm import SamplingParams as VLLMSamplingParams

    return VLLMSamplingParams(
        n=1,
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        max_tokens=sampling.max_tokens,
        stop=list(sampling.stop),
        stop_token_ids=list(sampling.stop_token_ids),
        include_stop_str_in_output=True,  # keep the stop string in the text: its tokens are in token_ids too
        seed=seed,
        logprobs=0,  # the sampled token's logprob only
    )


def kv_cache_bytes_per_token(model: str, dtype: str = "auto") -> int:
    """Bytes of KV cache one token takes in a vLLM engine on `model` (keys and values of every layer).

    `2 x layers x key/value heads x head size x bytes per element`, from the model's config and
    the engine's dtype (`"auto"` as `VLLMGenerator` resolves it). SmolLM2-135M in float32: 2 x 30 x
    3 x 64 x 4 = 46,080 bytes.
    """
    import torch
    from transformers import AutoConfig

    from turngym.agent.hardware import resolve_dtype
    from turngym.agent.models import resolve_model

    config = AutoConfig.from_pretrained(resolve_model(model))
    config = getattr(config, "text_config", config)
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    resolved = resolve_dtype(dtype, "cuda" if torch.cuda.is_available() else "cpu")
    itemsize = getattr(torch, resolved).itemsize
    return 2 * config.num_hidden_layers * kv_heads * head_dim * itemsize


def _cpu_block_size(on_cuda: bool) -> dict[str, int]:
    """KV blocks of 32 tokens on CPU (vLLM's CPU default is 128; its attention needs a multiple of 32).

    Prefix caching reuses only whole blocks. A multi-turn episode's next prompt is its previous
    prompt plus the reply and the feedback, so smaller blocks let each turn re-use nearly all of the
    conversation instead of prefilling up to 127 tokens again, and a group's episodes share their
    first prompt. Measured on SmolLM2-135M, 8 groups x 8 GuessNumber episodes of 3 turns, 2-core
    CPU: 33 s per rollout with blocks of 32 against 50 s with 128.
    """
    return {} if on_cuda else {"block_size": 32}


def _init_worker_distributed_state(worker: Any) -> None:
    """Run inside the engine's worker: what the worker did at start-up to set up parallel state."""
    from vllm.config import set_current_vllm_config
    from vllm.platforms import current_platform
    from vllm.v1.worker.gpu_worker import init_worker_distributed_environment

    with set_current_vllm_config(worker.vllm_config):
        init_worker_distributed_environment(
            worker.vllm_config,
            worker.rank,
            worker.distributed_init_method,
            worker.local_rank,
            current_platform.dist_backend,
        )


def _checkpoint_shapes(model_path: str, tied_embeddings: bool) -> dict[str, tuple[int, ...]] | None:
    """Name -> shape of every tensor in a local model directory's safetensors files (their headers only)."""
    from safetensors import safe_open

    files = sorted(Path(model_path).glob("*.safetensors"))
    if not files:
        return None  # a hub id, or weights in another format: the engine checks them itself
    shapes: dict[str, tuple[int, ...]] = {}
    for path in files:
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                shapes[name] = tuple(handle.get_slice(name).get_shape())
    if tied_embeddings and EMBEDDING_NAME in shapes:
        shapes.setdefault(HEAD_NAME, shapes[EMBEDDING_NAME])  # state_dict() lists the shared head too
    return shapes


def _check_weights(named: list[tuple[str, torch.Tensor]], expected: dict[str, tuple[int, ...]] | None) -> None:
    """One-line errors for tensors the engine cannot take (see `VLLMGenerator.load_weights`)."""
    import torch

    for name, tensor in named:
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            kind = tensor.dtype if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise ValueError(f"load_weights: {name} is {kind}, not a floating-point tensor")
        if expected is None:
            continue
        if name not in expected:
            close = difflib.get_close_matches(name, list(expected), n=1, cutoff=0.8)
            hint = f" Did you mean {close[0]}?" if close else ""
            raise ValueError(f"load_weights: the engine's model has no parameter {name}.{hint}")
        if tuple(tensor.shape) != expected[name]:
            raise ValueError(
                f"load_weights: {name} has shape {tuple(tensor.shape)}, the engine expects {expected[name]}"
            )


def _detached(
    named_tensors: Iterable[tuple[str, torch.Tensor]], dtype: torch.dtype
) -> Iterator[tuple[str, torch.Tensor]]:
    for name, tensor in named_tensors:
        yield name, tensor.detach().to(dtype)


def _with_tied_head(named_tensors: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
    embedding, head_seen = None, False
    for name, tensor in named_tensors:
        if name == EMBEDDING_NAME:
            embedding = tensor
        head_seen |= name == HEAD_NAME
        yield name, tensor
    if embedding is not None and not head_seen:
        yield HEAD_NAME, embedding


class _PartialReloadFilter(logging.Filter):
    """Hide vLLM's notes on layers a reload left alone: expected, not a problem.

    Rotary caches have no loadable weights, and a sync may send only the tensors that changed (a
    LoRA sync sends the adapted layers; embeddings and norms keep their weights). Names and shapes
    of what is sent are checked before the reload (`_check_weights`).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.endswith(": Failed to load weights") or message.startswith("Following weights were not"))


_PARTIAL_RELOAD_FILTER = _PartialReloadFilter()  # one instance: addFilter ignores repeats
