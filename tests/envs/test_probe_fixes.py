"""The second round of newcomer mistakes (a probe of about 150 inputs): each is one line that names the fix."""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium
import pytest

from tests.envs.test_cli_envs import turngym
from turngym.envs import TextEnv, Turn, check_env, make


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
    def reset(self, *, seed=None, options=None):
        return "go", {}

    def step(self, action):
        return "done", 1.0, True, False, {"won": "no"}


class Kwargs(gymnasium.Env):
    """A plain env whose constructor swallows any keyword."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def reset(self, *, seed=None, options=None):
        return "go", {}

    def step(self, action):
        return "ok", 1.0, False, False, {}


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


def test_a_plain_env_that_takes_any_keyword_still_gets_the_adapters_arguments() -> None:
    env = make(Kwargs, max_turns=4, reward_weights={"reward": 2.0}, level=3)
    assert env.max_turns == 4 and env.reward_weights == {"reward": 2.0} and env.env.kwargs == {"level": 3}
    env.reset(seed=0)
    assert env.step("a")[1] == 2.0  # the weight applies


def test_check_env_wraps_plain_envs_and_refuses_non_envs() -> None:
    results = check_env(Kwargs(), fuzz=20, raise_on_failure=False)
    assert [r.name for r in results if not r.passed] == []  # no spaces: Gymnasium's checker runs on the adapter
    assert "declares no spaces" in results[-1].detail
    with pytest.raises(TypeError, match=re.escape("check_env takes an env instance, got str; make one first")):
        check_env("turngym/GuessNumber-v0")


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


def test_python_api_arguments_get_one_line_errors(tiny_model_dir) -> None:
    from transformers import AutoTokenizer

    from turngym.agent import SamplingParams, ScriptedGenerator, collect_groups

    for kwargs, message in [
        ({"temperature": float("nan")}, "temperature must be a finite number, got nan"),
        ({"max_tokens": 1.5}, "max_tokens must be an int, got 1.5"),
        ({"seed": "x"}, "seed must be an int >= 0 or None, got 'x'"),
    ]:
        with pytest.raises((TypeError, ValueError), match=re.escape(message)):
            SamplingParams(**kwargs)
    generator = ScriptedGenerator(AutoTokenizer.from_pretrained(tiny_model_dir), lambda prompt: "[2]")
    groups = collect_groups("turngym/GuessNumber-v0", (s for s in (3, 4)), 1, generator, progress=False)
    assert [g.seed for g in groups] == [3, 4]  # a generator of seeds is fine
    with pytest.raises(TypeError, match="seeds must be an ordered sequence"):
        collect_groups("turngym/GuessNumber-v0", {3, 4}, 1, generator, progress=False)
    with pytest.raises(ValueError, match="errors must be 'raise' or 'record'"):
        collect_groups("turngym/GuessNumber-v0", [3], 1, generator, progress=False, errors="ignore")
    with pytest.raises(TypeError, match="sampling must be a SamplingParams, got dict"):
        collect_groups("turngym/GuessNumber-v0", [3], 1, generator, progress=False, sampling={"temperature": 0.5})


def test_reasoning_gym_options_point_to_config() -> None:
    with pytest.raises(TypeError, match=re.escape("dataset options go in config={...}")):
        make("reasoning_gym/basic_arithmetic", size=0)
    assert make("reasoning_gym/basic_arithmetic", config={"size": 50}).dataset.size == 50
