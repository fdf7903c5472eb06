"""`GymnasiumTextEnv`: any Gymnasium env with text observations and actions, as a `TextEnv`.

A plain `gymnasium.Env` whose `reset` returns `(str, info)` and whose `step` takes a string and
returns `(str, float, bool, bool, info)` is all turngym needs; the adapter fills in the rest of the
`TextEnv` contract the same way for every such env:

- reward components: the env's scalar reward is the one component `reward` (weight 1). Components
  the env reports itself in `info["rewards"]` are passed on with weight 0, so they are logged
  without changing the reward.
- metrics: `info["metrics"]` if the env gives one, else empty; `won` is the env's own
  (`info["metrics"]["won"]` or `info["won"]`), else the `won` rule: by default, the episode
  terminated on a positive reward.
- the turn limit: `max_turns` if given, else the env's `max_turns` attribute, else its `TimeLimit`
  (`max_episode_steps` at registration), else `TextEnv.default_max_turns`. The env's own
  truncation (a `TimeLimit`, or its own) ends the episode as truncated.
- the system prompt: the env's `instructions` attribute, if any.

`turngym.make`, `collect_groups`, `turngym check/play/train` wrap such envs automatically.

Example:
    >>> import gymnasium
    >>> class Parity(gymnasium.Env):
    ...     def reset(self, *, seed=None, options=None):
    ...         super().reset(seed=seed)
    ...         self.n = int(self.np_random.integers(100))
    ...         return f"Is {self.n} even or odd?", {}
    ...     def step(self, action):
    ...         right = ("even" if self.n % 2 == 0 else "odd") in action.lower()
    ...         return ("Right." if right else "Wrong."), float(right), True, False, {}
    >>> env = GymnasiumTextEnv(Parity(), max_turns=1)
    >>> obs, info = env.reset(seed=0)
    >>> feedback, reward, terminated, truncated, info = env.step("odd" if "5" in obs else "even")
    >>> sorted(info["rewards"]), sorted(info["metrics"])
    (['reward'], ['invalid_action', 'won'])
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import gymnasium

from turngym.envs.core import TextEnv, Turn

WonRule = Callable[[float, bool, dict[str, Any]], bool]


def terminated_with_positive_reward(reward: float, terminated: bool, info: dict[str, Any]) -> bool:
    """The default `won` rule: the episode terminated (not truncated) on a step with reward > 0."""
    return terminated and reward > 0


class GymnasiumTextEnv(TextEnv):
    """Wrap a Gymnasium env with text observations and actions as a `TextEnv`.

    Args:
        env: the Gymnasium env (wrappers such as `TimeLimit` are kept and respected).
        max_turns: the turn limit (default: see the module docstring).
        won: `won(reward, terminated, info) -> bool`, evaluated on every step of the inner env;
            used only when the env reports no `won` of its own. Default:
            `terminated_with_positive_reward`.
        reward_weights: weights of the components (`reward`, and any the env reports in
            `info["rewards"]`, which default to 0).
    """

    def __init__(
        self,
        env: gymnasium.Env,
        *,
        max_turns: int | None = None,
        won: WonRule | None = None,
        reward_weights: dict[str, float] | None = None,
    ) -> None:
        for method in ("reset", "step"):
            if not callable(getattr(env, method, None)):
                raise TypeError(f"{type(env).__name__} is not a Gymnasium env: it has no {method}() method")
        self.env = env
        self.default_reward_weights = {"reward": 1.0}  # per instance: components the env reports join later
        self.default_max_turns = _own_turn_limit(env) or TextEnv.default_max_turns
        super().__init__(max_turns=max_turns, render_mode="ansi")
        self.reward_weights.update(reward_weights or {})
        if won is not None and not callable(won):
            raise TypeError(f"won must be a function won(reward, terminated, info) -> bool, got {won!r}")
        self.won_rule = won or terminated_with_positive_reward
        self.instructions = getattr(env, "instructions", None)
        self.metadata = {**TextEnv.metadata}
        self.spec = getattr(env, "spec", None)
        self._seed: int | None = None
        self._inner_truncated = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Reset the wrapped env with the same seed and options."""
        self._seed = seed
        return super().reset(seed=seed, options=options)

    def on_reset(self, options: dict[str, Any]) -> str:
        """Reset the wrapped env; its observation must be text."""
        result = self.env.reset(seed=self._seed, options=options)
        observation = _unpack(result, 2, f"{self._name}.reset()", "(observation, info)")[0]
        self._inner_truncated = False
        return _text(observation, f"{self._name}.reset()")

    def on_step(self, action: str) -> Turn:
        """Step the wrapped env and translate its 5-tuple into a `Turn`."""
        result = self.env.step(action)
        observation, reward, terminated, truncated, info = _unpack(
            result, 5, f"{self._name}.step()", "(observation, reward, terminated, truncated, info)"
        )
        where = f"{self._name}.step()"
        if isinstance(reward, bool) or not isinstance(reward, numbers.Real) or not math.isfinite(reward):
            raise ValueError(f"{where} returned reward {reward!r}; return a finite Python float")
        info = info if isinstance(info, dict) else {}
        for key in ("rewards", "metrics"):
            if not isinstance(info.get(key) or {}, dict):
                raise TypeError(
                    f"{where}: info[{key!r}] is {type(info[key]).__name__}; it must be a dict of name -> value"
                )
        won = info.get("won", (info.get("metrics") or {}).get("won", False))
        if not isinstance(won, (bool, numbers.Integral)) or isinstance(won, numbers.Integral) and won not in (0, 1):
            raise TypeError(f"{where}: won is {won!r}; it must be True or False")
        rewards = {"reward": float(reward)}
        for name, value in (info.get("rewards") or {}).items():
            if name != "reward" and isinstance(value, numbers.Real) and not isinstance(value, bool):
                self.reward_weights.setdefault(name, 0.0)  # reported, logged, not added to the reward
                rewards[name] = float(value)
        metrics = dict(info.get("metrics") or {})
        if "won" not in metrics and "won" in info:
            metrics["won"] = bool(info["won"])
        elif "won" not in metrics:
            metrics["won"] = bool(self.won_rule(float(reward), bool(terminated), info))
        self._inner_truncated = bool(truncated)
        return Turn(_text(observation, where), rewards, terminated=bool(terminated), metrics=metrics)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Step the wrapped env; its own truncation ends the episode as truncated."""
        feedback, reward, terminated, truncated, info = super().step(action)
        if self._inner_truncated and not (terminated or truncated):
            truncated, self._ended = True, (False, True)
        return feedback, reward, terminated, truncated, info

    def valid_action(self) -> str | None:
        """The wrapped env's `valid_action()`, if it has one."""
        offer = getattr(self._inner, "valid_action", None)
        return offer() if callable(offer) else None

    def state_key(self) -> str | None:
        """The wrapped env's `state_key()`, if it has one (else the rollout keys by the observations)."""
        key = getattr(self._inner, "state_key", None)
        return key() if callable(key) else None

    def close(self) -> None:
        """Close the wrapped env."""
        self.env.close()

    @property
    def _name(self) -> str:
        return type(self._inner).__name__

    @property
    def _inner(self) -> Any:
        """The wrapped env under its Gymnasium wrappers."""
        return self.env.unwrapped if isinstance(self.env, gymnasium.Env) else self.env

    def __str__(self) -> str:
        return f"GymnasiumTextEnv({self.env})"


def as_text_env(env: Any, **adapter_kwargs: Any) -> TextEnv:
    """Return `env` if it is a `TextEnv`, else wrap it in `GymnasiumTextEnv(env, **adapter_kwargs)`."""
    if isinstance(env, TextEnv):
        return env
    return GymnasiumTextEnv(env, **adapter_kwargs)


def _own_turn_limit(env: Any) -> int | None:
    """The env's `max_turns`, its innermost `TimeLimit`, or its spec's `max_episode_steps`."""
    own = getattr(env.unwrapped if isinstance(env, gymnasium.Env) else env, "max_turns", None)
    if isinstance(own, int) and not isinstance(own, bool) and own >= 1:
        return own
    layer = env
    while isinstance(layer, gymnasium.Wrapper):
        if isinstance(layer, gymnasium.wrappers.TimeLimit):
            return layer._max_episode_steps
        layer = layer.env
    spec = getattr(env, "spec", None)
    return getattr(spec, "max_episode_steps", None)


def _unpack(result: Any, size: int, where: str, shape: str) -> tuple[Any, ...]:
    if not isinstance(result, tuple) or len(result) != size:
        got = f"a {len(result)}-tuple" if isinstance(result, tuple) else type(result).__name__
        raise TypeError(f"{where} must return {shape} as in Gymnasium >= 0.26, got {got}")
    return result


def _text(observation: Any, where: str) -> str:
    if not isinstance(observation, str):
        raise TypeError(f"{where} returned a {type(observation).__name__} observation; turngym envs observe text (str)")
    return observation
