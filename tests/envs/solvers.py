"""Scripted players used by the env tests: they only see the env's text, like a model would."""

from __future__ import annotations

import itertools
import re
from collections import Counter

from turngym.envs.mastermind import score_guess
from turngym.envs.word_guess import letter_feedback


def binary_search(env, low: int, high: int, fmt: str = "My guess is [{}].") -> tuple[bool, int]:
    """Play a higher/lower game by halving the range; return (won, turns)."""
    for turn in range(1, env.max_turns + 1):
        guess = (low + high) // 2
        obs, _, terminated, truncated, info = env.step(fmt.format(guess))
        if info["metrics"]["won"]:
            return True, turn
        if terminated or truncated:
            return False, turn
        if "higher" in obs:
            low = guess + 1
        elif "lower" in obs:
            high = guess - 1
    return False, env.max_turns


def play_mastermind(env, code_length: int = 4, num_colors: int = 6) -> tuple[bool, int]:
    """Always guess the first code consistent with every answer so far (wins 4x6 within 10)."""
    candidates = list(itertools.product(range(1, num_colors + 1), repeat=code_length))
    for turn in range(1, env.max_turns + 1):
        guess = candidates[0]
        obs, _, terminated, truncated, info = env.step(f"I try [{' '.join(map(str, guess))}]")
        if info["metrics"]["won"]:
            return True, turn
        if terminated or truncated:
            return False, turn
        black, white = (int(n) for n in re.search(r"(\d+) black, (\d+) white", obs).groups())
        candidates = [c for c in candidates if score_guess(c, guess) == (black, white)]
    return False, env.max_turns


def play_word_guess(env, words: list[str]) -> tuple[bool, int]:
    """Guess the candidate that splits the remaining candidates into the most feedback groups."""
    candidates = list(words)
    guess = "slate" if "slate" in candidates else candidates[0]
    for turn in range(1, env.max_turns + 1):
        obs, _, terminated, truncated, info = env.step(f"[{guess}]")
        if info["metrics"]["won"]:
            return True, turn
        if terminated or truncated:
            return False, turn
        marks = obs.splitlines()[1].replace(" ", "")
        candidates = [w for w in candidates if letter_feedback(w, guess) == marks]
        guess = max(
            candidates,
            key=lambda g: (len(Counter(letter_feedback(w, g) for w in candidates)), g in candidates),
        )
    return False, env.max_turns


def hanoi_moves(disks: int, source: str = "A", target: str = "C", spare: str = "B") -> list[tuple[str, str]]:
    """The optimal 2^n - 1 moves of Tower of Hanoi."""
    if disks == 0:
        return []
    return [
        *hanoi_moves(disks - 1, source, spare, target),
        (source, target),
        *hanoi_moves(disks - 1, spare, target, source),
    ]
