"""What the trainer's forward pass keeps for the backward pass, tensor by tensor, on one group of a recorded step.

Builds the learner of a recipe (default: the demo), takes one group of the demo's recorded first
step (`bench/data/demo_step1.jsonl`, 8 episodes), runs the scorer's forward as an update does (bf16
autocast where `model.autocast` resolves to it: `model.autocast=off` for fp32), and
counts every tensor autograd saves (`torch.autograd.graph.saved_tensors_hooks`; each storage once,
model weights left out). Prints the total, the bytes per token, and the largest shapes, which name
what they are (e.g. (rows, tokens, 1536): SmolLM2's MLP intermediates). Before that, one plain
forward/backward, with the resident memory it added (what the allocator really took).

    .venv/bin/python bench/activation_memory.py [--recipe examples/recipes/demo.yaml] [--group 0]
        [OVERRIDE ...]          e.g. model.lora=null optimizer.lr=3e-5 (full fine-tuning)
"""

from __future__ import annotations

import argparse
import collections
import os
from pathlib import Path

from turngym.trainer.memory import resident_gib

os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")

EPISODES = Path(__file__).parent / "data" / "demo_step1.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="examples/recipes/demo.yaml")
    parser.add_argument("--group", type=int, default=0, help="which group of the recorded step")
    parser.add_argument("--top", type=int, default=12, help="how many shapes to list")
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()

    import torch

    from turngym.agent.hardware import keep_freed_memory
    from turngym.agent.records import load_episodes
    from turngym.trainer import loop
    from turngym.trainer.collate import collate
    from turngym.trainer.config import load_recipe
    from turngym.trainer.distributed import Processes

    keep_freed_memory()  # as `turngym train` does on CPU
    config = load_recipe(args.recipe, ["eval.at_start=false", *args.overrides])
    learner, _, _ = loop._build_learner(config, None, Processes.from_environment())
    groups = load_episodes(EPISODES)
    objective = config.objective
    rows, _ = loop._advantages(objective, objective.filter(groups, len(groups), objective.initial_state()))
    batch = collate(rows, [r for r in range(len(rows)) if int(rows.group_ids[r]) == args.group])
    weights = {p.untyped_storage().data_ptr() for p in learner.model.parameters()}
    seen: set[tuple[int, int]] = set()
    by_shape: collections.Counter[tuple[tuple[int, ...], str]] = collections.Counter()

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key not in seen and storage.data_ptr() not in weights:
            seen.add(key)
            by_shape[(tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."))] += storage.nbytes()
        return tensor

    learner.model.train()
    before = resident_gib()
    with learner.precision():  # bf16 autocast where `model.autocast` resolves to it, as in an update
        logps = learner.scorer(batch.input_ids, batch.policy.loss_mask, 1.0, batch.policy.group_ids)  # (n, T)
    after_forward = resident_gib()
    logps.sum().backward()
    after_backward = resident_gib()
    grown = f"+{after_forward - before:.2f} GiB after the forward, {after_backward - before:+.2f} GiB after backward"
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), learner.precision():
        logps = learner.scorer(batch.input_ids, batch.policy.loss_mask, 1.0, batch.policy.group_ids)  # (n, T)
    del logps
    total = sum(by_shape.values())
    tokens = int(batch.num_tokens)
    scored = int(batch.policy.loss_mask.sum())
    precision = "bf16 autocast" if learner.autocast else "fp32"
    print(f"group {args.group}: {len(batch.rows)} episodes, {tokens} tokens, {scored} scored; {precision}")
    print(f"saved for backward: {total / 2**20:.0f} MiB ({total / tokens / 1024:.0f} KiB per token)")
    for (shape, dtype), size in by_shape.most_common(args.top):
        print(f"  {size / 2**20:8.1f} MiB  {shape} {dtype}")
    print(f"resident memory of a plain forward/backward: {grown}")


if __name__ == "__main__":
    main()
