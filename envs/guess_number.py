"""GuessNumber: find a secret whole number; the env answers "higher" or "lower"."""

from __future__ import annotations

from typing import Any

from typing_extensions import override

from turngym.envs.core import TextEnv, Turn, count_bracketed, count_of, last_bracketed, parse_int

INVALID_WEIGHT = -0.1  # per invalid, out-of-range or repeated guess
RULED_OUT_WEIGHT = 0.0  # per guess the earlier feedback had already ruled out (a shaping component, off by default)
SEVERAL_GUESSES_WEIGHT = 0.0  # per reply with more than one bracketed part (a shaping component, off by default)


class GuessNumber(TextEnv):
    """Guess a secret integer in `[low, high]`; feedback is higher / lower / out of range / already guessed.

    Binary search needs ceil(log2(high - low + 2)) guesses: 7 for 1..100, the default turn budget.

    Reward components: `won` (1 on the winning guess), `invalid` (1 per unusable guess),
    `ruled_out` (1 per guess outside the range the earlier answers left open, e.g. [3] after "higher
    than 5"; weight 0 by default: give it a negative weight to teach reading the feedback),
    `several_guesses` (1 per reply with more than one `[...]`, e.g. "[3] or [4]": only the last
    counts, so such a reply hides its guess among others; weight 0 by default: give it a negative
    weight to teach one guess per reply).

    Example:
        >>> env = GuessNumber(low=1, high=10)
        >>> obs, _ = env.reset(seed=0)
        >>> env.step("[5]")[0]
        '5 is wrong: the number is higher than 5. 6 guesses left.'
        >>> env.step("I am sure it is [9]")[0]
        'Correct! The number was 9. You won in 2 guesses.'
    """

    default_reward_weights = {
        "won": 1.0,
        "invalid": INVALID_WEIGHT,
        "ruled_out": RULED_OUT_WEIGHT,
        "several_guesses": SEVERAL_GUESSES_WEIGHT,
    }
    default_max_turns = 7

    def __init__(self, low: int = 1, high: int = 100, **kwargs: Any) -> None:
        if high < low:
            raise ValueError(f"GuessNumber needs low <= high, got low={low}, high={high}")
        super().__init__(**kwargs)
        self.low, self.high = low, high

    @override
    def on_reset(self, options: dict[str, Any]) -> str:
        self.secret = int(self.np_random.integers(self.low, self.high + 1))
        self.guessed: set[int] = set()
        self.open_low, self.open_high = self.low, self.high  # what the answers so far leave open
        return (
            f"I am thinking of a whole number between {self.low} and {self.high} (inclusive). "
            f"You have {count_of(self.max_turns, 'guess')}. After each guess I say whether the number is higher "
            f"or lower. Reply with your guess in square brackets, for example [{(self.low + self.high) // 2}]."
        )

    @override
    def valid_action(self) -> str | None:
        middle = (self.open_low + self.open_high) // 2
        for offset in range(len(self.guessed) + 1):  # at most len(guessed) numbers near the middle are taken
            for guess in (middle - offset, middle + offset):
                if self.low <= guess <= self.high and guess not in self.guessed:
                    return f"[{guess}]"
        return None

    @override
    def state_key(self) -> str:
        """The numbers still possible, the guesses left and the numbers guessed, e.g. `"3..4, 2 left, 2 tried"`.

        The guessed numbers matter for the reward of the next guess (repeating one is invalid,
        guessing an excluded one is ruled out), so two histories that reached the same open range
        with different guesses are different states.
        """
        tried = f", {' '.join(map(str, sorted(self.guessed)))} tried" if self.guessed else ""
        return f"{self.open_low}..{self.open_high}, {self.max_turns - self.turn} left{tried}"

    @override
    def on_step(self, action: str) -> Turn:
        left = self.max_turns - self.turn
        several = {"several_guesses": float(count_bracketed(action) > 1)}
        guess = parse_int(last_bracketed(action))
        if guess is None:
            example = (self.low + self.high) // 2  # in range, as in the first observation
            problem = f"Invalid guess: put one whole number in square brackets, for example [{example}]."
        elif not self.low <= guess <= self.high:
            problem = f"{guess} is out of range: the number is between {self.low} and {self.high}."
        elif guess in self.guessed:
            problem = f"You already guessed {guess}."
        else:
            problem = None
        if problem is not None:
            return Turn(f"{problem} {_left(left)}", {"invalid": 1.0, **several}, metrics={"invalid_action": True})
        self.guessed.add(guess)
        if guess == self.secret:
            return Turn(
                f"Correct! The number was {guess}. You won in {count_of(self.turn, 'guess')}.",
                {"won": 1.0, **several},
                terminated=True,
                metrics={"won": True, "guesses": self.turn, "ruled_out": False},
            )
        ruled_out = not self.open_low <= guess <= self.open_high
        if self.secret > guess:
            direction, self.open_low = "higher", max(self.open_low, guess + 1)
        else:
            direction, self.open_high = "lower", min(self.open_high, guess - 1)
        return Turn(
            f"{guess} is wrong: the number is {direction} than {guess}. {_left(left)}",
            {"ruled_out": float(ruled_out), **several},
            metrics={"ruled_out": ruled_out},
        )


def _left(n: int) -> str:
    return f"{count_of(n, 'guess')} left."
