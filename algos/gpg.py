"""GPG: Group Policy Gradient (arXiv 2504.02546; AMAP-ML/GPG).

    L = (1 / sum_i L_i) sum_i sum_t m_it * (-A_i * lp_it),   A_i = alpha * (r_i - mean_g r) / F_norm
    alpha = B / (B - M)   (B rows in the step, M rows in groups whose rewards are all equal)

alpha compensates for the rows whose advantage is 0 because their group is uniform: the gradient is
estimated from the B - M informative rows, so it is scaled back up to the batch.

Differences from GRPO:
    1. No ratio, no clipping, no reference model: a plain policy gradient (on-policy).
    2. No std by default (F_norm = 1; `scale="group"` gives std + 1e-4).
    3. The gradient correction alpha, computed over the whole optimiser step (`alpha_mode="verl"`
       gives verl's B / count_nonzero(rewards) instead).
    4. Optional threshold of the reference code: with `min_valid_fraction`, `filter` asks for
       more groups while fewer than that fraction are informative, and puts those first.
    5. Token-mean aggregation over the step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from torch import Tensor

from turngym.agent.records import TrajectoryGroup
from turngym.algos import functional as F
from turngym.algos.objective import Advantages, Objective, PolicyBatch, Selection, StepTotals
from turngym.algos.rewards import RewardTable

GPG_STD_EPS = 1e-4  # the reference code's epsilon


@dataclass(frozen=True)
class GPG(Objective):
    """GPG.

    Attributes:
        alpha_mode: `"paper"` (B / (B - M)) or `"verl"` (B / count_nonzero(r)).
        scale: `"none"` (F_norm = 1, the recipes' default) or `"group"` (std + 1e-4).
        min_valid_fraction: the reference's resampling threshold (0.5 in open-r1), or None.
    """

    alpha_mode: Literal["paper", "verl"] = "paper"
    scale: Literal["none", "group"] = "none"
    min_valid_fraction: float | None = None

    uses_ratio: ClassVar[bool] = False

    def filter(self, groups: Sequence[TrajectoryGroup], num_groups: int | None = None, state: Any = None) -> Selection:
        """With a threshold: informative groups first, padded with uniform ones; incomplete while short."""
        if self.min_valid_fraction is None or not groups:
            return super().filter(groups, num_groups, state)
        table = RewardTable.from_groups(groups)
        uniform_rows = F.uniform_group_mask(self.reward_parts(table)[0][1], table.group_ids)  # (N,)
        valid = [g for i, g in enumerate(groups) if not bool(uniform_rows[table.group_ids == i].any())]
        uniform = [g for g in groups if all(g is not v for v in valid)]
        wanted = num_groups or len(groups)
        complete = len(valid) >= self.min_valid_fraction * wanted
        metrics = {"valid_group_fraction": len(valid) / len(groups)}
        return Selection((valid + uniform)[:wanted], complete, metrics, state)

    def advantage_fn(self, rewards: Tensor, group_ids: Tensor) -> Tensor:
        """`(r - mean_g r) / F_norm` (alpha is applied over the whole step in `advantages`)."""
        return F.group_advantage(rewards, group_ids, scale=self.scale, eps=GPG_STD_EPS)

    def table_advantages(self, table: RewardTable) -> Advantages:
        """Group advantages times alpha, with alpha counted over all the groups given."""
        result = super().table_advantages(table)
        alpha = F.gpg_alpha(self.reward_parts(table)[0][1], table.group_ids, mode=self.alpha_mode)
        result.values = result.values * alpha
        result.metrics["alpha"] = alpha
        return result

    def loss(self, logps: Tensor, batch: PolicyBatch, totals: StepTotals) -> tuple[Tensor, dict[str, float]]:
        """Token-mean of `-A * lp` over the step."""
        per_token = F.reinforce_token_loss(logps, batch.advantages)  # (N, T)
        loss = F.aggregate(per_token, batch.loss_mask, "token-mean", global_tokens=totals.num_tokens)
        kl, metrics = self.kl_penalty(logps, batch, totals, "token-mean")
        return loss + kl, {"pg_loss": float(loss.detach()), **metrics}
