"""Episode records: what a rollout produces and a trainer or evaluator consumes.

A `Trajectory` is one episode as a single token sequence (prompt, then alternating sampled assistant
tokens and template/feedback tokens) plus per-turn records. A `TrajectoryGroup` holds the episodes
that started from the same env seed. Both are plain dataclasses that round-trip through JSON, so
episodes can be saved (`save_episodes`) and replayed (`load_episodes`).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

StopReason = Literal["terminated", "truncated", "max_turns", "context", "error"]


@dataclass
class TurnRecord:
    """One agent turn.

    Attributes:
        action: the decoded text the model produced (what the env received).
        feedback: the env's observation after the action.
        rewards: the env's named reward components for this step.
        reward: the env's weighted reward for this step.
        metrics: the env's metrics for this step (`won`, `invalid_action`, ...).
        start: index in `Trajectory.token_ids` of this turn's first sampled token.
        end: index one past its last sampled token.
        finish_reason: `"stop"` or `"length"` (the generator hit its token limit).
        state: the key of the state the agent acted in (`TextEnv.state_key`, else a digest of the
            observations so far); turns of one group with equal keys were taken in the same
            situation (`credit: step` compares them). Empty in episodes saved before keys existed.
    """

    action: str
    feedback: str
    rewards: dict[str, float]
    reward: float
    metrics: dict[str, Any]
    start: int
    end: int
    finish_reason: str
    state: str = ""


@dataclass
class Trajectory:
    """One episode as tokens plus per-turn records.

    Attributes:
        token_ids: the whole conversation: prompt, sampled assistant tokens, and the chat-template
            and feedback tokens in between, exactly as the model saw and produced them.
        loss_mask: 1 on sampled assistant tokens, 0 on everything else (prompt, template, feedback).
        sampling_logps: the sampler's logprob of each sampled token; 0.0 where `loss_mask` is 0.
        turns: per-turn records.
        prompt_length: number of tokens before the first sampled token.
        reward: total reward (sum over turns).
        rewards: per-component totals over turns.
        terminated: the env ended the episode for good.
        truncated: the episode was cut: env turn limit, rollout turn limit, or context budget.
        stop_reason: why it ended: `terminated`, `truncated` (by the env), `max_turns`, `context`,
            or `error` (the env raised or returned a non-finite reward; see `error`).
        first_observation: the env's first observation.
        error: the traceback of the env's failure (`stop_reason="error"`), else None.
        has_sampling_logps: False for an episode rebuilt from text (a transcript without token ids,
            tokenized with the policy's chat template): its `sampling_logps` are 0 and no behaviour
            policy is known.
    """

    token_ids: list[int]
    loss_mask: list[int]
    sampling_logps: list[float]
    turns: list[TurnRecord]
    prompt_length: int
    reward: float
    rewards: dict[str, float]
    terminated: bool
    truncated: bool
    stop_reason: StopReason
    first_observation: str = ""
    error: str | None = None
    has_sampling_logps: bool = True

    @property
    def num_turns(self) -> int:
        """How many actions the agent took."""
        return len(self.turns)

    @property
    def num_sampled_tokens(self) -> int:
        """How many tokens the model generated in this episode."""
        return sum(self.loss_mask)

    @property
    def metrics(self) -> dict[str, Any]:
        """The last turn's metrics (episode-level facts such as `won`), empty if no turn was taken."""
        return dict(self.turns[-1].metrics) if self.turns else {}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trajectory:
        """Rebuild a trajectory from `to_dict` output."""
        return cls(**{**data, "turns": [TurnRecord(**t) for t in data["turns"]]})


@dataclass
class TrajectoryGroup:
    """Episodes that started from the same env and seed (the unit of group-relative advantages).

    Attributes:
        env_id: which env: from `collect_groups`, the id as given (`env_name`: `module:Class` for a
            class or factory); in training rollouts, the recipe entry's name (`TrainConfig.env_names`:
            its `name:`, else the id, or `Class` for `module:Class`; `<id>#<i>` when two unnamed entries
            share an id), as in the metric keys `env/<name>/...`.
        seed: the env seed every episode of the group was reset with.
        trajectories: the episodes.
    """

    env_id: str
    seed: int
    trajectories: list[Trajectory] = field(default_factory=list)

    @property
    def rewards(self) -> list[float]:
        """Total reward of each trajectory."""
        return [t.reward for t in self.trajectories]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"env_id": self.env_id, "seed": self.seed, "trajectories": [t.to_dict() for t in self.trajectories]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrajectoryGroup:
        """Rebuild a group from `to_dict` output."""
        return cls(data["env_id"], data["seed"], [Trajectory.from_dict(t) for t in data["trajectories"]])


def reward_totals(turns: Iterable[TurnRecord]) -> dict[str, float]:
    """Each reward component summed over the turns (`Trajectory.rewards`)."""
    totals: dict[str, float] = {}
    for turn in turns:
        for name, value in turn.rewards.items():
            totals[name] = totals.get(name, 0.0) + value
    return totals


def save_episodes(path: str | Path, groups: Iterable[TrajectoryGroup]) -> None:
    """Write groups as JSONL, one group per line, appending; gzip-compressed if `path` ends in `.gz`."""
    with open_text(path, "a") as out:
        for group in groups:
            out.write(json.dumps(group.to_dict(), ensure_ascii=False) + "\n")


def load_episodes(path: str | Path) -> list[TrajectoryGroup]:
    """Read groups written by `save_episodes` (`.jsonl` or `.jsonl.gz`)."""
    with open_text(path, "r") as lines:
        return [TrajectoryGroup.from_dict(json.loads(line)) for line in lines if line.strip()]


def open_text(path: str | Path, mode: str) -> Any:
    """A UTF-8 text file, read or written through gzip when its name ends in `.gz`."""
    if str(path).endswith(".gz"):  # level 1: several times faster than gzip's 9, for a few percent more bytes
        return gzip.open(path, mode + "t", encoding="utf-8", compresslevel=1)
    return open(path, mode, encoding="utf-8")
