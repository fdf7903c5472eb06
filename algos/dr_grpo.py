"""Dr. GRPO: GRPO Done Right (arXiv 2503.20783).

    L = (1/N) sum_i sum_t m_it * max(-A_i rho_it, -A_i clip(rho_it)) / L_max,   A_i = r_i - mean_g r

L_max is a constant: the generation budget (understand-r1-zero `generate_max_length`; TRL
`max_completion_length`), not the padded batch width, or the length bias returns.

Differences from GRPO:
    1. No std in the advantage: A_i = r_i - mean_g r.
    2. No per-sequence 1/|o_i|: tokens are summed and divided by the constant L_max, then averaged
       over sequences (removes GRPO's length bias).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from turngym.algos import functional as F
from turngym.algos.objective import Objective, PolicyBatch, StepTotals, ratio_metrics


@dataclass(frozen=True)
class DrGRPO(Objective):
    """Dr. GRPO. Attributes: `eps_low`, `eps_high` (0.2), `generation_budget` (L_max, tokens)."""

    eps_low: float = 0.2
    eps_high: float = 0.2
    generation_budget: int = 1024

    def advantage_fn(self, rewards: Tensor, group_ids: Tensor) -> Tensor:
        """`r - mean_g r`."""
        return F.group_advantage(rewards, group_ids, scale="none")

    def loss(self, logps: Tensor, batch: PolicyBatch, totals: StepTotals) -> tuple[Tensor, dict[str, float]]:
        """PPO-clip summed per sequence over the constant L_max, averaged over sequences."""
        rho = F.ratio(logps, batch.old_logps, batch.loss_mask, "token")  # (N, T)
        per_token = F.ppo_clip_token_loss(rho, batch.advantages, self.eps_low, self.eps_high)  # (N, T)
        loss = F.aggregate(
            per_token,
            batch.loss_mask,
            "seq-mean-token-sum-norm",
            global_seqs=totals.num_sequences,
            const_norm=self.generation_budget,
        )
        kl, metrics = self.kl_penalty(logps, batch, totals, "seq-mean-token-sum-norm", self.generation_budget)
        metrics |= ratio_metrics(rho, batch.loss_mask, batch.advantages, self.eps_low, self.eps_high)
        return loss + kl, {"pg_loss": float(loss.detach()), **metrics}
