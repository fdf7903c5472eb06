"""Recorded episodes as training data (`data.episodes`): read, checked, tokenized when text-only, taken in turn.

Any JSONL of episode groups in `save_episodes`' shape (`{env_id, seed, trajectories}`) trains: a
run's own `episodes/step-*.jsonl.gz` (`run.save_episodes`), a transcript written by other tools, or
`turngym eval`'s `episodes.jsonl`, whose lines wrap a group as `{model, env, seed, group}` (every
model's groups are read; the env label or the group's env id names the recipe entry).
A recorded group is a group: the episodes of one line started from the same env and seed, and the
objective compares them with each other exactly as it compares the episodes of a live group.

Episodes with token ids (turngym's own) keep their ids and their sampler's logprobs, which are the
behaviour policy's (the `correction` weights tokens by pi_old / mu with them). Episodes without
token ids (an endpoint's through `turngym eval`, or any transcript) are rebuilt from their text the
way a live rollout builds its ids (`turngym.agent.chat`): the prompt is the chat template over the
env entry's system prompt and the first observation, each action is its text's ids plus the
end-of-turn token when the reply stopped, and the feedback between turns is the template's delta.
They have no behaviour logprobs (`Trajectory.has_sampling_logps` False), so only objectives that
need none (`Objective.recorded_data_needs`, GVPO) may train on them. A sampler can produce ids that
its tokenizer would not (a word split unusually); the text of such a reply tokenizes differently,
which is the most a transcript can tell.

Nothing is dropped silently: a line that is not a group, an env the recipe does not have, or a
group too small to compare is an error naming the file and line; groups with a failed episode
(`stop_reason: error`, which a live step drops too) are left out and counted in `summary()`.
"""

from __future__ import annotations

import dataclasses
import difflib
import glob
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from turngym.agent.chat import ChatFormat
from turngym.agent.records import Trajectory, TrajectoryGroup, TurnRecord, open_text
from turngym.trainer.config import OBJECTIVE, TrainConfig
from turngym.trainer.schema import RecipeError

KEY = "data.episodes"


@dataclass
class RecordedData:
    """The recorded groups of a run and the order it takes them in.

    Attributes:
        groups: every usable group, each named by its recipe entry (`TrainConfig.env_names`).
        files: the files read, in order.
        seed: seeds each pass's order (`run.seed`).
        shuffle: a new seeded order each pass (False: file order every pass).
        failed: groups left out because one of their episodes failed.
        from_text: groups rebuilt from text (no token ids in the file).
    """

    groups: list[TrajectoryGroup]
    files: list[Path]
    seed: int = 0
    shuffle: bool = True
    failed: int = 0
    from_text: int = 0
    _orders: dict[int, list[int]] = field(default_factory=dict, repr=False)

    def take(self, count: int, position: int) -> list[TrajectoryGroup]:
        """The `count` groups at `position..position+count-1` of the endless stream of passes over the data.

        Pass `p` covers positions `p*n .. p*n+n-1` (n groups) in its own order, so a resumed run that
        saved its position continues with exactly the groups it would have taken.
        """
        n = len(self.groups)
        taken = []
        for index in range(position, position + count):
            epoch, offset = divmod(index, n)
            taken.append(self.groups[self._order(epoch)[offset]])
        return taken

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            n = len(self.groups)
            order = np.random.default_rng([self.seed, epoch]).permutation(n).tolist() if self.shuffle else range(n)
            self._orders = {epoch: list(order)}  # one pass at a time is all `take` needs
        return self._orders[epoch]

    def summary(self) -> str:
        """One line for the run's header: what was read and what was left out."""
        episodes = sum(len(g.trajectories) for g in self.groups)
        files = f"{len(self.files)} file{'s' if len(self.files) != 1 else ''}"
        text = f", {self.from_text} of them rebuilt from text" if self.from_text else ""
        failed = f"; {self.failed} group(s) with a failed episode left out" if self.failed else ""
        return f"recorded episodes: {len(self.groups)} groups ({episodes} episodes) from {files}{text}{failed}"


def episode_files(patterns: Sequence[str]) -> list[Path]:
    """The files `data.episodes` names, each pattern's matches sorted; a pattern that matches nothing is an error."""
    files: list[Path] = []
    for i, pattern in enumerate(patterns):
        matches = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
        matches = [m for m in matches if Path(m).is_file()]
        if not matches:
            raise RecipeError(f"{KEY}.{i}", f"{pattern!r} matches no file")
        files += [Path(m) for m in matches if Path(m) not in files]
    return files


def load_recorded(config: TrainConfig, tokenizer: Any = None) -> RecordedData:
    """Read, check and (text-only episodes) tokenize the recipe's `data.episodes`.

    Args:
        config: the recipe (its envs name the groups; its objective says what the data must carry).
        tokenizer: the policy's tokenizer, for episodes without token ids (None: such episodes are an error).

    Raises:
        RecipeError: naming `data.episodes` and the file and line of a malformed group, an unknown
            env, a group too small for the objective, text-only episodes for an objective that needs
            behaviour logprobs, or no usable group at all.
    """
    files = episode_files(config.data.episodes)
    reader = _Reader(config, tokenizer)
    groups: list[TrajectoryGroup] = []
    for path in files:
        with open_text(path, "r") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    group = reader.group(line, f"{path}:{number}")
                    groups += [group] if group is not None else []
    if not groups:
        raise RecipeError(
            KEY, f"no usable group in {', '.join(map(str, files))} ({reader.failed} with failed episodes)"
        )
    return RecordedData(groups, files, config.run.seed, config.data.shuffle, reader.failed, reader.from_text)


class _Reader:
    """Turns one JSONL line into a checked group named by its recipe entry."""

    def __init__(self, config: TrainConfig, tokenizer: Any) -> None:
        self.config, self.tokenizer = config, tokenizer
        self.entries = {name: i for i, name in enumerate(config.env_names)}
        self.entries |= {env.id: i for i, env in enumerate(config.envs) if env.id not in self.entries}
        self.failed = self.from_text = 0
        self._chat: ChatFormat | None = None
        self._prompts: dict[int, str | None] = {}

    def group(self, line: str, where: str) -> TrajectoryGroup | None:
        """The checked group of one line, or None when one of its episodes failed."""
        try:
            data = json.loads(line)
            names = [data["env"]] if "group" in data else []  # `turngym eval`'s line: {model, env, seed, group}
            data = data.get("group", data)
            names.append(data["env_id"])
            seed, raw = int(data["seed"]), data["trajectories"]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
            raise RecipeError(KEY, f"{where}: not an episode group ({{env_id, seed, trajectories}}): {err}") from None
        entry = self._entry(names, where)
        if any(t.get("stop_reason") == "error" for t in raw):
            self.failed += 1
            return None
        self._check_size(len(raw), where)
        text_only = any(not t.get("token_ids") for t in raw)
        if text_only:
            self._check_text_allowed(where)
            self.from_text += 1
        try:
            trajectories = [self._from_text(t, entry) if text_only else Trajectory.from_dict(t) for t in raw]
        except (KeyError, TypeError, ValueError) as err:
            raise RecipeError(KEY, f"{where}: an episode that cannot be read: {type(err).__name__}: {err}") from None
        return TrajectoryGroup(self.config.env_names[entry], seed, trajectories)

    def _entry(self, names: list[str], where: str) -> int:
        """The recipe entry of the first of `names` (an eval line's env label, then the group's env id) it has."""
        for name in names:
            if name in self.entries:
                return self.entries[name]
        env_id = names[-1]
        close = difflib.get_close_matches(str(env_id), list(self.entries), n=1)
        hint = f" (closest: {close[0]!r})" if close else ""
        raise RecipeError(
            KEY,
            f"{where}: env {env_id!r} is not in the recipe's envs{hint}; add an entry with that id or "
            f"`name:` so the group knows its env (entries: {', '.join(self.config.env_names)})",
        )

    def _check_size(self, size: int, where: str) -> None:
        if size < 2:
            raise RecipeError(
                KEY,
                f"{where}: a group of {size} episode(s); group objectives compare the episodes of one seed, "
                "so a recorded group needs at least 2 (record with group_size >= 2)",
            )
        objective = self.config.objective
        if objective.needs_whole_groups and size != self.config.rollout.group_size:
            name = OBJECTIVE.name_of(objective)
            raise RecipeError(
                KEY,
                f"{where}: a group of {size} episodes; {name} needs every group of a micro-batch to have one size, "
                f"so recorded groups must match rollout.group_size ({self.config.rollout.group_size})",
            )

    def _check_text_allowed(self, where: str) -> None:
        objective = self.config.objective
        if objective.recorded_data_needs != "nothing":
            from turngym.algos import OBJECTIVES

            able = sorted(n for n, cls in OBJECTIVES.items() if getattr(cls, "recorded_data_needs", "") == "nothing")
            raise RecipeError(
                KEY,
                f"{where}: episodes without token ids have no behaviour logprobs, which "
                f"{OBJECTIVE.name_of(objective)} needs to correct for the policy that played them; "
                f"train on them with {' or '.join(able)} (objective.name={able[0]})",
            )
        if self.tokenizer is None:
            raise RecipeError(KEY, f"{where}: episodes without token ids need the policy's tokenizer to be rebuilt")

    def _from_text(self, data: dict[str, Any], entry: int) -> Trajectory:
        """A text-only episode as the ids a live rollout would have made of the same conversation."""
        if self._chat is None:
            self._chat = ChatFormat(self.tokenizer)
        turns = [_turn(t) for t in data["turns"]]
        if not turns:
            raise ValueError("it has no turns")
        return text_to_tokens(
            self._chat, str(data["first_observation"]), self._system_prompt(entry), turns, data.get("stop_reason")
        )

    def _system_prompt(self, entry: int) -> str | None:
        if entry not in self._prompts:
            from turngym.envs import make

            env = self.config.envs[entry]
            self._prompts[entry] = env.system_prompt or getattr(make(env.id, **env.kwargs), "instructions", None)
        return self._prompts[entry]


def _turn(data: dict[str, Any]) -> TurnRecord:
    """A turn of a transcript: `action`, `feedback` and `reward` at least."""
    return TurnRecord(
        action=str(data["action"]),
        feedback=str(data["feedback"]),
        rewards={k: float(v) for k, v in (data.get("rewards") or {}).items()},
        reward=float(data["reward"]),
        metrics=dict(data.get("metrics") or {}),
        start=0,
        end=0,
        finish_reason=str(data.get("finish_reason", "stop")),
        state=str(data.get("state", "")),
    )


def text_to_tokens(
    chat: ChatFormat, first_observation: str, system_prompt: str | None, turns: list[TurnRecord], stop_reason: Any
) -> Trajectory:
    """The trajectory a live rollout would have recorded for these texts (no behaviour logprobs).

    The prompt is `chat.initial_prompt`; each action is its text's ids, plus the tokenizer's EOS when
    the turn's `finish_reason` is `"stop"` (the sampler stopped on it); the feedback of every turn but
    the last follows as `chat.feedback_ids` (a live episode appends none after its last turn).
    """
    ids = chat.initial_prompt(first_observation, system_prompt)
    mask = [0] * len(ids)
    placed = []
    for k, turn in enumerate(turns):
        sampled = chat.tokenizer(turn.action, add_special_tokens=False)["input_ids"]
        if turn.finish_reason == "stop":
            sampled = [*sampled, chat.tokenizer.eos_token_id]
        placed.append(dataclasses.replace(turn, start=len(ids), end=len(ids) + len(sampled)))
        ids, mask = ids + sampled, mask + [1] * len(sampled)
        if k < len(turns) - 1:
            delta = chat.feedback_ids(sampled, turn.feedback)
            ids, mask = ids + delta, mask + [0] * len(delta)
    components: dict[str, float] = {}
    for turn in placed:
        for name, value in turn.rewards.items():
            components[name] = components.get(name, 0.0) + value
    reason = stop_reason if stop_reason in ("terminated", "truncated", "max_turns", "context") else "terminated"
    return Trajectory(
        token_ids=ids,
        loss_mask=mask,
        sampling_logps=[0.0] * len(ids),
        turns=placed,
        prompt_length=placed[0].start,
        reward=sum(t.reward for t in placed),
        rewards=components,
        terminated=reason == "terminated",
        truncated=reason != "terminated",
        stop_reason=reason,
        first_observation=first_observation,
        has_sampling_logps=False,
    )
