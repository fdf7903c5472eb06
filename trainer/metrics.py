"""Step metrics: what the rollout produced, what the update did, and where they are written.

Every step appends one JSON line to `<run dir>/metrics.jsonl` (and, with `run.tensorboard`, one
TensorBoard scalar per key). Keys are flat and grouped by prefix:

    reward, reward_std, reward/<component>, success, turns, sampled_tokens, invalid_rate,
    stop/<reason>, env/<id>/success               the rollout (the episodes played this step)
    recorded/reward, recorded/success, recorded/invalid_rate   the recorded groups taken (`data.episodes`)
    groups_collected, groups_recorded, groups_trained, kept_fraction, refill_rounds, failed_episodes,
    uniform_group_fraction, filter/<name>          selection (the objective's filter)
    advantage_abs_mean, advantage_std, adv/<name>  advantages
    loss, pg_loss, kl, ratio_*, clip_fraction_*    the objective's loss terms
    mismatch_abs_logp, mismatch_kl, is_weight_mean, is_changed_fraction   sampler/trainer mismatch
    grad_norm, lr, skipped_update, padding_fraction, tokens_trained
    time/rollout, time/update, time/sync, time/step, tokens_per_s/rollout, tokens_per_s/update
    memory/resident_gib, memory/peak_gib          this process's resident memory after the step, its peak so far
    temperature                                   the step's sampling temperature (with rollout.temperature_stages)

`reward/<component>` is the component's unweighted value summed over an episode's turns, averaged
over the step's episodes: the env's reward_weights are not applied, so `reward/invalid` (1 per
invalid turn) is invalid turns per episode, whatever its weight in `reward`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from turngym.agent.records import Trajectory, TrajectoryGroup

if TYPE_CHECKING:
    from turngym.trainer.distributed import Processes


def success(trajectory: Trajectory) -> bool:
    """Whether an episode counts as a success: the env's `won` metric on its last turn."""
    return bool(trajectory.metrics.get("won", False))


def rollout_metrics(groups: Sequence[TrajectoryGroup]) -> dict[str, float]:
    """Episode statistics of every collected group (failed episodes excluded).

    `reward` is the mean return (weighted components summed over turns); `reward/<name>` the mean of
    `Trajectory.rewards[name]`, the component's unweighted per-turn values summed over the episode.
    """
    episodes = [t for g in groups for t in g.trajectories if t.stop_reason != "error"]
    if not episodes:
        return {"episodes": 0.0}
    rewards = np.array([t.reward for t in episodes])
    turns = [turn for t in episodes for turn in t.turns]
    out = {
        "episodes": float(len(episodes)),
        "reward": float(rewards.mean()),
        "reward_std": float(rewards.std()),
        "success": float(np.mean([success(t) for t in episodes])),
        "turns": float(np.mean([t.num_turns for t in episodes])),
        "sampled_tokens": float(np.mean([t.num_sampled_tokens for t in episodes])),
        "invalid_rate": float(np.mean([bool(turn.metrics.get("invalid_action")) for turn in turns])) if turns else 0.0,
        "truncated_turn_rate": float(np.mean([turn.finish_reason == "length" for turn in turns])) if turns else 0.0,
    }
    for name in sorted({name for t in episodes for name in t.rewards}):
        out[f"reward/{name}"] = float(np.mean([t.rewards.get(name, 0.0) for t in episodes]))
    for reason in ("terminated", "truncated", "max_turns", "context"):
        out[f"stop/{reason}"] = float(np.mean([t.stop_reason == reason for t in episodes]))
    env_ids = sorted({g.env_id for g in groups})
    if len(env_ids) > 1:
        for env_id in env_ids:
            mine = [t for g in groups if g.env_id == env_id for t in g.trajectories if t.stop_reason != "error"]
            out[f"env/{env_id}/success"] = float(np.mean([success(t) for t in mine])) if mine else math.nan
            out[f"env/{env_id}/reward"] = float(np.mean([t.reward for t in mine])) if mine else math.nan
    out["uniform_group_fraction"] = float(np.mean([len(set(g.rewards)) <= 1 for g in groups]))
    return out


class Sums:
    """Accumulates update metrics over micro-batches, optimiser steps and processes.

    Kinds: `add` sums (token counts, loss shares, mismatch sums), `add_objective_metric` follows
    the objective's naming (`*_loss`: the micro-batch's share of the step's loss, summed;
    `*_min`/`*_max`: extremes; anything else: a mean weighted by trained tokens), `set` records a
    value every process agrees on (averaged over optimiser steps).
    """

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.weighted: dict[str, list[float]] = {}  # name -> [sum of value x weight, sum of weight]
        self.extremes: dict[str, float] = {}
        self.agreed: dict[str, list[float]] = {}

    def add(self, name: str, value: float) -> None:
        """Add to a sum."""
        self.totals[name] = self.totals.get(name, 0.0) + value

    def add_objective_metric(self, name: str, value: float, tokens: float) -> None:
        """Accumulate a metric returned by `Objective.loss` for one micro-batch."""
        if name.endswith("_loss"):
            self.add(name, value)
        elif name.endswith("_min"):
            self.extremes[name] = min(self.extremes.get(name, math.inf), value)
        elif name.endswith("_max"):
            self.extremes[name] = max(self.extremes.get(name, -math.inf), value)
        else:
            entry = self.weighted.setdefault(name, [0.0, 0.0])
            entry[0] += value * tokens
            entry[1] += tokens

    def set(self, name: str, value: float) -> None:
        """Record a value that every process agrees on."""
        self.agreed.setdefault(name, []).append(value)

    def result(self, procs: Processes | None = None) -> dict[str, Any]:
        """Merge every process's sums and turn them into metrics."""
        parts = procs.gather(self) if procs is not None else [self]
        totals: dict[str, float] = {}
        weighted: dict[str, list[float]] = {}
        extremes: dict[str, float] = {}
        for part in parts:
            for k, v in part.totals.items():
                totals[k] = totals.get(k, 0.0) + v
            for k, (vw, w) in part.weighted.items():
                entry = weighted.setdefault(k, [0.0, 0.0])
                entry[0] += vw
                entry[1] += w
            for k, v in part.extremes.items():
                extremes[k] = min(extremes.get(k, v), v) if k.endswith("_min") else max(extremes.get(k, v), v)
        out: dict[str, Any] = {k: float(np.mean(v)) for k, v in self.agreed.items()}
        tokens = totals.pop("tokens", 0.0)  # tokens with known behaviour logprobs (none: rows rebuilt from text)
        for name in ("mismatch_abs_logp", "mismatch_kl"):
            if name in totals and tokens:
                out[name] = totals.pop(name) / tokens
        if "is_weight" in totals and tokens:
            out["is_weight_mean"] = totals.pop("is_weight") / tokens
            out["is_changed_fraction"] = totals.pop("is_changed") / tokens
        for name in ("mismatch_abs_logp", "mismatch_kl", "is_weight", "is_changed"):
            totals.pop(name, None)
        out.update(totals)
        out.update({k: vw / w if w else 0.0 for k, (vw, w) in weighted.items()})
        out.update(extremes)
        return out


class MetricsLog:
    """Appends one JSON line per step to `metrics.jsonl` (and TensorBoard scalars), on the main process."""

    def __init__(self, run_dir: Path, tensorboard: bool, enabled: bool = True) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self.writer = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def truncate_after(self, step: int) -> None:
        """Drop lines of steps after `step` (they are trained again after a resume)."""
        if not (self.enabled and self.path.exists()):
            return
        kept = [
            line for line in self.path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step
        ]
        self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        """Append the step's metrics."""
        if not self.enabled:
            return
        record = {"step": step, **{k: _jsonable(v) for k, v in metrics.items()}}
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, int | float) and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)
            self.writer.flush()

    def close(self) -> None:
        """Close the TensorBoard writer."""
        if self.writer is not None:
            self.writer.close()


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The per-step records of a run directory's `metrics.jsonl`."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {run_dir} a turngym run directory?")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value
