"""GSPO: Group Sequence Policy Optimization (arXiv 2507.18071).

    J = E[ (1/G) sum_i min(s_i A_i, clip(s_i, 1-eps_low, 1+eps_high) A_i) ]
    s_i = exp( (1/|o_i|) sum_t (lp_it - lp_old_it) ),   A_i = GRPO's group advantage

Differences from GRPO:
    1. Sequence-level ratio: the geometric mean of the token ratios, one clip decision per sequence.
    2. A much narrower clip range (3e-4, 4e-4): log s_i averages token log-ratios, so it spreads
       far less than a token's.
    3. The loss is a mean over sequences of one term each (no per-token terms).
    4. No KL by default.
A per-token advantage (turn-level credit) is read back as its token-mean per sequence; use GSPO-token
to keep per-token advantages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from torch import Tensor

from turngym.algos import functional as F
from turngym.algos.objective import Objective, PolicyBatch, StepTotals, ratio_metrics, sequence_advantages


@dataclass(frozen=True)
class GSPO(Objective):
    """GSPO. Attributes: `eps_low` (3e-4), `eps_high` (4e-4), `adv_eps`, `singleton` as in GRPO."""

    eps_low: float = 3e-4
    eps_high: float = 4e-4
    adv_eps: float = 1e-6
    singleton: Literal["raw", "zero"] = "zero"

    token_advantages: ClassVar[bool] = False  # the sequence ratio takes each row's mean advantage

    def advantage_fn(self, rewards: Tensor, group_ids: Tensor) -> Tensor:
        """GRPO's group advantage."""
        return F.group_advantage(rewards, group_ids, scale="group", eps=self.adv_eps, singleton=self.singleton)

    def loss(self, logps: Tensor, batch: PolicyBatch, totals: StepTotals) -> tuple[Tensor, dict[str, float]]:
        """`(1/N) sum_i max(-A_i s_i, -A_i clip(s_i))` over sequences with trained tokens."""
        s = F.ratio(logps, batch.old_logps, batch.loss_mask, "sequence")  # (N,)
        advantages = sequence_advantages(batch)  # (N,)
        per_sequence = F.ppo_clip_token_loss(s, advantages, self.eps_low, self.eps_high)  # (N,)
        present = (batch.loss_mask.sum(-1) > 0).to(per_sequence.dtype)  # (N,)
        loss = (per_sequence * present).sum() / max(totals.num_sequences, 1.0)
        kl, metrics = self.kl_penalty(logps, batch, totals, "seq-mean-token-mean")
        metrics |= ratio_metrics(s, batch.loss_mask, advantages, self.eps_low, self.eps_high)
        return loss + kl, {"pg_loss": float(loss.detach()), **metrics}
