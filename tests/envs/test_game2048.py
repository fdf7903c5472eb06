"""Game2048: the slide/merge rules, rewards, win and loss, seeded spawns."""

from __future__ import annotations

import math

import pytest

from turngym.envs import make
from turngym.envs.game2048 import apply_move, slide_row_left


@pytest.mark.parametrize(
    "row, expected, points",
    [
        ([2, 2, 2, 2], [4, 4, 0, 0], 8),
        ([2, 2, 4, 0], [4, 4, 0, 0], 4),  # a merged tile does not merge again in the same move
        ([4, 0, 4, 8], [8, 8, 0, 0], 8),
        ([2, 4, 8, 16], [2, 4, 8, 16], 0),
        ([0, 0, 0, 2], [2, 0, 0, 0], 0),
        ([8, 8, 8, 0], [16, 8, 0, 0], 16),
    ],
)
def test_slide_row_left(row, expected, points) -> None:
    assert slide_row_left(row) == (expected, points)


def test_apply_move_in_each_direction() -> None:
    board = [[2, 0, 2, 0], [0, 0, 0, 0], [2, 0, 0, 0], [4, 0, 0, 4]]
    assert apply_move(board, "left") == ([[4, 0, 0, 0], [0, 0, 0, 0], [2, 0, 0, 0], [8, 0, 0, 0]], 12)
    assert apply_move(board, "right") == ([[0, 0, 0, 4], [0, 0, 0, 0], [0, 0, 0, 2], [0, 0, 0, 8]], 12)
    assert apply_move(board, "up") == ([[4, 0, 2, 4], [4, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], 4)
    assert apply_move(board, "down") == ([[0, 0, 0, 0], [0, 0, 0, 0], [4, 0, 0, 0], [4, 0, 2, 4]], 4)


def test_a_move_merges_spawns_and_reports_rewards() -> None:
    env = make("turngym/Game2048-v0")
    env.reset(seed=0)
    env.board = [[2, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    obs, reward, terminated, _, info = env.step("I slide [left]")
    assert env.board[0][0] == 4 and sum(v != 0 for row in env.board for v in row) == 2  # the 4 plus one spawn
    assert info["rewards"]["merge_score"] == 4.0
    assert info["rewards"]["progress"] == pytest.approx(math.log2(4) - math.log2(2))  # max tile 2 -> 4
    assert reward == pytest.approx(0.1 * 1.0)  # progress weight 0.1; merge_score weight 0
    assert "+4 points" in obs and "Score: 4" in obs and not terminated


@pytest.mark.parametrize("move", ["[up]", "[U]", "[↑]", "[Up] "])
def test_moves_as_words_initials_or_arrows(move) -> None:
    env = make("turngym/Game2048-v0")
    env.reset(seed=0)
    env.board = [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 2, 0]]
    obs, *_ = env.step(move)
    assert env.board[0][2] == 2 and "You moved up" in obs


def test_invalid_and_no_op_moves_cost_a_turn_without_spawning() -> None:
    env = make("turngym/Game2048-v0")
    env.reset(seed=0)
    env.board = [[2, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    obs, reward, *_, info = env.step("[left]")
    assert "changes nothing" in obs and reward == pytest.approx(-0.1) and info["metrics"]["invalid_action"]
    obs, reward, *_ = env.step("[sideways]")
    assert obs.startswith("Invalid move") and reward == pytest.approx(-0.1)
    assert env.board == [[2, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]] and env.turn == 2
    # the state key (for step credit) is the board and the moves left, not the score
    left = env.unwrapped.max_turns - 2
    assert env.unwrapped.state_key() == f"2,0,0,0/0,0,0,0/0,0,0,0/0,0,0,0; {left} left"


def test_reaching_the_target_wins() -> None:
    env = make("turngym/Game2048-v0", size=3, target=16)
    env.reset(seed=0)
    env.board = [[8, 8, 0], [0, 0, 0], [0, 0, 0]]
    _, reward, terminated, _, info = env.step("[left]")
    assert terminated and info["metrics"]["won"] and info["rewards"]["won"] == 1.0
    assert reward == pytest.approx(1.0 + 0.1 * (math.log2(16) - math.log2(8)))


def test_a_full_board_without_merges_is_lost() -> None:
    env = make("turngym/Game2048-v0", size=2, target=64)
    env.reset(seed=0)
    env.board = [[4, 8], [0, 16]]
    # left gives [[4, 8], [16, 0]]; the spawn (2 or 4) fills the corner and no neighbours are equal
    obs, _, terminated, truncated, info = env.step("[left]")
    assert env.board[1][1] in (2, 4)
    assert terminated and not truncated and not info["metrics"]["won"] and "No moves are possible" in obs
    assert not env.can_move()


def test_tile_spawns_follow_the_seed() -> None:
    a, b = make("turngym/Game2048-v0"), make("turngym/Game2048-v0")
    assert a.reset(seed=7)[0] == b.reset(seed=7)[0]
    for move in ["[up]", "[left]", "[down]", "[right]"] * 5:
        assert a.step(move)[0] == b.step(move)[0]
    boards = {make("turngym/Game2048-v0").reset(seed=s)[0] for s in range(10)}
    assert len(boards) > 1
