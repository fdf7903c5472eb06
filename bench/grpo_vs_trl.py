"""Seconds per GRPO step: turngym against TRL's GRPOTrainer on the same single-turn task, in one script.

Task: arithmetic with a verifier (`turngym/MathVerify-v0`, `source=arithmetic`, one answer, reward
= correct + 0.1 x format, checked by math-verify), SmolLM2-135M-Instruct. Per step: 2 problems x 8
completions of at most 64 tokens, temperature 1, GRPO (group-normalised advantages, PPO-clip 0.2,
per-sequence token mean, no KL), AdamW lr 1e-6, gradient clip 1.0, one optimiser step per batch.
Both in the precision the machine computes fastest (bf16 where native, else fp32).

    turngym   `turngym.trainer.train` (vLLM in-process sampling, weight sync each step)
    TRL       `trl.GRPOTrainer` with its own generation (`use_vllm=False`: TRL's vLLM colocate mode
              crashes on vLLM's CPU backend, see PLATFORM notes), `loss_type="grpo"`

    .venv/bin/pip install -e ".[bench]"     # TRL, for this benchmark only
    .venv/bin/python bench/grpo_vs_trl.py [--steps 4]

The first step of each is warm-up and not counted. Last line: `ratio: X` (turngym seconds per step /
TRL seconds per step; target <= 0.4).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"

ENV_ID = "turngym/MathVerify-v0"
ENV_KWARGS = {"source": "arithmetic", "difficulty": 1}
PROMPTS, GENERATIONS, MAX_TOKENS, LR = 2, 8, 64, 1e-6


def turngym_seconds(steps: int, out: Path) -> list[float]:
    from turngym.trainer import load_recipe, train
    from turngym.trainer.metrics import read_metrics

    recipe = {
        "name": "bench_grpo",
        "model": {"name": "smollm2-135m", "max_model_len": 1024, "kv_cache_gib": 1.0},
        "envs": [{"id": ENV_ID, "kwargs": ENV_KWARGS}],
        "rollout": {"group_size": GENERATIONS, "groups_per_step": PROMPTS, "max_tokens": MAX_TOKENS},
        "objective": {"name": "grpo"},
        "optimizer": {"lr": LR, "grad_clip": 1.0},
        "run": {"steps": steps + 1, "dir": str(out / "turngym"), "checkpoint_every": 0, "progress": False},
    }
    result = train(load_recipe(recipe))
    return [r["time/step"] for r in read_metrics(result.run_dir) if "time/step" in r]


def trl_seconds(steps: int, out: Path) -> list[float]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from turngym.agent.hardware import native_bf16
    from turngym.agent.models import resolve_model
    from turngym.envs import make

    path = resolve_model("smollm2-135m")
    prompts = []
    for seed in range(PROMPTS * (steps + 1)):
        observation, _ = make(ENV_ID, **ENV_KWARGS).reset(seed=seed)
        prompts.append({"prompt": [{"role": "user", "content": observation}], "seed": seed})

    def verifier(prompts, completions, seed, **kwargs) -> list[float]:
        rewards = []
        for completion, s in zip(completions, seed, strict=True):
            env = make(ENV_ID, **ENV_KWARGS)
            env.reset(seed=s)
            rewards.append(env.step(completion[0]["content"])[1])
        return rewards

    class Timer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self.start)

    bf16 = native_bf16("cuda" if torch.cuda.is_available() else "cpu")
    config = GRPOConfig(
        output_dir=str(out / "trl"),
        per_device_train_batch_size=PROMPTS * GENERATIONS,
        num_generations=GENERATIONS,
        max_completion_length=MAX_TOKENS,
        temperature=1.0,
        learning_rate=LR,
        lr_scheduler_type="constant",
        max_grad_norm=1.0,
        beta=0.0,
        loss_type="grpo",
        epsilon=0.2,
        num_iterations=1,
        gradient_accumulation_steps=1,
        max_steps=steps + 1,
        use_vllm=False,
        bf16=bf16,
        use_cpu=not torch.cuda.is_available(),
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        shuffle_dataset=False,
        seed=0,
    )
    timer = Timer()
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32),
        processing_class=AutoTokenizer.from_pretrained(path, padding_side="left"),
        reward_funcs=verifier,
        args=config,
        train_dataset=Dataset.from_list(prompts),
        callbacks=[timer],
    )
    trainer.train()
    return timer.times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="measured steps (after one warm-up step)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ours = turngym_seconds(args.steps, Path(tmp))
        import gc

        gc.collect()  # let the vLLM engine go before TRL runs
        theirs = trl_seconds(args.steps, Path(tmp))
    ours_s, theirs_s = statistics.median(ours[1:]), statistics.median(theirs[1:])
    print(f"turngym seconds per step: {ours_s:.1f}  (all steps: {[round(t, 1) for t in ours]})")
    print(f"TRL GRPOTrainer seconds per step: {theirs_s:.1f}  (all steps: {[round(t, 1) for t in theirs]})")
    print(f"ratio: {ours_s / theirs_s:.2f}")


if __name__ == "__main__":
    main()
