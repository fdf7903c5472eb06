"""Mastermind: find a secret code of digits; each guess gets black and white peg counts."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from typing_extensions import override

from turngym.envs.core import TextEnv, Turn, count_of, last_bracketed

INVALID_WEIGHT = -0.1


MAX_CODE_LENGTH = 12


def score_guess(code: tuple[int, ...], guess: tuple[int, ...]) -> tuple[int, int]:
    """Return (black, white): right digit in the right place, right digit in the wrong place."""
    black = sum(c == g for c, g in zip(code, guess, strict=True))
    common = sum((Counter(code) & Counter(guess)).values())
    return black, common - black


class Mastermind(TextEnv):
    """Guess a code of `code_length` digits from 1..`num_colors` in `[1 2 3 4]` form.

    Feedback: black pegs (right digit, right place) and white pegs (right digit, wrong place).

    Reward components: `won`, `invalid` (a guess of the wrong shape).
    """

    default_reward_weights = {"won": 1.0, "invalid": INVALID_WEIGHT}
    default_max_turns = 10

    def __init__(self, code_length: int = 4, num_colors: int = 6, allow_duplicates: bool = True, **kwargs: Any) -> None:
        if not 1 <= num_colors <= 9:
            raise ValueError(f"num_colors must be in 1..9 (digits), got {num_colors}")
        if not 1 <= code_length <= MAX_CODE_LENGTH:
            raise ValueError(f"Mastermind: code_length must be in 1..{MAX_CODE_LENGTH}, got {code_length}")
        if not allow_duplicates and code_length > num_colors:
            raise ValueError(f"cannot make a code of length {code_length} from {num_colors} digits")
        super().__init__(**kwargs)
        self.code_length, self.num_colors, self.allow_duplicates = code_length, num_colors, allow_duplicates

    @override
    def on_reset(self, options: dict[str, Any]) -> str:
        digits = self.np_random.choice(
            range(1, self.num_colors + 1), size=self.code_length, replace=self.allow_duplicates
        )
        self.code = tuple(int(d) for d in digits)
        example = " ".join(str(1 + i % self.num_colors) for i in range(self.code_length))
        repeats = "may repeat" if self.allow_duplicates else "are all different"
        return (
            f"Find my secret code: {self.code_length} digits, each from 1 to {self.num_colors} "
            f"(digits {repeats}). After each guess I tell you the black pegs (right digit in the right "
            f"place) and white pegs (right digit in the wrong place). You have {count_of(self.max_turns, 'guess')}. "
            f"Reply with your guess in square brackets, for example [{example}]."
        )

    @override
    def valid_action(self) -> str | None:
        return "[" + " ".join(str(1 + i % self.num_colors) for i in range(self.code_length)) + "]"

    @override
    def on_step(self, action: str) -> Turn:
        left = self.max_turns - self.turn
        guess, problem = self._parse(last_bracketed(action))
        if guess is None:
            return Turn(
                f"Invalid guess: {problem} {count_of(left, 'guess')} left.",
                {"invalid": 1.0},
                metrics={"invalid_action": True},
            )
        black, white = score_guess(self.code, guess)
        shown = " ".join(map(str, guess))
        if black == self.code_length:
            return Turn(
                f"[{shown}] is the code. You won in {count_of(self.turn, 'guess')}.",
                {"won": 1.0},
                terminated=True,
                metrics={"won": True, "guesses": self.turn},
            )
        return Turn(
            f"[{shown}]: {black} black, {white} white. {count_of(left, 'guess')} left.",
            metrics={"black": black, "white": white},
        )

    def _parse(self, move: str | None) -> tuple[tuple[int, ...] | None, str]:
        shape = f"give {self.code_length} digits from 1 to {self.num_colors} in square brackets, e.g. [1 2 3 4]."
        if move is None or not re.fullmatch(r"[\d\s,]*", move):
            return None, shape
        digits = tuple(int(d) for d in re.findall(r"\d", move))
        if len(digits) != self.code_length or not all(1 <= d <= self.num_colors for d in digits):
            return None, shape
        if not self.allow_duplicates and len(set(digits)) != len(digits):
            return None, "the digits must all be different."
        return digits, ""
