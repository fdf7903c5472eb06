"""GuessNumber, Mastermind and WordGuess: exact scripted episodes and scripted solvers."""

from __future__ import annotations

import pytest

from tests.envs.solvers import binary_search, play_mastermind, play_word_guess
from turngym.envs import make
from turngym.envs.mastermind import score_guess
from turngym.envs.word_guess import common_words, letter_feedback


def test_guess_number_scripted_episode() -> None:
    env = make("turngym/GuessNumber-v0", low=1, high=10, max_turns=5)
    obs, _ = env.reset(seed=0)
    assert "between 1 and 10" in obs and "[5]" in obs
    secret = env.secret
    low_guess, high_guess = (1, 10) if secret not in (1, 10) else (2, 9)
    steps = [
        ("no brackets", "Invalid guess: put one whole number in square brackets, for example [5].", -0.1),
        ("[11]", "11 is out of range", -0.1),
        (f"[{low_guess}]", f"the number is {'higher' if secret > low_guess else 'lower'}", 0.0),
        (f"[{low_guess}]", f"You already guessed {low_guess}", -0.1),
        (f"final answer: [{secret}]", f"Correct! The number was {secret}.", 1.0),
    ]
    for action, expected, reward in steps:
        obs, r, terminated, truncated, info = env.step(action)
        assert expected in obs and r == pytest.approx(reward)
    assert terminated and not truncated and info["metrics"]["won"] and info["metrics"]["guesses"] == 5


def test_guess_number_marks_guesses_the_feedback_ruled_out() -> None:
    env = make("turngym/GuessNumber-v0", low=1, high=10, max_turns=6, reward_weights={"ruled_out": -0.5})
    env.reset(seed=0)
    env.secret = 7  # the answers below follow from it
    steps = [  # (guess, ruled out by the answers before it)
        ("[3]", False),  # higher: 4..10 open
        ("[2]", True),  # below the open range
        ("[9]", False),  # lower: 4..8 open
        ("[10]", True),  # above it
        ("[5]", False),  # higher: 6..8 open
    ]
    for action, ruled_out in steps:
        _, reward, _, _, info = env.step(action)
        assert info["rewards"]["ruled_out"] == float(ruled_out) and info["metrics"]["ruled_out"] is ruled_out
        assert reward == pytest.approx(-0.5 * ruled_out)
    _, reward, terminated, _, info = env.step("[7]")
    assert terminated and reward == 1.0 and info["rewards"]["ruled_out"] == 0.0


def test_guess_number_charges_replies_with_several_guesses() -> None:
    env = make("turngym/GuessNumber-v0", low=1, high=10, max_turns=6, reward_weights={"several_guesses": -0.5})
    env.reset(seed=0)
    env.secret = 7
    steps = [  # (reply, several bracketed parts, reward: -0.5 if several, -0.1 if invalid, 1 if won)
        ("[3]", False, 0.0),  # one guess: higher
        ("maybe [4] or [5]", True, -0.5),  # the last counts: 5, higher
        ("[8] [5]", True, -0.5 - 0.1),  # the last is 5 again: already guessed, invalid
        ("[x] and [y]", True, -0.5 - 0.1),  # no number: invalid
        ("[6] then [7]", True, 1.0 - 0.5),  # the last wins
    ]
    for action, several, reward in steps:
        _, r, terminated, _, info = env.step(action)
        assert info["rewards"]["several_guesses"] == float(several) and r == pytest.approx(reward)
    assert terminated and info["metrics"]["won"]


def test_guess_number_state_key_is_the_open_range_the_turns_left_and_the_guesses() -> None:
    env = make("turngym/GuessNumber-v0", low=1, high=4, max_turns=3).unwrapped
    keys = []
    for actions in (["[3]", "no idea"], ["[3]", "[4]"], ["[3]", "[3]"], ["[3]", "[9]"]):
        env.reset(seed=0)
        env.secret = 1
        for action in actions:
            env.step(action)
        keys.append(env.state_key())
    # invalid, repeated and out-of-range guesses change only the turns left; a ruled-out guess ([4]
    # after "lower than 3") is remembered, since repeating it would now be invalid, not ruled out
    after_three = "1..2, 1 left, 3 tried"
    assert keys == [after_three, "1..2, 1 left, 3 4 tried", after_three, after_three]
    env.reset(seed=0)
    assert env.state_key() == "1..4, 3 left"


def test_binary_search_wins_guess_number_within_seven_turns_on_100_seeds() -> None:
    env = make("turngym/GuessNumber-v0")  # 1..100, 7 turns
    turns = []
    for seed in range(100):
        env.reset(seed=seed)
        won, n = binary_search(env, 1, 100)
        assert won, f"seed {seed}"
        turns.append(n)
    assert max(turns) <= 7  # ceil(log2(101)) = 7


@pytest.mark.parametrize(
    "code, guess, expected",
    [
        ((1, 2, 3, 4), (1, 2, 3, 4), (4, 0)),
        ((1, 2, 3, 4), (4, 3, 2, 1), (0, 4)),
        ((1, 1, 2, 2), (1, 2, 1, 2), (2, 2)),
        ((1, 1, 2, 2), (1, 1, 1, 1), (2, 0)),  # only two 1s in the code
        ((6, 5, 4, 3), (1, 1, 1, 1), (0, 0)),
        ((1, 2, 3, 3), (3, 3, 3, 1), (1, 2)),  # black at position 3; one 3 and the 1 elsewhere
    ],
)
def test_mastermind_pegs(code, guess, expected) -> None:
    assert score_guess(code, guess) == expected


def test_mastermind_feedback_and_invalid_shapes() -> None:
    env = make("turngym/Mastermind-v0")
    env.reset(seed=4)
    code = env.code
    wrong = tuple(7 - d for d in code)  # digit d -> 7-d stays in 1..6
    obs, reward, *_ = env.step(f"[{' '.join(map(str, wrong))}]")
    black, white = score_guess(code, wrong)
    assert f"{black} black, {white} white" in obs and reward == 0.0
    for bad in ["[1 2 3]", "[1 2 3 7]", "[a b c d]", "1 2 3 4"]:
        obs, reward, *_, info = env.step(bad)
        assert obs.startswith("Invalid guess") and reward == pytest.approx(-0.1) and info["metrics"]["invalid_action"]
    obs, reward, terminated, _, info = env.step("[" + "".join(map(str, code)) + "]")  # digits without spaces
    assert terminated and reward == 1.0 and info["metrics"]["won"]


def test_consistent_guessing_wins_mastermind_on_fixed_seeds() -> None:
    env = make("turngym/Mastermind-v0")
    for seed in range(20):
        env.reset(seed=seed)
        won, turns = play_mastermind(env)
        assert won and turns <= 10, f"seed {seed}"


@pytest.mark.parametrize(
    "secret, guess, expected",
    [
        ("crane", "crane", "GGGGG"),
        ("crane", "slate", "--G-G"),
        ("apple", "paper", "YYGY-"),
        ("crane", "eerie", "--Y-G"),  # a single E in the secret, already matched green
        (
            "abbey",
            "bobby",
            "Y-G-G",
        ),  # middle B green; the first B takes the one B left, the fourth gets nothing
        ("speed", "abide", "---YY"),
    ],
)
def test_letter_feedback(secret, guess, expected) -> None:
    assert letter_feedback(secret, guess) == expected


def test_word_list_has_2000_distinct_common_five_letter_words() -> None:
    words = common_words()
    assert len(words) >= 2000 and len(set(words)) == len(words)
    assert all(len(w) == 5 and w.isascii() and w.isalpha() and w.islower() for w in words)
    assert {"about", "house", "water", "light"} <= set(words)


def test_word_guess_feedback_and_validation() -> None:
    env = make("turngym/WordGuess-v0", words=["crane", "slate"], require_known_word=True)
    env.reset(seed=0)
    secret, other = env.secret, ({"crane", "slate"} - {env.secret}).pop()
    obs, reward, *_ = env.step(f"[{other}]")
    assert obs.splitlines()[1] == " ".join(letter_feedback(secret, other)) and reward == 0.0
    obs, reward, *_ = env.step("[zzzzz]")
    assert "not in the word list" in obs and reward == pytest.approx(-0.1)
    obs, reward, *_ = env.step("[toolong]")
    assert obs.startswith("Invalid guess")
    obs, reward, terminated, _, info = env.step(f"[{secret.upper()}]")
    assert terminated and info["metrics"]["won"] and reward == 1.0 and info["rewards"]["greens"] == 1.0


def test_partition_solver_wins_word_guess_on_fixed_seeds() -> None:
    env = make("turngym/WordGuess-v0")
    words = list(common_words())
    for seed in range(10):
        env.reset(seed=seed)
        won, turns = play_word_guess(env, words)
        assert won and turns <= 6, f"seed {seed}: secret {env.secret}"
