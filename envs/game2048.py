"""Game2048: slide and merge tiles on a square board; reach the target tile."""

from __future__ import annotations

import math
from typing import Any

from typing_extensions import override

from turngym.envs.core import TextEnv, Turn, last_bracketed

INVALID_WEIGHT = -0.1  # unparseable moves and moves that change nothing
PROGRESS_WEIGHT = 0.1
FOUR_PROBABILITY = 0.1  # a new tile is a 4 with this probability, else a 2

MOVES = {
    "up": "up", "u": "up", "↑": "up",
    "down": "down", "d": "down", "↓": "down",
    "left": "left", "l": "left", "←": "left",
    "right": "right", "r": "right", "→": "right",
}  # fmt: skip

Board = list[list[int]]


def slide_row_left(row: list[int]) -> tuple[list[int], int]:
    """Slide one row to the left, merging equal neighbours once; return (new row, merged points).

    Example:
        >>> slide_row_left([2, 2, 2, 2])
        ([4, 4, 0, 0], 8)
        >>> slide_row_left([4, 0, 4, 8])
        ([8, 8, 0, 0], 8)
    """
    tiles = [t for t in row if t]
    merged, points, i = [], 0, 0
    while i < len(tiles):
        if i + 1 < len(tiles) and tiles[i] == tiles[i + 1]:
            merged.append(2 * tiles[i])
            points += 2 * tiles[i]
            i += 2
        else:
            merged.append(tiles[i])
            i += 1
    return merged + [0] * (len(row) - len(merged)), points


def apply_move(board: Board, move: str) -> tuple[Board, int]:
    """Return the board after `move` (up/down/left/right) and the points merged, without spawning."""
    size = len(board)
    # Express every move as a left slide over rows read in the move's direction.
    lines = {
        "left": [[(r, c) for c in range(size)] for r in range(size)],
        "right": [[(r, c) for c in reversed(range(size))] for r in range(size)],
        "up": [[(r, c) for r in range(size)] for c in range(size)],
        "down": [[(r, c) for r in reversed(range(size))] for c in range(size)],
    }[move]
    new = [row[:] for row in board]
    total = 0
    for cells in lines:
        values, points = slide_row_left([board[r][c] for r, c in cells])
        total += points
        for (r, c), value in zip(cells, values, strict=True):
            new[r][c] = value
    return new, total


MIN_SIZE, MAX_SIZE = 2, 16  # a 16x16 board is already ~1,500 characters per observation
MAX_TARGET = 2**20


class Game2048(TextEnv):
    """2048 on a `size` x `size` board; reach `target` (a power of two).

    Moves go in square brackets as words (`[up]`), initials (`[u]`) or arrows (`[↑]`).
    Tile spawns use the env's seeded RNG. A move that changes nothing is reported and costs a turn.
    The episode terminates on reaching the target (won) or when no move is possible (lost).

    Reward components:
        merge_score: points merged this move (the game's score); weight 0 by default.
        progress: increase of log2(max tile) this move, so an episode sums to
            log2(final max tile) - log2(starting max tile).
        won: 1 when the target tile is reached.
        invalid: 1 for an unparseable move or a move that changes nothing.
    """

    default_reward_weights = {
        "merge_score": 0.0,
        "progress": PROGRESS_WEIGHT,
        "won": 1.0,
        "invalid": INVALID_WEIGHT,
    }
    default_max_turns = 100

    def __init__(self, size: int = 4, target: int = 2048, **kwargs: Any) -> None:
        if not MIN_SIZE <= size <= MAX_SIZE:
            raise ValueError(
                f"Game2048: size must be in {MIN_SIZE}..{MAX_SIZE} (a bigger board does not fit a model's context), "
                f"got {size}"
            )
        if not 4 <= target <= MAX_TARGET or target & (target - 1):
            raise ValueError(f"Game2048: target must be a power of two in 4..{MAX_TARGET}, got {target}")
        super().__init__(**kwargs)
        self.size, self.target = size, target

    @override
    def on_reset(self, options: dict[str, Any]) -> str:
        self.board: Board = [[0] * self.size for _ in range(self.size)]
        self.score = 0
        self._spawn()
        self._spawn()
        return (
            f"Let's play 2048 on a {self.size}x{self.size} board. Each move slides all tiles one way; two "
            f"equal tiles that collide merge into their sum, and a new 2 or 4 appears. Reach a {self.target} "
            "tile to win; the game ends when no move is possible. Reply with one move in square brackets: "
            f"[up], [down], [left] or [right].\n\n{self.render_board()}"
        )

    @override
    def on_step(self, action: str) -> Turn:
        move = MOVES.get((last_bracketed(action) or "").lower())
        if move is None:
            return self._invalid("Invalid move: reply with [up], [down], [left] or [right].")
        new, points = apply_move(self.board, move)
        if new == self.board:
            return self._invalid(f"Moving {move} changes nothing; try another direction.")
        before = self.max_tile
        self.board = new
        self.score += points
        self._spawn()
        progress = math.log2(self.max_tile) - math.log2(before)
        rewards = {"merge_score": float(points), "progress": progress}
        metrics = {"max_tile": self.max_tile, "score": self.score}
        if self.max_tile >= self.target:
            return Turn(
                f"You reached {self.target}. You won!\n\n{self.render_board()}",
                {**rewards, "won": 1.0},
                terminated=True,
                metrics={**metrics, "won": True},
            )
        if not self.can_move():
            return Turn(
                f"No moves are possible. Game over.\n\n{self.render_board()}",
                rewards,
                terminated=True,
                metrics=metrics,
            )
        return Turn(f"You moved {move} (+{points} points).\n\n{self.render_board()}", rewards, metrics=metrics)

    @override
    def state_key(self) -> str:
        """The board and the moves left (the score so far does not change what comes next)."""
        cells = "/".join(",".join(map(str, row)) for row in self.board)
        return f"{cells}; {self.max_turns - self.turn} left"

    @property
    def max_tile(self) -> int:
        """The largest tile on the board."""
        return max(max(row) for row in self.board)

    @override
    def valid_action(self) -> str | None:
        moves = [m for m in ("up", "down", "left", "right") if apply_move(self.board, m)[0] != self.board]
        return f"[{moves[0]}]" if moves else None

    def can_move(self) -> bool:
        """True if some move changes the board."""
        return any(apply_move(self.board, m)[0] != self.board for m in ("up", "down", "left", "right"))

    def render_board(self) -> str:
        """The board as aligned text; `.` marks an empty cell."""
        width = max(len(str(self.target)), 4)
        rows = [" ".join(f"{(str(v) if v else '.'):>{width}}" for v in row) for row in self.board]
        return "\n".join(rows) + f"\nScore: {self.score}  Max tile: {self.max_tile}"

    def _spawn(self) -> None:
        empty = [(r, c) for r in range(self.size) for c in range(self.size) if not self.board[r][c]]
        r, c = empty[int(self.np_random.integers(len(empty)))]
        self.board[r][c] = 4 if self.np_random.random() < FOUR_PROBABILITY else 2

    def _invalid(self, problem: str) -> Turn:
        feedback = f"{problem}\n\n{self.render_board()}"
        return Turn(
            feedback,
            {"invalid": 1.0},
            metrics={"invalid_action": True, "max_tile": self.max_tile, "score": self.score},
        )
