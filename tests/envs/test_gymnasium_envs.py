"""Plain Gymnasium text envs are first-class: make, check, play, collect_groups; TextEnv hook misuse is told the fix."""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium
import pytest

from tests.envs.plain_env import ScoredVowelGame, VowelGame
from tests.envs.test_cli_envs import turngym
from turngym.agent import SamplingParams, ScriptedGenerator, collect_groups
from turngym.envs import GymnasiumTextEnv, TextEnv, Turn, check_env, env_name, make
from turngym.envs.checker import check_gymnasium

PLAIN_PATH = str(Path(__file__).with_name("plain_env.py"))


def test_a_plain_env_gets_the_text_env_contract() -> None:
    env = make(VowelGame)
    assert isinstance(env, GymnasiumTextEnv) and env.max_turns == TextEnv.default_max_turns
    obs, _ = env.reset(seed=3)
    assert obs.startswith("Reply with a word")
    feedback, reward, terminated, truncated, info = env.step("bcd")  # 0 vowels of 3 letters
    assert (reward, terminated, truncated) == (0.0, False, False) and feedback.endswith("Try again.")
    assert info["rewards"] == {"reward": 0.0} and info["metrics"] == {"won": False, "invalid_action": False}
    _, reward, terminated, _, info = env.step("aeb")  # 2 of 3 letters are vowels: > 1/2 ends it
    assert reward == pytest.approx(2 / 3) and terminated
    assert info["rewards"] == {"reward": pytest.approx(2 / 3)} and info["metrics"]["won"] is True  # default rule


def test_every_way_of_naming_a_plain_env_makes_the_same_game() -> None:
    firsts = {
        name: make(spec, target=0.5).reset(seed=7)[0]
        for name, spec in {
            "class": VowelGame,
            "factory": lambda **kw: VowelGame(**kw),
            "module path": "tests.envs.plain_env:VowelGame",
            "file path": f"{PLAIN_PATH}:VowelGame",
        }.items()
    }
    assert len(set(firsts.values())) == 1, firsts
    assert env_name(VowelGame) == "tests.envs.plain_env:VowelGame"
    assert env_name("turngym/GuessNumber-v0") == "turngym/GuessNumber-v0"


def test_the_turn_limit_comes_from_max_turns_or_the_gymnasium_time_limit() -> None:
    if "tests/PlainVowels-v0" not in gymnasium.registry:
        gymnasium.register("tests/PlainVowels-v0", VowelGame, max_episode_steps=3)
    env = make("tests/PlainVowels-v0")  # registered with Gymnasium only
    assert env.max_turns == 3
    env.reset(seed=0)
    ends = [env.step("xyz")[2:4] for _ in range(3)]
    assert ends == [(False, False), (False, False), (False, True)]  # truncated by the TimeLimit, at turn 3
    assert make("tests/PlainVowels-v0", max_turns=2).max_turns == 2  # an explicit limit goes to the adapter
    assert make(VowelGame, max_turns=4).max_turns == 4
    assert make(ScoredVowelGame).max_turns == 3  # the env's own attribute


class Said(TextEnv):
    """A TextEnv subclass, registered with `gymnasium.register` as a user might."""

    default_reward_weights = {"said": 1.0}

    def on_reset(self, options):
        return "Say something."

    def on_step(self, action):
        return Turn("Heard.", {"said": 1.0})


def test_a_text_env_registered_with_gymnasium_is_made_as_itself() -> None:
    """Not adapted: its own reward components, and the registration's max_episode_steps as its max_turns."""
    if "tests/Said-v0" not in gymnasium.registry:
        gymnasium.register("tests/Said-v0", Said, max_episode_steps=4)
    env = make("tests/Said-v0")
    assert type(env) is Said and env.reward_weights == {"said": 1.0} and env.max_turns == 4
    env.reset(seed=0)
    assert [env.step("hi")[3] for _ in range(4)] == [False, False, False, True]  # truncated by the env, at turn 4
    assert make("tests/Said-v0", max_turns=2).max_turns == 2  # an explicit limit wins
    with pytest.raises(TypeError, match="Said has no argument 'max_turn'. Did you mean 'max_turns'?"):
        make("tests/Said-v0", max_turn=2)


def test_a_text_env_made_by_a_registered_factory_is_made_as_itself() -> None:
    if "tests/SaidByFactory-v0" not in gymnasium.registry:
        gymnasium.register("tests/SaidByFactory-v0", lambda: Said(max_turns=5))
    env = make("tests/SaidByFactory-v0")
    assert type(env) is Said and env.reward_weights == {"said": 1.0} and env.max_turns == 5
    with pytest.raises(TypeError, match="tests/SaidByFactory-v0 is made by a factory that takes no max_turns"):
        make("tests/SaidByFactory-v0", max_turns=2)  # not dropped in silence


def test_gymnasiums_checker_gets_the_env_without_gymnasium_makes_wrappers() -> None:
    """Gymnasium's checker would warn that the env "is different from the unwrapped version"."""
    if "tests/PlainVowels-v0" not in gymnasium.registry:
        gymnasium.register("tests/PlainVowels-v0", VowelGame, max_episode_steps=3)
    wrapped = make("tests/PlainVowels-v0")
    assert isinstance(wrapped, GymnasiumTextEnv) and wrapped.env.unwrapped is not wrapped.env  # TimeLimit kept
    assert check_gymnasium(wrapped).detail == "no warnings"


def test_a_plain_env_that_reports_its_own_components_metrics_and_won() -> None:
    env = make(ScoredVowelGame)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("ab")  # half vowels: not more than half, not won
    assert reward == 0.5 and not terminated
    assert info["rewards"] == {"reward": 0.5, "vowels": 0.5, "length": 2.0}
    assert env.reward_weights == {"reward": 1.0, "vowels": 0.0, "length": 0.0}  # logged, not added
    assert info["metrics"] == {"share": 0.5, "won": False, "invalid_action": False}


def test_the_won_rule_can_be_set() -> None:
    env = make(VowelGame, won=lambda reward, terminated, info: reward >= 0.5)
    env.reset(seed=0)
    assert env.step("ab")[4]["metrics"]["won"] is True  # not terminated, but the rule says won


def test_the_checker_passes_a_plain_env_and_runs_gymnasiums_on_it() -> None:
    results = check_env(make(VowelGame), fuzz=200)
    gym = results[-1]
    assert gym.name == "gymnasium env_checker" and gym.passed
    assert all(r.passed for r in results)


class NotText(gymnasium.Env):
    def reset(self, *, seed=None, options=None):
        return [1, 2], {}

    def step(self, action):
        return "ok", 0.0, True, False, {}


class OldApi(VowelGame):
    def step(self, action):
        return "ok", 0.0, True, {}  # gym < 0.26: no truncated flag


@pytest.mark.parametrize(
    ("spec", "call", "message"),
    [
        (NotText, "reset", "NotText.reset() returned a list observation; turngym envs observe text (str)"),
        (OldApi, "step", "OldApi.step() must return (observation, reward, terminated, truncated, info)"),
        (lambda: 42, "make", "returned int, not an env (it needs reset() and step())"),
        (3.5, "make", "env must be an id, 'module:Class', 'path/to/file.py:Class', an env class or a factory"),
        (f"{PLAIN_PATH}:VowelGam", "make", "has no 'VowelGam'. Did you mean 'VowelGame'?"),
        ("no/such/file.py:Env", "make", "no such file: no/such/file.py"),
        ("no_such_module:Env", "make", "cannot import 'no_such_module'"),
    ],
)
def test_plain_env_mistakes_are_one_line_errors(spec, call, message) -> None:
    with pytest.raises((TypeError, ImportError, AttributeError), match=re.escape(message)):
        env = make(spec)
        env.reset(seed=0)
        env.step("a")


class OverridesStep(TextEnv):
    def reset(self, *, seed=None, options=None):
        return "hi", {}

    def step(self, action):
        return "ok", 0.0, True, False, {}


class ReturnsTuple(TextEnv):
    default_reward_weights = {"won": 1.0}

    def on_reset(self, options):
        return "go"

    def on_step(self, action):
        return "ok", 1.0, True, False, {}


class ResetReturnsTuple(ReturnsTuple):
    def on_reset(self, options):
        return "go", {}


class NoSuperInit(ReturnsTuple):
    def __init__(self, size: int = 3) -> None:
        self.size = size


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (OverridesStep, "OverridesStep overrides reset() and step() but not on_reset and on_step: a TextEnv subclass"),
        (ReturnsTuple, "ReturnsTuple.on_step must return a Turn(feedback, rewards={...}, terminated=..."),
        (ResetReturnsTuple, "on_reset must return the first observation as a str, got tuple (return only the"),
        (NoSuperInit, "NoSuperInit.__init__ must call super().__init__("),
    ],
)
def test_text_env_hook_misuse_names_the_fix(cls, message) -> None:
    with pytest.raises(TypeError, match=re.escape(message)):
        env = cls()
        env.reset(seed=0)
        env.step("a")


def test_collect_groups_takes_a_plain_env_class_or_path(tiny_model_dir) -> None:
    from transformers import AutoTokenizer

    generator = ScriptedGenerator(AutoTokenizer.from_pretrained(tiny_model_dir), lambda prompt: "aaa")
    for spec in (VowelGame, f"{PLAIN_PATH}:VowelGame"):
        [group] = collect_groups(spec, [5], 2, generator, progress=False)
        assert group.env_id == env_name(spec)
        assert [t.num_turns for t in group.trajectories] == [1, 1]
        assert all(t.metrics["won"] and t.rewards == {"reward": 1.0} for t in group.trajectories)


def test_collect_groups_on_a_plain_env_with_real_vllm(vllm_tiny) -> None:
    from tests.agent.test_rollout import check_token_layout

    sampling = SamplingParams(temperature=1.0, max_tokens=16, seed=0)
    groups = collect_groups(
        VowelGame, [0, 1], 3, vllm_tiny, sampling=sampling, max_turns=3, max_context_tokens=400, progress=False
    )
    assert [g.env_id for g in groups] == ["tests.envs.plain_env:VowelGame"] * 2
    for group in groups:
        for t in group.trajectories:
            check_token_layout(t, vllm_tiny.tokenizer)
            assert set(t.rewards) == {"reward"} and t.reward == pytest.approx(sum(x.reward for x in t.turns))
            assert t.metrics["won"] == (t.stop_reason == "terminated")  # VowelGame ends only on a win


def test_cli_checks_and_plays_a_plain_env() -> None:
    check = turngym("check", f"{PLAIN_PATH}:VowelGame", "--fuzz", "200")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "all checks passed" in check.stdout and "gymnasium env_checker" in check.stdout
    play = turngym("play", f"{PLAIN_PATH}:VowelGame", "--seed", "1", stdin="xyz\naei\n")
    assert play.returncode == 0, play.stderr
    assert "0.00 of your letters were vowels. Try again." in play.stdout
    assert "Result: WON after 2 turns (terminated); total reward +1" in play.stdout


def test_a_model_plays_a_plain_env_named_by_file_path(tiny_model_dir) -> None:
    proc = turngym(
        "play", f"{PLAIN_PATH}:VowelGame", "--model", str(tiny_model_dir), "--backend", "hf",
        "--seed", "0", "--max-tokens", "8", "-k", "max_turns=2",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Reply with a word where more than half the letters are vowels" in proc.stdout
    assert "model:" in proc.stdout and "of your letters were vowels" in proc.stdout
    assert re.search(r"Result: (WON|not won) after [12] turns", proc.stdout)


class Kwargs(gymnasium.Env):
    """A plain env whose constructor swallows any keyword."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def reset(self, *, seed=None, options=None):
        return "go", {}

    def step(self, action):
        return "ok", 1.0, False, False, {}


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
