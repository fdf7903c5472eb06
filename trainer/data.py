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
which is the most a transcript can tell. The end of a stopped reply is the tokenizer's EOS, the
token chat templates such as SmolLM2's end a turn with (a model that stops on another id gets EOS).
Turns without a recorded `state` get the default key, a digest of the observations so far.

Episodes with ids are checked against the policy before they train: their prompt must be what this
recipe's model, chat template and system prompt make of their first observation, every id must be
in the vocabulary, and they must fit the context; another model's episodes are refused, not
trained on (GVPO can take their text).

Nothing is dropped silently: a line that is not a group, an env the recipe does not have, or a
group too small to compare is an error naming the file and line; groups with a failed episode
(`stop_reason: error`, which a live step drops too) are left out and counted in `summary()`.
"""

from __future__ import annotations

import dataclasses
import difflib
import glob
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from turngym.agent.chat import ChatFormat
from turngym.agent.records import Trajectory, TrajectoryGroup, TurnRecord, open_text, reward_totals
from turngym.agent.rollout import history_keys
from turngym.trainer.config import OBJECTIVE, TrainConfig
from turngym.trainer.schema import RecipeError

KEY = "data.episodes"
STOP_REASONS = ("terminated", "truncated", "max_turns", "context")  # a usable episode's (not "error")


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

    def digest(self) -> str:
        """A short fingerprint of the data: its files and every group's env, seed and size, in order."""
        h = hashlib.blake2b(digest_size=8)
        h.update("\n".join(map(str, self.files)).encode())
        for g in self.groups:
            h.update(f"\n{g.env_id}\0{g.seed}\0{len(g.trajectories)}".encode())
        return h.hexdigest()

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
        tokenizer: the policy's tokenizer: recorded prompts are checked against it and text-only
            episodes are rebuilt with it (None: neither; text-only episodes are then an error).

    Raises:
        RecipeError: naming `data.episodes` and the file and line of a malformed group or episode,
            an unknown or ambiguous env, a group too small for the objective, episodes recorded with
            another tokenizer, template or system prompt, episodes without behaviour logprobs for an
            objective that needs them; or too few usable groups for a step.
    """
    files = episode_files(config.data.episodes)
    reader = _Reader(config, tokenizer)
    groups = [group for path in files for group in reader.read(path)]
    per_step = config.rollout.groups_per_step - config.live_groups
    if len(groups) < per_step:
        raise RecipeError(
            KEY,
            f"{len(groups)} usable group(s) in {', '.join(map(str, files))} ({reader.failed} left out with failed "
            f"episodes), fewer than the {per_step} recorded groups each step takes; record more, or lower "
            "rollout.groups_per_step or raise data.live_fraction",
        )
    return RecordedData(groups, files, config.run.seed, config.data.shuffle, reader.failed, reader.from_text)


class _Reader:
    """Turns the lines of episode files into checked groups named by their recipe entries."""

    def __init__(self, config: TrainConfig, tokenizer: Any) -> None:
        self.config, self.tokenizer = config, tokenizer
        self.entries: dict[str, list[int]] = {}
        for i, (env, name) in enumerate(zip(config.envs, config.env_names, strict=True)):
            self.entries.setdefault(name, []).append(i)
            if env.id != name:
                self.entries.setdefault(env.id, []).append(i)
        self.context = config.rollout.max_context_tokens or config.model.max_model_len
        self.failed = self.from_text = 0
        self._chat: ChatFormat | None = None
        self._prompts: dict[int, str | None] = {}
        self._prompt_ids: dict[tuple[int, str], list[int]] = {}

    def read(self, path: Path) -> list[TrajectoryGroup]:
        """The usable groups of one file (failed ones counted in `failed`)."""
        groups, number = [], 0
        try:
            with open_text(path, "r") as lines:
                for number, line in enumerate(lines, start=1):
                    group = self.group(line, f"{path}:{number}") if line.strip() else None
                    groups += [group] if group is not None else []
        except (OSError, EOFError, UnicodeDecodeError) as err:  # a cut .gz, a binary file
            raise RecipeError(KEY, f"{path}:{number + 1}: cannot be read: {type(err).__name__}: {err}") from None
        return groups

    def group(self, line: str, where: str) -> TrajectoryGroup | None:
        """The checked group of one line, or None when one of its episodes failed."""
        try:
            data = json.loads(line)
            names = [data["env"]] if "group" in data else []  # `turngym eval`'s line: {model, env, seed, group}
            data = data.get("group", data)
            names.append(data["env_id"])
            seed, raw = int(data["seed"]), data["trajectories"]
            if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
                raise TypeError("trajectories must be a list of episodes (JSON objects)")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as err:
            raise RecipeError(KEY, f"{where}: not an episode group ({{env_id, seed, trajectories}}): {err}") from None
        entry = self._entry(names, where)
        if any(t.get("stop_reason") == "error" for t in raw):
            self.failed += 1
            return None
        self._check_size(len(raw), where)
        text_only = any(not t.get("token_ids") for t in raw)
        if text_only or any(t.get("has_sampling_logps") is False for t in raw):
            self._check_no_logps_allowed(where)
        try:
            trajectories = [self._from_text(t, entry) if text_only else self._with_ids(t, entry) for t in raw]
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise RecipeError(KEY, f"{where}: an episode that cannot be used: {type(err).__name__}: {err}") from None
        self.from_text += text_only
        return TrajectoryGroup(self.config.env_names[entry], seed, trajectories)

    def _entry(self, names: list[str], where: str) -> int:
        """The recipe entry of the first of `names` (an eval line's env label, then the group's env id) it has."""
        for name in names:
            if len(self.entries.get(name, [])) > 1:
                raise RecipeError(
                    KEY,
                    f"{where}: env {name!r} is the id of several entries of envs; give them `name:`s and record "
                    "with those names (training runs and their evaluations do)",
                )
            if name in self.entries:
                return self.entries[name][0]
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

    def _check_no_logps_allowed(self, where: str) -> None:
        """Episodes without behaviour logprobs (no token ids, or rebuilt from text by an earlier run)."""
        objective = self.config.objective
        if objective.recorded_data_needs != "nothing":
            from turngym.algos import OBJECTIVES

            able = sorted(n for n, cls in OBJECTIVES.items() if getattr(cls, "recorded_data_needs", "") == "nothing")
            raise RecipeError(
                KEY,
                f"{where}: episodes without behaviour logprobs (no token ids, or has_sampling_logps false), which "
                f"{OBJECTIVE.name_of(objective)} needs to correct for the policy that played them; train on them "
                f"with {' or '.join(able)} (objective.name={able[0]}), or gfpo with one of those as its base",
            )
        if self.tokenizer is None:
            raise RecipeError(KEY, f"{where}: episodes without token ids need the policy's tokenizer to be rebuilt")

    def _with_ids(self, data: dict[str, Any], entry: int) -> Trajectory:
        """A recorded episode with token ids, checked against this recipe's policy and context."""
        t = Trajectory.from_dict(data)
        n = len(t.token_ids)
        if not len(t.loss_mask) == len(t.sampling_logps) == n:
            raise ValueError(f"token_ids, loss_mask and sampling_logps have {n}, {len(t.loss_mask)}, "
                             f"{len(t.sampling_logps)} entries")  # fmt: skip
        if n > self.context:
            raise ValueError(f"{n} tokens, more than the {self.context} a live episode may hold (max_context_tokens)")
        if any(not 0 <= turn.start < turn.end <= n for turn in t.turns):
            raise ValueError("a turn's start/end lies outside its token_ids")
        if self.tokenizer is not None:
            if min(t.token_ids) < 0 or max(t.token_ids) >= len(self.tokenizer):
                raise ValueError("a token id outside the policy's vocabulary (recorded with another tokenizer?)")
            if t.token_ids[: t.prompt_length] != self._prompt(entry, t.first_observation):
                raise ValueError(
                    "its prompt is not what this recipe's model, chat template and system prompt make of its first "
                    "observation (recorded with another model or system prompt?); gvpo can train on the text alone: "
                    "drop token_ids to have it rebuilt"
                )
        return t

    def _prompt(self, entry: int, observation: str) -> list[int]:
        key = (entry, observation)
        if key not in self._prompt_ids:
            self._prompt_ids[key] = self._chat_format().initial_prompt(observation, self._system_prompt(entry))
        return self._prompt_ids[key]

    def _chat_format(self) -> ChatFormat:
        if self._chat is None:
            self._chat = ChatFormat(self.tokenizer)
        return self._chat

    def _from_text(self, data: dict[str, Any], entry: int) -> Trajectory:
        """A text-only episode as the ids a live rollout would have made of the same conversation."""
        turns = [_turn(t) for t in data["turns"]]
        if not turns:
            raise ValueError("it has no turns")
        first = str(data["first_observation"])
        keys = history_keys(first, [t.feedback for t in turns])  # for turns without a recorded state key
        turns = [t if t.state else dataclasses.replace(t, state=key) for t, key in zip(turns, keys, strict=True)]
        trajectory = text_to_tokens(
            self._chat_format(), first, self._system_prompt(entry), turns, data.get("stop_reason")
        )
        if len(trajectory.token_ids) > self.context:
            raise ValueError(f"{len(trajectory.token_ids)} tokens once rebuilt, more than the {self.context} a live "
                             "episode may hold (max_context_tokens)")  # fmt: skip
        return trajectory

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
    if stop_reason is not None and stop_reason not in STOP_REASONS:
        raise ValueError(f"stop_reason {stop_reason!r} is not one of {', '.join(STOP_REASONS)}")
    reason = stop_reason or "terminated"
    return Trajectory(
        token_ids=ids,
        loss_mask=mask,
        sampling_logps=[0.0] * len(ids),
        turns=placed,
        prompt_length=placed[0].start,
        reward=sum(t.reward for t in placed),
        rewards=reward_totals(placed),
        terminated=reason == "terminated",
        truncated=reason != "terminated",
        stop_reason=reason,
        first_observation=first_observation,
        has_sampling_logps=False,
    )
