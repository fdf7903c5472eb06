"""Weight sync into a running vLLM engine, SmolLM2-135M (the default model).

Loads the trainer's copy of the model with transformers (fp32), starts a VLLMGenerator (bf16), then
times `load_weights(model.named_parameters())` several times. The baseline measured in the same
run is what a sync without in-process reload would cost: starting a fresh engine on the saved
checkpoint. Target: sync under 1 s on the project's CPU machine.

    .venv/bin/python bench/weight_sync.py [--repeats 5] [--model smollm2-135m]

The last line is `sync_seconds: X` (median).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM

    from turngym.agent import SamplingParams, VLLMGenerator, resolve_model

    path = resolve_model(args.model)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    n_params = sum(p.numel() for p in model.parameters())

    start = time.perf_counter()
    generator = VLLMGenerator(path, max_model_len=1024, kv_cache_gib=1.0)
    engine_start = time.perf_counter() - start
    prompt = generator.tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 7+5?"}],
        add_generation_prompt=True,
        tokenize=True,
        return_dict=False,
    )
    greedy = SamplingParams(temperature=0.0, max_tokens=16)
    before = generator.generate([prompt], greedy)[0].text

    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        generator.load_weights(model.named_parameters())
        times.append(time.perf_counter() - start)
    after = generator.generate([prompt], greedy)[0].text
    sync = statistics.median(times)

    print(f"model: {path} ({n_params / 1e6:.1f}M parameters, fp32 trainer -> bf16 vLLM)")
    print(f"greedy before sync: {before!r}; after: {after!r}")
    print(f"sync times (s): {', '.join(f'{t:.3f}' for t in times)}")
    print(f"baseline: fresh engine start on the checkpoint: {engine_start:.2f} s")
    print(f"ratio (sync / fresh engine start): {sync / engine_start:.3f}")
    print(f"sync_seconds: {sync:.3f}")


if __name__ == "__main__":
    main()
