"""WordGuess: Wordle-style five-letter word guessing with per-letter feedback."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from importlib import resources
from typing import Any

from typing_extensions import override

from turngym.envs.core import TextEnv, Turn, count_of, last_bracketed

INVALID_WEIGHT = -0.1
WORD_LENGTH = 5
CORRECT, PRESENT, ABSENT = "G", "Y", "-"  # right spot, elsewhere in the word, not in the word


@functools.cache
def common_words() -> tuple[str, ...]:
    """The bundled list of 2,154 common five-letter words (from SCOWL; see data/words5-LICENSE.txt)."""
    text = resources.files("turngym.envs").joinpath("data/words5.txt").read_text()
    return tuple(text.split())


def letter_feedback(secret: str, guess: str) -> str:
    """Wordle feedback: `G` right spot, `Y` elsewhere in the word, `-` absent.

    Repeated letters: greens are matched first, then yellows left to right while unmatched copies
    of that letter remain in the secret.

    Example:
        >>> letter_feedback("apple", "paper")
        'YYGY-'
        >>> letter_feedback("crane", "eerie")  # one E in the secret, already green: the others are absent
        '--Y-G'
    """
    marks = [ABSENT] * len(guess)
    unmatched = Counter(s for s, g in zip(secret, guess, strict=True) if s != g)
    for i, (s, g) in enumerate(zip(secret, guess, strict=True)):
        if s == g:
            marks[i] = CORRECT
        elif unmatched[g] > 0:
            marks[i] = PRESENT
            unmatched[g] -= 1
    return "".join(marks)


class WordGuess(TextEnv):
    """Guess a secret five-letter word in `[crane]` form; each guess gets per-letter feedback.

    Args:
        words: the secret words to draw from (default: the bundled common-word list; an empty
            list is an error, not the default).
        require_known_word: reject guesses that are not in `words` (as Wordle does). Off by
            default: any five letters are a valid guess.

    Reward components: `won`, `invalid`, `greens` (fraction of letters in the right spot this
    guess; weight 0 by default, available for shaping).
    """

    default_reward_weights = {"won": 1.0, "invalid": INVALID_WEIGHT, "greens": 0.0}
    default_max_turns = 6

    def __init__(self, words: Sequence[str] | None = None, require_known_word: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if words is not None and len(words) == 0:
            raise ValueError(
                "WordGuess: words is empty; give some five-letter words, e.g. words=['crane', 'slate'], "
                "or leave words out for the bundled common-word list"
            )
        self.words = tuple(w.lower() for w in (common_words() if words is None else words))
        bad = [w for w in self.words if len(w) != WORD_LENGTH or not w.isascii() or not w.isalpha()]
        if bad:
            raise ValueError(f"WordGuess needs five-letter ASCII words; bad entries: {bad[:5]}")
        self.require_known_word = require_known_word
        self._known = frozenset(self.words)

    @override
    def on_reset(self, options: dict[str, Any]) -> str:
        self.secret = self.words[int(self.np_random.integers(len(self.words)))]
        return (
            f"Guess my secret five-letter English word. You have {count_of(self.max_turns, 'guess')}. "
            "After each guess I "
            f"show one mark per letter: {CORRECT} = right letter in the right spot, {PRESENT} = the letter is in "
            f"the word but elsewhere, {ABSENT} = the letter is not in the word. Reply with your guess in "
            "square brackets, for example [crane]."
        )

    @override
    def valid_action(self) -> str | None:
        return f"[{self.words[0]}]"

    @override
    def on_step(self, action: str) -> Turn:
        left = self.max_turns - self.turn
        move = last_bracketed(action)
        guess = move.lower() if move is not None else ""
        if len(guess) != WORD_LENGTH or not guess.isascii() or not guess.isalpha():
            problem = "Invalid guess: put one five-letter word in square brackets, for example [crane]."
        elif self.require_known_word and guess not in self._known:
            problem = f"{guess.upper()} is not in the word list."
        else:
            problem = None
        if problem is not None:
            return Turn(
                f"{problem} {count_of(left, 'guess')} left.", {"invalid": 1.0}, metrics={"invalid_action": True}
            )
        marks = letter_feedback(self.secret, guess)
        greens = marks.count(CORRECT) / WORD_LENGTH
        if guess == self.secret:
            return Turn(
                f"{guess.upper()} is the word. You won in {count_of(self.turn, 'guess')}.",
                {"won": 1.0, "greens": greens},
                terminated=True,
                metrics={"won": True, "guesses": self.turn},
            )
        feedback = f"{' '.join(guess.upper())}\n{' '.join(marks)}\n{count_of(left, 'guess')} left."
        if left == 0:
            feedback += f" The word was {self.secret.upper()}."
        return Turn(feedback, {"greens": greens})
