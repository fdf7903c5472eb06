"""The update phase: micro-batched forward/backward with step-global totals, clip, AdamW, schedule.

One optimiser step per rollout batch (the default) needs no extra forward pass: the old logprobs
are the current ones, detached, from the same forward (the ratio is 1, its gradient the policy
gradient). With `update_epochs > 1` or `mini_batches > 1`, one no-grad forward before the first
update records the old logprobs. The sampler/trainer mismatch correction then weights each token
by `min(exp(old - sampling), C)` (see `correction.py`) using the logprobs the rollout recorded.

A non-finite loss or gradient norm on any process skips the optimiser step (the weights and AdamW
state stay as they were); `update` returns an `UpdateResult` that says how many optimiser steps
were taken and, for a skipped one, why. The loop steers on its fields; its metrics are derived.
"""

from __future__ import annotations

import contextlib
import math
import re
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from turngym.agent.hardware import release_freed_memory
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
        optimizer: AdamW over `model`'s trainable parameters (all, or a LoRA adapter's; fp32 master weights).
        scheduler: the learning-rate schedule, stepped once per rollout batch.
        reference: the initial policy when the objective's `kl_coef > 0` (a frozen copy, or with LoRA the
            same model with its adapter off), else None.
        autocast: run forward/backward under bf16 autocast.
        temperature: the step's sampling temperature (`rollout.temperature_at`; the trainer scores tokens at it).
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


@dataclass
class UpdateResult:
    """What one rollout batch's update did.

    Attributes:
        steps: optimiser steps attempted (`update_epochs` x `mini_batches`; 0 when the whole update
            was skipped before any forward pass).
        skipped_steps: optimiser steps skipped (non-finite loss or gradient norm), or 1 when the whole
            update was skipped.
        skip_reason: why the last skipped step (or the whole update) was skipped; None when none was.
        tokens_trained: tokens that went through a forward/backward (all micro-batches and passes).
        seconds: wall time of the update.
        metrics: loss terms, clip fractions, sampler/trainer mismatch, grad norm, lr, ... (every process
            has the same).
    """

    steps: int = 0
    skipped_steps: int = 0
    skip_reason: str | None = None
    tokens_trained: float = 0.0
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def skipped(cls, reason: str) -> UpdateResult:
        """An update skipped before it started (nothing to learn from)."""
        return cls(skipped_steps=1, skip_reason=reason)

    @property
    def changed_weights(self) -> bool:
        """Whether at least one optimiser step was taken (the sampler then needs the new weights)."""
        return self.steps > self.skipped_steps

    def to_metrics(self) -> dict[str, Any]:
        """The update's metrics for the step's record: `metrics` plus the fields under their logged names."""
        out: dict[str, Any] = dict(self.metrics)
        out["skipped_update"] = self.skipped_steps / max(self.steps, 1)  # the share of optimiser steps skipped
        if self.skip_reason is not None:
            out["skip_reason"] = self.skip_reason
        if self.tokens_trained:
            out["tokens_trained"] = self.tokens_trained
            out["tokens_per_s/update"] = self.tokens_trained / max(self.seconds, 1e-9)
        out["time/update"] = self.seconds
        return out


def make_optimizer(model: nn.Module, config: OptimizerConfig, total_steps: int) -> tuple[Any, Any]:
    """AdamW over the trainable parameters, and a LambdaLR schedule: warm-up, then constant, cosine or linear."""
    trainable = [p for p in model.parameters() if p.requires_grad]  # all of them, or a LoRA adapter's
    # fused: one pass over each parameter, where the default (foreach) makes temporaries as large as the model
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype == torch.float32 for p in trainable)
    optimizer = torch.optim.AdamW(
        trainable, lr=config.lr, betas=config.betas, eps=config.eps, weight_decay=config.weight_decay, fused=fused
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
    rows: StepRows | None,
    optimizer_config: OptimizerConfig,
    correction: CorrectionConfig,
    procs: Processes,
) -> UpdateResult:
    """Train on one rollout batch: `update_epochs` passes of `mini_batches` optimiser steps.

    Nothing is computed when there is nothing to learn from: no rows (no usable groups), or every
    advantage 0 while the objective says zero-advantage rows are inert. The schedule advances anyway.

    Returns:
        What the update did, the same on every process.
    """
    skip = _nothing_to_learn(objective, rows)
    if skip is not None:
        advance_schedule(learner)
        return UpdateResult.skipped(skip)
    if procs.device.type == "cpu":
        release_freed_memory()  # what the rollout freed, so the update starts from the memory in use
    start = time.perf_counter()
    sums = Sums()
    parts = _mini_batches(rows, optimizer_config.mini_batches)
    mine, plan_metrics = _plan(rows, parts, objective, optimizer_config, procs)
    for name, value in plan_metrics.items():
        sums.set(name, value)
    old = None
    if optimizer_config.update_epochs > 1 or optimizer_config.mini_batches > 1:
        old = _old_logps(learner, rows, mine)
    step = _OptimizerStep(learner, objective, rows, old, correction, optimizer_config, procs, sums)
    skipped: list[str] = []
    for _epoch in range(optimizer_config.update_epochs):
        for part, batches in zip(parts, mine, strict=True):
            reason = step.run(rows.totals(part), batches)
            skipped += [reason] if reason is not None else []
    advance_schedule(learner)
    metrics = sums.result(procs)
    if procs.device.type == "cpu":
        release_freed_memory()  # the holes this update's activations left, before rows of other shapes come
    return UpdateResult(
        steps=optimizer_config.update_epochs * len(parts),
        skipped_steps=len(skipped),
        skip_reason=skipped[-1] if skipped else None,
        tokens_trained=metrics.pop("tokens_trained", 0.0),
        seconds=time.perf_counter() - start,
        metrics=metrics,
    )


def _nothing_to_learn(objective: Objective, rows: StepRows | None) -> str | None:
    """Why an update would learn nothing (its reason for `UpdateResult.skip_reason`), or None."""
    if rows is None or len(rows) == 0:
        return "no usable groups this step"
    if objective.zero_advantage_rows_are_inert and not bool(rows.advantages[rows.trainable].any()):
        return "no learning signal (every advantage is 0)"
    return None


def _plan(
    rows: StepRows,
    parts: list[list[int]],
    objective: Objective,
    config: OptimizerConfig,
    procs: Processes,
) -> tuple[list[list[list[int]]], dict[str, float]]:
    """This process's micro-batches (row indices) of each part, and the plan's metrics (padding, skipped rows)."""
    lengths = rows.lengths()
    # Rows whose advantages are all 0 add nothing to the gradient of most objectives: skip their
    # forward/backward (the step-global totals still count them, so the loss is unchanged).
    computed = _rows_to_compute(rows, objective)
    active = [[r for r in part if computed[r]] for part in parts]
    plans = [
        plan_micro_batches(
            [lengths[r] for r in part],
            [int(rows.group_ids[r]) for r in part],
            config.micro_batch_tokens,
            whole_groups=objective.needs_whole_groups,
            by_group=config.share_prefix,
        )
        for part in active
    ]
    plans = [[[part[i] for i in batch] for batch in plan] for part, plan in zip(active, plans, strict=True)]
    planned = [b for plan in plans for b in plan]
    metrics = {
        "padding_fraction": padding_fraction(planned, lengths, rows.group_ids.tolist()),
        "micro_batches": float(sum(len(plan) for plan in plans)),
        "rows_skipped": float(len(rows) - sum(computed)) / max(len(rows), 1),
    }
    return [deal(plan, lengths, procs.world_size, procs.rank) for plan in plans], metrics


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


@dataclass
class _OptimizerStep:
    """The inputs every optimiser step of one update shares (`run` takes what differs: the part's totals and rows)."""

    learner: Learner
    objective: Objective
    rows: StepRows
    old: dict[tuple[int, ...], torch.Tensor] | None
    correction: CorrectionConfig
    config: OptimizerConfig
    procs: Processes
    sums: Sums

    def run(self, totals: StepTotals, batches: list[list[int]]) -> str | None:
        """Forward/backward every micro-batch of one optimiser step, then clip and step; returns why it was skipped."""
        learner, procs = self.learner, self.procs
        nonfinite_loss = False
        for k, indices in enumerate(batches):
            batch = collate(self.rows, indices)
            with procs.no_sync(learner.scorer, sync=k == len(batches) - 1), learner.precision():
                logps = learner.scorer(
                    batch.input_ids, batch.policy.loss_mask, learner.temperature, batch.policy.group_ids
                )  # (n, T)
                loss = self.loss(batch, logps, totals)
                nonfinite_loss |= not bool(torch.isfinite(loss.detach()))
                (loss * procs.world_size).backward()  # DDP averages over ranks; the losses already sum to the step's
            self.sums.add("tokens_trained", float(batch.num_tokens))
        params = [p for p in learner.model.parameters() if p.grad is not None]
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip or math.inf))
        skip_reason = "non-finite loss" if procs.any(nonfinite_loss) else None
        if skip_reason is None and not math.isfinite(grad_norm):
            skip_reason = "non-finite gradient norm"
        if skip_reason is None:
            learner.optimizer.step()
        learner.optimizer.zero_grad(set_to_none=True)
        self.sums.set("grad_norm", grad_norm)
        self.sums.set("lr", learner.optimizer.param_groups[0]["lr"])
        return skip_reason

    def loss(self, batch: MicroBatch, logps: torch.Tensor, totals: StepTotals) -> torch.Tensor:
        """Old logprobs, importance weights and reference logprobs for the batch, then the objective's loss."""
        if not batch.rows:  # a padding micro-batch: no loss, but the forward/backward keeps ranks in step
            return logps.sum() * 0.0
        learner, correction, policy = self.learner, self.correction, batch.policy
        policy.old_logps = self.old[tuple(batch.rows)] if self.old is not None else logps.detach().float()  # (n, T)
        weights = importance_weights(
            policy.old_logps, batch.sampling_logps, policy.loss_mask, correction.mode, correction.clip, correction.band
        )  # (n, T)
        known = policy.loss_mask  # (n, T) tokens whose behaviour logprobs are known
        if batch.has_sampling_logps is not None and not bool(batch.has_sampling_logps.all()):
            known = policy.loss_mask * batch.has_sampling_logps[:, None]  # (n, T)
            weights = torch.where(
                batch.has_sampling_logps[:, None], weights, policy.loss_mask
            )  # (n, T) rebuilt rows: 1
        for name, value in mismatch_sums(policy.old_logps, batch.sampling_logps, known, weights * known).items():
            self.sums.add(name, value)
        policy.advantages = policy.advantages * weights  # (n, T) exact for losses homogeneous in A
        if learner.reference is not None:
            with torch.no_grad():
                policy.ref_logps = learner.reference(
                    batch.input_ids, policy.loss_mask, learner.temperature, policy.group_ids
                )  # (n, T)
        loss, metrics = self.objective.loss(logps.float(), policy, totals)
        tokens = float(policy.loss_mask.sum())
        for name, value in metrics.items():
            self.sums.add_objective_metric(name, value, tokens)
        self.sums.add("loss", float(loss.detach()))
        return loss
