"""The trainer's update phase against a bare torch loop on the same token batches, and against the matmul peak.

Batch: the demo's real first step on SmolLM2-135M (`bench/data/demo_step1.jsonl`, recorded by
`bench/lora_vs_full.py --episodes`: 8 groups x 8 GuessNumber episodes of 86-215 tokens, 12,850 in
all, a 79-token prompt per group), or any recorded episodes (`--episodes FILE`), or with
`--synthetic` a GuessNumber-shaped step of random tokens (per group one 80-token prompt, per episode 3
turns of 20 sampled tokens with 25 feedback tokens between them). `--engine` starts the demo's vLLM
engine in the process first, as `turngym train` does.

    turngym   `turngym.trainer.update.update`: GRPO, micro-batches of `--budget` padded tokens,
              the trainer's defaults (logprobs at sampled positions only, a group's prompt computed
              once), AdamW, grad clip 1.0
    bare      the loop people write: the same micro-batches right-padded, transformers' default
              attention (SDPA), full logits, log_softmax over every position, masked
              policy-gradient loss, backward, AdamW

Both in the precision the machine computes fastest (bf16 autocast where native, else fp32); where
bf16 is native, turngym's update also runs in fp32 (`model.autocast: off`), the measurement behind
the `auto` default. Variants run interleaved, best of `--repeats` after one warm-up pass. The
achieved FLOP/s counts the FLOPs turngym's update really performs (forward + backward = 3 x forward;
forward = 2 x parameters x tokens computed + the head on scored tokens + attention) and is divided
by a matmul peak measured here, in fp32 and in bf16.

    .venv/bin/python bench/update_throughput.py [--repeats 2] [--budget 2048] [--episodes FILE | --synthetic]
        [--engine]

Last lines: `ratio: X` (turngym tokens/s / bare tokens/s; target >= 0.9) and
`peak_fraction: Y` (of the peak of the precision used; target >= 0.5).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch

from turngym.agent.generator import SamplingParams
from turngym.agent.hardware import keep_freed_memory, native_bf16
from turngym.agent.records import Trajectory, TrajectoryGroup, TurnRecord, load_episodes
from turngym.algos import GRPO
from turngym.trainer.collate import StepRows, collate, plan_micro_batches
from turngym.trainer.config import CorrectionConfig, OptimizerConfig
from turngym.trainer.distributed import Processes
from turngym.trainer.policy import TokenScorer, load_model
from turngym.trainer.update import Learner, make_optimizer, update


def guess_number_step(vocab: int, groups: int = 8, size: int = 8, seed: int = 0) -> list[TrajectoryGroup]:
    rng = random.Random(seed)
    out = []
    for g in range(groups):
        prompt = [rng.randrange(100, vocab) for _ in range(80)]
        trajectories = []
        for _ in range(size):
            ids, mask, turns = list(prompt), [0] * len(prompt), []
            for k in range(3):
                start = len(ids)
                ids += [rng.randrange(100, vocab) for _ in range(20)]
                mask += [1] * 20
                turns.append(TurnRecord("a", "f", {"won": 0.0}, 0.0, {}, start, len(ids), "stop"))
                if k < 2:
                    ids += [rng.randrange(100, vocab) for _ in range(25)]
                    mask += [0] * 25
            reward = float(rng.random() < 0.3)
            logps = [-rng.random() * m for m in mask]
            trajectories.append(
                Trajectory(ids, mask, logps, turns, len(prompt), reward, {"won": reward}, True, False, "terminated")
            )
        out.append(TrajectoryGroup("bench", g, trajectories))
    return out


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def update_flops(model, rows: StepRows, budget: int) -> float:
    """FLOPs of turngym's update: shared prompts counted once per micro-batch segment, head on scored tokens."""
    cfg = model.config
    embed = cfg.vocab_size * cfg.hidden_size
    body = sum(p.numel() for p in model.parameters()) - embed  # tied embeddings: the head is the embedding
    lengths = rows.lengths()
    computed = scored = attention = 0
    for batch in plan_micro_batches(lengths, rows.group_ids.tolist(), budget, by_group=True):
        for g in {int(rows.group_ids[r]) for r in batch}:
            members = [r for r in batch if int(rows.group_ids[r]) == g]
            shared = rows.trajectories[members[0]].prompt_length - 1
            computed += shared + sum(lengths[r] - shared for r in members)
            scored += sum(rows.trajectories[r].num_sampled_tokens for r in members)
            attention += sum(lengths[r] ** 2 for r in members)  # causal: ~T^2/2 pairs x 2 matmuls x 2 FLOPs
    forward = 2 * body * computed + 2 * embed * scored + 2 * cfg.num_hidden_layers * cfg.hidden_size * attention
    return 3.0 * forward


def bare_step(model, optimizer, rows: StepRows, budget: int, autocast: bool) -> None:
    lengths = rows.lengths()
    for indices in plan_micro_batches(lengths, rows.group_ids.tolist(), budget):
        batch = collate(rows, indices)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = model(batch.input_ids).logits.float()  # (n, T, V)
        logps = torch.log_softmax(logits[:, :-1], -1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
        mask = batch.policy.loss_mask[:, 1:]
        loss = -(batch.policy.advantages[:, 1:] * logps * mask).sum() / mask.sum()
        loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--budget", type=int, default=2048, help="micro_batch_tokens (the demo's)")
    parser.add_argument("--episodes", default=str(Path(__file__).parent / "data" / "demo_step1.jsonl"))
    parser.add_argument("--synthetic", action="store_true", help="random tokens in a GuessNumber-shaped step")
    parser.add_argument("--engine", action="store_true", help="start the demo's vLLM engine in this process first")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM

    from turngym.agent.models import resolve_model

    keep_freed_memory()  # what `turngym train` does on CPU; process-wide, so the bare loop gets it too
    path = resolve_model(args.model)
    autocast = native_bf16("cpu")
    model, tokenizer = load_model(path, torch.device("cpu"))
    if args.engine:  # what `turngym train` holds while it updates
        from turngym.agent.vllm_generator import VLLMGenerator

        VLLMGenerator(args.model, max_model_len=256, kv_cache_gib=0.7).generate([[1] * 80], SamplingParams(n=8))
    groups = guess_number_step(len(tokenizer)) if args.synthetic else load_episodes(args.episodes)
    rows = StepRows.of(groups, GRPO().advantages(groups))
    tokens = sum(rows.lengths())
    print(f"step: {len(rows)} episodes, {tokens} tokens, budget {args.budget}; bf16 autocast: {autocast}")

    def learner(precision: bool) -> tuple[Learner, OptimizerConfig]:
        policy, _ = load_model(path, torch.device("cpu"))
        optimizer, schedule = make_optimizer(policy, OptimizerConfig(lr=1e-6), total_steps=100)
        return Learner(TokenScorer(policy), policy, optimizer, schedule, None, precision, 1.0)

    config = OptimizerConfig(lr=1e-6, micro_batch_tokens=args.budget)
    correction = CorrectionConfig(mode="token_truncate")  # what `auto` means for GRPO
    runs = {"turngym": learner(autocast)}
    if autocast:
        runs["turngym fp32"] = learner(False)  # the measurement behind `model.autocast: auto`
    bare_model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)  # transformers' defaults (SDPA)
    bare_optimizer = torch.optim.AdamW(bare_model.parameters(), lr=1e-6)
    times: dict[str, list[float]] = {name: [] for name in [*runs, "bare"]}
    for _ in range(args.repeats + 1):  # interleaved, so a noisy neighbour slows every variant alike
        for name, variant in runs.items():
            start = time.perf_counter()
            update(variant, GRPO(), rows, config, correction, Processes())
            times[name].append(time.perf_counter() - start)
        start = time.perf_counter()
        bare_step(bare_model, bare_optimizer, rows, args.budget, autocast)
        times["bare"].append(time.perf_counter() - start)

    best = {name: min(t[1:]) for name, t in times.items()}  # the first pass warms up allocators and caches
    flops = update_flops(model, rows, args.budget)
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16, n=1024 if not autocast else 2048)
    peak = peak16 if autocast else peak32
    for name, seconds in best.items():
        runs_text = [round(t, 1) for t in times[name]]
        print(f"{name + ':':14s} {seconds:.1f} s, {tokens / seconds:.0f} tokens/s  (runs: {runs_text})")
    print(f"matmul peak: fp32 {peak32 / 1e9:.0f} GFLOP/s, bf16 {peak16 / 1e9:.1f} GFLOP/s")
    if autocast:
        print(f"bf16 autocast vs fp32 update: {best['turngym fp32'] / best['turngym']:.2f}x faster")
    print(f"turngym achieved {flops / best['turngym'] / 1e9:.0f} GFLOP/s of {'bf16' if autocast else 'fp32'} work")
    print(f"ratio: {best['bare'] / best['turngym']:.2f}")
    print(f"peak_fraction: {flops / best['turngym'] / peak:.2f}")


if __name__ == "__main__":
    main()
