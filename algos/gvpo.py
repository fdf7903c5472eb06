"""GVPO: Group Variance Policy Optimization (arXiv 2504.19599; jszkc/GVPO).

    L_g = 1/(k-1) * sum_{i in g} 1/2 [ (R_i - sg[mean_g R]) - a_i ]^2
    R_i = beta * sum_t m_it (lp_it - lp_old_it)   (implicit reward; the rollout policy is the reference)
    a_i = r_i - mean_g r

It targets max E[R] - beta KL(pi || pi_old), whose optimum is pi_old * exp(R / beta); the implicit
reward of a policy is matched to the actual centred reward within each group. On-policy (one
update per rollout) its gradient is -(beta/(k-1)) sum_i a_i grad sum_t lp_it.

Differences from GRPO:
    1. A regression (MSE) loss on group-centred implicit rewards instead of a clipped ratio.
    2. The reference is the rollout policy (old logprobs); no separate reference model.
    3. Summed, not length-normalised, sequence log-ratios.
    4. No std in the advantage.
    5. Whole groups must be in each micro-batch (the group mean is taken over the rows present).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from turngym.algos import functional as F
from turngym.algos.objective import Objective, PolicyBatch, StepTotals, sequence_advantages


@dataclass(frozen=True)
class GVPO(Objective):
    """GVPO.

    Attributes:
        beta: KL strength (reference script: 0.1).
        group_norm: `"mean_over_groups"` (divide by the groups of the step; batch-size invariant)
            or `"reference"` (the reference code's plain sum over a micro-batch's groups).
    """

    beta: float = 0.1
    group_norm: Literal["reference", "mean_over_groups"] = "mean_over_groups"

    # A regression of implicit rewards on centred rewards: scaling an advantage moves the target,
    # it does not weight the sample, so importance weights cannot be folded into the advantages.
    accepts_is_weights: ClassVar[bool] = False
    needs_whole_groups: ClassVar[bool] = True
    token_advantages: ClassVar[bool] = False  # the regression target is each row's mean advantage
    # Theorem 2 of the paper: the loss compares pi with pi_old, both computed by the trainer, so its
    # unique optimum does not depend on which distribution sampled the episodes.
    recorded_data_needs: ClassVar[Literal["logprobs", "nothing"]] = "nothing"

    @property
    def zero_advantage_rows_are_inert(self) -> bool:
        """No: every row's implicit reward enters its group's mean."""
        return False

    def advantage_fn(self, rewards: Tensor, group_ids: Tensor) -> Tensor:
        """`r - mean_g r`."""
        return F.group_advantage(rewards, group_ids, scale="none")

    def loss(self, logps: Tensor, batch: PolicyBatch, totals: StepTotals) -> tuple[Tensor, dict[str, float]]:
        """The MSE form; every group must be whole, of one size k >= 2."""
        groups, index, counts = torch.unique(batch.group_ids, return_inverse=True, return_counts=True)
        split = batch.group_sizes is not None and bool((counts[index] != batch.group_sizes).any())
        if split or counts.numel() == 0 or bool((counts != counts[0]).any()) or int(counts[0]) < 2:
            raise ValueError(
                f"GVPO needs whole groups of the same size k >= 2 in each micro-batch; got sizes {counts.tolist()}"
            )
        advantages = sequence_advantages(batch)  # (N,)
        loss = F.gvpo_loss(
            logps,
            batch.old_logps,
            advantages,
            batch.loss_mask,
            batch.group_ids,
            self.beta,
            int(counts[0]),
            group_norm=self.group_norm,
            global_groups=totals.num_groups,
        )
        kl, metrics = self.kl_penalty(logps, batch, totals, "seq-mean-token-mean")
        return loss + kl, {"gvpo_loss": float(loss.detach()), **metrics}
