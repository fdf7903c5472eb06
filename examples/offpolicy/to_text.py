"""Write a text-only copy of saved episodes, as a transcript of an API model would hold them.

Keeps each episode's first observation, replies, feedback, rewards and stop reasons; drops the token
ids, loss masks, sampler logprobs and token positions, so a recipe reading the copy rebuilds the ids
from the text with its own chat template (README, "Training from recorded episodes").

    .venv/bin/python examples/offpolicy/to_text.py evals/offpolicy-ckpt/episodes.jsonl evals/offpolicy-ckpt-text.jsonl
"""

from __future__ import annotations

import json
import sys

TOKEN_FIELDS = ("token_ids", "loss_mask", "sampling_logps", "prompt_length", "has_sampling_logps")


def to_text(line: dict) -> dict:
    """One saved line (a group, or `turngym eval`'s {model, env, seed, group}) without its token fields."""
    group = line.get("group", line)
    for trajectory in group["trajectories"]:
        for name in TOKEN_FIELDS:
            trajectory.pop(name, None)
        for turn in trajectory["turns"]:
            for name in ("start", "end"):
                turn.pop(name, None)
    return line


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: to_text.py EPISODES.jsonl OUT.jsonl")
    with open(sys.argv[1]) as src, open(sys.argv[2], "w") as out:
        lines = [json.dumps(to_text(json.loads(line))) + "\n" for line in src if line.strip()]
        out.writelines(lines)
    print(f"{len(lines)} groups, text only, in {sys.argv[2]}")
