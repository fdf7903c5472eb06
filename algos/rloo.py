"""RLOO: REINFORCE with a leave-one-out baseline (arXiv 2402.14740).

    L = (1/N) sum_i sum_t m_it * (-A_i * lp_it),   A_i = r_i - mean_{j != i} r_j

Differences from GRPO:
    1. Leave-one-out baseline, no std: A_i = n/(n-1) (r_i - mean_g r).
    2. No importance ratio and no clipping (on-policy).
    3. Sequence-level REINFORCE: token losses are summed per sequence, then averaged over sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from turngym.algos import functional as F
from turngym.algos.pg import PG


@dataclass(frozen=True)
class RLOO(PG):
    """REINFORCE with a leave-one-out baseline: PG's loss, summed per sequence by default."""

    loss_agg: F.AggregationMode = "seq-mean-token-sum"

    def advantage_fn(self, rewards: Tensor, group_ids: Tensor) -> Tensor:
        """`r_i - mean_{j != i} r_j`."""
        return F.rloo_advantage(rewards, group_ids)
