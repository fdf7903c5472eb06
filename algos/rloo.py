"""RLOO: REINFORCE with a leave-one-out baseline (arXiv 2402.14740).

    L = (1/N) sum_i sum_t m_it * (-A_i * lp_it),   A_i = r_i - mean_{j != i} r_j

Differences from GRPO:
    1. Leave-one-out baseline, no std: A_i = n/(n-1) (r_i - mean_g r).
    2. No importance ratio and no clipping (on-policy).
    3. Sequence-level REINFORCE: token losses are summed per sequence, then averaged over sequences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor
from turngym.algos import functional as F
from turngym.algos.objective import Objective, PolicyBatch, StepTotals


@dataclass(frozen=True)
class RLOO(Objective):
    """REINFORCE with a leave-one-out baseline. Attributes: `loss_agg` (default seq-mean-token-sum)."""

    loss_agg: F.AggregationMode = "seq-mean-token-sum"

    uses_ratio: ClassVar[bool] = False

    def advantage_fn(self, rewards: Tensor, group_ids: Tensor) -> Tensor:
        """`r_i - mean_{j != i} r_j`."""
        return F.rloo_advantage(rewards, group_ids)

    def loss(self, logps: Tensor, batch: PolicyBatch, totals: StepTotals) -> tuple[Tensor, dict[str, float]]:
        """Aggregated `-A * lp` plus the optional KL term."""
        per_token = F.reinforce_token_loss(logps, batch.advantages)  # (N, T)
        loss = F.aggregate(
            per_token, batch.loss_mask, self.loss_agg, global_tokens=totals.num_tokens, global_seqs=totals.num_sequences
        )
        kl, metrics = self.kl_penalty(logps, batch, totals, self.loss_agg)
        return loss + kl, {"pg_loss": float(loss.detach()), **metrics}
