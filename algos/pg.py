"""PG: REINFORCE with a group-mean baseline.

    L = (1 / sum_i L_i) sum_i sum_t m_it * (-A_i * lp_it),   A_i = r_i - mean_g r

Reference: Williams 1992; ALGORITHMS.md 2.1 (verl `compute_policy_loss_gpg` + GRPO advantage
without std). No paper link: this is the baseline the others are measured against.

Differences from GRPO:
    1. No importance ratio and no clipping: valid for one optimiser step per rollout batch.
    2. No std in the advantage (mean baseline only).
    3. Token-mean aggregation over the step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from turngym.algos import functional as F
from turngym.algos.objective import Objective, PolicyBatch, StepTotals


@dataclass(frozen=True)
class PG(Objective):
    """REINFORCE with a group-mean baseline. Attributes: `loss_agg` (default token-mean)."""

    loss_agg: F.AggregationMode = "token-mean"

    uses_ratio: ClassVar[bool] = False

    def advantage_fn(self, rewards: Tensor, group_ids: Tensor) -> Tensor:
        """`r - mean_g r`."""
        return F.group_advantage(rewards, group_ids, scale="none")

    def loss(self, logps: Tensor, batch: PolicyBatch, totals: StepTotals) -> tuple[Tensor, dict[str, float]]:
        """Aggregated `-A * lp` plus the optional KL term."""
        per_token = F.reinforce_token_loss(logps, batch.advantages)  # (N, T)
        loss = F.aggregate(
            per_token, batch.loss_mask, self.loss_agg, global_tokens=totals.num_tokens, global_seqs=totals.num_sequences
        )
        kl, metrics = self.kl_penalty(logps, batch, totals, self.loss_agg)
        return loss + kl, {"pg_loss": float(loss.detach()), **metrics}
