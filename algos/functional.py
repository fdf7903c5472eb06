"""Pure functions of the GRPO family (ALGORITHMS.md section 7). Named objectives compose them.

Conventions: `N` rows (responses), `T` token positions, `G` group size. `loss_mask` (N, T) is 1 on
trained tokens. `logps` are current log-probabilities (with grad), `old_logps` the behaviour
policy's, `ref_logps` a frozen reference's. Losses are minimised (they carry the minus sign).
Advantages are computed without gradient. Every per-token output is exactly 0 outside the mask.
No function edits its inputs.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

LOG_RATIO_CLAMP = 20.0  # |log ratio| clamp before exp (verl's value), so ratios stay finite


def _group_index(group_ids: Tensor) -> tuple[Tensor, int]:
    """Map arbitrary group ids to 0..num_groups-1; membership does not depend on row order."""
    _, index = torch.unique(group_ids, return_inverse=True)  # (N,)
    return index, int(index.max()) + 1 if index.numel() else 0


def _group_stats(values: Tensor, group_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-row group mean, unbiased group std (NaN for singletons) and group size."""
    index, num_groups = _group_index(group_ids)
    values = values.double()  # (N,)
    count = torch.zeros(num_groups, dtype=values.dtype).index_add_(0, index, torch.ones_like(values))  # (M,)
    total = torch.zeros(num_groups, dtype=values.dtype).index_add_(0, index, values)  # (M,)
    mean = total / count  # (M,)
    square = torch.zeros(num_groups, dtype=values.dtype).index_add_(0, index, (values - mean[index]) ** 2)  # (M,)
    std = torch.sqrt(square / (count - 1))  # (M,) NaN where count == 1
    return mean[index], std[index], count[index]  # (N,) each


@torch.no_grad()
def group_advantage(
    rewards: Tensor,
    group_ids: Tensor,
    *,
    scale: Literal["group", "batch", "none"] = "group",
    eps: float = 1e-6,
    singleton: Literal["raw", "zero"] = "zero",
) -> Tensor:
    """Group-relative advantage `A_i = (r_i - mean_g r) / (std + eps)`.

    Args:
        rewards: (N,) scalar reward per response.
        group_ids: (N,) group of each response (same prompt / env seed).
        scale: `"group"` divides by the unbiased group std (GRPO), `"batch"` by the unbiased std
            over the whole batch (TRL `scale_rewards="batch"`), `"none"` only centres (Dr. GRPO).
        eps: added to the std (verl 1e-6; TRL 1e-4).
        singleton: a group of one has no baseline. `"raw"`: A = r / (1 + eps), verl's convention
            (mean 0, std 1); `"zero"`: A = 0, TRL's (its NaN std is zeroed).

    Returns:
        (N,) advantages, same dtype as `rewards`. All-equal groups give exactly 0.
    """
    mean, std, count = _group_stats(rewards, group_ids)  # (N,) each
    centred = rewards.double() - mean  # (N,)
    if scale == "group":
        advantage = centred / (std + eps)  # (N,)
    elif scale == "batch":
        advantage = centred / (rewards.double().std() + eps) if rewards.numel() > 1 else centred  # (N,)
    else:
        advantage = centred  # (N,)
    single = count == 1  # (N,)
    fallback = rewards.double() / (1 + eps) if singleton == "raw" else torch.zeros_like(centred)  # (N,)
    advantage = torch.where(single, fallback, advantage)  # (N,)
    return torch.nan_to_num(advantage, nan=0.0).to(rewards.dtype)


@torch.no_grad()
def rloo_advantage(rewards: Tensor, group_ids: Tensor) -> Tensor:
    """Leave-one-out baseline `A_i = r_i - mean_{j != i} r_j = n/(n-1) (r_i - mean_g r)`; 0 for singletons.

    Args:
        rewards: (N,) rewards.
        group_ids: (N,) group ids.

    Returns:
        (N,) advantages.
    """
    mean, _, count = _group_stats(rewards, group_ids)  # (N,) each
    advantage = count / (count - 1).clamp(min=1) * (rewards.double() - mean)  # (N,)
    return torch.where(count > 1, advantage, torch.zeros_like(advantage)).to(rewards.dtype)


@torch.no_grad()
def uniform_group_mask(metric: Tensor, group_ids: Tensor) -> Tensor:
    """(N,) True for rows whose group has zero spread in `metric` (population std 0) and size > 1."""
    mean, _, count = _group_stats(metric, group_ids)  # (N,) each
    index, num_groups = _group_index(group_ids)
    deviation = torch.zeros(num_groups, dtype=torch.float64).index_add_(
        0, index, (metric.double() - mean).abs()
    )  # (M,)
    return (deviation[index] == 0) & (count > 1)  # (N,)


@torch.no_grad()
def gpg_alpha(rewards: Tensor, group_ids: Tensor, *, mode: Literal["paper", "verl"] = "paper") -> float:
    """GPG's gradient correction alpha.

    `"paper"`: `B / (B - M)`, with B the rows and M the rows in uniform groups (their advantage is
    0); `"verl"`: `B / max(1, count_nonzero(rewards))`. If every group is uniform the paper's
    alpha would be infinite; it is returned as 1.0 (there is no gradient to scale).

    Args:
        rewards: (N,) rewards.
        group_ids: (N,) group ids.
        mode: `"paper"` or `"verl"`.
    """
    rows = rewards.numel()
    if mode == "verl":
        return rows / max(1, int(torch.count_nonzero(rewards)))
    valid = rows - int(uniform_group_mask(rewards, group_ids).sum())
    return rows / valid if valid else 1.0


@torch.no_grad()
def overlong_penalty(lengths: Tensor, max_length: int, cache_length: int, factor: float = 1.0) -> Tensor:
    """DAPO's soft overlong punishment (arXiv 2503.14476, Eq. 13), added to the task reward.

    0 up to `max_length - cache_length`, then falling linearly to `-factor` at `max_length`, and
    `-factor` beyond.

    Args:
        lengths: (N,) response lengths in tokens.
        max_length: the hard limit L_max.
        cache_length: the buffer L_cache.
        factor: the penalty at L_max.

    Returns:
        (N,) penalties (<= 0).
    """
    if not 0 < cache_length <= max_length:
        raise ValueError(f"need 0 < cache_length <= max_length, got {cache_length} and {max_length}")
    excess = (lengths.double() - (max_length - cache_length)) / cache_length  # (N,)
    return -(factor * excess.clamp(min=0.0, max=1.0))  # (N,)


@torch.no_grad()
def dynamic_sampling_keep(metric: Tensor, group_ids: Tensor) -> Tensor:
    """DAPO dynamic sampling: (N,) True for rows of groups with spread (std > 0) or of size 1."""
    return ~uniform_group_mask(metric, group_ids)


@torch.no_grad()
def gfpo_select(scores: Tensor, group_ids: Tensor, k: int | Tensor, tie_break: Tensor | None = None) -> Tensor:
    """GFPO retention: in each group keep the `k` rows with the highest `score`.

    Args:
        scores: (N,) higher is kept first (use `-length` to keep the shortest).
        group_ids: (N,) group ids.
        k: rows to keep per group, or (N,) per-row k (the k of the row's group, for adaptive k).
        tie_break: (N,) secondary score for equal `scores` (higher kept first); remaining ties go
            to the lower row index, so the choice is deterministic.

    Returns:
        (N,) bool mask of kept rows.
    """
    n = scores.numel()
    k_row = torch.as_tensor(k).expand(n) if torch.as_tensor(k).ndim == 0 else torch.as_tensor(k)  # (N,)
    secondary = torch.zeros(n, dtype=torch.float64) if tie_break is None else tie_break.double()  # (N,)
    index, _ = _group_index(group_ids)
    # sort by (group, score desc, tie-break desc, row index asc); stable sorts applied last-key-first
    order = torch.arange(n)  # (N,)
    for key in (-secondary, -scores.double(), index.double()):
        order = order[torch.sort(key[order], stable=True).indices]  # (N,)
    _, counts = torch.unique_consecutive(index[order], return_counts=True)  # (M,) groups are contiguous now
    starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)  # (N,) first slot of each row's group
    rank = torch.empty(n, dtype=torch.long)  # (N,)
    rank[order] = torch.arange(n) - starts  # position of each row within its group
    return rank < k_row


def ratio(
    logps: Tensor,
    old_logps: Tensor,
    loss_mask: Tensor,
    level: Literal["token", "sequence", "sequence_token"] = "token",
    log_clamp: float = LOG_RATIO_CLAMP,
) -> Tensor:
    """Importance ratio between the current and behaviour policies.

    Args:
        logps: (N, T) current logprobs (with grad).
        old_logps: (N, T) behaviour logprobs (no grad).
        loss_mask: (N, T) trained tokens.
        level: `"token"`: (N, T) `exp(lp - lp_old)`; `"sequence"`: (N,) GSPO's length-normalised
            `s_i = exp(mean_t (lp - lp_old))`; `"sequence_token"`: (N, T) GSPO-token's
            `sg[s_i] * exp(lp - sg[lp])`, whose value is s_i and whose gradient is `s_i * grad lp`.
        log_clamp: clamp of the log ratio before exponentiating (|.| for token level; from above
            for the sequence levels, as GSPO's reference does).

    Returns:
        The ratio; 0 outside the mask for the token levels.
    """
    mask = loss_mask.to(logps.dtype)  # (N, T)
    log_ratio = (logps - old_logps.detach()) * mask  # (N, T)
    if level == "token":
        return torch.exp(log_ratio.clamp(-log_clamp, log_clamp)) * mask  # (N, T)
    lengths = mask.sum(-1).clamp(min=1.0)  # (N,)
    log_sequence = (log_ratio.sum(-1) / lengths).clamp(max=log_clamp)  # (N,)
    if level == "sequence":
        return torch.exp(log_sequence)  # (N,)
    per_token = log_sequence.detach()[:, None] + logps - logps.detach()  # (N, T) value log s_i, grad grad lp
    return torch.exp(per_token.clamp(max=log_clamp)) * mask  # (N, T)


def ppo_clip_token_loss(
    ratio: Tensor, advantages: Tensor, eps_low: float, eps_high: float, dual_clip_c: float | None = None
) -> Tensor:
    """PPO-clip loss `max(-A rho, -A clip(rho, 1-eps_low, 1+eps_high))`, optionally dual-clipped.

    Args:
        ratio: (N, T) or (N,) importance ratios.
        advantages: same shape, 0 outside the mask.
        eps_low: the lower clip, `rho >= 1 - eps_low`.
        eps_high: the upper clip, `rho <= 1 + eps_high` (DAPO's clip-higher: eps_high > eps_low).
        dual_clip_c: if set (> 1), negative-advantage losses are capped at `-A * c`
            (arXiv 1912.09729; verl always applies c = 3).

    Returns:
        Per-element losses, same shape (0 where the advantage is 0).
    """
    unclipped = -advantages * ratio  # (N, T)
    clipped = -advantages * ratio.clamp(1.0 - eps_low, 1.0 + eps_high)  # (N, T)
    loss = torch.maximum(unclipped, clipped)  # (N, T)
    if dual_clip_c is not None:
        loss = torch.where(advantages < 0, torch.minimum(loss, -advantages * dual_clip_c), loss)  # (N, T)
    return loss


def reinforce_token_loss(logps: Tensor, advantages: Tensor) -> Tensor:
    """Policy-gradient loss `-A * lp` per token (gradient `-A * grad lp`).

    Args:
        logps: (N, T) current logprobs.
        advantages: (N, T) per-token advantages, 0 outside the mask.
    """
    return -advantages * logps  # (N, T)


def kl_token(
    logps: Tensor, ref_logps: Tensor, kind: Literal["k1", "k2", "k3"] = "k3", straight_through_k2: bool = False
) -> Tensor:
    """Per-token estimate of KL(pi_theta || pi_ref) at sampled tokens (Schulman's k1, k2, k3).

    With d = lp - lp_ref: k1 = d; k2 = d^2 / 2; k3 = exp(-d) + d - 1 (>= 0, unbiased, low variance).
    `straight_through_k2` keeps the value of `kind` but takes the gradient of k2 (what verl's
    advertised "k3+" means): `k2 - sg[k2] + sg[k]`.

    Args:
        logps: (N, T) current logprobs.
        ref_logps: (N, T) reference logprobs.
        kind: `"k1"`, `"k2"` or `"k3"`.
        straight_through_k2: value of `kind`, gradient of k2.
    """
    d = logps - ref_logps.detach()  # (N, T)
    k2 = 0.5 * d**2  # (N, T)
    value = {"k1": d, "k2": k2, "k3": torch.exp(-d) + d - 1.0}[kind]  # (N, T)
    if straight_through_k2:
        return k2 - k2.detach() + value.detach()  # (N, T)
    return value


AggregationMode = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]


def aggregate(
    loss: Tensor,
    loss_mask: Tensor,
    mode: AggregationMode,
    *,
    global_tokens: float | None = None,
    global_seqs: float | None = None,
    const_norm: float | None = None,
) -> Tensor:
    """Reduce per-token losses to the scalar the optimiser step minimises (ALGORITHMS.md 1.5).

    The denominators are step-global: pass the counts of the whole optimiser step (all
    micro-batches) so that summing the micro-batch results equals one computation over the step.
    Without them, the micro-batch's own counts are used.

    Modes:
        token-mean: `sum m l / global_tokens` (DAPO).
        seq-mean-token-mean: `sum_i (sum_t m l / L_i) / global_seqs` (GRPO paper); rows with
            L_i = 0 count neither in the sum nor in the default `global_seqs`.
        seq-mean-token-sum: `sum_i sum_t m l / global_seqs`.
        seq-mean-token-sum-norm: `sum_i sum_t m l / (global_seqs * const_norm)`, Dr. GRPO's
            constant normaliser (L_max, the generation budget). verl's mode of the same name omits
            the division by the number of sequences.

    Args:
        loss: (N, T) per-token losses.
        loss_mask: (N, T) trained tokens.
        mode: one of the modes above.
        global_tokens: trained tokens in the optimiser step.
        global_seqs: sequences with at least one trained token in the optimiser step.
        const_norm: the constant of `seq-mean-token-sum-norm`.
    """
    mask = loss_mask.to(loss.dtype)  # (N, T)
    masked = loss * mask  # (N, T)
    lengths = mask.sum(-1)  # (N,)
    seqs = global_seqs if global_seqs is not None else float((lengths > 0).sum())
    if mode == "token-mean":
        tokens = global_tokens if global_tokens is not None else float(mask.sum())
        return masked.sum() / max(tokens, 1.0)
    if mode == "seq-mean-token-mean":
        return (masked.sum(-1) / lengths.clamp(min=1.0)).sum() / max(seqs, 1.0)
    if mode == "seq-mean-token-sum":
        return masked.sum() / max(seqs, 1.0)
    if mode == "seq-mean-token-sum-norm":
        if const_norm is None:
            raise ValueError("seq-mean-token-sum-norm needs const_norm (the generation budget L_max)")
        return masked.sum() / (max(seqs, 1.0) * const_norm)
    raise ValueError(f"unknown aggregation mode {mode!r}")


def gvpo_loss(
    logps: Tensor,
    old_logps: Tensor,
    advantages: Tensor,
    loss_mask: Tensor,
    group_ids: Tensor,
    beta: float,
    group_size: int,
    *,
    group_norm: Literal["reference", "mean_over_groups"] = "mean_over_groups",
    global_groups: float | None = None,
) -> Tensor:
    """GVPO's MSE-form loss (arXiv 2504.19599; jszkc/GVPO `compute_policy_loss_gvpo`).

    Per group g of k responses, with the implicit reward `R_i = beta * sum_t m (lp - lp_old)` and
    centred advantages `a_i = r_i - mean_g r`:
    `L_g = 1/(k-1) * sum_i 1/2 [(R_i - sg[mean_g R]) - a_i]^2`.
    Whole groups must be in the batch (the group mean is taken over the rows present).

    Args:
        logps: (N, T) current logprobs.
        old_logps: (N, T) rollout-policy logprobs (the implicit reward's reference).
        advantages: (N,) centred rewards a_i.
        loss_mask: (N, T) trained tokens.
        group_ids: (N,) group ids.
        beta: the KL strength (reference script: 0.1).
        group_size: k (>= 2).
        group_norm: `"reference"` sums the L_g of the batch (the reference code's scale);
            `"mean_over_groups"` divides by the number of groups in the optimiser step.
        global_groups: groups in the optimiser step (default: the groups present).

    Returns:
        Scalar loss.
    """
    if group_size < 2:
        raise ValueError("GVPO needs groups of at least 2 responses (it divides by k - 1)")
    mask = loss_mask.to(logps.dtype)  # (N, T)
    implicit = beta * ((logps - old_logps.detach()) * mask).sum(-1)  # (N,)
    index, num_groups = _group_index(group_ids)
    count = torch.zeros(num_groups, dtype=logps.dtype).index_add_(0, index, torch.ones_like(implicit))  # (M,)
    group_mean = torch.zeros(num_groups, dtype=logps.dtype).index_add_(0, index, implicit.detach()) / count  # (M,)
    residual = (implicit - group_mean[index]) - advantages.to(logps.dtype)  # (N,)
    total = 0.5 * (residual**2).sum() / (group_size - 1)
    if group_norm == "reference":
        return total
    return total / (global_groups if global_groups is not None else num_groups)


@torch.no_grad()
def broadcast_to_tokens(advantages: Tensor, turn_index: Tensor) -> Tensor:
    """Per-token advantages from per-trajectory (N,) or per-turn (N, K) ones.

    Args:
        advantages: (N,) one value per trajectory, or (N, K) one per turn.
        turn_index: (N, T) the turn each token was sampled in, -1 for tokens not sampled
            (prompt, template, feedback, padding).

    Returns:
        (N, T) advantages, exactly 0 where `turn_index` is -1.
    """
    sampled = turn_index >= 0  # (N, T)
    if advantages.ndim == 1:
        return advantages[:, None] * sampled  # (N, T)
    gathered = advantages.gather(1, turn_index.clamp(min=0))  # (N, T)
    return torch.where(sampled, gathered, torch.zeros_like(gathered))  # (N, T)


@torch.no_grad()
def anchor_step_advantage(
    returns: Tensor,
    turn_mask: Tensor,
    group_ids: Tensor,
    state_ids: Tensor,
    *,
    scale: Literal["mean", "mean_std"] = "mean",
    eps: float = 1e-6,
) -> Tensor:
    """GiGPO's step advantage: a turn's return against the other turns taken in the same state.

    `A^S_{i,t} = G_{i,t} - mean{G_{j,u} : group_j = group_i, state_{j,u} = state_{i,t}}` (ALGORITHMS.md
    4.2b; Feng et al., arXiv 2505.10978; verl-agent `step_norm_reward`), divided by that anchor
    group's unbiased std plus `eps` when `scale="mean_std"`. Turns are compared only within their
    group (the same env seed), and a turn alone in its state gets 0.

    Args:
        returns: (N, K) discounted return of each turn (`rewards.discounted_returns`).
        turn_mask: (N, K) 1 for real turns.
        group_ids: (N,) group of each trajectory.
        state_ids: (N, K) integer id of the state each turn was taken in; equal ids within a group
            mean the same state (ids need not be comparable across groups).
        scale: `"mean"` centres only; `"mean_std"` also divides by the anchor group's std.
        eps: added to the std.

    Returns:
        (N, K) step advantages, 0 on padding turns and for singleton anchor groups.
    """
    real = turn_mask.bool()  # (N, K)
    anchor_ids = anchor_groups(turn_mask, group_ids, state_ids)  # (M,)
    values = returns[real]  # (M,)
    mean, std, count = _group_stats(values, anchor_ids)  # (M,) each
    centred = values.double() - mean  # (M,)
    step = centred / (std + eps) if scale == "mean_std" else centred  # (M,)
    step = torch.where(count > 1, torch.nan_to_num(step, nan=0.0), torch.zeros_like(step))  # (M,)
    out = torch.zeros_like(returns)  # (N, K)
    out[real] = step.to(returns.dtype)
    return out


@torch.no_grad()
def anchor_groups(turn_mask: Tensor, group_ids: Tensor, state_ids: Tensor) -> Tensor:
    """The anchor group of every real turn: turns of one group (same seed) taken in the same state.

    Args:
        turn_mask: (N, K) 1 for real turns.
        group_ids: (N,) group of each trajectory.
        state_ids: (N, K) integer id of the state each turn was taken in.

    Returns:
        (M,) anchor-group index (0..A-1) of each real turn, in the row-major order of `turn_mask`.
    """
    real = turn_mask.bool()  # (N, K)
    groups = group_ids[:, None].expand_as(state_ids)[real]  # (M,) group of each real turn
    anchors = torch.stack([groups.long(), state_ids[real].long()], dim=1)  # (M, 2)
    return torch.unique(anchors, dim=0, return_inverse=True)[1]  # (M,)


@torch.no_grad()
def anchor_metrics(turn_mask: Tensor, group_ids: Tensor, state_ids: Tensor) -> dict[str, float]:
    """How much step credit has to compare, both 0 when there are no turns.

    `anchor_coverage` is the share of real turns whose anchor group has another turn (the turns
    step credit moves); `anchor_size_mean` is real turns per anchor group, singletons included.
    """
    anchor_ids = anchor_groups(turn_mask, group_ids, state_ids)  # (M,)
    if anchor_ids.numel() == 0:
        return {"anchor_coverage": 0.0, "anchor_size_mean": 0.0}
    sizes = torch.bincount(anchor_ids)  # (A,)
    return {
        "anchor_coverage": float((sizes[anchor_ids] > 1).double().mean()),
        "anchor_size_mean": anchor_ids.numel() / sizes.numel(),
    }


@torch.no_grad()
def combine_episode_and_step(episode: Tensor, step: Tensor, turn_mask: Tensor, step_weight: float) -> Tensor:
    """GiGPO's per-turn advantage `A_{i,t} = A^E_i + w * A^S_{i,t}` on real turns, 0 on padding.

    Args:
        episode: (N,) episode advantages (the base objective's group-relative advantage).
        step: (N, K) step advantages (`anchor_step_advantage`).
        turn_mask: (N, K) 1 for real turns.
        step_weight: w.

    Returns:
        (N, K) per-turn advantages.
    """
    return (episode[:, None] + step_weight * step) * turn_mask  # (N, K)
