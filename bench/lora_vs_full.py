"""LoRA against full fine-tuning on one step of a recipe (default: the demo): update, sync, memory.

Each variant runs in a fresh process that builds what `turngym train` builds (the learner from the
recipe, then the vLLM engine in the same process), plays one step's rollout, and then trains on the
same episodes as every other variant (the first variant's rollout, saved to a file): one warm-up
update, then `--repeats` timed updates, each followed by the weight sync into the engine. A variant
reports the median update and sync seconds, its peak resident memory (the process's `ru_maxrss`:
engine and trainer together, as in a training run), and the resident memory after each stage, which
is where a run's memory goes.

    .venv/bin/python bench/lora_vs_full.py [--recipe examples/recipes/demo.yaml] [--repeats 3]
        [--variant full=model.lora=null] [--variant lora16=model.lora.r=16,optimizer.lr=3e-4] [--profile]
        [--episodes FILE]

A variant is a name and recipe overrides (`name=` alone: the recipe as it is); the pseudo-override
`malloc=default` leaves glibc's allocator as it is (`turngym train` sets it to keep freed memory,
`agent/hardware.keep_freed_memory`), `malloc=heap` keeps every block in the heap (the setting before
the 32 MiB threshold) and `malloc=N` maps blocks of N MiB and more (N <= 32). Every variant's update
ends with `release_freed_memory` (malloc_trim), as in training.
`--vary` trains each repeat on a different random 6 of the step's 8 groups, so the rows change shape
from update to update as in a run (a run's resident memory grows with the holes such changes leave);
the resident memory after each update is printed. The default variants name full fine-tuning's settings too, so
they compare the same three setups whatever the recipe trains.
`--episodes FILE` keeps the step's episodes (an existing file is trained on as it is).

Last lines: `update_ratio`, `sync_ratio`, `memory_ratio` of each LoRA variant against `full`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from turngym.trainer.memory import resident_gib

os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")

DEFAULT_VARIANTS = (
    "full=model.lora=null,optimizer.lr=3e-5",
    "lora_r16=model.lora.r=16,optimizer.lr=3e-4",
    "lora_r1=model.lora.r=1,optimizer.lr=3e-4",
)


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_variant(
    recipe: str, overrides: list[str], episodes: Path, repeats: int, profile: bool, vary: bool = False
) -> dict[str, Any]:
    """One variant, in this process: build, roll out, update + sync `repeats + 1` times. Returns its figures."""
    from turngym.agent.generator import SamplingParams
    from turngym.agent.hardware import MMAP_THRESHOLD, keep_freed_memory
    from turngym.agent.records import load_episodes, save_episodes
    from turngym.agent.rollout import collect_groups
    from turngym.trainer import loop, lora
    from turngym.trainer.config import load_recipe
    from turngym.trainer.distributed import Processes
    from turngym.trainer.update import update

    stages = {"start": resident_gib()}
    malloc = next((o.partition("=")[2] for o in overrides if o.startswith("malloc=")), "")
    overrides = [o for o in overrides if not o.startswith("malloc=")]
    config = load_recipe(recipe, ["eval.at_start=false", *overrides])
    procs = Processes.from_environment()
    if malloc != "default":  # as `turngym train` does on CPU, or another threshold
        keep_freed_memory(None if malloc == "heap" else int(malloc) << 20 if malloc else MMAP_THRESHOLD)
    loop._seed_everything(config, procs)
    learner, _, _ = loop._build_learner(config, None, procs)
    stages["learner (weights, AdamW not yet allocated)"] = resident_gib()
    generator = loop._build_generator(config, procs)
    stages["vLLM engine (weights, KV cache)"] = resident_gib()
    rollout, env = config.rollout, config.envs[0]
    start = time.perf_counter()
    played = collect_groups(
        env.id,
        list(range(rollout.groups_per_step)),
        rollout.group_size,
        generator,
        max_turns=env.max_turns,
        sampling=SamplingParams(temperature=rollout.temperature, max_tokens=rollout.max_tokens, seed=1234),
        env_kwargs=env.kwargs,
        system_prompt=env.system_prompt,
        progress=False,
    )
    rollout_seconds = time.perf_counter() - start
    stages["after one rollout"] = resident_gib()
    if not episodes.exists():
        save_episodes(episodes, played)
    groups = load_episodes(episodes)
    objective = config.objective
    rows, _ = loop._advantages(objective, objective.filter(groups, len(groups), objective.initial_state()))
    updates, syncs, tokens, after = [], [], 0.0, []
    for i in range(repeats + 1):
        if vary:  # a different 6 of the 8 groups each time: rows of other shapes, as in a run
            subset = random.Random(i).sample(groups, k=max(1, len(groups) - 2))
            rows, _ = loop._advantages(objective, objective.filter(subset, len(subset), objective.initial_state()))
        result = update(learner, objective, rows, config.optimizer, config.correction, procs)
        start = time.perf_counter()
        generator.load_weights(lora.sampler_weights(learner.model))
        sync = time.perf_counter() - start
        if i == 0:
            stages["after the first update and sync"] = resident_gib()
            continue
        updates.append(result.seconds)
        syncs.append(sync)
        after.append(round(resident_gib(), 2))
        tokens = result.tokens_trained
    if profile:
        profile_update(learner, objective, rows, config, procs)
    trainable = sum(p.numel() for p in learner.model.parameters() if p.requires_grad)
    return {
        "overrides": overrides,
        "trainable_parameters": trainable,
        "rollout_s": rollout_seconds,
        "update_s": statistics.median(updates),
        "tokens_per_s": tokens / statistics.median(updates),
        "sync_s": statistics.median(syncs),
        "peak_gib": peak_gib(),
        "stages": stages,
        "resident_after_updates": after,
    }


def profile_update(learner: Any, objective: Any, rows: Any, config: Any, procs: Any) -> None:
    """The update's top operators by self CPU time (torch.profiler), to stderr."""
    from torch.profiler import ProfilerActivity, profile

    from turngym.trainer.update import update

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        update(learner, objective, rows, config.optimizer, config.correction, procs)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25), file=sys.stderr)


def parse_variants(specs: list[str]) -> dict[str, list[str]]:
    """`name=key=value,key=value` -> {name: ["key=value", ...]} (`name=` is the recipe as it is)."""
    out = {}
    for spec in specs:
        name, _, rest = spec.partition("=")
        out[name] = [item for item in rest.split(",") if item]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="examples/recipes/demo.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", action="append", help="name=overrides (default: full, LoRA r=16 and r=1)")
    parser.add_argument("--profile", action="store_true", help="print each variant's top operators")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    parser.add_argument("--episodes", help="keep the step's episodes here (an existing file is reused)")
    parser.add_argument("--vary", action="store_true", help="train each repeat on a different 6 of the 8 groups")
    args = parser.parse_args()
    variants = parse_variants(args.variant or list(DEFAULT_VARIANTS))
    if args.child is not None:
        figures = run_variant(
            args.recipe, variants[args.child], Path(args.episodes), args.repeats, args.profile, args.vary
        )
        print("RESULT " + json.dumps(figures))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        episodes = Path(args.episodes) if args.episodes else Path(tmp) / "episodes.jsonl"
        for name in variants:
            command = [sys.executable, __file__, "--child", name, "--episodes", str(episodes)]
            command += ["--recipe", args.recipe, "--repeats", str(args.repeats)]
            command += [f"--variant={n}={','.join(o)}" for n, o in variants.items()]
            command += ["--profile"] if args.profile else []
            command += ["--vary"] if args.vary else []
            print(f"-- {name}: {' '.join(variants[name]) or '(the recipe as it is)'}", flush=True)
            out = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True).stdout
            results[name] = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
            report(name, results[name])
    ratios(results)


def report(name: str, r: dict[str, Any]) -> None:
    print(
        f"{name}: trainable {r['trainable_parameters'] / 1e6:.2f} M, rollout {r['rollout_s']:.1f} s, "
        f"update {r['update_s']:.2f} s ({r['tokens_per_s']:.0f} tokens/s), sync {r['sync_s']:.2f} s, "
        f"peak {r['peak_gib']:.2f} GiB"
    )
    for stage, gib in r["stages"].items():
        print(f"    RSS {gib:5.2f} GiB  {stage}")
    print(f"    RSS after each timed update: {r['resident_after_updates']}")


def ratios(results: dict[str, dict[str, Any]]) -> None:
    if "full" not in results:
        return
    full = results["full"]
    for name, r in results.items():
        if name != "full":
            print(
                f"{name}/full: update_ratio {r['update_s'] / full['update_s']:.2f} "
                f"sync_ratio {r['sync_s'] / full['sync_s']:.2f} memory_ratio {r['peak_gib'] / full['peak_gib']:.2f}"
            )


if __name__ == "__main__":
    main()
