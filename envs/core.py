"""The text-environment contract: `TextEnv`, a Gymnasium `Env` whose observations and actions are text.

A subclass writes two hooks: `on_reset(options) -> str` (the first observation) and
`on_step(action) -> Turn` (feedback, named reward components, termination, metrics). The base class
owns everything every env must get right the same way: seeding, the turn limit (truncation), the
weighted reward, the `info` layout, and stepping after the episode is over.

Example:
    >>> import turngym
    >>> env = turngym.make("turngym/GuessNumber-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step("I think it is [50]")
    >>> sorted(info["rewards"]), sorted(info["metrics"])
    (['invalid', 'ruled_out', 'several_guesses', 'won'], ['invalid_action', 'ruled_out', 'won'])
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium
from gymnasium import spaces

EPISODE_OVER_FEEDBACK = "The episode is over. Call reset() to start a new one."
MAX_MOVE_CHARS = 200  # longer bracketed content is not a move; it gets format feedback

_BRACKETED = re.compile(r"\[([^\[\]]*)\]")


class AnyText(spaces.Text):
    """A text space that contains every string.

    Gymnasium's `Text` space only admits its charset (alphanumerics by default) up to `max_length`;
    text environments must accept and may emit anything (unicode, newlines, 1 MB of noise).
    `max_length` and the printable charset only shape `sample()`.
    """

    def __init__(self, max_length: int = 64, seed: int | None = None) -> None:
        super().__init__(max_length=max_length, min_length=0, charset=string.printable, seed=seed)

    def contains(self, x: Any) -> bool:
        """Return True for any `str`."""
        return isinstance(x, str)

    def __repr__(self) -> str:
        return "AnyText()"


@dataclass
class Turn:
    """The outcome of one action, as returned by `TextEnv.on_step`.

    Attributes:
        feedback: the text the agent sees next (the next observation).
        rewards: named reward components for this step; components the env declares but leaves
            out count as 0.
        terminated: the episode ended for good (solved, lost, answered).
        metrics: facts for evaluation (e.g. `won`, `invalid_action`); not used for training.
    """

    feedback: str
    rewards: dict[str, float] = field(default_factory=dict)
    terminated: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)


class TextEnv(gymnasium.Env[str, str]):
    """Base class of turngym's text environments.

    Class attributes a subclass sets:
        default_reward_weights: every reward component the env reports, with its default weight;
            `reward` is the weighted sum of the components.
        default_max_turns: the turn limit unless the constructor gets `max_turns`.
        instructions: an optional system prompt. The first observation must be self-contained
            (it states the rules and the action format) so the env works without it.

    Args:
        max_turns: turn limit; reaching it without termination truncates the episode.
        reward_weights: overrides of some default weights, e.g. `{"invalid": 0.0}`.
        render_mode: `"ansi"` (render returns the last observation) or None.
    """

    # render_fps is meaningless for text; Gymnasium's checker warns without it
    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 1}
    default_reward_weights: ClassVar[Mapping[str, float]] = {}
    default_max_turns: ClassVar[int] = 10
    instructions: str | None = None

    def __init__(
        self,
        *,
        max_turns: int | None = None,
        reward_weights: Mapping[str, float] | None = None,
        render_mode: str | None = None,
    ) -> None:
        unknown = set(reward_weights or {}) - set(self.default_reward_weights)
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no reward component(s) {sorted(unknown)}; "
                f"its components are {sorted(self.default_reward_weights)}"
            )
        for name, weight in (reward_weights or {}).items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise ValueError(f"reward_weights[{name!r}] must be a finite number, got {weight!r}")
        if max_turns is not None and (isinstance(max_turns, bool) or not isinstance(max_turns, int)):
            raise TypeError(f"max_turns must be an int, got {max_turns!r} ({type(max_turns).__name__})")
        if max_turns is not None and max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None")
        self.max_turns = max_turns or self.default_max_turns
        if isinstance(self.max_turns, bool) or not isinstance(self.max_turns, int) or self.max_turns < 1:
            raise ValueError(f"{type(self).__name__}.default_max_turns must be an int >= 1, got {self.max_turns!r}")
        self.reward_weights = {**self.default_reward_weights, **(reward_weights or {})}
        self.render_mode = render_mode
        self.observation_space = AnyText()
        self.action_space = AnyText()
        self.turn = 0
        self._observation = ""
        self._ended: tuple[bool, bool] | None = None  # (terminated, truncated) once the episode is over

    def __new__(cls, *args: Any, **kwargs: Any) -> TextEnv:
        """Refuse to build a subclass that lacks the hooks (whether or not its __init__ calls super)."""
        _check_hooks(cls)
        return super().__new__(cls)

    # Hooks for subclasses ---------------------------------------------------------------------

    def on_reset(self, options: dict[str, Any]) -> str:
        """Set up a new episode using `self.np_random` and return the first observation."""
        raise NotImplementedError

    def on_step(self, action: str) -> Turn:
        """Apply one action (any string) and return its outcome. Never raise on bad text."""
        raise NotImplementedError

    def valid_action(self) -> str | None:
        """A move this env accepts in the current state, or None if it cannot offer one.

        Optional. `check_env` plays it after a reset and fails the env if it is refused, which
        catches an env that rejects every move (a parser or adapter bug). It need not be a good move.
        """
        return None

    def state_key(self) -> str | None:
        """A key of the state the next action will be taken in: equal keys mean the same situation.

        Optional. `credit: step` compares the returns of the turns of one group (one seed) taken in
        the same state (GiGPO's anchor states), so a key should hold what matters for the next
        move and nothing else (GuessNumber: the numbers still possible, the guesses left and the
        numbers guessed).
        None, the default, lets the rollout key the state by the observations so far (the first
        observation and every feedback), which never merges two different observation histories.
        Called before every step; keys need only tell apart the states of one env and seed. An
        empty string means "no key": the turn is compared with no other.
        """
        return None

    # Gymnasium API ----------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start an episode. The same seed gives the same initial state and first observation."""
        self._check_initialised()
        super().reset(seed=seed)
        self.turn = 0
        self._ended = None
        observation = self.on_reset(dict(options or {}))
        if not isinstance(observation, str):
            shape = " (return only the observation: reset builds info)" if isinstance(observation, tuple) else ""
            raise TypeError(
                f"{type(self).__name__}.on_reset must return the first observation as a str, "
                f"got {type(observation).__name__}{shape}"
            )
        self._observation = observation
        return self._observation, {"turn": 0, "max_turns": self.max_turns}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Apply an action; returns (feedback, reward, terminated, truncated, info).

        `info["rewards"]` holds every reward component of this step and `reward` is their
        weighted sum; `info["metrics"]` always has `won` and `invalid_action`. Stepping after the
        episode ended returns a zero-reward transition that says so, rather than raising.
        """
        if not isinstance(action, str):
            raise TypeError(f"actions are text: expected str, got {type(action).__name__}")
        self._check_initialised()
        if self._ended is not None:
            return EPISODE_OVER_FEEDBACK, 0.0, *self._ended, self._info(Turn(EPISODE_OVER_FEEDBACK))
        self.turn += 1
        outcome = self.on_step(action)
        if not isinstance(outcome, Turn):
            raise TypeError(
                f"{type(self).__name__}.on_step must return a Turn(feedback, rewards={{...}}, terminated=..., "
                f"metrics={{...}}), got {type(outcome).__name__}; the base class builds the Gymnasium 5-tuple"
            )
        _check_turn(type(self).__name__, outcome)
        unknown = set(outcome.rewards) - set(self.reward_weights)
        if unknown:
            declared = {**self.default_reward_weights, **dict.fromkeys(sorted(unknown), 1.0)}
            raise ValueError(
                f"{type(self).__name__}.on_step reported undeclared reward component(s) {sorted(unknown)}; "
                f"add them to default_reward_weights, e.g. default_reward_weights = {declared}"
            )
        info = self._info(outcome)
        reward = float(sum(self.reward_weights[name] * value for name, value in info["rewards"].items()))
        terminated = bool(outcome.terminated)
        truncated = not terminated and self.turn >= self.max_turns
        feedback = outcome.feedback
        if truncated:
            feedback += f"\n\nTurn limit reached ({count_of(self.max_turns, 'turn')}). The episode is over."
        if terminated or truncated:
            self._ended = (terminated, truncated)
        self._observation = feedback
        return feedback, reward, terminated, truncated, info

    def _check_initialised(self) -> None:
        if "reward_weights" not in vars(self) or "_ended" not in vars(self):
            raise TypeError(
                f"{type(self).__name__}.__init__ must call super().__init__(max_turns=max_turns, "
                "reward_weights=reward_weights, render_mode=render_mode) (or super().__init__(**kwargs)): "
                "TextEnv sets up the turn limit, the reward weights and the episode state there"
            )

    def render(self) -> str | None:
        """Return the last observation (render_mode "ansi")."""
        return self._observation if self.render_mode == "ansi" else None

    def _info(self, outcome: Turn) -> dict[str, Any]:
        rewards = {name: float(outcome.rewards.get(name, 0.0)) for name in self.reward_weights}
        metrics = {"won": False, "invalid_action": False, **outcome.metrics}
        return {"rewards": rewards, "metrics": metrics, "turn": self.turn}


def _check_turn(name: str, turn: Turn) -> None:
    """One-line errors for a Turn whose fields have the wrong types (truthy strings would pass silently)."""
    where = f"{name}.on_step returned a Turn whose"
    if not isinstance(turn.feedback, str):
        raise TypeError(f"{where} feedback is {type(turn.feedback).__name__}; feedback is the text the agent sees next")
    if not isinstance(turn.rewards, Mapping):
        raise TypeError(f"{where} rewards is {type(turn.rewards).__name__}; write rewards={{'won': 1.0}}")
    for component, value in turn.rewards.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise TypeError(f"{where} rewards[{component!r}] is {value!r}; components are finite numbers")
    if not isinstance(turn.terminated, bool):
        raise TypeError(f"{where} terminated is {turn.terminated!r}; it must be True or False")
    if not isinstance(turn.metrics, Mapping):
        raise TypeError(f"{where} metrics is {type(turn.metrics).__name__}; write metrics={{'won': True}}")


def _check_hooks(cls: type) -> None:
    """A subclass writes the hooks; one that overrides reset/step instead is told what to write."""
    missing = [hook for hook in ("on_reset", "on_step") if getattr(cls, hook) is getattr(TextEnv, hook)]
    if not missing:
        return
    overridden = [m for m in ("reset", "step") if getattr(cls, m) is not getattr(TextEnv, m)]
    if overridden:
        raise TypeError(
            f"{cls.__name__} overrides {' and '.join(f'{m}()' for m in overridden)} but not "
            f"{' and '.join(missing)}: a TextEnv subclass writes on_reset(options) -> str and "
            "on_step(action) -> Turn, and TextEnv's reset/step do the seeding, turn limit and info. "
            "Rename them to the hooks, or subclass gymnasium.Env to keep your own reset/step "
            "(turngym wraps plain Gymnasium text envs)"
        )
    raise TypeError(
        f"{cls.__name__} does not define {' and '.join(missing)}: a TextEnv subclass writes "
        "on_reset(options) -> str (the first observation) and on_step(action) -> Turn"
    )


def last_bracketed(text: str) -> str | None:
    """Return the content of the last `[...]` in `text` (stripped), or None if there is none.

    Text around the move (reasoning) is allowed; the last bracketed move counts. Content longer
    than `MAX_MOVE_CHARS` is not a move.
    """
    content = None
    for match in _BRACKETED.finditer(text):
        content = match.group(1)
    if content is None or len(content) > MAX_MOVE_CHARS:
        return None
    return content.strip()


def count_bracketed(text: str) -> int:
    """Return how many `[...]` parts `text` has, e.g. 2 for "[3], or maybe [4]"."""
    return sum(1 for _ in _BRACKETED.finditer(text))


def last_boxed(text: str, max_chars: int = 10_000) -> str | None:
    r"""Return the content of the last `\boxed{...}` with balanced braces, or None.

    Linear in the length of `text`; content longer than `max_chars` is treated as absent.
    """
    start = text.rfind("\\boxed{")
    while start != -1:
        depth, i = 1, start + len("\\boxed{")
        end = min(len(text), i + max_chars + 1)
        while i < end and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[start + len("\\boxed{") : i - 1].strip()
        start = text.rfind("\\boxed{", 0, start)
    return None


def parse_int(text: str | None) -> int | None:
    """Parse an integer move such as `42`, ` -7 `, `+3` or `1,000`; None if it is not one."""
    if text is None:
        return None
    text = text.strip().replace(",", "").replace("_", "")
    if not re.fullmatch(r"[+-]?\d{1,18}", text):
        return None
    return int(text)


def count_of(n: int, noun: str) -> str:
    """`1 guess`, `2 guesses`, `3 turns`: a count with its noun in the right number."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {noun}es" if noun.endswith(("s", "sh", "ch", "x")) else f"{n} {noun}s"
