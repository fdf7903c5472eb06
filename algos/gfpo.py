"""GFPO: Group Filtered Policy Optimization (arXiv 2508.09726).

    sample G responses; keep the k best by a metric (S); A_i = 1[i in S] (r_i - mean_S r) / (std_S r + eps)

Filtered responses are dropped from the batch entirely (as the TRL reference does), so the base
objective's normalisers count only the retained responses and its advantages use S's statistics.

Differences from GRPO:
    1. A larger group is sampled and only k responses per group are trained on.
    2. The retained set is chosen by a metric: the shortest (`length`), the most reward per token
       (`token_efficiency`), or the highest value of any reward component, ties going to the
       shorter response: `metric="won"` keeps the shortest winning answers while the advantages
       still use the (weighted) total reward.
    3. Optional adaptive k: harder prompts (lower mean reward, by quartile of all groups seen so far)
       keep more responses. The groups seen so far are the objective's state (`GFPOState`), which
       the trainer carries from step to step and saves in checkpoints.
    4. Everything else is the base objective's (GRPO by default; any objective composes).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from turngym.agent.records import TrajectoryGroup
from turngym.algos import functional as F
from turngym.algos.grpo import GRPO
from turngym.algos.objective import Advantages, Objective, PolicyBatch, Selection, StepTotals, closest
from turngym.algos.rewards import RewardTable


@dataclass(frozen=True)
class GFPOState:
    """What adaptive k remembers: the mean rewards of the most recent groups (at most `history_size`)."""

    group_means: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class GFPO(Objective):
    """GFPO around a base objective.

    Attributes:
        base: the objective trained on the retained responses (its reward weights, credit and KL
            settings apply; set them there, not on GFPO).
        k: responses retained per group (>= 2).
        metric: `"length"`, `"token_efficiency"` or a reward component name.
        adaptive_k: k for (easy, medium, hard, very hard) groups by quartile of the mean reward of
            the groups seen so far, or None for a fixed k. turngym's choice, not the paper's
            (unverified) values: e.g. (4, 6, 8, 8) with G = 16.
        history_size: how many past group means the quartiles use.
    """

    base: Objective = field(default_factory=GRPO)
    k: int = 4
    metric: str = "length"
    adaptive_k: tuple[int, int, int, int] | None = None
    history_size: int = 10_000

    def __post_init__(self) -> None:
        super().__post_init__()
        own = {f.name: getattr(self, f.name) for f in fields(Objective)}
        if own != {f.name: f.default for f in fields(Objective)}:
            raise ValueError("set reward_weights, credit, gamma and kl settings on GFPO's base objective, not on GFPO")
        if min(self.adaptive_k or (self.k,)) < 2:
            raise ValueError("GFPO keeps at least 2 responses per group (advantages need a spread)")

    @property
    def uses_ratio(self) -> bool:  # type: ignore[override]
        """As the base objective."""
        return self.base.uses_ratio

    @property
    def needs_ref_logps(self) -> bool:
        """As the base objective."""
        return self.base.needs_ref_logps

    @property
    def accepts_is_weights(self) -> bool:  # type: ignore[override]
        """As the base objective."""
        return self.base.accepts_is_weights

    @property
    def needs_whole_groups(self) -> bool:  # type: ignore[override]
        """As the base objective."""
        return self.base.needs_whole_groups

    @property
    def recorded_data_needs(self) -> Literal["logprobs", "nothing"]:  # type: ignore[override]
        """The base objective's."""
        return self.base.recorded_data_needs

    @property
    def zero_advantage_rows_are_inert(self) -> bool:
        """As the base objective."""
        return self.base.zero_advantage_rows_are_inert

    def check_group_size(self, group_size: int) -> None:
        """The retained k must be below the group size, or GFPO keeps every response (it is its base objective)."""
        smallest = min(self.adaptive_k or (self.k,))  # adaptive k may keep a hard group whole, not every group
        if smallest >= group_size:
            what = f"adaptive_k's smallest k ({smallest})" if self.adaptive_k else f"k={self.k}"
            raise ValueError(
                f"{what} keeps every response of a group of {group_size} (rollout.group_size), so nothing is "
                f"filtered; keep fewer than {group_size}, or sample larger groups"
            )
        self.base.check_group_size(group_size)

    def check_components(self, components: Collection[str]) -> None:
        """The metric is `length`, `token_efficiency` or a component; the base checks its own settings."""
        if self.metric not in ("length", "token_efficiency", *components):
            raise ValueError(
                f"metric {self.metric!r} is not 'length', 'token_efficiency' or a reward component of the envs "
                f"({', '.join(sorted(components))}).{closest(self.metric, [*components, 'length', 'token_efficiency'])}"
            )
        self.base.check_components(components)

    def initial_state(self) -> GFPOState | None:
        """The groups seen so far, for adaptive k (None with a fixed k)."""
        return GFPOState() if self.adaptive_k is not None else None

    def filter(self, groups: Sequence[TrajectoryGroup], num_groups: int | None = None, state: Any = None) -> Selection:
        """Retain k responses per group by the metric, then apply the base objective's filter.

        With adaptive k, `state` (a `GFPOState`, or None for a first step) holds the group means of
        earlier steps; the selection's `state` adds these groups' means.
        """
        if not groups:
            selection = self.base.filter(groups, num_groups)
            selection.state = state
            return selection
        table = RewardTable.from_groups(groups)
        scores, tie_break = self._scores(table)
        k, state = self._k_per_row(table, state)
        keep = F.gfpo_select(scores, table.group_ids, k, tie_break)  # (N,)
        rows = iter(keep.tolist())
        retained = [TrajectoryGroup(g.env_id, g.seed, [t for t in g.trajectories if next(rows)]) for g in groups]
        selection = self.base.filter(retained, num_groups)
        selection.metrics["retained_fraction"] = float(keep.double().mean())
        selection.state = state
        return selection

    def advantages(self, groups: Sequence[TrajectoryGroup]) -> Advantages:
        """The base objective's advantages over the retained responses (S's statistics)."""
        return self.base.advantages(groups)

    def loss(self, logps: Tensor, batch: PolicyBatch, totals: StepTotals) -> tuple[Tensor, dict[str, float]]:
        """The base objective's loss."""
        return self.base.loss(logps, batch, totals)

    def _scores(self, table: RewardTable) -> tuple[Tensor, Tensor | None]:
        """(N,) higher-is-kept scores and tie-breaks for the metric."""
        if self.metric == "length":
            return -table.lengths, None
        if self.metric == "token_efficiency":
            reward = table.weighted(self.base.reward_weights)  # (N,)
            return reward / table.lengths.clamp(min=1.0), -table.lengths
        if self.metric not in table.components:
            raise ValueError(
                f"GFPO metric {self.metric!r} is not 'length', 'token_efficiency' "
                f"or a reward component: {sorted(table.components)}"
            )
        return table.components[self.metric], -table.lengths

    def _k_per_row(self, table: RewardTable, state: GFPOState | None) -> tuple[Tensor, GFPOState | None]:
        """(N,) k of each row's group, and the state with these groups' means added."""
        if self.adaptive_k is None:
            return torch.full_like(table.group_ids, self.k), state
        reward = table.weighted(self.base.reward_weights)  # (N,)
        num_groups = int(table.group_ids.max()) + 1
        means = torch.zeros(num_groups, dtype=torch.float64).index_add_(0, table.group_ids, reward)
        means /= torch.bincount(table.group_ids, minlength=num_groups)  # (M,) group mean rewards
        seen = [*(state.group_means if state is not None else []), *means.tolist()][-self.history_size :]
        q25, q50, q75 = np.quantile(seen, [0.25, 0.5, 0.75])
        bucket = torch.where(means >= q75, 0, torch.where(means >= q50, 1, torch.where(means >= q25, 2, 3)))  # (M,)
        return torch.tensor(self.adaptive_k)[bucket][table.group_ids], GFPOState(seen)  # (N,)
