"""What every objective shares: the batch it is given, reward aggregation, credit assignment, KL.

An objective is a frozen dataclass of hyperparameters with three methods, called in this order by
the trainer:

    selection = objective.filter(groups, num_groups, state)  # which groups/trajectories to train on
    advantages = objective.advantages(selection.groups)      # per trajectory (N,) or per turn (N, K)
    loss, metrics = objective.loss(logps, batch, totals)     # per micro-batch, with step-global totals

An objective that remembers something across steps (GFPO's adaptive k) keeps it in an explicit
state object, never in itself: `initial_state()` makes it, `filter` takes the current one and
returns the next in `Selection.state`, and the trainer keeps it between steps and in checkpoints.

Named objectives (one file each) set their defaults and write `advantage_fn` and `loss` from the
pure functions in `turngym.algos.functional`.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from turngym.agent.records import TrajectoryGroup
from turngym.algos import functional as F
from turngym.algos.rewards import RewardTable, discounted_returns


@dataclass
class PolicyBatch:
    """One micro-batch of trajectories as right-padded (N, T) tensors.

    Position t of every (N, T) tensor refers to token t of the sequence: `logps[:, t]` is the log
    probability of token t given the tokens before it.

    Attributes:
        loss_mask: (N, T) 1 on trained (sampled) tokens.
        advantages: (N, T) per-token advantages, 0 outside the mask.
        old_logps: (N, T) behaviour-policy logprobs (the sampler's, or a trainer forward pass before
            the update); None for objectives without a ratio.
        group_ids: (N,) group of each row; objectives that need whole groups (GVPO) rely on it.
        ref_logps: (N, T) reference-model logprobs, needed when `kl_coef > 0`.
        group_sizes: (N,) how many rows the row's group has in the whole step; lets objectives
            that need whole groups (GVPO) check that a micro-batch did not split one.
    """

    loss_mask: Tensor
    advantages: Tensor
    group_ids: Tensor
    old_logps: Tensor | None = None
    ref_logps: Tensor | None = None
    group_sizes: Tensor | None = None


@dataclass(frozen=True)
class StepTotals:
    """Counts over the whole optimiser step (all micro-batches), known before any backward pass.

    Attributes:
        num_tokens: trained tokens.
        num_sequences: sequences with at least one trained token.
        num_groups: groups.
    """

    num_tokens: float
    num_sequences: float
    num_groups: float

    @classmethod
    def of(cls, loss_mask: Tensor, group_ids: Tensor) -> StepTotals:
        """Totals of one batch that is the whole step."""
        lengths = loss_mask.sum(-1)  # (N,)
        return cls(float(loss_mask.sum()), float((lengths > 0).sum()), float(torch.unique(group_ids).numel()))


@dataclass
class Selection:
    """The result of `Objective.filter`.

    Attributes:
        groups: what to train on (whole groups, or groups with some trajectories dropped by GFPO).
        complete: False asks the trainer to collect more groups and call `filter` again on all
            of them (DAPO dynamic sampling, GPG's valid-fraction threshold).
        metrics: diagnostics (kept fractions).
        state: the objective's state after this selection (see `Objective.initial_state`); the
            trainer passes it to the next step's `filter`.
    """

    groups: list[TrajectoryGroup]
    complete: bool = True
    metrics: dict[str, float] = field(default_factory=dict)
    state: Any = None


@dataclass
class Advantages:
    """The result of `Objective.advantages`, rows in the order of the groups' trajectories.

    Attributes:
        values: (N,) per trajectory (credit "trajectory") or (N, K) per turn (credit "turn", "step").
        trainable: (N,) False for rows that inform the baseline but get no gradient (e.g. DAPO's
            overlong filtering of truncated responses).
        metrics: diagnostics.
    """

    values: Tensor
    trainable: Tensor
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Objective:
    """Fields every objective has.

    Attributes:
        reward_weights: weights of the env's reward components to optimise; None uses the env's own
            weighted reward.
        reward_aggregation: `"sum_then_normalize"` (weighted sum, then the objective's advantage) or
            `"normalize_then_sum"` (the advantage of each component, then their weighted sum; needs
            `reward_weights`).
        credit: `"trajectory"` (one advantage for all of a trajectory's tokens), `"turn"` (per-turn
            discounted returns, normalised within the group at each turn index) or `"step"`
            (GiGPO: the trajectory advantage plus `step_weight` times the turn's return against
            the other turns of its group taken in the same state, `TurnRecord.state`).
        gamma: discount of per-turn returns for `credit="turn"` and `"step"` (GiGPO's runs: 0.95).
        step_weight: the weight w of the step advantage for `credit="step"` (GiGPO's runs: 1).
        step_scale: `"mean"` (a turn's return minus its anchor group's mean) or `"mean_std"` (also
            divided by the anchor group's std) for `credit="step"`.
        kl_coef: beta of an optional KL penalty to a reference model (0 = off).
        kl_kind: the per-token KL estimator: `"k1"`, `"k2"` or `"k3"`.
    """

    reward_weights: Mapping[str, float] | None = None
    reward_aggregation: Literal["sum_then_normalize", "normalize_then_sum"] = "sum_then_normalize"
    credit: Literal["trajectory", "turn", "step"] = "trajectory"
    gamma: float = 1.0
    step_weight: float = 1.0
    step_scale: Literal["mean", "mean_std"] = "mean"
    kl_coef: float = 0.0
    kl_kind: Literal["k1", "k2", "k3"] = "k3"

    uses_ratio: ClassVar[bool] = True  # needs old_logps
    # The trainer may fold per-token importance weights w >= 0 (sampler/trainer mismatch correction)
    # into the advantages: exact for losses that are positively homogeneous in A per token,
    # l(w A) = w l(A), i.e. every policy-gradient and PPO-clip loss here.
    accepts_is_weights: ClassVar[bool] = True
    # Every micro-batch must hold whole groups (the loss takes group statistics).
    needs_whole_groups: ClassVar[bool] = False
    # The loss reads each token's advantage (False: one value per sequence, so per-turn credit
    # would be averaged away; `credit="step"` is refused).
    token_advantages: ClassVar[bool] = True
    # What recorded episodes (`data.episodes`) must carry for this loss to be sound on them:
    # "logprobs": the behaviour policy's token logprobs, so the trainer can weight tokens by
    # pi_old / mu (`correction`); the clipped ratio and the policy gradient assume the tokens came
    # from the policy being corrected for. "nothing": any episodes, text-only transcripts
    # included (GVPO: its optimum is the same under any sampling distribution with full support).
    recorded_data_needs: ClassVar[Literal["logprobs", "nothing"]] = "logprobs"

    def __post_init__(self) -> None:
        if self.reward_aggregation == "normalize_then_sum" and not self.reward_weights:
            raise ValueError(
                "reward_aggregation='normalize_then_sum' needs reward_weights (the components to normalise)"
            )
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if self.credit == "step" and not self.token_advantages:
            raise ValueError(
                f"{type(self).__name__} takes one advantage per sequence, so credit='step' would be averaged "
                "away; use an objective with per-token advantages (grpo, dr_grpo, dapo, gpg, rloo, pg, gspo_token)"
            )
        if self.step_scale not in ("mean", "mean_std"):
            raise ValueError(f"step_scale must be 'mean' or 'mean_std', got {self.step_scale!r}")
        _check_ranges(self)

    # --- checks against the run, before any model loads ------------------------------------

    def check_group_size(self, group_size: int) -> None:
        """Raise `ValueError` if groups of `group_size` episodes cannot work with these settings."""

    def check_components(self, components: Collection[str]) -> None:
        """Raise `ValueError` if a setting names a reward component the envs do not have.

        Args:
            components: every component the recipe's envs report (their union over a mixture).
        """
        unknown = sorted(set(self.reward_weights or {}) - set(components))
        if unknown:
            raise ValueError(
                f"reward_weights names {unknown}, which the envs do not report; their components: "
                f"{', '.join(sorted(components))}.{closest(unknown[0], components)}"
            )

    @property
    def needs_ref_logps(self) -> bool:
        """Whether the trainer must provide reference-model logprobs."""
        return self.kl_coef > 0

    @property
    def zero_advantage_rows_are_inert(self) -> bool:
        """Whether a row whose advantages are all 0 adds nothing to the gradient, so the trainer may skip it.

        True for losses that are a sum over rows of terms proportional to the advantage (policy
        gradients, PPO-clip, GSPO), given step-global normalisers, as long as no KL term pulls
        every row towards the reference.
        """
        return self.kl_coef == 0

    # --- the three steps -------------------------------------------------------------------

    def initial_state(self) -> Any:
        """What this objective carries from step to step, before the first: None (nothing) by default.

        Stateful objectives return a dataclass of plain values (lists, numbers); checkpoints save
        it with `dataclasses.asdict` and rebuild it with `type(initial_state())(**saved)`.
        """
        return None

    def filter(self, groups: Sequence[TrajectoryGroup], num_groups: int | None = None, state: Any = None) -> Selection:
        """Choose what to train on. Default: every group, up to `num_groups`; `state` passes through unchanged."""
        return Selection(list(groups)[:num_groups], state=state)

    def advantages(self, groups: Sequence[TrajectoryGroup]) -> Advantages:
        """Advantages of every trajectory of `groups` (no gradient)."""
        table = RewardTable.from_groups(groups)
        result = self.table_advantages(table)
        result.metrics["advantage_abs_mean"] = float(result.values.abs().mean())
        if self.credit == "step":
            result.metrics |= self.step_metrics(table)
        return result

    def table_advantages(self, table: RewardTable) -> Advantages:
        """Advantages from the tabulated rewards; objectives that adjust them (DAPO, GPG) extend this."""
        return Advantages(self.credit_advantages(table), torch.ones(table.total.numel(), dtype=torch.bool))

    def loss(self, logps: Tensor, batch: PolicyBatch, totals: StepTotals) -> tuple[Tensor, dict[str, float]]:
        """The micro-batch's share of the step loss (sum the micro-batch losses, do not average)."""
        raise NotImplementedError

    # --- building blocks for subclasses ----------------------------------------------------

    def advantage_fn(self, rewards: Tensor, group_ids: Tensor) -> Tensor:
        """The objective's advantage estimator on (N,) rewards."""
        raise NotImplementedError

    def reward_parts(self, table: RewardTable, *, per_turn: bool = False) -> list[tuple[float, Tensor]]:
        """The rewards to take advantages of, as (weight, (N,) or (N, K) values) parts.

        One part, the weighted sum, for `sum_then_normalize`; one per component for
        `normalize_then_sum`. DAPO adds its length shaping here.
        """
        if self.reward_aggregation == "sum_then_normalize":
            return [(1.0, table.weighted(self.reward_weights, per_turn=per_turn))]
        table.weighted(self.reward_weights)  # validates the component names
        source = table.turn_components if per_turn else table.components
        return [(weight, source[name]) for name, weight in self.reward_weights.items()]

    @torch.no_grad()
    def credit_advantages(self, table: RewardTable) -> Tensor:
        """Apply `advantage_fn` to each reward part with the configured credit, and sum the parts."""
        parts = self.reward_parts(table, per_turn=self.credit != "trajectory")
        return sum(weight * self._credit(values, table) for weight, values in parts)

    def _credit(self, rewards: Tensor, table: RewardTable) -> Tensor:
        if self.credit == "trajectory":
            return self.advantage_fn(rewards, table.group_ids)  # (N,)
        if self.credit == "step":
            return self._step_credit(rewards, table)[0]
        returns = discounted_returns(rewards, table.turn_mask, self.gamma)  # (N, K)
        turns = table.turn_mask.shape[1]
        keys = table.group_ids[:, None] * turns + torch.arange(turns)[None, :]  # (N, K) group x turn index
        real = table.turn_mask.bool()  # (N, K)
        advantages = torch.zeros_like(returns)  # (N, K)
        advantages[real] = self.advantage_fn(returns[real], keys[real])
        return advantages

    def _step_credit(self, rewards: Tensor, table: RewardTable) -> tuple[Tensor, Tensor]:
        """GiGPO (ALGORITHMS.md 4.2b): `A_{i,t} = A^E_i + w * A^S_{i,t}` from (N, K) per-turn rewards.

        `A^E` is this objective's own advantage of each trajectory's total, one vote per trajectory
        (verl-agent's default pools the statistics over steps, weighting long trajectories more).

        Returns:
            (N, K) per-turn advantages and (N, K) step advantages `A^S`.
        """
        episode = self.advantage_fn(rewards.sum(-1), table.group_ids)  # (N,) totals: padding turns are 0
        returns = discounted_returns(rewards, table.turn_mask, self.gamma)  # (N, K)
        step = F.anchor_step_advantage(
            returns, table.turn_mask, table.group_ids, table.turn_states, scale=self.step_scale
        )  # (N, K)
        return F.combine_episode_and_step(episode, step, table.turn_mask, self.step_weight), step

    def step_metrics(self, table: RewardTable) -> dict[str, float]:
        """Anchor coverage and mean size, and the std of the step advantages of the weighted reward."""
        rewards = sum(weight * values for weight, values in self.reward_parts(table, per_turn=True))  # (N, K)
        step = self._step_credit(rewards, table)[1]  # (N, K)
        real = table.turn_mask.bool()  # (N, K)
        spread = float(step[real].std()) if int(real.sum()) > 1 else 0.0
        return F.anchor_metrics(table.turn_mask, table.group_ids, table.turn_states) | {"step_advantage_std": spread}

    def kl_penalty(
        self,
        logps: Tensor,
        batch: PolicyBatch,
        totals: StepTotals,
        mode: F.AggregationMode,
        const_norm: float | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        """`kl_coef * aggregate(kl_token)` with the objective's own aggregation; zero when off."""
        if self.kl_coef == 0:
            return logps.new_zeros(()), {}
        if batch.ref_logps is None:
            raise ValueError(f"{type(self).__name__}(kl_coef={self.kl_coef}) needs ref_logps in the batch")
        kl = F.kl_token(logps, batch.ref_logps, self.kl_kind)  # (N, T)
        value = F.aggregate(
            kl,
            batch.loss_mask,
            mode,
            global_tokens=totals.num_tokens,
            global_seqs=totals.num_sequences,
            const_norm=const_norm,
        )
        mean_kl = float((kl.detach() * batch.loss_mask).sum() / batch.loss_mask.sum().clamp(min=1))
        return self.kl_coef * value, {"kl": mean_kl}


def sequence_advantages(batch: PolicyBatch) -> Tensor:
    """(N,) token-mean of each row's advantages (the trajectory advantage under trajectory credit)."""
    mask = batch.loss_mask.to(batch.advantages.dtype)  # (N, T)
    return (batch.advantages * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)  # (N,)


def ratio_metrics(
    rho: Tensor, loss_mask: Tensor, advantages: Tensor, eps_low: float, eps_high: float
) -> dict[str, float]:
    """Write-only diagnostics of a token- or sequence-level ratio (masked means)."""
    mask = loss_mask.bool() if rho.ndim == 2 else loss_mask.sum(-1) > 0  # (N, T) or (N,)
    if not mask.any():
        return {}
    rho, advantages = rho.detach()[mask], advantages.detach()[mask]
    low = (rho < 1 - eps_low) & (advantages < 0)  # where the lower clip binds
    high = (rho > 1 + eps_high) & (advantages > 0)  # where the upper clip binds
    return {
        "ratio_mean": float(rho.mean()),
        "ratio_min": float(rho.min()),
        "ratio_max": float(rho.max()),
        "clip_fraction_low": float(low.double().mean()),
        "clip_fraction_high": float(high.double().mean()),
    }


# Hyperparameter ranges shared by the objectives that have them (checked in `Objective.__post_init__`).
_RANGES = {
    "eps_low": (0.0, 1.0, "in [0, 1): the ratio's lower clip is 1 - eps_low"),
    "eps_high": (0.0, None, ">= 0"),
    "adv_eps": (0.0, None, ">= 0"),
    "kl_coef": (0.0, None, ">= 0"),
    "beta": (0.0, None, "> 0"),
    "step_weight": (0.0, None, ">= 0"),
}


def closest(word: str, options: Collection[str]) -> str:
    """` Did you mean 'x'?` for the option closest to `word`, or nothing (the algos' error messages)."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def _check_ranges(objective: Objective) -> None:
    for name, (low, high, rule) in _RANGES.items():
        value = getattr(objective, name, None)
        if value is None:
            continue
        if value < low or (high is not None and value >= high) or (rule == "> 0" and value <= 0):
            raise ValueError(f"{name} must be {rule}, got {value}")
    dual = getattr(objective, "dual_clip_c", None)
    if dual is not None and dual <= 1:
        raise ValueError(f"dual_clip_c must be > 1 (dual clip bounds negative-advantage ratios at c), got {dual}")
