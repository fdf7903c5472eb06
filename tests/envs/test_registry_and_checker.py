"""Registration, make, lazy imports, and both checkers over every registered id."""

from __future__ import annotations

import subprocess
import sys

import gymnasium
import pytest

import turngym
from turngym.envs import EnvCheckError, TextEnv, Turn, UnknownEnvError, check_env, make, register, registry
from turngym.envs.checker import check_gymnasium

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
    assert len(results) == 10 and all(r.passed for r in results)
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


def test_unknown_ids_list_close_matches() -> None:
    with pytest.raises(UnknownEnvError, match=r"Did you mean: turngym/GuessNumber-v0.*textarena/<GameId>"):
        make("turngym/GuesNumber-v0")
    with pytest.raises(UnknownEnvError, match="Did you mean: turngym/Mastermind-v0"):
        make("mastermind")


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
