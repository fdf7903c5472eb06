"""GRPO: Group Relative Policy Optimization (DeepSeekMath, arXiv 2402.03300).

    J = E[ (1/G) sum_i (1/|o_i|) sum_t { min(rho_it A_i, clip(rho_it, 1-eps, 1+eps) A_i) - beta k3_it } ]
    A_i = (r_i - mean_g r) / (std_g r + eps_adv),  rho_it = exp(lp_it - lp_old_it)

The baseline of the family: the "differences from GRPO" lists of the other objectives start here.
Paper defaults: beta = 0.04 and G = 64; eps is not pinned in the paper (0.2 is verl's and TRL's).
turngym defaults beta to 0 (no reference model, as verl examples and TRL >= 0.19 do); set
`kl_coef=0.04` for the paper's setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from turngym.algos import functional as F
from turngym.algos.objective import Objective, PolicyBatch, StepTotals, ratio_metrics


@dataclass(frozen=True)
class GRPO(Objective):
    """GRPO with PPO-clip on token ratios.

    Attributes:
        eps_low, eps_high: clip range (symmetric 0.2 by default).
        adv_eps: added to the group std (verl's 1e-6).
        singleton: advantage of a group of one: `"zero"` (TRL) or `"raw"` (verl).
        dual_clip_c: optional dual-clip cap for negative advantages (verl uses 3.0).
        loss_agg: `seq-mean-token-mean`, the paper's 1/G sum_i 1/|o_i| sum_t.
    """

    eps_low: float = 0.2
    eps_high: float = 0.2
    adv_eps: float = 1e-6
    singleton: Literal["raw", "zero"] = "zero"
    dual_clip_c: float | None = None
    loss_agg: F.AggregationMode = "seq-mean-token-mean"

    def advantage_fn(self, rewards: Tensor, group_ids: Tensor) -> Tensor:
        """`(r - mean_g r) / (std_g r + adv_eps)`."""
        return F.group_advantage(rewards, group_ids, scale="group", eps=self.adv_eps, singleton=self.singleton)

    def loss(self, logps: Tensor, batch: PolicyBatch, totals: StepTotals) -> tuple[Tensor, dict[str, float]]:
        """Aggregated PPO-clip loss on token ratios plus the optional KL term."""
        rho = F.ratio(logps, batch.old_logps, batch.loss_mask, "token")  # (N, T)
        per_token = F.ppo_clip_token_loss(
            rho, batch.advantages, self.eps_low, self.eps_high, self.dual_clip_c
        )  # (N, T)
        loss = F.aggregate(
            per_token, batch.loss_mask, self.loss_agg, global_tokens=totals.num_tokens, global_seqs=totals.num_sequences
        )
        kl, metrics = self.kl_penalty(logps, batch, totals, self.loss_agg)
        metrics |= ratio_metrics(rho, batch.loss_mask, batch.advantages, self.eps_low, self.eps_high)
        return loss + kl, {"pg_loss": float(loss.detach()), **metrics}
