"""Multi-turn rollouts: drive groups of envs with a generator, in lock-step or episode by episode.

Each group is `group_size` envs reset with the same seed. In lock-step (`schedule="lock_step"`),
every turn all live episodes of all groups are sampled together, then every env steps, then the
next turn starts: each turn waits for the longest reply. Per episode (`schedule="per_episode"`),
an episode's next turn is submitted as soon as its env has answered, into the batch the engine is
already running (`RequestStream`), and env steps run on worker threads, off the sampling path. With
seeds, a request's seed depends on its episode and turn only, so both schedules play the same
episodes. Replies go to the envs, whose feedback extends each conversation.

With a token generator (`VLLMGenerator`, `HFGenerator`) the conversation is token ids, extended by
chat-template deltas (see `turngym.agent.chat`), so the trainer sees exactly the sampled ids. With a
chat generator (`OpenAIGenerator`, evaluation only) it is a message list, played in lock-step, and
trajectories carry text, rewards and metrics but no tokens.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import math
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

from turngym.agent.chat import ChatFormat
from turngym.agent.generator import ChatGenerator, Completion, Generator, RequestStream, SamplingParams, stream_of
from turngym.agent.records import StopReason, Trajectory, TrajectoryGroup, TurnRecord, reward_totals

SEED_STRIDE = 1_000_003  # separates the sampling seeds of successive turns
ENV_WORKERS = 4  # threads that step envs in a per-episode rollout (slow envs: verifiers, subprocesses, sleeps)
Schedule = Literal["lock_step", "per_episode"]
HISTORY_DIGEST_BYTES = 8
DEFAULT_CONTEXT_TOKENS = 4096


class _Episode:
    """One live episode: its env, its messages, and (with a token generator) its token ids."""

    def __init__(self, env: Any, chat: ChatFormat | None, max_turns: int | None = None) -> None:
        self.env, self.chat, self.max_turns = env, chat, max_turns
        self.turns: list[TurnRecord] = []
        self.stop_reason: StopReason | None = None  # None while the episode runs
        self.first_observation, self.error = "", None
        self.token_ids: list[int] = []
        self.messages: list[dict[str, str]] = []
        self.prompt_length = 0
        self.loss_mask: list[int] = []
        self.sampling_logps: list[float] = []
        self.key = (0, 0)  # (group index, episode index), for `on_turn`
        self.index = 0  # position among all episodes of the call: with the turn, it sets the sampling seed
        self.history = hashlib.blake2b(digest_size=HISTORY_DIGEST_BYTES)  # the observations so far: the default key

    def start(self, seed: int, system_prompt: str | None) -> None:
        """Reset the env and build the first prompt."""
        observation, _ = self.env.reset(seed=seed)
        chat = self.chat
        self.first_observation = observation
        self.history.update(observation.encode())
        self.messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        self.messages.append({"role": "user", "content": observation})
        self.token_ids = chat.initial_prompt(observation, system_prompt) if chat else []
        self.prompt_length = len(self.token_ids)
        self.loss_mask = [0] * len(self.token_ids)
        self.sampling_logps = [0.0] * len(self.token_ids)

    def end(self, reason: StopReason) -> None:
        self.stop_reason = reason

    def guarded(self, errors: str, action: Callable[..., None], *args: Any) -> None:
        """Run `action`; with `errors="record"`, an exception ends this episode alone, with its traceback."""
        try:
            action(*args)
        except Exception:
            if errors == "raise":
                raise
            self.error = traceback.format_exc()
            self.end("error")

    def take_turn(self, completion: Completion, budget: int, max_turns: int | None) -> None:
        """Record the sampled ids, step the env, and extend the conversation with its feedback."""
        cut_by_budget = self.chat is not None and len(self.token_ids) + len(completion.token_ids) > budget
        if cut_by_budget:  # a prefix of a sample is still a sample: keep what fits
            ids = completion.token_ids[: budget - len(self.token_ids)]
            text = self.chat.tokenizer.decode(ids, skip_special_tokens=True)
            completion = Completion(ids, completion.logprobs[: len(ids)], "length", text)
        start = len(self.token_ids)
        self._extend(completion.token_ids, completion.logprobs, sampled=True)
        state = self.state_key()
        feedback, reward, terminated, truncated, info = self.env.step(completion.text)
        if not math.isfinite(reward):
            raise ValueError(f"the env returned a non-finite reward {reward!r}")
        self.turns.append(
            TurnRecord(
                action=completion.text,
                feedback=feedback,
                rewards=dict(info["rewards"]),
                reward=float(reward),
                metrics=dict(info["metrics"]),
                start=start,
                end=len(self.token_ids),
                finish_reason=completion.finish_reason,
                state=state,
            )
        )
        self.history.update(b"\0" + feedback.encode())
        self.messages += [{"role": "assistant", "content": completion.text}, {"role": "user", "content": feedback}]
        if terminated or truncated:
            self.end("terminated" if terminated else "truncated")
        elif max_turns is not None and len(self.turns) >= max_turns:
            self.end("max_turns")
        elif cut_by_budget:
            self.end("context")
        elif self.chat is not None:
            delta = self.chat.feedback_ids(completion.token_ids, feedback)
            if len(self.token_ids) + len(delta) >= budget:  # no room for the feedback and a reply
                self.end("context")
            else:
                self._extend(delta, [0.0] * len(delta), sampled=False)

    def state_key(self) -> str:
        """The env's key of the current state (`TextEnv.state_key`), else a digest of the observations so far."""
        env = self.env.unwrapped if hasattr(self.env, "unwrapped") else self.env
        key = getattr(env, "state_key", lambda: None)()
        if key is None:
            return "obs:" + self.history.hexdigest()
        if not isinstance(key, str):
            raise TypeError(f"{type(env).__name__}.state_key must return a str or None, got {type(key).__name__}")
        return key

    def _extend(self, ids: list[int], logps: list[float], *, sampled: bool) -> None:
        self.token_ids += ids
        self.loss_mask += [int(sampled)] * len(ids)
        self.sampling_logps += logps

    def trajectory(self) -> Trajectory:
        assert self.stop_reason is not None, "collect_groups runs every episode to an end"
        return Trajectory(
            token_ids=self.token_ids,
            loss_mask=self.loss_mask,
            sampling_logps=self.sampling_logps,
            turns=self.turns,
            prompt_length=self.prompt_length,
            reward=sum(t.reward for t in self.turns),
            rewards=reward_totals(self.turns),
            terminated=self.stop_reason == "terminated",
            truncated=self.stop_reason != "terminated",
            stop_reason=self.stop_reason,
            first_observation=self.first_observation,
            error=self.error,
        )


def history_keys(first_observation: str, feedbacks: Sequence[str]) -> list[str]:
    """The default state keys of an episode's turns (an env without `state_key`), from its texts.

    Turn k's key digests the first observation and the feedback of turns 0..k-1, as `collect_groups`
    records it: "obs:" and a digest of the observation, then of a NUL and each feedback in turn.
    """
    history = hashlib.blake2b(first_observation.encode(), digest_size=HISTORY_DIGEST_BYTES)
    keys = []
    for feedback in feedbacks:
        keys.append("obs:" + history.hexdigest())
        history.update(b"\0" + feedback.encode())
    return keys


def _seed_list(seeds: Any) -> list[int]:
    """The seeds as a list: any ordered iterable (a generator too); sets and strings are refused."""
    if isinstance(seeds, (set, frozenset, dict)) or not hasattr(seeds, "__iter__") or isinstance(seeds, (str, bytes)):
        raise TypeError(f"seeds must be an ordered sequence of ints such as range(8), got {type(seeds).__name__}")
    return list(seeds)


def _check_rollout_arguments(
    seeds: Sequence[int], group_size: int, max_turns: int | None, max_context_tokens: int | None
) -> None:
    """One-line errors for arguments that would otherwise give empty or silently cut episodes."""
    if not _is_int(group_size) or group_size < 1:
        raise ValueError(f"group_size must be an int >= 1, got {group_size!r}")
    if len(seeds) == 0:
        raise ValueError("seeds is empty: give one seed per group, e.g. range(8)")
    if bad := [s for s in seeds if not _is_int(s) or s < 0]:
        raise ValueError(f"seeds must be ints >= 0, got {bad[:3]!r}")
    if max_turns is not None and (not _is_int(max_turns) or max_turns < 1):
        raise ValueError(f"max_turns must be an int >= 1 (or None for the env's own limit), got {max_turns!r}")
    if max_context_tokens is not None and (not _is_int(max_context_tokens) or max_context_tokens < 1):
        raise ValueError(
            f"max_context_tokens must be an int >= 1 (or None for the generator's max_model_len), "
            f"got {max_context_tokens!r}"
        )


def _check_modes(errors: str, schedule: str) -> None:
    if errors not in ("raise", "record"):
        raise ValueError(f"errors must be 'raise' or 'record', got {errors!r}")
    if schedule not in ("lock_step", "per_episode"):
        raise ValueError(f"schedule must be 'lock_step' or 'per_episode', got {schedule!r}")


def _is_int(value: Any) -> bool:
    import numbers

    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def collect_groups(
    env_id: str | type | Callable[..., Any],
    seeds: Sequence[int],
    group_size: int,
    generator: Generator | ChatGenerator,
    *,
    tokenizer: Any = None,
    max_turns: int | None = None,
    sampling: SamplingParams | None = None,
    max_context_tokens: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    system_prompt: str | None = None,
    progress: bool = True,
    errors: Literal["raise", "record"] = "raise",
    on_turn: Callable[[int, int, TurnRecord], None] | None = None,
    schedule: Schedule = "lock_step",
) -> list[TrajectoryGroup]:
    """Play `group_size` episodes per seed and return one `TrajectoryGroup` per seed.

    Args:
        env_id: what `turngym.make` takes: an id, `"module:Class"`, `"path/to/file.py:Class"`, or
            an env class or factory (plain Gymnasium text envs are wrapped). Groups are named
            `turngym.envs.env_name(env_id)`.
        seeds: one env seed per group; every episode of a group starts from that seed.
        group_size: episodes per group (G).
        generator: a token `Generator` (`VLLMGenerator`, `HFGenerator`, ...) or a `ChatGenerator`
            (`OpenAIGenerator`; evaluation only: no token ids or logprobs).
        tokenizer: the model's tokenizer (default: `generator.tokenizer`; token generators only).
        max_turns: stop each episode after this many agent turns (default: the env's own limit).
        sampling: per-turn sampling parameters (`n` is ignored: each episode samples one
            completion per turn). With `seed` set, turn t of episode i (counting every episode of
            the call, group by group) uses seed `seed + t * SEED_STRIDE + i`, so a whole rollout is
            reproducible and the same under either schedule.
        max_context_tokens: the token budget of an episode (default: the generator's
            `max_model_len`, else 4096); an episode that would exceed it is cut (marked truncated,
            `stop_reason="context"`).
        env_kwargs: constructor arguments for the envs.
        system_prompt: system message (default: the env's `instructions`, if any).
        progress: show a progress bar.
        errors: what an exception from an env's `reset` or `step` (or a non-finite reward) does:
            `"raise"` it, or `"record"` it: that episode alone ends with `stop_reason="error"` and
            its traceback in `Trajectory.error`, and the others go on (training drops its group).
        on_turn: called as `on_turn(group_index, episode_index, turn)` after every env step, as the
            episodes run (e.g. to print a transcript turn by turn); `group_index` follows `seeds`.
        schedule: `"lock_step"` (every turn of every live episode together) or `"per_episode"`
            (each episode at its own pace; token generators only). See the module docstring.

    Returns:
        One group per seed, in the order of `seeds`, each with `group_size` trajectories.
    """
    seeds = _seed_list(seeds)
    _check_rollout_arguments(seeds, group_size, max_turns, max_context_tokens)
    _check_modes(errors, schedule)
    if sampling is not None and not isinstance(sampling, SamplingParams):
        raise TypeError(f"sampling must be a SamplingParams, got {type(sampling).__name__}")
    limit = getattr(generator, "max_model_len", None)
    if max_context_tokens is None:
        max_context_tokens = limit or DEFAULT_CONTEXT_TOKENS
    if limit is not None and max_context_tokens > limit:
        raise ValueError(f"max_context_tokens={max_context_tokens} exceeds the generator's max_model_len={limit}")
    if isinstance(generator, Generator):
        chat = _chat_format(generator, tokenizer)
    elif isinstance(generator, ChatGenerator):
        chat = None
    else:
        raise TypeError(f"{type(generator).__name__} is neither a Generator (generate) nor a ChatGenerator (chat)")
    sampling = dataclasses.replace(sampling or SamplingParams(), n=1)
    specs = [GroupSpec(env_id, int(seed), env_kwargs or {}, max_turns, system_prompt) for seed in seeds]
    rules = _Turns(sampling, max_context_tokens, errors, on_turn)
    return _play_groups(specs, group_size, generator, chat, rules, progress, schedule)


@dataclasses.dataclass(frozen=True)
class GroupSpec:
    """One group to play: which env, with what settings, from which seed (`play_groups`).

    Attributes:
        env_id: what `turngym.make` takes (an id, `module:Class`, a class or a factory).
        seed: the env seed every episode of the group starts from.
        env_kwargs: constructor arguments.
        max_turns: stop its episodes after this many turns (None: the env's own limit).
        system_prompt: system message (None: the env's `instructions`).
        name: the group's `env_id` in the records (default: `turngym.envs.env_name(env_id)`).
    """

    env_id: Any
    seed: int
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    max_turns: int | None = None
    system_prompt: str | None = None
    name: str | None = None


def play_groups(
    specs: Sequence[GroupSpec],
    group_size: int,
    generator: Generator,
    *,
    sampling: SamplingParams | None = None,
    max_context_tokens: int | None = None,
    errors: Literal["raise", "record"] = "raise",
    schedule: Schedule = "lock_step",
    on_progress: Callable[[str], None] | None = None,
) -> list[TrajectoryGroup]:
    """Play groups of several envs in one rollout: one engine batch or stream for the whole mixture.

    `collect_groups` for a list of `GroupSpec`s (each its own env, kwargs, turn limit and system
    prompt) and a token generator; arguments as there. `on_progress`, if given, is called as the
    rollout advances with a line such as `"37/64 episodes done, 20 generating, 7 in env"`
    (per-episode schedule) or `"12/64 episodes done, turn 2: 52 generating"` (lock-step).
    Returns one group per spec, in order.
    """
    _check_modes(errors, schedule)
    if not isinstance(generator, Generator):
        raise TypeError(f"play_groups needs a token Generator (generate), got {type(generator).__name__}")
    if sampling is not None and not isinstance(sampling, SamplingParams):
        raise TypeError(f"sampling must be a SamplingParams, got {type(sampling).__name__}")
    if not specs:  # e.g. a process whose share of a step's live groups is none
        return []
    for spec in specs:
        if not isinstance(spec, GroupSpec):
            raise TypeError(f"specs must be GroupSpecs, got {type(spec).__name__}")
        _check_rollout_arguments([spec.seed], group_size, spec.max_turns, max_context_tokens)
    limit = getattr(generator, "max_model_len", None)
    budget = max_context_tokens or limit or DEFAULT_CONTEXT_TOKENS
    if limit is not None and budget > limit:
        raise ValueError(f"max_context_tokens={budget} exceeds the generator's max_model_len={limit}")
    rules = _Turns(dataclasses.replace(sampling or SamplingParams(), n=1), budget, errors, None)
    chat = _chat_format(generator, None)
    return _play_groups(list(specs), group_size, generator, chat, rules, False, schedule, on_progress)


def _play_groups(
    specs: list[GroupSpec],
    group_size: int,
    generator: Any,
    chat: ChatFormat | None,
    rules: _Turns,
    progress: bool,
    schedule: Schedule,
    on_progress: Callable[[str], None] | None = None,
) -> list[TrajectoryGroup]:
    """Reset every episode of every group, then play them all (`collect_groups` after its checks)."""
    from turngym.envs import make
    from turngym.envs.registration import env_name

    groups = [TrajectoryGroup(spec.name or env_name(spec.env_id), spec.seed) for spec in specs]
    episodes: list[tuple[TrajectoryGroup, _Episode]] = []
    for group_index, (group, spec) in enumerate(zip(groups, specs, strict=True)):
        for episode_index in range(group_size):
            env = make(spec.env_id, **(spec.env_kwargs or {}))
            episode = _Episode(env, chat, spec.max_turns)
            episode.key, episode.index = (group_index, episode_index), len(episodes)
            prompt = spec.system_prompt or getattr(env, "instructions", None)
            episode.guarded(rules.errors, episode.start, group.seed, prompt)
            if episode.stop_reason is None and chat is not None and len(episode.token_ids) >= rules.budget:
                episode.end("context")
            episodes.append((group, episode))
    if chat is not None:
        _check_room(episodes, rules.budget)
    with _progress_bar(progress, len(episodes), groups[0].env_id if groups else "", on_progress) as advance:
        live = [e for _, e in episodes if e.stop_reason is None]
        advance(len(episodes) - len(live), "starting")
        if chat is None:
            _chat_lock_step(live, generator, rules, advance)
        else:
            stream = stream_of(generator)
            try:
                (_per_episode if schedule == "per_episode" else _lock_step)(live, stream, rules, advance)
            finally:
                stream.close()  # a rollout cut short leaves no request in the engine
    for group, episode in episodes:
        group.trajectories.append(episode.trajectory())
    return groups


def _check_room(episodes: list[tuple[TrajectoryGroup, _Episode]], budget: int) -> None:
    """An env whose every first prompt exceeds the budget is an error (its groups would never play)."""
    by_env: dict[str, list[_Episode]] = {}
    for group, episode in episodes:
        by_env.setdefault(group.env_id, []).append(episode)
    for name, mine in by_env.items():
        if all(e.stop_reason == "context" for e in mine):
            shortest = min(len(e.token_ids) for e in mine)
            raise ValueError(
                f"max_context_tokens={budget} leaves no room to play {name}: every episode's first prompt "
                f"is longer (the shortest has {shortest} tokens); raise max_context_tokens"
            )


@dataclasses.dataclass(frozen=True)
class _Turns:
    """How every turn of a rollout is sampled and played."""

    sampling: SamplingParams
    budget: int
    errors: str
    on_turn: Callable[[int, int, TurnRecord], None] | None

    def sampling_for(self, episode: _Episode) -> SamplingParams:
        """This episode's next request: its own seed, from its index and turn."""
        if self.sampling.seed is None:
            return self.sampling
        return dataclasses.replace(
            self.sampling, seed=self.sampling.seed + len(episode.turns) * SEED_STRIDE + episode.index
        )

    def play(self, episode: _Episode, completion: Completion) -> None:
        """Step the episode's env with the reply (an env error ends only this episode, unless `errors="raise"`)."""
        episode.guarded(self.errors, episode.take_turn, completion, self.budget, episode.max_turns)

    def report(self, episode: _Episode, turns_before: int) -> None:
        if self.on_turn is not None and len(episode.turns) > turns_before:
            self.on_turn(*episode.key, episode.turns[-1])


def _lock_step(live: list[_Episode], stream: RequestStream, rules: _Turns, advance: Callable[[int, str], None]) -> None:
    """Every turn: sample all live episodes together, wait for the last reply, then step every env."""
    turn = 0
    while live:
        for episode in live:
            stream.submit(episode.index, episode.token_ids, rules.sampling_for(episode))
        advance(0, f"turn {turn + 1}: {len(live)} generating")
        replies: dict[Any, Completion] = {}
        while stream.pending:
            replies.update(stream.step())
        turn += 1
        live = _play_turn(live, [replies[e.index] for e in live], rules, advance, turn)


def _play_turn(
    live: list[_Episode], replies: list[Completion], rules: _Turns, advance: Callable[[int, str], None], turn: int
) -> list[_Episode]:
    """Step every live episode's env with its reply (lock-step); the episodes still running."""
    for episode, completion in zip(live, replies, strict=True):
        turns_before = len(episode.turns)
        rules.play(episode, completion)
        rules.report(episode, turns_before)
    advance(sum(e.stop_reason is not None for e in live), f"turn {turn}: stepped")
    return [e for e in live if e.stop_reason is None]


def _per_episode(
    live: list[_Episode], stream: RequestStream, rules: _Turns, advance: Callable[[int, str], None]
) -> None:
    """Each episode at its own pace: its env steps on a worker thread, then its next turn joins the batch at once."""
    with concurrent.futures.ThreadPoolExecutor(ENV_WORKERS, thread_name_prefix="env") as pool:
        try:
            _per_episode_loop(live, stream, rules, advance, pool)
        except BaseException:  # Ctrl-C or errors="raise": do not wait for the env steps still queued
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _per_episode_loop(
    live: list[_Episode],
    stream: RequestStream,
    rules: _Turns,
    advance: Callable[[int, str], None],
    pool: concurrent.futures.ThreadPoolExecutor,
) -> None:
    """`_per_episode`'s loop: step the engine, hand finished replies to env threads, resubmit answered episodes."""
    by_index = {e.index: e for e in live}
    stepping: dict[concurrent.futures.Future[None], tuple[_Episode, int]] = {}  # env step -> episode, its turns
    for episode in live:
        stream.submit(episode.index, episode.token_ids, rules.sampling_for(episode))
    while stream.pending or stepping:
        if stream.pending:
            for index, completion in stream.step():
                episode = by_index[index]
                stepping[pool.submit(rules.play, episode, completion)] = (episode, len(episode.turns))
            stepped = [future for future in stepping if future.done()]
        else:  # nothing to sample until an env answers
            stepped = list(concurrent.futures.wait(stepping, return_when="FIRST_COMPLETED").done)
        for future in stepped:
            episode, turns_before = stepping.pop(future)
            future.result()  # errors="raise": the env's exception surfaces here
            rules.report(episode, turns_before)
            if episode.stop_reason is None:
                stream.submit(episode.index, episode.token_ids, rules.sampling_for(episode))
            advance(episode.stop_reason is not None, f"{stream.pending} generating, {len(stepping)} in env")


def _chat_lock_step(
    live: list[_Episode], generator: ChatGenerator, rules: _Turns, advance: Callable[[int, str], None]
) -> None:
    """Lock-step over a chat generator (an endpoint): one `chat` call per turn for every live episode."""
    turn = 0
    while live:
        sampling = rules.sampling
        if sampling.seed is not None:
            sampling = dataclasses.replace(sampling, seed=sampling.seed + turn * SEED_STRIDE)
        turn += 1
        advance(0, f"turn {turn}: {len(live)} generating")
        live = _play_turn(live, generator.chat([e.messages for e in live], sampling), rules, advance, turn)


def _chat_format(generator: Generator, tokenizer: Any) -> ChatFormat:
    tokenizer = tokenizer or getattr(generator, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("collect_groups needs the model's tokenizer: pass tokenizer= or a generator with .tokenizer")
    return ChatFormat(tokenizer)


@contextlib.contextmanager
def _progress_bar(
    enabled: bool, total: int, env_id: str, on_progress: Callable[[str], None] | None = None
) -> Iterator[Callable[[int, str], None]]:
    """Progress over finished episodes; yields `advance(finished, note)`.

    `enabled`: a rich bar (episodes done of all, then `note`: the turn, or how many episodes are
    generating and how many wait for their env). `on_progress` gets the same as one line of text.
    """
    with contextlib.ExitStack() as stack:
        bar, task = None, None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[note]}"), TimeElapsedColumn())  # fmt: skip
            bar = stack.enter_context(Progress(*columns, transient=True))
            task = bar.add_task(f"episodes {env_id}", total=total, note="")
        done = 0

        def advance(finished: int, note: str) -> None:
            nonlocal done
            done += finished
            if bar is not None and task is not None:
                bar.update(task, advance=finished, note=note)
            if on_progress is not None:
                on_progress(f"{done}/{total} episodes done, {note}")

        yield advance
