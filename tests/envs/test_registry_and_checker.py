"""Registration, make, lazy imports, and both checkers over every registered id."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import gymnasium
import pytest

import turngym
from tests.envs.plain_env import LetterCount
from turngym.envs import EnvCheckError, TextEnv, Turn, UnknownEnvError, check_env, make, register, registry
from turngym.envs.checker import RESET_CHECK, CheckOptions, _checks, check_gymnasium, run_checks
from turngym.envs.registration import close_names, import_hint

BUILT_IN = [i for i in registry() if i.startswith("turngym/")]  # not ids tests register
# representative ids of the two prefixes (the adapters' own tests cover them in depth)
ADAPTED = [
    "textarena/GuessTheNumber-v0",
    "textarena/TowerOfHanoi-v0",
    "textarena/ThreeCardMonte-v0",  # its invalid-move path puts a message where the reward goes
    "reasoning_gym/basic_arithmetic",
]


def test_registry_lists_the_built_in_envs_with_descriptions() -> None:
    assert set(BUILT_IN) == {
        "turngym/MathVerify-v0",
        "turngym/Game2048-v0",
        "turngym/GuessNumber-v0",
        "turngym/WordGuess-v0",
        "turngym/Mastermind-v0",
    }
    assert all(info.description for info in registry().values())


@pytest.mark.parametrize("env_id", BUILT_IN + ADAPTED)
def test_every_env_passes_turngym_check_env(env_id: str) -> None:
    results = check_env(make(env_id), fuzz=1000)
    assert len(results) == 11 and all(r.passed for r in results)
    assert results[-1].name == "gymnasium env_checker"  # Gymnasium's own checker runs last


@pytest.mark.parametrize("env_id", BUILT_IN)
def test_every_registered_env_passes_gymnasium_check_env(env_id: str) -> None:
    env = gymnasium.make(env_id).unwrapped  # through Gymnasium, so it has a spec
    assert isinstance(env, TextEnv)
    result = check_gymnasium(env)
    assert result.passed and result.detail == "no warnings", result.detail


def test_make_applies_kwargs_over_registered_defaults() -> None:
    env = make("turngym/GuessNumber-v0", low=5, high=6, max_turns=3)
    assert (env.low, env.high, env.max_turns) == (5, 6, 3)
    assert turngym.make is make


@pytest.mark.parametrize(
    ("env_id", "suggestion"),
    [
        ("turngym/GuessNumbr-v0", "turngym/GuessNumber-v0"),
        ("turngym/GuesNumber-v0", "turngym/GuessNumber-v0"),
        ("turngym/GuessNum-v0", "turngym/GuessNumber-v0"),  # not textarena/GuessTheNumber-v0: the namespace counts
        ("gym/GuessNumber-v0", "turngym/GuessNumber-v0"),  # a wrong namespace
        ("reasoning-gym/countdown", "reasoning_gym/countdown"),  # a misspelt prefix
        ("reasoning-gym/countdwn", "reasoning_gym/countdown"),  # and a misspelt name under it
        ("TextArena/Wordle-v0", "textarena/Wordle-v0"),
        ("Wordle-v0", "textarena/Wordle-v0"),  # TextArena's game, not turngym/WordGuess-v0
        ("wordle", "textarena/Wordle-v0"),
        ("gsm_symbolic", "reasoning_gym/gsm_symbolic"),  # a reasoning-gym dataset
    ],
)
def test_an_unknown_id_with_a_clear_match_names_only_that_one(env_id: str, suggestion: str) -> None:
    with pytest.raises(UnknownEnvError) as caught:
        make(env_id)
    assert str(caught.value) == (
        f"unknown env id {env_id!r}. Did you mean {suggestion}? `turngym envs list` shows every id."
    )


def test_a_name_two_namespaces_share_suggests_both() -> None:
    with pytest.raises(UnknownEnvError) as caught:
        make("mastermind")
    assert "Did you mean turngym/Mastermind-v0 or textarena/Mastermind-v0? " in str(caught.value)


@pytest.mark.parametrize("env_id", ["foo/bar-v0", "reasoning-gym/zzz"])
def test_an_unknown_id_without_a_match_lists_the_ids_and_prefixes(env_id: str) -> None:
    """A misspelt prefix is not "corrected" into another unknown id (reasoning_gym/zzz)."""
    with pytest.raises(UnknownEnvError) as caught:
        make(env_id)
    listed = rf"unknown env id '{env_id}'. Registered ids: turngym/MathVerify-v0, .*reasoning_gym/"
    assert re.match(listed, str(caught.value))
    assert "Did you mean" not in str(caught.value)


@pytest.mark.parametrize(
    ("env_id", "hint"),
    [
        ("mine/Qwzx-v0", True),  # nothing close and no built-in namespace: most likely the user's own id
        ("reasoning-gym/zzz", True),
        ("Wordle-v0", False),  # something close was suggested
        ("turngym/Nothing-v0", False),  # a built-in namespace: a typo of ours, not a module of the user's
        ("textarena/Nothing-v0", False),
        ("reasoning_gym/nothing", False),
    ],
)
def test_the_import_hint_is_given_only_when_nothing_close_exists(env_id: str, hint: bool) -> None:
    expected = "An id that a module of yours registers needs --import MODULE." if hint else ""
    assert import_hint(env_id, "--import MODULE") == expected


def test_close_names_counts_prefixes_and_names_a_clear_match_alone() -> None:
    datasets = ["aiw", "basic_arithmetic", "bf", "count_bits", "count_primes", "countdown", "leg_counting"]
    assert close_names("basic", datasets) == ["basic_arithmetic"]  # a prefix, though difflib finds it far
    assert close_names("countdwn", datasets) == ["countdown"]  # clearly closest: the others are left out
    assert close_names("count", datasets) == ["countdown", "count_bits", "count_primes"]  # a few, not all
    assert close_names("zzz", datasets) == []


def test_register_a_class_and_reject_duplicates() -> None:
    class Echo(TextEnv):
        default_reward_weights = {"said": 1.0}

        def on_reset(self, options):
            return "Say something."

        def on_step(self, action):
            return Turn(f"You said {len(action)} characters.", {"said": 1.0}, terminated=True)

    register("tests/Echo-v0", Echo, "echoes")
    assert make("tests/Echo-v0").step  # made from the class
    assert isinstance(gymnasium.make("tests/Echo-v0").unwrapped, Echo)
    with pytest.raises(ValueError, match="already registered"):
        register("tests/Echo-v0", Echo, "again")


def test_importing_envs_does_not_import_env_packages() -> None:
    code = (
        "import sys, turngym.envs as e; e.registry(); "
        "print(sorted(m for m in ('textarena', 'reasoning_gym', 'math_verify', 'torch') if m in sys.modules))"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )


class _Broken(TextEnv):
    """Breaks the contract in several ways at once; the checker must name each."""

    default_reward_weights = {"won": 1.0}
    default_max_turns = 3

    def on_reset(self, options):
        self.calls = getattr(self, "calls", 0) + 1
        return f"episode {self.calls}"  # not determined by the seed

    def on_step(self, action):
        if "\x00" in action:
            raise RuntimeError("cannot handle NUL")
        return Turn("", {"won": 1.0})  # empty feedback


def test_the_checker_fails_a_broken_env_and_names_each_problem() -> None:
    with pytest.raises(EnvCheckError) as caught:
        check_env(_Broken(), fuzz=100)
    failed = {r.name for r in caught.value.results if not r.passed}
    assert "reset is deterministic per seed" in failed
    assert "step types and weighted reward" in failed  # the empty feedback
    assert "100 fuzzed actions" in failed
    assert "spaces and reward weights" not in failed
    assert "feedback must be non-empty" in str(caught.value)


@pytest.mark.slow
@pytest.mark.parametrize("env_id", BUILT_IN)
def test_100k_fuzzed_actions_per_built_in_env(env_id: str) -> None:
    """`bench/fuzz_envs.py` prints the throughput; this asserts zero contract breaks."""
    [fuzz_result] = [r for r in check_env(make(env_id), fuzz=100_000) if "fuzzed" in r.name]
    assert fuzz_result.passed


@pytest.mark.parametrize(
    ("env_id", "kwargs", "error", "message"),
    [
        ("turngym/GuessNumber-v0", {"high": "abc"}, TypeError, "GuessNumber: high must be int, got 'abc' (str)"),
        (
            "turngym/GuessNumber-v0",
            {"hgh": 8},
            TypeError,
            "has no argument 'hgh'. Did you mean 'high'? It takes: low, high, max_turns",
        ),
        ("turngym/Game2048-v0", {"size": 2.5}, TypeError, "Game2048: size must be int, got 2.5 (float)"),
        (
            "turngym/GuessNumber-v0",
            {"reward_weights": {"won": "x"}},
            ValueError,
            "reward_weights['won'] must be a finite number",
        ),
        (
            "turngym/GuessNumber-v0",
            {"reward_weights": {"won": float("nan")}},
            ValueError,
            "must be a finite number, got nan",
        ),
        ("turngym/GuessNumber-v0", {"max_turns": "3"}, TypeError, "max_turns must be an int, got '3' (str)"),
        ("turngym/Game2048-v0", {"size": 100_000}, ValueError, "Game2048: size must be in 2..16"),
        ("turngym/Game2048-v0", {"target": 2**40}, ValueError, "target must be a power of two in 4..1048576"),
        ("turngym/Mastermind-v0", {"code_length": 1000}, ValueError, "code_length must be in 1..12, got 1000"),
        (
            "turngym/WordGuess-v0",
            {"words": []},
            ValueError,
            "WordGuess: words is empty; give some five-letter words, e.g. words=['crane', 'slate'], or leave words "
            "out for the bundled common-word list",
        ),
        (
            "turngym/MathVerify-v0",
            {"path": "problems.jsonl"},
            ValueError,
            "MathVerify: path='problems.jsonl' is read only with source='jsonl' (source is 'arithmetic'); "
            "set source='jsonl' or drop path",
        ),
        (
            "turngym/MathVerify-v0",
            {"source": "word", "task": "gsm_symbolic"},
            ValueError,
            "MathVerify: task='gsm_symbolic' is read only with source='reasoning_gym' (source is 'word'); "
            "set source='reasoning_gym' or drop task",
        ),
    ],
)
def test_bad_env_kwargs_get_one_line_errors_at_construction(env_id, kwargs, error, message) -> None:
    with pytest.raises(error) as caught:
        make(env_id, **kwargs)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_kwargs_of_the_right_types_still_construct() -> None:
    env = make("turngym/GuessNumber-v0", low=1, high=8, max_turns=3, reward_weights={"ruled_out": -0.5})
    assert (env.high, env.max_turns, env.reward_weights["ruled_out"]) == (8, 3, -0.5)
    assert make("turngym/MathVerify-v0", difficulty=2).max_turns >= 1  # float-annotated and kwargs-only reach too


def test_the_checker_fails_an_env_whose_every_move_hits_the_same_internal_error() -> None:
    """The old TextArena adapter bug: every move, valid ones too, answered 'could not process (AttributeError)'."""
    env = make("textarena/TowerOfHanoi-v0")

    def broken_step(action):
        raise AttributeError("'tuple' object has no attribute 'strip'")

    env.game.step = broken_step
    with pytest.raises(EnvCheckError, match="hit the same internal error: AttributeError: 'tuple' object has no"):
        check_env(env, fuzz=50, gymnasium_checker=False)


class _Deaf(TextEnv):
    """Offers a valid move but its parser refuses everything: every action is 'invalid'."""

    default_reward_weights = {"invalid": -0.1}

    def on_reset(self, options):
        return "Reply [1]."

    def on_step(self, action):
        return Turn("Invalid move.", {"invalid": 1.0}, metrics={"invalid_action": True})

    def valid_action(self):
        return "[1]"


def test_the_checker_fails_an_env_that_refuses_its_own_valid_action() -> None:
    with pytest.raises(EnvCheckError, match=r"the env's own valid_action\(\) '\[1\]' was refused: 'Invalid move.'"):
        check_env(_Deaf(), fuzz=20, gymnasium_checker=False)


@pytest.mark.parametrize("env_id", BUILT_IN)
def test_every_built_in_env_offers_a_valid_action_after_each_turn(env_id) -> None:
    env = make(env_id)
    env.reset(seed=4)
    for _ in range(3):
        action = env.valid_action()
        assert action is not None
        _, _, terminated, truncated, info = env.step(action)
        assert not info["metrics"]["invalid_action"]
        if terminated or truncated:
            break


class _BadReset(TextEnv):
    default_reward_weights = {"won": 1.0}

    def on_reset(self, options):
        raise RuntimeError("level file missing")

    def on_step(self, action):
        return Turn("ok", {"won": 1.0}, terminated=True)


def test_quick_checks_report_no_progress() -> None:
    lines: list[str] = []
    assert CheckOptions().progress_after_s == 1.0  # "about 1 s"
    run_checks(make("turngym/GuessNumber-v0"), CheckOptions(fuzz=20, progress=lines.append))
    assert lines == []


class _SlowFirstReset(TextEnv):
    """The first reset takes `SLOW_S`, so the check that makes it runs past `progress_after_s`."""

    SLOW_S = 1.5
    default_reward_weights = {"won": 1.0}

    def on_reset(self, options):
        if not hasattr(self, "slept_until"):
            time.sleep(self.SLOW_S)
            self.slept_until = time.perf_counter()
        return "go"

    def on_step(self, action):
        return Turn("ok", {"won": 1.0}, terminated=True)


def test_a_slow_check_reports_while_it_runs_and_as_it_ends() -> None:
    env, heard = _SlowFirstReset(), []
    run_checks(env, CheckOptions(fuzz=0, progress=lambda line: heard.append((time.perf_counter(), line))))
    (said_at, running), (_, ended) = heard
    assert running == "check 3/11: reset returns (str, dict) ..." and said_at < env.slept_until  # while it ran
    assert re.fullmatch(r"check 3/11: reset returns \(str, dict\): pass in \d+\.\d s", ended)


def test_the_checks_that_run_without_reset_are_marked_in_the_list() -> None:
    checks = _checks(make("turngym/GuessNumber-v0"), CheckOptions())
    assert [c.name for c in checks if not c.needs_reset] == ["spaces and reward weights", "render modes", RESET_CHECK]


def test_a_failing_reset_is_reported_once_and_the_checks_that_need_it_are_skipped() -> None:
    with pytest.raises(EnvCheckError) as caught:
        check_env(_BadReset(), fuzz=20)
    results = {r.name: r for r in caught.value.results}
    assert results["reset returns (str, dict)"].detail.startswith("RuntimeError: level file missing (at ")
    assert results["spaces and reward weights"].passed and results["render modes"].passed
    skipped = [r.name for r in caught.value.results if r.skipped]
    assert len(skipped) == 8 and "gymnasium env_checker" in skipped and "20 fuzzed actions" in skipped
    assert all(not results[name].passed for name in skipped)
    assert str(caught.value).count("level file missing") == 1
    assert "(8 checks skipped: reset is deterministic per seed," in str(caught.value)


class _NoWeights(TextEnv):
    def on_reset(self, options):
        return "go"

    def on_step(self, action):
        return Turn("ok", terminated=True)


def test_an_env_without_reward_weights_is_told_to_declare_them() -> None:
    [result] = [r for r in run_checks(_NoWeights(), CheckOptions(fuzz=0)) if not r.passed]
    assert result.name == "spaces and reward weights"
    assert result.detail.startswith("_NoWeights has no reward components: declare default_reward_weights in the class")
    assert "checker.py" not in result.detail and "AssertionError" not in result.detail


def test_gymnasiums_no_spec_warning_is_not_shown() -> None:
    env = make("turngym/GuessNumber-v0")  # made without gymnasium.make: no spec
    assert env.spec is None
    assert check_gymnasium(env).detail == "no warnings"


class _HumanWithoutRender(TextEnv):
    metadata = {"render_modes": ["ansi", "human"], "render_fps": 1}
    default_reward_weights = {"won": 1.0}

    def on_reset(self, options):
        return "go"

    def on_step(self, action):
        return Turn("ok", {"won": 1.0}, terminated=True)


class _PlainHumanWithoutRender(LetterCount):
    metadata = {"render_modes": ["human"]}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            _HumanWithoutRender(),
            "_HumanWithoutRender.metadata declares render_modes ['ansi', 'human'] but TextEnv.render() only renders "
            "'ansi'; override render() for ['human'] or remove them from metadata['render_modes']",
        ),
        (
            _PlainHumanWithoutRender(),
            "_PlainHumanWithoutRender.metadata declares render_modes ['human'] but _PlainHumanWithoutRender does not "
            "implement render(); implement render() or declare metadata = {'render_modes': []}",
        ),
    ],
)
def test_a_declared_render_mode_without_a_render_is_reported(env, message) -> None:
    [result] = [r for r in run_checks(env, CheckOptions(fuzz=0)) if not r.passed]
    assert (result.name, result.detail) == ("render modes", message)


def test_gymnasiums_checker_runs_on_the_adapter_for_a_plain_env_without_spaces() -> None:
    result = check_gymnasium(LetterCount())  # the plain env itself, as `turngym check` passes it
    assert result.passed, result.detail
    assert result.detail.startswith("the env declares no spaces, so turngym's adapter (AnyText spaces) was checked")


def test_the_fuzz_check_reports_how_far_it_got(monkeypatch) -> None:
    import turngym.envs.checker

    monkeypatch.setattr(turngym.envs.checker, "FUZZ_PROGRESS_EVERY_S", 0.0)  # report after every action
    lines: list[str] = []
    run_checks(make("turngym/GuessNumber-v0"), CheckOptions(fuzz=3, gymnasium_checker=False, progress=lines.append))
    ticks = [line for line in lines if "fuzzed actions over" in line]
    assert [t.split(" over ")[0] for t in ticks] == [f"  {i} of 3 fuzzed actions" for i in (1, 2, 3)]
