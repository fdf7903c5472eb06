"""The update phase on a real (tiny) transformers model, without a sampler."""

from __future__ import annotations

import math

import torch

from tests.trainer.support import synthetic_rows
from turngym.algos import GRPO
from turngym.trainer.config import CorrectionConfig, OptimizerConfig
from turngym.trainer.distributed import Processes
from turngym.trainer.policy import TokenScorer, load_model
from turngym.trainer.update import Learner, make_optimizer, update


class NaNLoss(GRPO):
    """GRPO whose loss turns non-finite (e.g. an overflow)."""

    def loss(self, logps, batch, totals):
        loss, metrics = super().loss(logps, batch, totals)
        return loss * math.nan, metrics


def learner_for(model_dir) -> Learner:
    model, _ = load_model(str(model_dir), torch.device("cpu"))
    optimizer, schedule = make_optimizer(model, OptimizerConfig(lr=1e-3), total_steps=10)
    return Learner(TokenScorer(model), model, optimizer, schedule, None, False, 1.0)


def test_a_non_finite_loss_skips_the_update_and_leaves_the_weights(tiny_model_dir) -> None:
    learner = learner_for(tiny_model_dir)
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    result = update(learner, NaNLoss(), synthetic_rows(), OptimizerConfig(), CorrectionConfig(mode="none"), Processes())
    assert (result.steps, result.skipped_steps, result.skip_reason) == (1, 1, "non-finite loss")
    assert not result.changed_weights  # the loop does not sync weights that did not change
    metrics = result.to_metrics()
    assert metrics["skipped_update"] == 1 and metrics["skip_reason"] == "non-finite loss"
    assert all(torch.equal(before[k], v) for k, v in learner.model.state_dict().items())
    assert not learner.optimizer.state  # AdamW took no step: no moments, no step count
    assert all(p.grad is None for p in learner.model.parameters())  # nothing left over for the next step
    # the next, finite step trains normally
    result = update(learner, GRPO(), synthetic_rows(), OptimizerConfig(), CorrectionConfig(mode="none"), Processes())
    assert result.changed_weights and result.skip_reason is None
    metrics = result.to_metrics()
    assert metrics["skipped_update"] == 0 and "skip_reason" not in metrics and math.isfinite(metrics["grad_norm"])
    assert any(not torch.equal(before[k], v) for k, v in learner.model.state_dict().items())


def test_update_epochs_use_one_extra_forward_for_old_logprobs(tiny_model_dir) -> None:
    """With two passes the second pass's ratio moves away from 1 (old logprobs are the pre-update ones)."""
    learner = learner_for(tiny_model_dir)
    config = OptimizerConfig(lr=1e-3, update_epochs=2, mini_batches=3)
    result = update(learner, GRPO(), synthetic_rows(), config, CorrectionConfig(mode="none"), Processes())
    assert (result.steps, result.skipped_steps) == (6, 0)
    metrics = result.metrics
    assert metrics["ratio_max"] > 1.0 + 1e-4 or metrics["ratio_min"] < 1.0 - 1e-4
    assert learner.optimizer.state[next(iter(learner.model.parameters()))]["step"] == 6  # 2 epochs x 3 mini-batches


class GRPOAllRows(GRPO):
    """GRPO with every row computed (the trainer may not skip zero-advantage rows)."""

    @property
    def zero_advantage_rows_are_inert(self) -> bool:
        return False


def test_skipping_zero_advantage_rows_leaves_the_gradient_unchanged(tiny_model_dir) -> None:
    rows = synthetic_rows()
    rows.advantages[rows.group_ids == 1] = 0.0  # group 1 had equal rewards: its rows carry no signal
    deltas, metrics = [], []
    for objective in (GRPO(), GRPOAllRows()):
        model, _ = load_model(str(tiny_model_dir), torch.device("cpu"))
        before = [p.detach().clone() for p in model.parameters()]
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)  # the weight change is minus the gradient
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        learner = Learner(TokenScorer(model), model, optimizer, schedule, None, False, 1.0)
        config = OptimizerConfig(grad_clip=0.0, micro_batch_tokens=200)
        result = update(learner, objective, rows, config, CorrectionConfig(mode="none"), Processes())
        metrics.append(result.to_metrics())
        deltas.append(torch.cat([(b - p.detach()).flatten() for b, p in zip(before, model.parameters(), strict=True)]))
    assert metrics[0]["rows_skipped"] == 4 / 12 and metrics[1]["rows_skipped"] == 0
    assert metrics[0]["tokens_trained"] < metrics[1]["tokens_trained"]
    assert deltas[0].abs().max() > 1e-3
    assert torch.allclose(deltas[0], deltas[1], atol=1e-6 * float(deltas[1].abs().max()))


def test_an_update_with_one_skipped_optimiser_step_still_changed_the_weights() -> None:
    """Two optimiser steps, one skipped: the weights moved, so the sampler needs them (the loop syncs)."""
    from turngym.trainer.update import UpdateResult

    partial = UpdateResult(steps=2, skipped_steps=1, skip_reason="non-finite loss", tokens_trained=10.0, seconds=2.0)
    assert partial.changed_weights
    assert partial.to_metrics() == {
        "skipped_update": 0.5,
        "skip_reason": "non-finite loss",
        "tokens_trained": 10.0,
        "tokens_per_s/update": 5.0,
        "time/update": 2.0,
    }
    nothing = UpdateResult.skipped("no usable groups this step")
    assert not nothing.changed_weights and nothing.to_metrics()["skipped_update"] == 1.0


def test_nothing_to_learn_skips_the_update_but_advances_the_schedule(tiny_model_dir) -> None:
    from turngym.algos import GVPO

    learner = learner_for(tiny_model_dir)
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    flat = synthetic_rows()
    flat.advantages.zero_()  # every group scored alike
    none = update(learner, GRPO(), None, OptimizerConfig(), CorrectionConfig(mode="none"), Processes())
    zero = update(learner, GRPO(), flat, OptimizerConfig(), CorrectionConfig(mode="none"), Processes())
    assert (none.skip_reason, zero.skip_reason) == (
        "no usable groups this step",
        "no learning signal (every advantage is 0)",
    )
    assert not none.changed_weights and not zero.changed_weights and zero.tokens_trained == 0
    assert all(torch.equal(before[k], v) for k, v in learner.model.state_dict().items())
    assert learner.scheduler.last_epoch == 2  # one schedule step per rollout batch, skipped or not
    # GVPO's zero-advantage rows are not inert (every row's implicit reward enters its group's mean): it trains
    gvpo = update(learner, GVPO(), flat, OptimizerConfig(), CorrectionConfig(mode="none"), Processes())
    assert gvpo.skip_reason is None and gvpo.steps == 1 and gvpo.tokens_trained > 0
