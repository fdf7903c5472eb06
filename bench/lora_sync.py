"""LoRA weight sync: merged weights through `load_weights` against vLLM's own LoRA path, SmolLM2-135M.

Two ways to make the sampler follow base + adapter after each update:

  merged   the trainer computes `W + alpha / r * B @ A` for the adapted layers (`trainer/lora.py`) and
           loads only those into a plain engine (`VLLMGenerator.load_weights`);
  vllm     an engine started with `enable_lora`; each sync saves the adapter (peft format) and the
           next requests name it in a new `LoRARequest`, which vLLM loads from disk and applies at
           every decoding step.

For each: the sync's seconds (median of `--repeats`; for `vllm`, save + the first request that
loads it, minus that request's own decoding), and rollout tokens/s on the demo's shape (8 prompts x
8 samples of up to 24 tokens, the GuessNumber opening). The baseline measured in the same run is a
full sync of every weight (what full fine-tuning sends). The last line is the ratios.

    .venv/bin/python bench/lora_sync.py [--rank 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds of `fn()` over `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def rollout_tokens_per_s(llm: Any, prompt: list[int], lora_request: Any = None, repeats: int = 3) -> float:
    """Sampled tokens per second of the demo's rollout shape (64 samples of up to 24 tokens)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(n=1, temperature=1.0, max_tokens=24, ignore_eos=True)
    requests = [TokensPrompt(prompt_token_ids=prompt)] * 64
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        outputs = llm.generate(requests, [params] * 64, use_tqdm=False, lora_request=lora_request)
        tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
        rates.append(tokens / (time.perf_counter() - start))
    return statistics.median(rates)


def adapted_model(path: str, rank: int) -> Any:
    """SmolLM2 with a LoRA adapter whose B is random (so the merged weights differ from the base)."""
    import torch

    from turngym.trainer import lora
    from turngym.trainer.policy import load_model

    model, _ = load_model(path, torch.device("cpu"))
    adapted = lora.add_adapter(model, r=rank, alpha=32)
    with torch.no_grad():
        for name, param in adapted.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.01)
    return adapted


def measure_merged(path: str, model: Any, repeats: int) -> dict[str, float]:
    """A plain engine: a full sync (baseline), a merged sync, and the rollout rate."""
    from turngym.agent import VLLMGenerator
    from turngym.trainer import lora

    engine = VLLMGenerator(path, max_model_len=1024, kv_cache_gib=1.0)
    prompt = demo_prompt(engine.tokenizer)
    every = [(lora.hf_parameter_name(n), p) for n, p in model.named_parameters() if ".lora_" not in n]
    return {
        "full": timed(lambda: engine.load_weights(every), repeats),
        "merged": timed(lambda: engine.load_weights(lora.merged_weights(model)), repeats),
        "merged_rate": rollout_tokens_per_s(engine.llm, prompt),
    }


def measure_vllm_lora(path: str, model: Any, rank: int, repeats: int) -> dict[str, float]:
    """An engine with `enable_lora`: save + load of the adapter per sync, and the rollout rate with it."""
    from vllm.lora.request import LoRARequest

    from turngym.agent import VLLMGenerator

    engine = VLLMGenerator(path, max_model_len=1024, kv_cache_gib=1.0, enable_lora=True, max_lora_rank=rank)
    prompt = demo_prompt(engine.tokenizer)
    without = rollout_tokens_per_s(engine.llm, prompt)
    syncs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            start = time.perf_counter()
            model.save_pretrained(f"{tmp}/{i}")
            request = LoRARequest(f"adapter-{i}", i + 1, f"{tmp}/{i}")
            saved = time.perf_counter()
            rollout_tokens_per_s(engine.llm, prompt, request, repeats=1)  # loads the adapter, then decodes
            loaded = time.perf_counter()
            decode = 64 * 24 / rollout_tokens_per_s(engine.llm, prompt, request, repeats=1)  # decoding alone
            syncs.append(saved - start + max(loaded - saved - decode, 0.0))
        rate = rollout_tokens_per_s(engine.llm, prompt, request)
    return {"vllm": statistics.median(syncs), "vllm_rate": rate, "without_rate": without, "dtype": str(engine.dtype)}


def demo_prompt(tokenizer: Any) -> list[int]:
    """The demo's first prompt (GuessNumber 1..4, 3 guesses), as token ids."""
    from turngym.envs import make

    first, _ = make("turngym/GuessNumber-v0", low=1, high=4, max_turns=3).reset(seed=0)
    messages = [{"role": "user", "content": first}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from turngym.agent import resolve_model

    path = resolve_model(args.model)
    model = adapted_model(path, args.rank)
    m = measure_merged(path, model, args.repeats)
    v = measure_vllm_lora(path, model, args.rank, args.repeats)
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(f"model: {path}, LoRA r={args.rank} on every linear layer ({trained / 1e6:.2f}M adapter parameters)")
    print(f"sampler dtype: {v['dtype']}")
    print(f"full sync (every weight, the baseline): {m['full']:.3f} s")
    print(f"merged sync (adapted layers only):      {m['merged']:.3f} s; rollout {m['merged_rate']:.0f} tokens/s")
    print(f"vLLM LoRA (save + load adapter):        {v['vllm']:.3f} s; rollout {v['vllm_rate']:.0f} tokens/s "
          f"({v['without_rate']:.0f} without the adapter in the same engine)")  # fmt: skip
    print(f"ratios: merged/full sync {m['merged'] / m['full']:.2f}; vllm/merged sync {v['vllm'] / m['merged']:.2f}; "
          f"vllm/merged rollout tokens/s {v['vllm_rate'] / m['merged_rate']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
