"""Mistakes in env code and env arguments are one-line errors that name the fix, in Python and in the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium
import pytest

from tests.envs.test_cli_envs import turngym
from turngym.envs import TextEnv, Turn, make


class Strings(TextEnv):
    """Returns a Turn with a truthy string where a bool belongs."""

    default_reward_weights = {"won": 1.0}

    def on_reset(self, options):
        return "go"

    def on_step(self, action):
        return Turn("ok", {"won": 1.0}, terminated="no")


class ZeroTurns(Strings):
    default_max_turns = 0


class SaysNo(gymnasium.Env):
    """A plain env whose `won` is a string (the CLI test below loads it from this file)."""

    def reset(self, *, seed=None, options=None):
        return "go", {}

    def step(self, action):
        return "done", 1.0, True, False, {"won": "no"}


def test_env_outputs_of_the_wrong_type_are_errors_not_truthy_values() -> None:
    env = Strings()
    env.reset(seed=0)
    with pytest.raises(
        TypeError, match=re.escape("Strings.on_step returned a Turn whose terminated is 'no'; it must be True or False")
    ):
        env.step("a")
    with pytest.raises(ValueError, match="ZeroTurns.default_max_turns must be an int >= 1, got 0"):
        ZeroTurns()
    plain = make(SaysNo)
    plain.reset(seed=0)
    with pytest.raises(TypeError, match="won is 'no'; it must be True or False"):
        plain.step("a")
    with pytest.raises(TypeError, match="won must be a function"):
        make(SaysNo, won=5)


@pytest.mark.parametrize(
    ("args", "stdin", "expected"),
    [
        (("check", "turngym/GuessNumber-v0", "-k", "high=["), "", "GuessNumber: high must be int, got '[' (str)"),
        (("play", "{plain}:SaysNo"), "x\n", "won is 'no'; it must be True or False"),
        (("check", "{broken}:E"), "", "RuntimeError: the module failed (at {broken}:1)"),
    ],
)
def test_cli_mistakes_in_user_code_are_one_line_on_stderr(tmp_path, args, stdin, expected) -> None:
    broken = tmp_path / "broken_module.py"
    broken.write_text("raise RuntimeError('the module failed')\n")
    fill = {"plain": str(Path(__file__)), "broken": str(broken)}
    proc = turngym(*(a.format(**fill) for a in args), stdin=stdin)
    assert proc.returncode in (1, 2) and "Traceback" not in proc.stdout + proc.stderr
    assert expected.format(**fill) in " ".join(proc.stderr.split()), proc.stderr


def test_reasoning_gym_options_point_to_config() -> None:
    with pytest.raises(TypeError, match=re.escape("dataset options go in config={...}")):
        make("reasoning_gym/basic_arithmetic", size=0)
    assert make("reasoning_gym/basic_arithmetic", config={"size": 50}).dataset.size == 50
