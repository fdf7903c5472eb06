"""The update phase: micro-batched forward/backward with step-global totals, clip, AdamW, schedule.

One optimiser step per rollout batch (the default) needs no extra forward pass: the old logprobs
are the current ones, detached, from the same forward (the ratio is 1, its gradient the policy
gradient). With `update_epochs > 1` or `mini_batches > 1`, one no-grad forward before the first
update records the old logprobs. The sampler/trainer mismatch correction then weights each token
by `min(exp(old - sampling), C)` (see `correction.py`) using the logprobs the rollout recorded.

A non-finite loss or gradient norm on any process skips the optimiser step (the weights and AdamW
state stay as they were) and says why in the metrics.
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from turngym.algos import Objective, StepTotals
from turngym.trainer.collate import MicroBatch, StepRows, collate, deal, padding_fraction, plan_micro_batches
from turngym.trainer.config import CorrectionConfig, OptimizerConfig
from turngym.trainer.correction import importance_weights, mismatch_sums
from turngym.trainer.distributed import Processes
from turngym.trainer.metrics import Sums


@dataclass
class Learner:
    """What the update phase changes: the model (wrapped for DDP), its optimiser and schedule.

    Attributes:
        scorer: the `TokenScorer` the backward passes go through (DDP-wrapped with several processes).
        model: the unwrapped Hugging Face model (saved in checkpoints, synced into the sampler).
        optimizer: AdamW over `model`'s parameters (fp32 master weights).
        scheduler: the learning-rate schedule, stepped once per rollout batch.
        reference: a frozen copy of the initial policy when the objective's `kl_coef > 0`, else None.
        autocast: run forward/backward under bf16 autocast.
        temperature: the sampling temperature (the trainer scores tokens at it).
    """

    scorer: nn.Module
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    reference: nn.Module | None
    autocast: bool
    temperature: float

    def precision(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when enabled (weights and AdamW stay fp32)."""
        device = next(self.model.parameters()).device.type
        return torch.autocast(device, dtype=torch.bfloat16, enabled=self.autocast)


def make_optimizer(model: nn.Module, config: OptimizerConfig, total_steps: int) -> tuple[Any, Any]:
    """AdamW and a LambdaLR schedule: linear warm-up, then constant, cosine or linear decay."""
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config, total_steps))


def lr_factor(step: int, config: OptimizerConfig, total_steps: int) -> float:
    """The learning rate of rollout step `step` (0-based) as a fraction of `lr`."""
    if step < config.warmup_steps:
        return (step + 1) / (config.warmup_steps + 1)
    if config.schedule == "constant":
        return 1.0
    decay_steps = max(total_steps - config.warmup_steps - 1, 1)
    progress = min((step - config.warmup_steps) / decay_steps, 1.0)
    shape = 0.5 * (1 + math.cos(math.pi * progress)) if config.schedule == "cosine" else 1 - progress
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * shape


def update(
    learner: Learner,
    objective: Objective,
    rows: StepRows,
    optimizer_config: OptimizerConfig,
    correction: CorrectionConfig,
    procs: Processes,
) -> dict[str, float]:
    """Train on one rollout batch: `update_epochs` passes of `mini_batches` optimiser steps.

    Returns:
        The step's update metrics (loss terms, clip fractions, mismatch, grad norm, ...), the
        same on every process.
    """
    sums = Sums()
    lengths = rows.lengths()
    parts = _mini_batches(rows, optimizer_config.mini_batches)
    # Rows whose advantages are all 0 add nothing to the gradient of most objectives: skip their
    # forward/backward (the step-global totals below still count them, so the loss is unchanged).
    computed = _rows_to_compute(rows, objective)
    plans = [
        plan_micro_batches(
            [lengths[r] for r in part if computed[r]],
            [int(rows.group_ids[r]) for r in part if computed[r]],
            optimizer_config.micro_batch_tokens,
            objective.needs_whole_groups or optimizer_config.share_prefix,
        )
        for part in parts
    ]
    active = [[r for r in part if computed[r]] for part in parts]
    plans = [[[part[i] for i in batch] for batch in plan] for part, plan in zip(active, plans, strict=True)]
    planned = [b for plan in plans for b in plan]
    sums.set("padding_fraction", padding_fraction(planned, lengths, rows.group_ids.tolist()))
    sums.set("micro_batches", float(sum(len(plan) for plan in plans)))
    sums.set("rows_skipped", float(len(rows) - sum(computed)) / max(len(rows), 1))
    mine = [deal(plan, lengths, procs.world_size, procs.rank) for plan in plans]
    old = None
    if optimizer_config.update_epochs > 1 or optimizer_config.mini_batches > 1:
        old = _old_logps(learner, rows, mine)
    for _epoch in range(optimizer_config.update_epochs):
        for part, batches in zip(parts, mine, strict=True):
            _optimizer_step(
                learner, objective, rows, rows.totals(part), batches, old, correction, optimizer_config, procs, sums
            )
    advance_schedule(learner)
    return sums.result(procs)


def advance_schedule(learner: Learner) -> None:
    """Step the learning-rate schedule once per rollout batch, also when the update was skipped."""
    with warnings.catch_warnings():  # torch warns when no optimiser step preceded (a skipped update)
        warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()` before"))
        learner.scheduler.step()


def _rows_to_compute(rows: StepRows, objective: Objective) -> list[bool]:
    """Rows that need a forward/backward: all of them, or those with a nonzero advantage when the rest are inert."""
    if not objective.zero_advantage_rows_are_inert:
        return [True] * len(rows)
    values = rows.advantages.reshape(len(rows), -1)  # (N, 1) or (N, K)
    return [bool(rows.trainable[i]) and bool(values[i].any()) for i in range(len(rows))]


def _mini_batches(rows: StepRows, count: int) -> list[list[int]]:
    """Split the rows into `count` parts of whole groups (consecutive groups)."""
    groups = int(rows.group_ids.max()) + 1 if len(rows) else 0
    bounds = [round(i * groups / count) for i in range(count + 1)]
    ids = rows.group_ids.tolist()
    return [[r for r, g in enumerate(ids) if bounds[i] <= g < bounds[i + 1]] for i in range(count)]


@torch.no_grad()
def _old_logps(learner: Learner, rows: StepRows, mine: list[list[list[int]]]) -> dict[tuple[int, ...], torch.Tensor]:
    """Old logprobs of every micro-batch this process trains on, from one no-grad forward each."""
    old = {}
    for batches in mine:
        for indices in batches:
            batch = collate(rows, indices)
            with learner.precision():
                old[tuple(indices)] = learner.scorer(
                    batch.input_ids, batch.policy.loss_mask, learner.temperature, batch.policy.group_ids
                ).float()
    return old


def _optimizer_step(  # noqa: PLR0913 (the phase's inputs, named)
    learner: Learner,
    objective: Objective,
    rows: StepRows,
    totals: StepTotals,
    batches: list[list[int]],
    old: dict[tuple[int, ...], torch.Tensor] | None,
    correction: CorrectionConfig,
    config: OptimizerConfig,
    procs: Processes,
    sums: Sums,
) -> None:
    """Forward/backward every micro-batch of one optimiser step, then clip and step (or skip)."""
    nonfinite_loss = False
    for k, indices in enumerate(batches):
        batch = collate(rows, indices)
        with procs.no_sync(learner.scorer, sync=k == len(batches) - 1), learner.precision():
            logps = learner.scorer(
                batch.input_ids, batch.policy.loss_mask, learner.temperature, batch.policy.group_ids
            )  # (n, T)
            loss = _micro_batch_loss(learner, objective, batch, logps, old, totals, correction, sums)
            nonfinite_loss |= not bool(torch.isfinite(loss.detach()))
            (loss * procs.world_size).backward()  # DDP averages over ranks; the losses already sum to the step's
        sums.add("tokens_trained", float(batch.num_tokens))
    params = [p for p in learner.model.parameters() if p.grad is not None]
    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, config.grad_clip or math.inf))
    skip_reason = "non-finite loss" if procs.any(nonfinite_loss) else None
    if skip_reason is None and not math.isfinite(grad_norm):
        skip_reason = "non-finite gradient norm"
    if skip_reason is None:
        learner.optimizer.step()
    learner.optimizer.zero_grad(set_to_none=True)
    sums.set("grad_norm", grad_norm)
    sums.set("skipped_update", float(skip_reason is not None))
    if skip_reason is not None:
        sums.note("skip_reason", skip_reason)
    sums.set("lr", learner.optimizer.param_groups[0]["lr"])


def _micro_batch_loss(
    learner: Learner,
    objective: Objective,
    batch: MicroBatch,
    logps: torch.Tensor,
    old: dict[tuple[int, ...], torch.Tensor] | None,
    totals: StepTotals,
    correction: CorrectionConfig,
    sums: Sums,
) -> torch.Tensor:
    """Old logprobs, importance weights and reference logprobs for the batch, then the objective's loss."""
    if not batch.rows:  # a padding micro-batch: no loss, but the forward/backward keeps ranks in step
        return logps.sum() * 0.0
    policy = batch.policy
    policy.old_logps = old[tuple(batch.rows)] if old is not None else logps.detach().float()  # (n, T)
    weights = importance_weights(
        policy.old_logps, batch.sampling_logps, policy.loss_mask, correction.mode, correction.clip, correction.band
    )  # (n, T)
    for name, value in mismatch_sums(policy.old_logps, batch.sampling_logps, policy.loss_mask, weights).items():
        sums.add(name, value)
    policy.advantages = policy.advantages * weights  # (n, T) exact for losses homogeneous in A
    if learner.reference is not None:
        with torch.no_grad():
            policy.ref_logps = learner.reference(
                batch.input_ids, policy.loss_mask, learner.temperature, policy.group_ids
            )  # (n, T)
    loss, metrics = objective.loss(logps.float(), policy, totals)
    tokens = float(policy.loss_mask.sum())
    for name, value in metrics.items():
        sums.add_objective_metric(name, value, tokens)
    sums.add("loss", float(loss.detach()))
    return loss
