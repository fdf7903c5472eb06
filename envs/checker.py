"""`check_env`: turngym's checker for text environments, built from small named checks.

Each check returns a `CheckResult`; `check_env` runs them all (a failing check does not stop the
others, but the checks that play episodes are skipped when `reset` fails) and raises
`EnvCheckError` listing every failure. `run_checks` is the same with its options in one
`CheckOptions`, including a progress callback for slow envs. `check_gymnasium` runs Gymnasium's
own checker and reports its warnings.
"""

from __future__ import annotations

import math
import re
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

from turngym.envs.core import TextEnv, count_of
from turngym.envs.fuzz import fuzz_actions

SEEDS = (0, 1, 12345)
PROBE_ACTIONS = ("[1]", "[up]", "hello", "[crane]", "\\boxed{2}", "[1 2 3 4]", "")
RESET_CHECK = "reset returns (str, dict)"  # the checks that play episodes are skipped when this one fails
SKIPPED_DETAIL = f"skipped: it needs reset(), and {RESET_CHECK!r} failed"
# Gymnasium warnings a user cannot act on: turngym checks render modes itself (see _check_render_modes)
UNACTIONABLE_WARNINGS = ("not having a spec",)
FUZZ_PROGRESS_EVERY_S = 10.0  # how often the fuzz check reports how far it got (to the progress callback)
# Frames in these files are the checker's and the base classes' own, never where the env went wrong
_OWN_FILES = tuple(str(Path(__file__).with_name(name)) for name in ("checker.py", "core.py", "adapter.py", "fuzz.py"))


@dataclass
class CheckResult:
    """The outcome of one named check.

    Attributes:
        name: what was checked, e.g. `reset is deterministic per seed`.
        passed: the check ran and passed.
        detail: what it found (a failure's message, or a summary).
        skipped: the check did not run because one it depends on failed (`passed` is then False).
    """

    name: str
    passed: bool
    detail: str = ""
    skipped: bool = False


class EnvCheckError(AssertionError):
    """Raised by `check_env` when a check fails; `results` holds every check's outcome."""

    def __init__(self, results: list[CheckResult]) -> None:
        self.results = results
        failed = [r for r in results if not r.passed and not r.skipped]
        skipped = [r.name for r in results if r.skipped]
        lines = [f"- {r.name}: {r.detail}" for r in failed]
        if skipped:
            lines.append(f"({count_of(len(skipped), 'check')} skipped: {', '.join(skipped)})")
        super().__init__("env check failed:\n" + "\n".join(lines))


@dataclass(frozen=True)
class CheckOptions:
    """What `run_checks` runs, and where it reports progress."""

    fuzz: int = 1000
    """How many fuzzed actions to try."""
    seed: int = 0
    """Seed for the fuzzed actions and episode resets."""
    gymnasium_checker: bool = True
    """Also run Gymnasium's checker (see `check_gymnasium`) as the last check."""
    gymnasium_env: Any = None
    """The instance Gymnasium's checker gets (e.g. one made through `gymnasium.make`, so it has a
    spec); default: the env being checked."""
    progress: Callable[[str], None] | None = None
    """Called with one line once a check has run `progress_after_s` (`check 3/11: name ...`) and again
    as that check ends (`check 3/11: name: pass in 4.2 s`), and every `FUZZ_PROGRESS_EVERY_S` seconds
    during the fuzzed actions; quick checks report nothing."""
    progress_after_s: float = 1.0
    """How long a check runs before `progress` hears of it."""


def check_env(
    env: gymnasium.Env,
    *,
    fuzz: int = 1000,
    seed: int = 0,
    raise_on_failure: bool = True,
    gymnasium_checker: bool = True,
) -> list[CheckResult]:
    """Check a text env against turngym's contract, then with Gymnasium's own checker.

    Checks: spaces and reward weights; declared render modes are implemented; reset types; same
    seed -> same first observation; same seed and actions -> same transitions; step types, finite
    rewards, reward = weighted sum of the components; the turn limit; stepping after the end; the
    env's own `valid_action()` is accepted and not every action hits the same internal error
    (`metrics["env_error"]`); `fuzz` random and adversarial actions (empty, 1 MB, unicode, control
    characters, prompt-injection text) without an exception, with a finite reward and non-empty
    feedback; `gymnasium.utils.env_checker.check_env`. When `reset` fails, the checks that play
    episodes are reported as skipped rather than failing with the same error again.

    Args:
        env: the environment (a `TextEnv` or any Gymnasium env with the same text contract).
        fuzz: how many fuzzed actions to try.
        seed: seed for the fuzzed actions and episode resets.
        raise_on_failure: raise `EnvCheckError` if any check fails.
        gymnasium_checker: also run Gymnasium's checker (see `check_gymnasium`) as the last check.

    Returns:
        One `CheckResult` per check.
    """
    results = run_checks(env, CheckOptions(fuzz=fuzz, seed=seed, gymnasium_checker=gymnasium_checker))
    if raise_on_failure and not all(r.passed for r in results):
        raise EnvCheckError(results)
    return results


def run_checks(env: gymnasium.Env, options: CheckOptions | None = None) -> list[CheckResult]:
    """Run `check_env`'s checks with `options`, never raising for a failed check.

    Args:
        env: the environment (a `TextEnv` or any Gymnasium env with the same text contract).
        options: fuzzing, Gymnasium's checker and the progress callback (default `CheckOptions()`).

    Returns:
        One `CheckResult` per check; skipped checks have `skipped=True`.
    """
    from turngym.envs.adapter import as_text_env

    options = options or CheckOptions()
    if isinstance(env, type) or not (callable(getattr(env, "reset", None)) and callable(getattr(env, "step", None))):
        shown = env.__name__ if isinstance(env, type) else type(env).__name__
        raise TypeError(
            f"check_env takes an env instance, got {shown}; make one first, e.g. turngym.make('turngym/GuessNumber-v0')"
        )
    env = as_text_env(env)  # a plain Gymnasium text env is checked as turngym plays it
    checks = _checks(env, options)
    results: list[CheckResult] = []
    for number, check in enumerate(checks, 1):
        if check.needs_reset and any(r.name == RESET_CHECK and not r.passed for r in results):
            results.append(CheckResult(check.name, False, SKIPPED_DETAIL, skipped=True))
            continue
        label = f"check {number}/{len(checks)}: {check.name}"
        with _SlowCheckProgress(label, options) as timing:
            results.append(_run_check(check.name, check.run))
            timing.result = "pass" if results[-1].passed else "FAIL"
    return results


def _no_progress(line: str) -> None:
    """The progress callback when none is given."""


@dataclass(frozen=True)
class _Check:
    """One named check; `needs_reset`: it plays episodes, so it is skipped when `reset` fails."""

    name: str
    run: Callable[[], str | CheckResult]
    needs_reset: bool = True


class _SlowCheckProgress:
    """Tell `options.progress` about a check only once it has run `options.progress_after_s`, and then as it ends.

    A timer thread says the check is running (the check itself runs in this thread, so it cannot);
    a check that ends sooner is never reported, so a quick env's check prints nothing.
    """

    def __init__(self, label: str, options: CheckOptions) -> None:
        self.label, self.report = label, options.progress or _no_progress
        self.result = "FAIL"
        self._lock = threading.Lock()
        self._announced = self._done = False
        self._timer = threading.Timer(options.progress_after_s, self._announce)
        self._timer.daemon = True

    def _announce(self) -> None:
        with self._lock:
            if not self._done:
                self._announced = True
                self.report(f"{self.label} ...")

    def __enter__(self) -> _SlowCheckProgress:
        self._start = time.perf_counter()
        self._timer.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._timer.cancel()
        with self._lock:
            self._done = True
            if self._announced and exc_type is None:  # interrupted (Ctrl-C): no verdict to report
                self.report(f"{self.label}: {self.result} in {time.perf_counter() - self._start:.1f} s")


def _checks(env: TextEnv, options: CheckOptions) -> list[_Check]:
    """The named checks, in order; each returns its detail (or a whole `CheckResult`) or raises."""
    fuzz, seed = options.fuzz, options.seed
    checks = [
        _Check("spaces and reward weights", lambda: _check_attributes(env), needs_reset=False),
        _Check("render modes", lambda: _check_render_modes(env), needs_reset=False),
        _Check(RESET_CHECK, lambda: _check_reset(env), needs_reset=False),
        _Check("reset is deterministic per seed", lambda: _check_reset_determinism(env)),
        _Check("steps are deterministic per seed", lambda: _check_step_determinism(env)),
        _Check("step types and weighted reward", lambda: _check_steps(env)),
        _Check("turn limit ends the episode", lambda: _check_turn_limit(env)),
        _Check("step after the end", lambda: _check_step_after_end(env)),
        _Check("actions reach the env", lambda: _check_actions_reach_the_env(env, seed)),
        _Check(f"{fuzz} fuzzed actions", lambda: _check_fuzz(env, fuzz, seed, options.progress or _no_progress)),
    ]
    if options.gymnasium_checker:
        target = env if options.gymnasium_env is None else options.gymnasium_env
        checks.append(_Check("gymnasium env_checker", lambda: check_gymnasium(target)))
    return checks


def _run_check(name: str, check: Callable[[], str | CheckResult]) -> CheckResult:
    """Run one check; a failure becomes its result (the others still run)."""
    try:
        outcome = check()
    except Exception as err:  # a failing check is reported, and the others still run
        return CheckResult(name, False, _failure_detail(err))
    return outcome if isinstance(outcome, CheckResult) else CheckResult(name, True, outcome)


def _failure_detail(err: Exception) -> str:
    """A check's own verdict as its message; an error raised in the env as `Type: message (at file:line)`."""
    frames = traceback.extract_tb(err.__traceback__)
    if isinstance(err, AssertionError) and frames and frames[-1].filename == __file__:
        return str(err)
    theirs = [frame for frame in frames if frame.filename not in _OWN_FILES]
    where = f" (at {theirs[-1].filename}:{theirs[-1].lineno})" if theirs else ""
    return f"{type(err).__name__}: {err}{where}"


def check_gymnasium(env: gymnasium.Env) -> CheckResult:
    """Run `gymnasium.utils.env_checker.check_env`; its warnings are listed in the detail.

    A plain Gymnasium env that declares spaces is checked as its author wrote it, without the
    wrappers `gymnasium.make` adds (Gymnasium's checker asks for `env.unwrapped`); one without
    spaces is checked through turngym's adapter (`GymnasiumTextEnv`, whose spaces admit any text),
    which is how turngym plays it. Warnings a user cannot act on (no spec to re-make the env in
    other render modes) are left out: `check_env` checks render modes itself.
    """
    from gymnasium.utils.env_checker import check_env as gymnasium_check_env

    env, note = _gymnasium_target(env)
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
    notes = [n for n in notes if not any(phrase in n for phrase in UNACTIONABLE_WARNINGS)]
    return CheckResult("gymnasium env_checker", True, note + ("; ".join(notes) or "no warnings"))


def _gymnasium_target(env: Any) -> tuple[Any, str]:
    """The env Gymnasium's checker should get, and a note when that is turngym's adapter."""
    from turngym.envs.adapter import GymnasiumTextEnv, as_text_env

    raw = env.env if isinstance(env, GymnasiumTextEnv) else env
    # the env itself, not gymnasium.make's wrappers: Gymnasium's checker asks for env.unwrapped
    inner = raw.unwrapped if isinstance(raw, gymnasium.Env) else raw
    if isinstance(inner, TextEnv):
        return inner, ""
    if getattr(inner, "observation_space", None) is not None and getattr(inner, "action_space", None) is not None:
        return inner, ""  # check the plain env as its author wrote it
    adapter = env if isinstance(env, GymnasiumTextEnv) else as_text_env(raw)
    return adapter, "the env declares no spaces, so turngym's adapter (AnyText spaces) was checked; "


def _check_attributes(env: gymnasium.Env) -> str:
    weights = getattr(env, "reward_weights", None)
    assert weights, (
        f"{type(env).__name__} has no reward components: declare default_reward_weights in the class, one "
        "entry per component on_step reports, e.g. default_reward_weights = {'won': 1.0, 'invalid': -0.1}"
    )
    assert isinstance(weights, dict), f"env.reward_weights must be a dict of component -> weight, got {weights!r:.80}"
    assert all(isinstance(w, (int, float)) and math.isfinite(w) for w in weights.values()), (
        "reward weights must be finite numbers"
    )
    assert isinstance(getattr(env, "max_turns", None), int), "env.max_turns must be an int (the turn limit)"
    for space in (env.observation_space, env.action_space):
        assert space.contains("any text, even \x00 and 😀"), f"{space} must admit any string"
    return f"components {sorted(weights)}, max_turns {env.max_turns}"


def _check_render_modes(env: gymnasium.Env) -> str:
    """Every render mode the env's metadata declares has a `render()` that produces it."""
    from turngym.envs.adapter import GymnasiumTextEnv

    own = env.env.unwrapped if isinstance(env, GymnasiumTextEnv) and isinstance(env.env, gymnasium.Env) else env
    if isinstance(env, GymnasiumTextEnv) and own is env:
        return "the wrapped env is not a gymnasium.Env; turngym's adapter renders 'ansi'"
    name = type(own).__name__
    modes = list((getattr(own, "metadata", None) or {}).get("render_modes") or [])
    if not modes:
        return "none declared"
    render = next((cls for cls in type(own).__mro__ if "render" in vars(cls)), None)
    assert render not in (None, gymnasium.Env), (
        f"{name}.metadata declares render_modes {modes} but {name} does not implement render(); "
        "implement render() or declare metadata = {'render_modes': []}"
    )
    unrendered = [mode for mode in modes if mode != "ansi"] if render is TextEnv else []
    assert not unrendered, (
        f"{name}.metadata declares render_modes {modes} but TextEnv.render() only renders 'ansi'; "
        f"override render() for {unrendered} or remove them from metadata['render_modes']"
    )
    return f"{modes} declared, render() implemented by {render.__name__}"


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


def _check_fuzz(env: gymnasium.Env, n: int, seed: int, progress: Callable[[str], None]) -> str:
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    episodes, start = 1, time.perf_counter()
    reported = start
    for done, action in enumerate(fuzz_actions(rng, n), 1):
        transition = env.step(action)
        _check_transition(env, action, transition)
        if transition[2] or transition[3]:
            env.reset(seed=int(rng.integers(2**31)))
            episodes += 1
        if time.perf_counter() - reported >= FUZZ_PROGRESS_EVERY_S:  # slow envs take minutes here
            reported = time.perf_counter()
            progress(f"  {done} of {n} fuzzed actions over {episodes} episodes in {reported - start:.0f} s")
    rate = n / max(time.perf_counter() - start, 1e-9)
    return f"{n} actions over {episodes} episodes, {rate:,.0f} actions/s"
