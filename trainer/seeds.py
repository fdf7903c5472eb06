"""Env seeds: training draws from a cursor that never repeats; evaluation uses a range training never reaches.

A group is `group_size` envs reset with one seed, so a seed is a training example. The cursor hands
out consecutive seeds from `run.seed_start` and is saved in checkpoints, so a resumed run goes on
with fresh seeds. Held-out evaluation seeds start at `EVAL_SEED_BASE`; the cursor refuses to reach
it, so no training episode ever starts from an evaluation seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EVAL_SEED_BASE = 1_000_000_000  # evaluation seeds are EVAL_SEED_BASE + i; training seeds stay below


def eval_seeds(count: int, offset: int = 0) -> list[int]:
    """`count` held-out seeds, the same for every run (so before/after comparisons are paired)."""
    return [EVAL_SEED_BASE + offset + i for i in range(count)]


@dataclass
class SeedCursor:
    """The next unused training seed, and the position in the recorded episodes (`data.episodes`).

    Example:
        >>> cursor = SeedCursor(next_seed=10)
        >>> cursor.take(3), cursor.take(2)
        ([10, 11, 12], [13, 14])
        >>> cursor.take_recorded(4), cursor.take_recorded(4), cursor.data_position
        (0, 4, 8)
    """

    next_seed: int = 0
    data_position: int = 0

    def take_recorded(self, count: int) -> int:
        """Where the next `count` recorded groups start (`RecordedData.take`); the position moves past them."""
        start = self.data_position
        self.data_position += count
        return start

    def take(self, count: int) -> list[int]:
        """The next `count` seeds; they are never handed out again."""
        if self.next_seed + count > EVAL_SEED_BASE:
            raise RuntimeError(
                f"training seeds would reach the evaluation range ({EVAL_SEED_BASE}); lower run.seed_start"
            )
        seeds = list(range(self.next_seed, self.next_seed + count))
        self.next_seed += count
        return seeds


def mixture_counts(weights: Sequence[float], total: int, rng: np.random.Generator) -> list[int]:
    """Split `total` groups over envs in proportion to `weights`.

    Each env gets the floor of its share; the few groups left over go to envs drawn in proportion to
    the fractional parts, so every env gets its share on average and no env is always shortchanged.

    Example:
        >>> mixture_counts([1.0, 1.0], 8, np.random.default_rng(0))
        [4, 4]
    """
    share = np.asarray(weights, dtype=np.float64) / float(np.sum(weights)) * total  # (E,)
    counts = np.floor(share).astype(int)  # (E,)
    left = total - int(counts.sum())
    if left:
        fraction = share - counts  # (E,)
        extra = rng.choice(len(counts), size=left, replace=False, p=fraction / fraction.sum())
        counts[extra] += 1
    return counts.tolist()


def step_rng(seed: int, step: int, purpose: int = 0) -> np.random.Generator:
    """A generator that depends only on the run seed, the step and a purpose tag (resume-safe)."""
    return np.random.default_rng([seed, step, purpose])
