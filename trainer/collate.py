"""From trajectory groups and advantages to padded micro-batches of at most a token budget.

`StepRows` flattens a step's trajectories (group order) with their per-row advantages and the
objective's `trainable` flags. `plan_micro_batches` sorts rows by length and packs them greedily so
each micro-batch holds at most `token_budget` padded tokens (rows x longest row): sorting keeps the
padding small, and `padding_fraction` reports what is left. Objectives that need whole groups in
a micro-batch (GVPO) are packed group by group; with prefix sharing a group's rows are packed
together too, a group larger than the budget split into parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from turngym.agent.records import Trajectory, TrajectoryGroup
from turngym.algos import Advantages, PolicyBatch, StepTotals, broadcast_to_tokens


@dataclass
class StepRows:
    """A step's trajectories as rows, in group order.

    Attributes:
        trajectories: the rows' trajectories.
        group_ids: (N,) index of each row's group in the step.
        group_sizes: (N,) rows in each row's group.
        advantages: (N,) per trajectory or (N, K) per turn.
        trainable: (N,) False for rows that only inform baselines (their loss mask is zeroed).
    """

    trajectories: list[Trajectory]
    group_ids: Tensor
    group_sizes: Tensor
    advantages: Tensor
    trainable: Tensor

    @classmethod
    def of(cls, groups: Sequence[TrajectoryGroup], advantages: Advantages) -> StepRows:
        """Rows of `groups` with the advantages the objective computed for them."""
        trajectories = [t for g in groups for t in g.trajectories]
        group_ids = torch.tensor([i for i, g in enumerate(groups) for _ in g.trajectories], dtype=torch.long)
        sizes = torch.tensor([len(g.trajectories) for g in groups for _ in g.trajectories], dtype=torch.long)
        if advantages.values.shape[0] != len(trajectories):
            raise ValueError(f"{advantages.values.shape[0]} advantages for {len(trajectories)} trajectories")
        return cls(trajectories, group_ids, sizes, advantages.values.float(), advantages.trainable.bool())

    def __len__(self) -> int:
        return len(self.trajectories)

    def lengths(self) -> list[int]:
        """Tokens per row."""
        return [len(t.token_ids) for t in self.trajectories]

    def trained_tokens(self, rows: Sequence[int]) -> list[int]:
        """Trained (sampled and trainable) tokens of each of `rows`."""
        return [self.trajectories[i].num_sampled_tokens * bool(self.trainable[i]) for i in rows]

    def totals(self, rows: Sequence[int]) -> StepTotals:
        """Step-global counts over `rows` (all micro-batches and processes of one optimiser step)."""
        tokens = self.trained_tokens(rows)
        groups = {int(self.group_ids[i]) for i in rows}
        return StepTotals(float(sum(tokens)), float(sum(n > 0 for n in tokens)), float(len(groups)))


@dataclass
class MicroBatch:
    """One forward/backward: right-padded (n, T) tensors.

    Attributes:
        rows: indices into `StepRows` (empty for a padding micro-batch that only keeps processes in step).
        lengths: real tokens of each row.
        input_ids: (n, T) token ids, padded with 0 (the model is causal; padding follows every real token).
        sampling_logps: (n, T) the sampler's logprobs of the sampled tokens, 0 elsewhere.
        has_sampling_logps: (n,) False for rows rebuilt from text (no behaviour logprobs: no
            importance weight, and left out of the mismatch metrics).
        policy: the objective's view (loss mask, advantages, group ids and sizes; old/ref logprobs
            are filled in by the update).
    """

    rows: list[int]
    lengths: list[int]
    input_ids: Tensor
    sampling_logps: Tensor
    policy: PolicyBatch
    has_sampling_logps: Tensor | None = None

    @property
    def num_tokens(self) -> int:
        """Real (unpadded) tokens."""
        return sum(self.lengths)


def plan_micro_batches(
    lengths: Sequence[int],
    group_ids: Sequence[int],
    token_budget: int,
    whole_groups: bool = False,
    by_group: bool = False,
) -> list[list[int]]:
    """Pack rows into micro-batches of at most `token_budget` padded tokens, longest first.

    Args:
        lengths: tokens per row.
        group_ids: group of each row.
        token_budget: most `rows x longest row` per micro-batch; a longer single unit gets its own.
        whole_groups: pack whole groups (a group is never split across micro-batches, whatever its size).
        by_group: pack a group's rows together (the scorer computes their shared prompt once per
            micro-batch), splitting a group that alone exceeds the budget into parts that fit.

    Returns:
        Row indices per micro-batch, each sorted by length (longest first).
    """
    if whole_groups or by_group:
        members: dict[int, list[int]] = {}
        for row, group in enumerate(group_ids):
            members.setdefault(int(group), []).append(row)
        units = list(members.values())
        if not whole_groups:
            units = [part for unit in units for part in _split(unit, lengths, token_budget)]
    else:
        units = [[row] for row in range(len(lengths))]
    return [sorted(batch, key=lambda r: -lengths[r]) for batch in _pack(units, lengths, token_budget)]


def _split(rows: list[int], lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """A group's rows, longest first, in the fewest parts of equal row counts that fit `token_budget`.

    Even parts rather than greedy ones: a group of 8 rows that just exceeds the budget goes as 4 + 4,
    not 7 + 1, so the largest micro-batch, which sets the memory peak, is half the group.
    """
    rows = sorted(rows, key=lambda r: -lengths[r])
    for count in range(1, len(rows) + 1):
        bounds = [round(i * len(rows) / count) for i in range(count + 1)]
        parts = [rows[bounds[i] : bounds[i + 1]] for i in range(count)]
        if all(len(part) * lengths[part[0]] <= token_budget for part in parts):
            return parts
    return [[r] for r in rows]


def _pack(units: list[list[int]], lengths: Sequence[int], token_budget: int) -> list[list[int]]:
    """Units of rows, longest first, greedily into batches of at most `token_budget` padded tokens (a unit at least)."""
    units = sorted(units, key=lambda unit: max(lengths[r] for r in unit), reverse=True)
    batches: list[list[int]] = []
    width = 0
    for unit in units:
        unit_width = max(lengths[r] for r in unit)
        if batches and (len(batches[-1]) + len(unit)) * max(width, unit_width) <= token_budget:
            batches[-1].extend(unit)
        else:
            batches.append(list(unit))
            width = unit_width
    return batches


def padding_fraction(
    batches: Sequence[Sequence[int]], lengths: Sequence[int], group_ids: Sequence[int] | None = None
) -> float:
    """Share of padded positions in the planned micro-batches.

    With `group_ids`, each group's rows in a micro-batch are padded only to their own longest row
    (the scorer computes a micro-batch group by group and stops at a group's last token).
    """
    blocks: dict[tuple[int, int], list[int]] = {}
    for b, batch in enumerate(batches):
        for r in batch:
            blocks.setdefault((b, int(group_ids[r]) if group_ids is not None else 0), []).append(lengths[r])
    real = sum(sum(block) for block in blocks.values())
    padded = sum(len(block) * max(block) for block in blocks.values())
    return 1.0 - real / padded if padded else 0.0


def collate(rows: StepRows, indices: Sequence[int]) -> MicroBatch:
    """Pad `indices` of `rows` into one micro-batch (an empty list gives a one-token padding batch)."""
    if not indices:  # two tokens: the scorer predicts the second from the first
        zeros = torch.zeros(1, 2)  # (1, 2)
        policy = PolicyBatch(zeros, zeros.clone(), torch.zeros(1, dtype=torch.long), group_sizes=torch.ones(1))
        return MicroBatch([], [], torch.zeros(1, 2, dtype=torch.long), zeros.clone(), policy)
    trajectories = [rows.trajectories[i] for i in indices]
    n, width = len(indices), max(len(t.token_ids) for t in trajectories)
    input_ids = torch.zeros(n, width, dtype=torch.long)  # (n, T)
    loss_mask = torch.zeros(n, width)  # (n, T)
    sampling = torch.zeros(n, width)  # (n, T)
    turn_index = torch.full((n, width), -1, dtype=torch.long)  # (n, T) -1 off sampled tokens
    for i, (row, t) in enumerate(zip(indices, trajectories, strict=True)):
        length = len(t.token_ids)
        input_ids[i, :length] = torch.tensor(t.token_ids)
        if rows.trainable[row]:
            loss_mask[i, :length] = torch.tensor(t.loss_mask, dtype=torch.float)
        sampling[i, :length] = torch.tensor(t.sampling_logps, dtype=torch.float)
        for k, turn in enumerate(t.turns):
            turn_index[i, turn.start : turn.end] = k
    index = torch.tensor(list(indices))  # (n,)
    advantages = broadcast_to_tokens(rows.advantages[index], turn_index) * loss_mask  # (n, T)
    policy = PolicyBatch(loss_mask, advantages, rows.group_ids[index], group_sizes=rows.group_sizes[index])
    known = torch.tensor([t.has_sampling_logps for t in trajectories])  # (n,)
    lengths = [len(t.token_ids) for t in trajectories]
    return MicroBatch(list(indices), lengths, input_ids, sampling * loss_mask, policy, known)


def deal(batches: list[list[int]], lengths: Sequence[int], world_size: int, rank: int) -> list[list[int]]:
    """This process's share of the micro-batches, every process getting the same count.

    Micro-batches are dealt round-robin by size (largest first) so the work is balanced; the list
    is padded with empty micro-batches to a multiple of `world_size`, because every process must run
    the same number of forward/backward passes (DDP reduces gradients on the last one).
    """
    order = sorted(batches, key=lambda b: -len(b) * max((lengths[r] for r in b), default=0))
    order += [[] for _ in range(-len(order) % world_size)]
    if not order:
        order = [[] for _ in range(world_size)]
    return order[rank::world_size]
