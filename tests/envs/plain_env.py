"""Plain Gymnasium text envs (no turngym base class), as a user who already writes Gymnasium envs would.

Used as `tests/envs/plain_env.py:VowelGame` by the CLI and recipe tests, and as classes by the
Python ones. Nothing here imports turngym.
"""

from __future__ import annotations

import string

import gymnasium
from gymnasium import spaces


class VowelGame(gymnasium.Env):
    """Reward = share of vowels among the reply's letters; a reply with more than half vowels ends the game."""

    metadata = {"render_modes": []}

    def __init__(self, target: float = 0.5) -> None:
        self.target = target
        self.observation_space = spaces.Text(max_length=200, charset=string.printable)
        self.action_space = spaces.Text(max_length=200, charset=string.printable)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.hint = "aeiou"[int(self.np_random.integers(5))]
        return f"Reply with a word where more than half the letters are vowels (hint: {self.hint}).", {}

    def step(self, action):
        letters = [c for c in action.lower() if c.isalpha()]
        share = sum(c in "aeiou" for c in letters) / max(len(letters), 1)
        done = share > self.target
        return f"{share:.2f} of your letters were vowels." + ("" if done else " Try again."), share, done, False, {}


class ScoredVowelGame(VowelGame):
    """VowelGame that reports its own components, metrics and `won`, and a turn limit as `max_turns`."""

    max_turns = 3

    def step(self, action):
        feedback, share, done, truncated, _ = super().step(action)
        info = {"rewards": {"vowels": share, "length": float(len(action))}, "metrics": {"share": share}, "won": done}
        return feedback, share, done, truncated, info


class LetterCount(gymnasium.Env):
    """No observation or action spaces, as many text envs are written: turngym checks it through its adapter."""

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.length = int(self.np_random.integers(3, 8))
        return f"Reply with a word of exactly {self.length} letters.", {}

    def step(self, action):
        right = len(action.strip()) == self.length
        return ("Right." if right else "Wrong length."), float(right), True, False, {}
