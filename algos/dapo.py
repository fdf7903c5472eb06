"""DAPO: Decoupled clip and Dynamic sAmpling Policy Optimization (arXiv 2503.14476).

    J = E[ (1 / sum_i |o_i|) sum_i sum_t min(rho_it A_i, clip(rho_it, 1-eps_low, 1+eps_high) A_i) ]
    subject to 0 < #{i : correct} < G,   A_i = (R_i - mean R) / std R,   no KL

Differences from GRPO:
    1. Clip-higher: eps_low = 0.2, eps_high = 0.28.
    2. Dynamic sampling: groups whose rewards do not vary are dropped, and more groups are
       collected until the batch is full (`filter` returns complete=False).
    3. Token-level loss: token-mean over all tokens of the optimiser step.
    4. Overlong reward shaping: a soft length penalty added to the reward (Eq. 13), when
       `overlong_max` is set (to the generation budget).
    5. Optional overlong filtering: truncated responses inform the baseline but get no gradient.
    6. No KL term.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from turngym.agent.records import TrajectoryGroup
from turngym.algos import functional as F
from turngym.algos.objective import Advantages, Objective, PolicyBatch, Selection, StepTotals, ratio_metrics
from turngym.algos.rewards import RewardTable


@dataclass(frozen=True)
class DAPO(Objective):
    """DAPO.

    Attributes:
        eps_low, eps_high: the decoupled clip range (0.2, 0.28).
        adv_eps, singleton: as in GRPO.
        dynamic_sampling: drop groups whose `filter_metric` has no spread.
        filter_metric: `"reward"` (the trajectory's total) or a reward component name (e.g. `"won"`).
        overlong_max, overlong_cache, overlong_factor: the length shaping (L_max, L_cache, factor);
            off when `overlong_max` is None. Lengths are a trajectory's sampled tokens.
        mask_truncated: overlong filtering of truncated trajectories.
        dual_clip_c: optional dual clip (the verl DAPO script uses 10).
    """

    eps_low: float = 0.2
    eps_high: float = 0.28
    adv_eps: float = 1e-6
    singleton: Literal["raw", "zero"] = "zero"
    dynamic_sampling: bool = True
    filter_metric: str = "reward"
    overlong_max: int | None = None
    overlong_cache: int = 0
    overlong_factor: float = 1.0
    mask_truncated: bool = False
    dual_clip_c: float | None = None

    def check_components(self, components: Collection[str]) -> None:
        """`filter_metric` is `reward` or a component of the envs."""
        if self.filter_metric not in ("reward", *components):
            raise ValueError(
                f"filter_metric {self.filter_metric!r} is not 'reward' or a reward component of the envs "
                f"({', '.join(sorted(components))})"
            )
        super().check_components(components)

    def filter(self, groups: Sequence[TrajectoryGroup], num_groups: int | None = None, state: Any = None) -> Selection:
        """Keep groups whose `filter_metric` varies (or that have one member); ask for more if short."""
        if not self.dynamic_sampling or not groups:
            return super().filter(groups, num_groups, state)
        table = RewardTable.from_groups(groups)
        if self.filter_metric != "reward" and self.filter_metric not in table.components:
            raise ValueError(
                f"filter_metric {self.filter_metric!r} is not 'reward' or a component: {sorted(table.components)}"
            )
        metric = table.total if self.filter_metric == "reward" else table.components[self.filter_metric]
        keep_rows = F.dynamic_sampling_keep(metric, table.group_ids)  # (N,)
        kept = [g for i, g in enumerate(groups) if bool(keep_rows[table.group_ids == i].all())]
        complete = num_groups is None or len(kept) >= num_groups
        return Selection(kept[:num_groups], complete, {"kept_group_fraction": len(kept) / len(groups)}, state)

    def advantage_fn(self, rewards: Tensor, group_ids: Tensor) -> Tensor:
        """`(r - mean_g r) / (std_g r + adv_eps)` on the shaped reward."""
        return F.group_advantage(rewards, group_ids, scale="group", eps=self.adv_eps, singleton=self.singleton)

    def reward_parts(self, table: RewardTable, *, per_turn: bool = False) -> list[tuple[float, Tensor]]:
        """The task reward plus the overlong penalty (on the last turn when per turn)."""
        parts = super().reward_parts(table, per_turn=per_turn)
        if self.overlong_max is None:
            return parts
        penalty = F.overlong_penalty(
            table.lengths, self.overlong_max, self.overlong_cache, self.overlong_factor
        )  # (N,)
        if per_turn:
            last = (table.turn_mask.sum(-1).long() - 1).clamp(min=0)  # (N,)
            penalty = torch.zeros_like(table.turn_total).scatter(1, last[:, None], penalty[:, None])  # (N, K)
        if self.reward_aggregation == "sum_then_normalize":
            return [(1.0, parts[0][1] + penalty)]
        return [*parts, (1.0, penalty)]

    def table_advantages(self, table: RewardTable) -> Advantages:
        """GRPO-style advantages of the shaped reward; truncated rows untrainable if `mask_truncated`."""
        result = super().table_advantages(table)
        if self.mask_truncated:
            result.trainable = ~table.truncated
        return result

    def loss(self, logps: Tensor, batch: PolicyBatch, totals: StepTotals) -> tuple[Tensor, dict[str, float]]:
        """PPO-clip with clip-higher, token-mean over the step."""
        rho = F.ratio(logps, batch.old_logps, batch.loss_mask, "token")  # (N, T)
        per_token = F.ppo_clip_token_loss(
            rho, batch.advantages, self.eps_low, self.eps_high, self.dual_clip_c
        )  # (N, T)
        loss = F.aggregate(per_token, batch.loss_mask, "token-mean", global_tokens=totals.num_tokens)
        kl, metrics = self.kl_penalty(logps, batch, totals, "token-mean")
        metrics |= ratio_metrics(rho, batch.loss_mask, batch.advantages, self.eps_low, self.eps_high)
        return loss + kl, {"pg_loss": float(loss.detach()), **metrics}
