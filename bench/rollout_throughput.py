"""Rollout throughput: turngym's rollouts against raw lock-step `vllm.LLM.generate` on the same work.

SmolLM2-135M (the default model). Three workloads:

    (a) today's: 8 groups x 4 episodes of GuessNumber, up to 6 turns, replies of at most 64 tokens;
    (b) uneven:  the same groups over a two-env mixture (GuessNumber 1..100 and Mastermind), replies of
                 up to 256 tokens (some end early, some run to the limit), episodes of 1 to 6 turns;
    (demo) one step of `make demo`'s rollout: 8 groups x 8 episodes of GuessNumber 1..4, 3 turns,
                 replies of at most 24 tokens at temperature 0.7, seeded sampling (both schedules play
                 the same episodes), so its seconds per rollout are the demo's first rollout seconds
                 per step, both ways (the untrained model's; trained replies are shorter).

Each workload is played by `play_groups` in lock-step and per episode (`schedule="per_episode"`).
The baseline, measured right after each rollout on the same engine: the same conversations through
raw `llm.generate` calls, one per turn over the episodes still running (lock-step), each turn
generating exactly as many tokens as the rollout sampled (`max_tokens` = that length,
`ignore_eos`) and then appending the episode's own template and feedback ids, so prompts grow and
reuse the prefix cache as in the rollout. The ratio is rollout tokens/s over raw tokens/s: above 1,
the rollout beats lock-step generation of the same tokens (targets: >= 1.0 on (a), >= 1.2 on (b)
per episode). Machines are noisy, so the variants alternate `--repeats` times each and the median
ratio is printed with its spread.

    .venv/bin/python bench/rollout_throughput.py [--repeats 3] [--groups 8] [--group-size 4] [--workloads a,b,demo]

The last line is `ratio: X` (per episode on workload (b), the median; with (b) left out, the first
workload run). Workload (b) takes most of the time (about 2 minutes per rollout and replay here).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"

DEMO_GAME = {"low": 1, "high": 4, "reward_weights": {"ruled_out": -0.5}}
WORKLOADS = {
    "a": {"envs": [("turngym/GuessNumber-v0", {})], "max_tokens": 64},
    "b": {"envs": [("turngym/GuessNumber-v0", {}), ("turngym/Mastermind-v0", {})], "max_tokens": 256},
    "demo": {
        "envs": [("turngym/GuessNumber-v0", DEMO_GAME)],
        "max_tokens": 24,
        "temperature": 0.7,
        "group_size": 8,
        "turns": 3,
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workloads", default="a,b,demo", help="comma-separated, of: " + ", ".join(WORKLOADS))
    args = parser.parse_args()
    workloads = args.workloads.split(",")
    if unknown := sorted(set(workloads) - set(WORKLOADS)):
        parser.error(f"unknown workload {', '.join(unknown)}: choose from {', '.join(WORKLOADS)}")

    from turngym.agent import VLLMGenerator

    generator = VLLMGenerator(args.model, max_model_len=2048, kv_cache_gib=2.0)
    variants = [(w, s) for w in workloads for s in ("lock_step", "per_episode")]
    for workload, schedule in variants:  # warm-up (first-call costs)
        measure(generator, args, workload, schedule, first_seed=10_000)
    ratios: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
    seconds: dict[tuple[str, str], list[float]] = {v: [] for v in variants}
    for repeat in range(args.repeats):
        for workload, schedule in variants:
            ratio, line = measure(generator, args, workload, schedule, first_seed=repeat * args.groups, seconds=seconds)
            ratios[(workload, schedule)].append(ratio)
            print(f"repeat {repeat + 1}, ({workload}) {schedule}: {line}", flush=True)
    for (workload, schedule), values in ratios.items():
        print(
            f"({workload}) {schedule}: median ratio {statistics.median(values):.3f} "
            f"(spread {min(values):.3f}-{max(values):.3f} over {len(values)} runs)"
        )
    if "demo" in workloads:
        lock, each = (statistics.median(seconds[("demo", s)]) for s in ("lock_step", "per_episode"))
        print(f"demo rollout seconds per step (median): lock_step {lock:.2f}, per_episode {each:.2f}")
    if "a" in workloads:
        print(f"ratio (a) per_episode: {statistics.median(ratios[('a', 'per_episode')]):.3f}")
    headline = "b" if "b" in workloads else workloads[0]
    print(f"ratio: {statistics.median(ratios[(headline, 'per_episode')]):.3f}")


def measure(generator, args, workload: str, schedule: str, first_seed: int, seconds=None) -> tuple[float, str]:
    """One rollout of `workload` under `schedule`, then the raw lock-step replay of its conversations.

    `seconds`, if given, collects the rollout's seconds under `(workload, schedule)`.
    """
    from turngym.agent import GroupSpec, SamplingParams, play_groups

    spec = WORKLOADS[workload]
    envs, turns = spec["envs"], spec.get("turns", args.turns)
    specs = [
        GroupSpec(envs[i % len(envs)][0], first_seed + i, envs[i % len(envs)][1], max_turns=turns)
        for i in range(args.groups)
    ]
    seed = first_seed if workload == "demo" else None  # the same episodes under both schedules
    sampling = SamplingParams(temperature=spec.get("temperature", 1.0), max_tokens=spec["max_tokens"], seed=seed)
    generator.llm.reset_prefix_cache()
    start = time.perf_counter()
    group_size = spec.get("group_size", args.group_size)
    groups = play_groups(specs, group_size, generator, sampling=sampling, schedule=schedule)
    rollout_seconds = time.perf_counter() - start
    if seconds is not None:
        seconds[(workload, schedule)].append(rollout_seconds)
    trajectories = [t for g in groups for t in g.trajectories]
    rollout_tokens = sum(t.num_sampled_tokens for t in trajectories)
    raw_tokens, raw_seconds = raw_lock_step(generator, trajectories)
    ratio = (rollout_tokens / rollout_seconds) / (raw_tokens / raw_seconds)
    turns = [t.num_turns for t in trajectories]
    line = (
        f"{rollout_tokens} tokens in {rollout_seconds:.2f} s against raw {raw_tokens} in {raw_seconds:.2f} s "
        f"(turns {min(turns)}-{max(turns)}), ratio {ratio:.3f}"
    )
    return ratio, line


def raw_lock_step(generator, trajectories) -> tuple[int, float]:
    """The same conversations through raw vLLM, turn by turn: sampled tokens and seconds."""
    from vllm import SamplingParams as RawSamplingParams
    from vllm.inputs import TokensPrompt

    generator.llm.reset_prefix_cache()
    turns = max(t.num_turns for t in trajectories)
    conversations = [t.token_ids[: t.prompt_length] for t in trajectories]
    raw_tokens, raw_seconds = 0, 0.0
    for k in range(turns):
        live = [i for i, t in enumerate(trajectories) if t.num_turns > k]
        lengths = [trajectories[i].turns[k].end - trajectories[i].turns[k].start for i in live]
        prompts = [TokensPrompt(prompt_token_ids=conversations[i]) for i in live]
        params = [RawSamplingParams(temperature=1.0, max_tokens=n, ignore_eos=True) for n in lengths]
        start = time.perf_counter()
        outputs = generator.llm.generate(prompts, params, use_tqdm=False)
        raw_seconds += time.perf_counter() - start
        for i, output in zip(live, outputs, strict=True):
            t = trajectories[i]
            following = t.turns[k + 1].start if k + 1 < t.num_turns else t.turns[k].end
            conversations[i] = (
                conversations[i] + list(output.outputs[0].token_ids) + t.token_ids[t.turns[k].end : following]
            )
            raw_tokens += len(output.outputs[0].token_ids)
    return raw_tokens, raw_seconds


if __name__ == "__main__":
    main()
