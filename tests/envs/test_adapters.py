"""The textarena/ and reasoning_gym/ adapters through the real packages."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from tests.envs.solvers import binary_search, hanoi_moves
from tests.envs.test_cli_envs import NEEDS_MISSING_NLTK_DATA
from turngym.envs import UnknownEnvError, make
from turngym.envs.textarena_env import EnvUnavailableError


def test_textarena_guess_the_number_won_by_binary_search() -> None:
    env = make("textarena/GuessTheNumber-v0")  # 1..20, 10 turns
    for seed in range(10):
        obs, _ = env.reset(seed=seed)
        assert "between 1 and 20" in obs
        won, turns = binary_search(env, 1, 20, fmt="I guess [{}]")
        assert won and turns <= 5, f"seed {seed}"  # ceil(log2(21)) = 5


def test_textarena_win_reward_comes_from_close() -> None:
    env = make("textarena/GuessTheNumber-v0")
    env.reset(seed=0)
    won, _ = binary_search(env, 1, 20)
    assert won
    obs, reward, terminated, truncated, info = env.step("[1]")  # after the end: nothing more
    assert reward == 0.0 and terminated


def test_textarena_tower_of_hanoi_won_by_the_optimal_moves() -> None:
    env = make("textarena/TowerOfHanoi-v0")  # 3 disks
    obs, _ = env.reset(seed=0)
    assert "Tower of Hanoi with 3 disks" in obs
    moves = hanoi_moves(3)
    for k, (source, target) in enumerate(moves, start=1):
        obs, reward, terminated, truncated, info = env.step(f"I move [{source} {target}]")
        assert terminated == (k == len(moves)), obs
    assert len(moves) == 7 and reward == 1.0 and info["metrics"]["won"] and "Game over" in obs


def test_textarena_invalid_moves_get_feedback_not_exceptions() -> None:
    env = make("textarena/TowerOfHanoi-v0")
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step("[C A]")  # tower C is empty
    assert "invalid move" in obs and info["rewards"]["invalid"] == 1.0 and info["metrics"]["invalid_action"]
    assert not terminated


def test_textarena_an_invalid_move_that_ends_the_game_counts_as_invalid() -> None:
    env = make("textarena/GuessTheNumber-v0")
    env.reset(seed=0)
    _, _, terminated, _, info = env.step("hello")  # the first invalid move: a warning
    assert not terminated and info["metrics"]["invalid_action"]
    obs, _, terminated, _, info = env.step("hello again")  # the second ends the game
    assert terminated and obs.startswith("Game over: Invalid Move")
    assert info["rewards"]["invalid"] == 1.0 and info["metrics"]["invalid_action"] and not info["metrics"]["won"]


@pytest.mark.parametrize(
    ("game", "move", "expected"),
    [
        ("Countdown-v0", "[0 1 +]", "(100 + 75)"),  # these games put the observation kind first in its tuple
        ("Cryptarithm-v0", "[S 9]", "S → 9"),
        ("Slitherlink-v0", "[h 0 3]", "+───+"),
    ],
)
def test_textarena_games_whose_observations_are_ordered_differently_take_valid_moves(game, move, expected) -> None:
    env = make(f"textarena/{game}")
    env.reset(seed=0)
    obs, _, _, _, info = env.step(move)
    assert expected in obs and "could not process" not in obs
    assert not info["metrics"]["invalid_action"] and "env_error" not in info["metrics"]
    assert move not in obs  # the echo of the player's own move is left out


def test_textarena_seeding_is_per_instance_and_leaves_global_random_alone() -> None:
    a, b = make("textarena/Minesweeper-v0"), make("textarena/Minesweeper-v0")
    random.seed(1234)
    expected_next = random.Random(1234).random()
    first = a.reset(seed=5)[0]
    b.reset(seed=6)
    assert b.reset(seed=5)[0] == first
    assert a.step("[2 2]")[0] == b.step("[2 2]")[0]
    assert random.random() == expected_next  # TextArena's random.seed() calls did not leak


@NEEDS_MISSING_NLTK_DATA
def test_textarena_games_without_their_nltk_data_name_the_command_that_fetches_it() -> None:
    with pytest.raises(EnvUnavailableError) as caught:
        make("textarena/Wordle-v0")
    message = str(caught.value)
    assert message.startswith("textarena/Wordle-v0 needs nltk data from the network, which is not on this machine")
    command = message.partition("fetch it with: ")[2]
    python, _, rest = command.partition(" -m ")
    assert Path(python).resolve() == Path(sys.executable).resolve()  # this Python, so the data lands where it looks
    # every package TextArena's games load: nltk.download("words") and the tagger nltk.pos_tag needs
    offline = "(or play the offline word game turngym/WordGuess-v0)"
    assert rest == f"nltk.downloader words averaged_perceptron_tagger_eng {offline}"
    assert "\n" not in message


def test_textarena_errors_are_clear() -> None:
    with pytest.raises(EnvUnavailableError, match="is not a single-player game"):
        make("textarena/ConnectFour-v0")
    with pytest.raises(UnknownEnvError) as caught:
        make("textarena/GuessTheNumbr-v0")
    assert str(caught.value) == (
        "unknown TextArena game 'GuessTheNumbr-v0'. Did you mean textarena/GuessTheNumber-v0? "
        "`turngym envs list --textarena` lists the single-player games."
    )


def test_reasoning_gym_scores_with_its_own_scorer() -> None:
    env = make("reasoning_gym/basic_arithmetic")
    obs, _ = env.reset(seed=4)
    assert obs.startswith(env.entry["question"]) and "\\boxed{}" in obs
    obs, reward, terminated, _, info = env.step(f"\\boxed{{{env.entry['answer']}}}")
    assert obs == "Correct!" and reward == pytest.approx(1.1) and terminated
    env.reset(seed=4)
    assert env.dataset.score_answer("not a number", env.entry) == 0.0
    assert env.step("\\boxed{not a number}")[4]["rewards"] == {"correct": 0.0, "format": 1.0}


def test_reasoning_gym_items_follow_the_seed() -> None:
    a, b = make("reasoning_gym/countdown"), make("reasoning_gym/countdown")
    assert a.reset(seed=9)[0] == b.reset(seed=9)[0]
    assert len({a.reset(seed=s)[0] for s in range(5)}) == 5


@pytest.mark.parametrize(
    ("name", "suggestions"),
    [
        ("countdwn", "reasoning_gym/countdown"),
        ("basic", "reasoning_gym/basic_arithmetic"),  # a prefix counts as close
        ("count", "reasoning_gym/countdown, reasoning_gym/count_bits or reasoning_gym/count_primes"),
    ],
)
def test_reasoning_gym_unknown_dataset_names_a_few_close_ones_and_the_full_list_command(name, suggestions) -> None:
    import reasoning_gym

    with pytest.raises(UnknownEnvError) as caught:
        make(f"reasoning_gym/{name}")
    assert str(caught.value) == (
        f"unknown reasoning-gym dataset {name!r}. Did you mean {suggestions}? "
        f"`turngym envs list --reasoning-gym` lists all {len(reasoning_gym.factory.DATASETS)} datasets."
    )
