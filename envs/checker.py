"""`check_env`: turngym's checker for text environments, built from small named checks.

Each check returns a `CheckResult`; `check_env` runs them all (a failing check does not stop the
others) and raises `EnvCheckError` listing every failure. `check_gymnasium` runs Gymnasium's own
checker and reports its warnings.
"""

from __future__ import annotations

import math
import re
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium
import numpy as np

from turngym.envs.fuzz import fuzz_actions

SEEDS = (0, 1, 12345)
PROBE_ACTIONS = ("[1]", "[up]", "hello", "[crane]", "\\boxed{2}", "[1 2 3 4]", "")


@dataclass
class CheckResult:
    """The outcome of one named check."""

    name: str
    passed: bool
    detail: str = ""


class EnvCheckError(AssertionError):
    """Raised by `check_env` when a check fails; `results` holds every check's outcome."""

    def __init__(self, results: list[CheckResult]) -> None:
        self.results = results
        failed = [r for r in results if not r.passed]
        super().__init__("env check failed:\n" + "\n".join(f"- {r.name}: {r.detail}" for r in failed))


def check_env(
    env: gymnasium.Env,
    *,
    fuzz: int = 1000,
    seed: int = 0,
    raise_on_failure: bool = True,
    gymnasium_checker: bool = True,
) -> list[CheckResult]:
    """Check a text env against turngym's contract, then with Gymnasium's own checker.

    Checks: spaces and reward weights; reset types; same seed -> same first observation; same
    seed and actions -> same transitions; step types, finite rewards, reward = weighted sum of the
    components; the turn limit; stepping after the end; the env's own `valid_action()` is accepted
    and not every action hits the same internal error (`metrics["env_error"]`); `fuzz` random and adversarial actions
    (empty, 1 MB, unicode, control characters, prompt-injection text) without an exception, with
    a finite reward and non-empty feedback; `gymnasium.utils.env_checker.check_env`.

    Args:
        env: the environment (a `TextEnv` or any Gymnasium env with the same text contract).
        fuzz: how many fuzzed actions to try.
        seed: seed for the fuzzed actions and episode resets.
        raise_on_failure: raise `EnvCheckError` if any check fails.
        gymnasium_checker: also run Gymnasium's checker (see `check_gymnasium`) as the last check.

    Returns:
        One `CheckResult` per check.
    """
    from turngym.envs.adapter import as_text_env

    if isinstance(env, type) or not (callable(getattr(env, "reset", None)) and callable(getattr(env, "step", None))):
        shown = env.__name__ if isinstance(env, type) else type(env).__name__
        raise TypeError(
            f"check_env takes an env instance, got {shown}; make one first, e.g. turngym.make('turngym/GuessNumber-v0')"
        )
    env = as_text_env(env)  # a plain Gymnasium text env is checked as turngym plays it
    checks: list[tuple[str, Callable[[], str]]] = [
        ("spaces and reward weights", lambda: _check_attributes(env)),
        ("reset returns (str, dict)", lambda: _check_reset(env)),
        ("reset is deterministic per seed", lambda: _check_reset_determinism(env)),
        ("steps are deterministic per seed", lambda: _check_step_determinism(env)),
        ("step types and weighted reward", lambda: _check_steps(env)),
        ("turn limit ends the episode", lambda: _check_turn_limit(env)),
        ("step after the end", lambda: _check_step_after_end(env)),
        ("actions reach the env", lambda: _check_actions_reach_the_env(env, seed)),
        (f"{fuzz} fuzzed actions", lambda: _check_fuzz(env, fuzz, seed)),
    ]
    results = []
    for name, check in checks:
        try:
            results.append(CheckResult(name, True, check()))
        except Exception as err:  # a failing check is reported, and the others still run
            where = traceback.extract_tb(err.__traceback__)[-1]
            results.append(
                CheckResult(name, False, f"{type(err).__name__}: {err} (at {where.filename}:{where.lineno})")
            )
    if gymnasium_checker:
        results.append(check_gymnasium(env))
    if raise_on_failure and not all(r.passed for r in results):
        raise EnvCheckError(results)
    return results


def check_gymnasium(env: gymnasium.Env) -> CheckResult:
    """Run `gymnasium.utils.env_checker.check_env`; its warnings are listed in the detail."""
    from gymnasium.utils.env_checker import check_env as gymnasium_check_env

    from turngym.envs.adapter import GymnasiumTextEnv

    note = ""
    if isinstance(env, GymnasiumTextEnv):
        raw = env.env.unwrapped if isinstance(env.env, gymnasium.Env) else env.env
        if getattr(raw, "observation_space", None) is not None and getattr(raw, "action_space", None) is not None:
            env = env.env  # check the plain env as its author wrote it
        else:
            note = "the env declares no spaces, so turngym's adapter (AnyText spaces) was checked; "

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            gymnasium_check_env(env)
        except Exception as err:
            hint = ""
            if "space" in str(err).lower():
                hint = " (text envs: use turngym.envs.AnyText() spaces, which admit any string)"
            return CheckResult("gymnasium env_checker", False, f"{type(err).__name__}: {err}{hint}")
    notes = sorted({re.sub(r"\x1b\[[0-9;]*m", "", str(w.message)) for w in caught})  # drop colour codes
    return CheckResult("gymnasium env_checker", True, note + ("; ".join(notes) or "no warnings"))


def _check_attributes(env: gymnasium.Env) -> str:
    weights = getattr(env, "reward_weights", None)
    assert isinstance(weights, dict) and weights, "env.reward_weights must be a non-empty dict of component -> weight"
    assert all(isinstance(w, (int, float)) and math.isfinite(w) for w in weights.values()), (
        "reward weights must be finite numbers"
    )
    assert isinstance(getattr(env, "max_turns", None), int), "env.max_turns must be an int (the turn limit)"
    for space in (env.observation_space, env.action_space):
        assert space.contains("any text, even \x00 and 😀"), f"{space} must admit any string"
    return f"components {sorted(weights)}, max_turns {env.max_turns}"


def _check_reset(env: gymnasium.Env) -> str:
    obs, info = env.reset(seed=SEEDS[0])
    assert isinstance(obs, str) and obs.strip(), f"reset must return a non-empty str observation, got {obs!r:.80}"
    assert isinstance(info, dict), f"reset must return an info dict, got {type(info).__name__}"
    return f"first observation: {len(obs)} characters"


def _check_reset_determinism(env: gymnasium.Env) -> str:
    for seed in SEEDS:
        first, _ = env.reset(seed=seed)
        env.reset()  # an unseeded reset in between must not matter
        again, _ = env.reset(seed=seed)
        assert first == again, f"reset(seed={seed}) gave two different first observations"
    return f"seeds {list(SEEDS)}"


def _play(env: gymnasium.Env, seed: int, actions: tuple[str, ...]) -> list[tuple[Any, ...]]:
    transitions: list[tuple[Any, ...]] = [env.reset(seed=seed)[0]]
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        transitions.append((obs, reward, terminated, truncated, info))
        if terminated or truncated:
            break
    return transitions


def _check_step_determinism(env: gymnasium.Env) -> str:
    for seed in SEEDS:
        assert _play(env, seed, PROBE_ACTIONS) == _play(env, seed, PROBE_ACTIONS), (
            f"seed {seed}: the same actions gave different transitions"
        )
    return f"{len(PROBE_ACTIONS)} probe actions x seeds {list(SEEDS)}"


def _check_transition(env: gymnasium.Env, action: str, transition: tuple[Any, ...]) -> None:
    obs, reward, terminated, truncated, info = transition
    shown = repr(action[:60])
    assert isinstance(obs, str) and obs.strip(), (
        f"after action {shown}: feedback must be non-empty text, got {obs!r:.80}"
    )
    assert isinstance(reward, float) and math.isfinite(reward), (
        f"after action {shown}: reward {reward!r} is not a finite float"
    )
    assert type(terminated) is bool and type(truncated) is bool, (
        f"after action {shown}: terminated/truncated must be bools"
    )
    assert isinstance(info, dict) and isinstance(info.get("metrics"), dict), (
        f"after action {shown}: info['metrics'] missing"
    )
    rewards = info.get("rewards")
    assert isinstance(rewards, dict) and set(rewards) == set(env.reward_weights), (
        f"after action {shown}: info['rewards'] must have exactly the components {sorted(env.reward_weights)}"
    )
    assert all(isinstance(v, float) and math.isfinite(v) for v in rewards.values()), (
        f"after action {shown}: non-finite component"
    )
    weighted = sum(env.reward_weights[k] * v for k, v in rewards.items())
    assert math.isclose(reward, weighted, rel_tol=1e-9, abs_tol=1e-12), (
        f"after action {shown}: reward {reward} != weighted sum of components {weighted}"
    )


def _check_steps(env: gymnasium.Env) -> str:
    steps = 0
    for seed in SEEDS:
        env.reset(seed=seed)
        for action in PROBE_ACTIONS:
            transition = env.step(action)
            _check_transition(env, action, transition)
            steps += 1
            if transition[2] or transition[3]:
                break
    return f"{steps} steps"


def _check_turn_limit(env: gymnasium.Env) -> str:
    env.reset(seed=SEEDS[0])
    for turn in range(1, env.max_turns + 1):
        _, _, terminated, truncated, _ = env.step("")
        assert not (truncated and turn < env.max_turns), f"truncated at turn {turn}, before the limit {env.max_turns}"
        if terminated or truncated:
            return f"ended at turn {turn} of {env.max_turns} ({'terminated' if terminated else 'truncated'})"
    raise AssertionError(f"still running after max_turns={env.max_turns} turns")


def _check_step_after_end(env: gymnasium.Env) -> str:
    env.reset(seed=SEEDS[0])
    for _ in range(env.max_turns):
        _, _, terminated, truncated, _ = env.step("")
        if terminated or truncated:
            break
    obs, reward, terminated, truncated, info = env.step("[1]")
    assert isinstance(obs, str) and obs.strip(), "stepping after the end must return feedback text"
    assert reward == 0.0 and (terminated or truncated), (
        "stepping after the end must give reward 0 and keep the end flag"
    )
    assert isinstance(info.get("rewards"), dict), "stepping after the end must still return info['rewards']"
    return "zero-reward transition"


def _check_actions_reach_the_env(env: gymnasium.Env, seed: int, n_fuzzed: int = 100) -> str:
    """Fail an env that cannot process any move: its own valid move is refused, or every action hits one error.

    Envs that catch their own internal failures report them as `info["metrics"]["env_error"]`
    (the TextArena adapter does); an env where every probe and fuzzed action ends in the same
    such error is broken, however politely it says so.
    """
    notes = []
    offer = getattr(env, "valid_action", None)
    accepted = 0
    for episode_seed in SEEDS if callable(offer) else ():
        env.reset(seed=episode_seed)
        action = offer()
        if action is None:
            continue
        feedback, _, _, _, info = env.step(action)
        metrics = info.get("metrics", {})
        assert not metrics.get("invalid_action") and not metrics.get("env_error"), (
            f"seed {episode_seed}: the env's own valid_action() {action!r} was refused: {feedback[:200]!r}"
        )
        accepted += 1
    if accepted:
        notes.append(f"its valid_action() accepted on {accepted} seeds")
    errors = []
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    for action in (*PROBE_ACTIONS, *fuzz_actions(rng, n_fuzzed)):
        _, _, terminated, truncated, info = env.step(action)
        errors.append(str(info.get("metrics", {}).get("env_error") or ""))
        if terminated or truncated:
            env.reset(seed=int(rng.integers(2**31)))
    kinds = {e.partition(":")[0] for e in errors}
    assert not (all(errors) and len(kinds) == 1), (
        f"all {len(errors)} actions (probes and fuzzed) hit the same internal error: {errors[0][:200]}; "
        "the env cannot process any move"
    )
    failed = sum(bool(e) for e in errors)
    notes.append(f"{len(errors) - failed} of {len(errors)} probe and fuzzed actions processed")
    return "; ".join(notes)


def _check_fuzz(env: gymnasium.Env, n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    episodes, start = 1, time.perf_counter()
    for action in fuzz_actions(rng, n):
        transition = env.step(action)
        _check_transition(env, action, transition)
        if transition[2] or transition[3]:
            env.reset(seed=int(rng.integers(2**31)))
            episodes += 1
    rate = n / max(time.perf_counter() - start, 1e-9)
    return f"{n} actions over {episodes} episodes, {rate:,.0f} actions/s"
