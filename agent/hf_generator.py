"""`HFGenerator`: transformers' `generate` behind the `Generator` contract.

Slower than vLLM (about 3x on CPU) but needs nothing beyond transformers, so it serves machines
without vLLM and acts as a reference in tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LogitsProcessor

from turngym.agent.generator import Completion, FinishReason, SamplingParams, cut_at_stop
from turngym.agent.hardware import resolve_dtype
from turngym.agent.models import resolve_model


class HFGenerator:
    """Sample completions with `transformers` `generate`.

    Args:
        model: a model directory, alias (see `resolve_model`), or an already loaded causal LM.
        tokenizer: required when `model` is a loaded module; loaded from the directory otherwise.
        dtype: torch dtype name for loading; `"auto"` (the default, as `VLLMGenerator`) is bf16 where
            the hardware computes it natively, else float32.
        device: where to run; default CUDA when available, else CPU.
        batch_size: rows (prompt x completion) per `generate` call; bounds memory.

    Seeding: with `SamplingParams.seed`, each call is reproducible for the same prompts and
    parameters, but the random stream is shared by the rows of a batch (transformers samples the
    whole batch from one generator), so results differ from `VLLMGenerator`'s per-completion seeds.
    """

    def __init__(
        self,
        model: str | torch.nn.Module,
        *,
        tokenizer: Any = None,
        dtype: str = "auto",
        device: str | None = None,
        batch_size: int = 16,
    ) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if isinstance(model, torch.nn.Module):
            if tokenizer is None:
                raise ValueError("pass tokenizer= when giving HFGenerator a loaded model")
            self.model = model
        else:
            path = resolve_model(model)
            dtype = resolve_dtype(dtype, self.device.type)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
            tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
        self.model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos] if eos is not None else []
        self.eos_token_ids = [*eos, *([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])]
        pad = tokenizer.pad_token_id
        self.pad_token_id = pad if pad is not None else self.eos_token_ids[0]

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]], sampling: SamplingParams) -> list[Completion]:
        """Sample `sampling.n` completions per prompt (see `Generator`)."""
        rows = [list(p) for p in prompts for _ in range(sampling.n)]
        for i, prompt in enumerate(prompts):
            if len(prompt) == 0:
                raise ValueError(f"prompt {i} is empty; a prompt needs at least one token")
        completions: list[Completion] = []
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            for start in range(0, len(rows), self.batch_size):
                completions += self._generate_batch(rows[start : start + self.batch_size], sampling)
        return completions

    def _generate_batch(self, rows: list[list[int]], sampling: SamplingParams) -> list[Completion]:
        width = max(len(r) for r in rows)
        input_ids = torch.tensor([[self.pad_token_id] * (width - len(r)) + r for r in rows])  # (B, P)
        attention_mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])  # (B, P)
        recorder = _SamplingLogprobs(sampling.temperature, sampling.top_p)
        stop_ids = [*self.eos_token_ids, *sampling.stop_token_ids]
        config = GenerationConfig(  # a fresh config: no top_k/repetition defaults from the model
            do_sample=sampling.temperature > 0,
            max_new_tokens=sampling.max_tokens,
            eos_token_id=stop_ids,
            pad_token_id=self.pad_token_id,
            stop_strings=list(sampling.stop) or None,
            top_k=None,
            temperature=None,
            top_p=None,
        )
        sequences = self.model.generate(
            input_ids=input_ids.to(self.device),
            attention_mask=attention_mask.to(self.device),
            generation_config=config,
            logits_processor=[recorder],
            tokenizer=self.tokenizer if sampling.stop else None,
        )  # (B, P + new)
        new = sequences[:, width:].cpu()  # (B, new)
        logprobs = recorder.finish(sequences[:, -1:]).cpu() if new.shape[1] else new.float()  # (B, new)
        return [self._cut(new[b].tolist(), logprobs[b].tolist(), sampling, set(stop_ids)) for b in range(len(rows))]

    def _cut(self, ids: list[int], logps: list[float], sampling: SamplingParams, stop_ids: set[int]) -> Completion:
        """Trim a padded row at its first stop token or stop string (generate pads finished rows)."""
        end = len(ids)  # an unfinished row ran to max_tokens
        finish: FinishReason = "length"
        for k, token in enumerate(ids):
            if token in stop_ids:
                end, finish = k + 1, "stop"
                break
        text = self.tokenizer.decode(ids[:end], skip_special_tokens=True)
        if not sampling.stop:
            return Completion(token_ids=ids[:end], logprobs=logps[:end], finish_reason=finish, text=text)
        for k in range(1, end + 1):
            prefix, stopped = cut_at_stop(self.tokenizer.decode(ids[:k], skip_special_tokens=True), sampling.stop)
            if stopped:  # the ids keep the whole last token, the text ends right after the stop string
                end, finish, text = k, "stop", prefix
                break
        return Completion(token_ids=ids[:end], logprobs=logps[:end], finish_reason=finish, text=text)

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy Hugging Face-named tensors into the model in place."""
        state = self.model.state_dict()  # shares storage with the parameters
        with torch.no_grad():
            for name, tensor in named_tensors:
                if name not in state:
                    raise KeyError(f"load_weights: the model has no weight named {name!r}")
                state[name].copy_(tensor)


class _SamplingLogprobs(LogitsProcessor):
    """Applies temperature and top-p itself and records the sampled tokens' logprobs.

    transformers runs user processors before its own warpers, so instead of letting `generate`
    warp, we warp here (generate then samples from exactly these scores) and keep only one step's
    log-distribution at a time: the token sampled from it arrives with the next call.
    """

    def __init__(self, temperature: float, top_p: float) -> None:
        self.temperature = temperature
        self.top_p = top_p
        self.previous: torch.Tensor | None = None  # (B, V) log-distribution of the last step
        self.sampled: list[torch.Tensor] = []  # each (B,)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.previous is not None:
            self.sampled.append(self.previous.gather(1, input_ids[:, -1:]).squeeze(1))  # (B,)
        scores = scores.float()  # (B, V)
        if self.temperature > 0:
            scores = scores / self.temperature  # (B, V)
            if self.top_p < 1.0:
                scores = _top_p_filter(scores, self.top_p)  # (B, V)
        self.previous = torch.log_softmax(scores, dim=-1)  # (B, V)
        return scores

    def finish(self, last_tokens: torch.Tensor) -> torch.Tensor:
        """Gather the final step's tokens and return all logprobs as (B, new_tokens)."""
        self.sampled.append(self.previous.gather(1, last_tokens).squeeze(1))  # (B,)
        return torch.stack(self.sampled, dim=1)  # (B, new)


def _top_p_filter(scores: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability mass reaches `top_p` (nucleus sampling)."""
    sorted_scores, order = scores.sort(dim=-1, descending=True)  # (B, V)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)  # (B, V)
    drop_sorted = cumulative - sorted_scores.softmax(dim=-1) >= top_p  # (B, V) mass before token
    drop = drop_sorted.scatter(1, order, drop_sorted)  # (B, V)
    return scores.masked_fill(drop, float("-inf"))
