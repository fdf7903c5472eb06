"""The TextEnv base contract and the action parsers."""

from __future__ import annotations

import re

import pytest

from turngym.envs import TextEnv, Turn, last_boxed, last_bracketed, parse_int
from turngym.envs.core import EPISODE_OVER_FEEDBACK, MAX_MOVE_CHARS


class Counter(TextEnv):
    """A tiny env for base-class tests: say [n] to add n; reaching 3 wins."""

    default_reward_weights = {"won": 1.0, "step": 0.5, "invalid": -0.25}
    default_max_turns = 4

    def on_reset(self, options):
        self.total = int(self.np_random.integers(0, 2))
        return f"Total is {self.total}. Add with [n]."

    def on_step(self, action):
        n = parse_int(last_bracketed(action))
        if n is None:
            return Turn("bad", {"invalid": 1.0}, metrics={"invalid_action": True})
        self.total += n
        if self.total >= 3:
            return Turn("win", {"won": 1.0, "step": 1.0}, terminated=True, metrics={"won": True})
        return Turn(f"total {self.total}", {"step": 1.0})


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[42]", "42"),
        ("I think [3] no wait [7]", "7"),  # the last bracketed move counts
        ("reasoning... [ up ] ", "up"),
        ("[a [b] c]", "b"),  # innermost pair without brackets inside
        ("no move here", None),
        ("[unclosed", None),
        ("[]", ""),
        ("[" + "x" * (MAX_MOVE_CHARS + 1) + "]", None),  # too long to be a move
        ("[" * 100_000 + "]" * 100_000, ""),
    ],
)
def test_last_bracketed(text, expected) -> None:
    assert last_bracketed(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"so \boxed{12}", "12"),
        (r"\boxed{1} then \boxed{\frac{1}{2}}", r"\frac{1}{2}"),  # nested braces, last box
        (r"\boxed{ {a}{b} }", "{a}{b}"),
        (r"\boxed{12", None),  # unbalanced
        (r"\boxed{1} and \boxed{2", "1"),  # the last balanced one
        ("no box", None),
    ],
)
def test_last_boxed(text, expected) -> None:
    assert last_boxed(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("42", 42),
        (" -7 ", -7),
        ("+3", 3),
        ("1,000", 1000),
        ("4.5", None),
        ("x", None),
        (None, None),
        ("9" * 19, None),
    ],
)
def test_parse_int(text, expected) -> None:
    assert parse_int(text) == expected


def test_reward_is_the_weighted_sum_and_weights_can_be_overridden() -> None:
    env = Counter(reward_weights={"step": 2.0})
    env.reset(seed=0)
    _, reward, _, _, info = env.step("[1]")
    assert info["rewards"] == {"won": 0.0, "step": 1.0, "invalid": 0.0}  # every component, zeros included
    assert reward == 2.0
    _, reward, _, _, _ = env.step("?")
    assert reward == -0.25


def test_unknown_reward_weight_names_the_components() -> None:
    with pytest.raises(ValueError, match=r"no reward component\(s\) \['bonus'\].*\['invalid', 'step', 'won'\]"):
        Counter(reward_weights={"bonus": 1.0})


def test_turn_limit_truncates_and_step_after_the_end_is_harmless() -> None:
    env = Counter(max_turns=2)
    env.reset(seed=0)
    assert env.step("x")[2:4] == (False, False)
    obs, _, terminated, truncated, _ = env.step("x")
    assert (terminated, truncated) == (False, True) and "Turn limit reached (2 turns)" in obs
    obs, reward, terminated, truncated, info = env.step("[5]")
    assert (obs, reward, terminated, truncated) == (EPISODE_OVER_FEEDBACK, 0.0, False, True)
    assert set(info["rewards"].values()) == {0.0}


def test_termination_wins_over_the_turn_limit() -> None:
    env = Counter(max_turns=1)
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step("[5]")
    assert (terminated, truncated) == (True, False) and info["metrics"]["won"] is True


def test_metrics_always_carry_won_and_invalid_action() -> None:
    env = Counter()
    env.reset(seed=0)
    assert env.step("[0]")[4]["metrics"] == {"won": False, "invalid_action": False}
    assert env.step("?")[4]["metrics"] == {"won": False, "invalid_action": True}


def test_non_text_actions_are_a_type_error() -> None:
    env = Counter()
    env.reset(seed=0)
    with pytest.raises(TypeError, match="actions are text"):
        env.step(3)


def test_undeclared_components_are_an_env_bug() -> None:
    class Sloppy(Counter):
        def on_step(self, action):
            return Turn("x", {"bonus": 1.0})

    env = Sloppy()
    env.reset(seed=0)
    message = "undeclared reward component(s) ['bonus']; add them to default_reward_weights"
    with pytest.raises(ValueError, match=re.escape(message)):
        env.step("[1]")


def test_seed_fixes_the_episode_and_render_shows_the_last_observation() -> None:
    env = Counter(render_mode="ansi")
    firsts = {env.reset(seed=s)[0] for s in range(20)}
    assert firsts == {"Total is 0. Add with [n].", "Total is 1. Add with [n]."}
    assert env.reset(seed=5)[0] == env.reset(seed=5)[0]
    env.step("[1]")
    assert env.render().startswith("total")


def test_counts_take_the_right_number_in_what_the_model_reads() -> None:
    from turngym.envs.core import count_of

    assert [count_of(1, "guess"), count_of(2, "guess"), count_of(1, "turn"), count_of(0, "attempt")] == [
        "1 guess", "2 guesses", "1 turn", "0 attempts"
    ]  # fmt: skip
    from turngym.envs import make

    env = make("turngym/GuessNumber-v0", max_turns=1)
    obs, _ = env.reset(seed=0)
    assert "You have 1 guess." in obs
    obs, *_ = env.step("[0]")
    assert "Turn limit reached (1 turn)." in obs
