"""Rewards of a batch of trajectory groups as tensors: components, totals, per-turn values, returns.

Rows follow the trajectories of the groups in order (group 0's trajectories, then group 1's, ...).
Per-turn tensors are (N, K) with K the most turns of any trajectory; `turn_mask` marks real turns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from turngym.agent.records import TrajectoryGroup


@dataclass
class RewardTable:
    """Per-trajectory and per-turn rewards of a batch.

    Attributes:
        total: (N,) each trajectory's total reward (the env's weighted sum, over turns).
        components: name -> (N,) per-component totals.
        group_ids: (N,) the group index of each row (0..num_groups-1).
        lengths: (N,) sampled tokens per trajectory.
        truncated: (N,) bool, the episode was cut (turn limit or context budget).
        turn_total: (N, K) per-turn weighted rewards.
        turn_components: name -> (N, K) per-turn components.
        turn_mask: (N, K) 1 for real turns.
        turn_states: (N, K) an integer id per distinct `TurnRecord.state` (equal ids, equal keys; a
            turn without a key, from episodes saved before keys existed, gets an id of its own);
            -1 on padding turns.
    """

    total: Tensor
    components: dict[str, Tensor]
    group_ids: Tensor
    lengths: Tensor
    truncated: Tensor
    turn_total: Tensor
    turn_components: dict[str, Tensor]
    turn_mask: Tensor
    turn_states: Tensor

    @classmethod
    def from_groups(cls, groups: Sequence[TrajectoryGroup]) -> RewardTable:
        """Tabulate the rewards of `groups` (float64)."""
        rows = [(g, t) for g, group in enumerate(groups) for t in group.trajectories]
        names = sorted({name for _, t in rows for name in t.rewards})
        turns = max((t.num_turns for _, t in rows), default=0)
        turn_total = torch.zeros(len(rows), max(turns, 1), dtype=torch.float64)  # (N, K)
        turn_components = {name: torch.zeros_like(turn_total) for name in names}  # each (N, K)
        turn_mask = torch.zeros_like(turn_total)  # (N, K)
        turn_states = torch.full(turn_total.shape, -1, dtype=torch.long)  # (N, K)
        state_index: dict[object, int] = {}
        for i, (_, trajectory) in enumerate(rows):
            for k, turn in enumerate(trajectory.turns):
                turn_total[i, k] = turn.reward
                turn_mask[i, k] = 1.0
                turn_states[i, k] = state_index.setdefault(turn.state or (i, k), len(state_index))
                for name, value in turn.rewards.items():
                    turn_components[name][i, k] = value
        return cls(
            total=torch.tensor([t.reward for _, t in rows], dtype=torch.float64),  # (N,)
            components={n: torch.tensor([t.rewards.get(n, 0.0) for _, t in rows], dtype=torch.float64) for n in names},
            group_ids=torch.tensor([g for g, _ in rows], dtype=torch.long),  # (N,)
            lengths=torch.tensor([t.num_sampled_tokens for _, t in rows], dtype=torch.float64),  # (N,)
            truncated=torch.tensor([t.truncated for _, t in rows], dtype=torch.bool),  # (N,)
            turn_total=turn_total,
            turn_components=turn_components,
            turn_mask=turn_mask,
            turn_states=turn_states,
        )

    def weighted(self, weights: Mapping[str, float] | None, *, per_turn: bool = False) -> Tensor:
        """The reward to optimise: the env's total, or `sum_c w_c * component_c` when weights are given.

        Returns:
            (N,) or, with `per_turn`, (N, K).
        """
        if weights is None:
            return self.turn_total if per_turn else self.total
        source = self.turn_components if per_turn else self.components
        unknown = set(weights) - set(source)
        if unknown:
            raise ValueError(
                f"reward_weights names unknown component(s) {sorted(unknown)}; the episodes have {sorted(source)}"
            )
        zero = torch.zeros_like(self.turn_total if per_turn else self.total)
        return sum((w * source[name] for name, w in weights.items()), zero)


@torch.no_grad()
def discounted_returns(turn_rewards: Tensor, turn_mask: Tensor, gamma: float) -> Tensor:
    """Per-turn returns `G_t = sum_{k >= t} gamma^(k-t) r_k`, 0 on padding turns.

    Args:
        turn_rewards: (N, K) rewards per turn.
        turn_mask: (N, K) 1 for real turns.
        gamma: the discount.

    Returns:
        (N, K) returns.
    """
    returns = torch.zeros_like(turn_rewards)  # (N, K)
    running = torch.zeros_like(turn_rewards[:, 0])  # (N,)
    for k in reversed(range(turn_rewards.shape[1])):
        running = (turn_rewards[:, k] + gamma * running) * turn_mask[:, k]  # (N,)
        returns[:, k] = running
    return returns
