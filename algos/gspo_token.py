"""GSPO-token: GSPO with per-token advantages (arXiv 2507.18071, section 4.3).

    s_it = sg[s_i] * exp(lp_it - sg[lp_it])     (value s_i, gradient s_i * grad lp_it)
    L = seq-mean-token-mean of max(-A_it s_it, -A_it clip(s_it, 1-eps_low, 1+eps_high))

When the advantage is constant within a sequence this equals GSPO in value and gradient; it differs
when advantages vary per token (turn-level credit, token-level shaping).

Differences from GRPO:
    1. The ratio of every token is the sequence ratio s_i (with the token's own gradient path).
    2. The narrow clip range of GSPO (3e-4, 4e-4).
    3. No KL by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from turngym.algos import functional as F
from turngym.algos.gspo import GSPO
from turngym.algos.objective import PolicyBatch, StepTotals, ratio_metrics


@dataclass(frozen=True)
class GSPOToken(GSPO):
    """GSPO-token: GSPO's hyperparameters and advantages, with the ratio applied per token."""

    token_advantages: ClassVar[bool] = True

    def loss(self, logps: Tensor, batch: PolicyBatch, totals: StepTotals) -> tuple[Tensor, dict[str, float]]:
        """PPO-clip on the sequence-token ratio, seq-mean-token-mean."""
        rho = F.ratio(logps, batch.old_logps, batch.loss_mask, "sequence_token")  # (N, T)
        per_token = F.ppo_clip_token_loss(rho, batch.advantages, self.eps_low, self.eps_high)  # (N, T)
        loss = F.aggregate(per_token, batch.loss_mask, "seq-mean-token-mean", global_seqs=totals.num_sequences)
        kl, metrics = self.kl_penalty(logps, batch, totals, "seq-mean-token-mean")
        metrics |= ratio_metrics(rho, batch.loss_mask, batch.advantages, self.eps_low, self.eps_high)
        return loss + kl, {"pg_loss": float(loss.detach()), **metrics}
