"""Sampler/trainer mismatch: importance weights from logprobs the rollout already recorded.

vLLM samples with its own dtype and kernels; the trainer scores the same tokens in fp32, so the
sampling policy mu and the trainer's pi_old differ slightly even with identical weights. Tokens
were drawn from mu, so an unbiased policy gradient weights them by pi_old / mu. Per token,
`ratio_t = exp(old_logp_t - sampling_logp_t)`, from `Trajectory.sampling_logps` (recorded by the
rollout) and the trainer's own forward pass: no extra forward pass.

Modes (`correction.mode`; names follow TRL's `vllm_importance_sampling_mode`):
    token_truncate     w_t = min(ratio_t, C)             TIS; verl `rollout_is=token` (threshold 2.0),
                                                          SkyRL `tis_ratio_type=token` (clip 2.0)
    sequence_truncate  w = min(prod_t ratio_t, C)        verl `rollout_is=sequence`, TRL `sequence_truncate`
    token_mask         w_t = 1[low <= ratio_t <= high]   IcePop-style masking
    sequence_mask      w = 1[low <= prod_t ratio_t <= high]   TRL's default mode (with [0, 3])
    none               w = 1

turngym defaults to `token_truncate` with C = 2 (verl's and SkyRL's token threshold): per-token
weights keep the variance low for long multi-turn sequences, where a product over hundreds of
tokens drifts far from 1 (TRL's sequence mode masks whole episodes then). The weights are detached
and multiply the advantages, which is exactly weighting each token's loss for every objective
whose loss is positively homogeneous in the advantage (`Objective.accepts_is_weights`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from turngym.algos.functional import LOG_RATIO_CLAMP


@torch.no_grad()
def importance_weights(
    old_logps: Tensor,
    sampling_logps: Tensor,
    loss_mask: Tensor,
    mode: str,
    clip: float = 2.0,
    band: tuple[float, float] = (0.5, 2.0),
) -> Tensor:
    """Per-token weights `w` (0 outside the mask) for the sampled tokens.

    Args:
        old_logps: (N, T) the trainer's logprobs of the sampled tokens (pi_old).
        sampling_logps: (N, T) the sampler's logprobs of the same tokens (mu).
        loss_mask: (N, T) trained tokens.
        mode: one of the modes in the module docstring.
        clip: C of the truncating modes.
        band: [low, high] of the masking modes.

    Returns:
        (N, T) weights, 0 outside the mask.
    """
    mask = loss_mask.to(old_logps.dtype)  # (N, T)
    log_ratio = ((old_logps - sampling_logps) * mask).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)  # (N, T)
    if mode == "none":
        return mask
    if mode.startswith("sequence"):
        sequence = log_ratio.sum(-1).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)  # (N,) log prod_t ratio_t
        ratio = torch.exp(sequence)[:, None].expand_as(mask)  # (N, T)
    elif mode.startswith("token"):
        ratio = torch.exp(log_ratio)  # (N, T)
    else:
        raise ValueError(f"unknown correction mode {mode!r}")
    if mode.endswith("truncate"):
        weights = ratio.clamp(max=clip)  # (N, T)
    else:
        weights = ((ratio >= band[0]) & (ratio <= band[1])).to(mask.dtype)  # (N, T)
    return weights * mask


@torch.no_grad()
def mismatch_sums(old_logps: Tensor, sampling_logps: Tensor, loss_mask: Tensor, weights: Tensor) -> dict[str, float]:
    """Sums over trained tokens for the mismatch metrics (divide by `tokens` to get means).

    `mismatch_kl` is the k3 estimate of KL(mu || pi_old) from tokens sampled by mu:
    `r - 1 - log r` with `r = pi_old / mu`, never negative.
    """
    mask = loss_mask.bool()  # (N, T)
    delta = (old_logps - sampling_logps)[mask].double().clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)  # (M,)
    ratio = torch.exp(delta)  # (M,)
    kept = weights[mask].double()  # (M,)
    return {
        "tokens": float(mask.sum()),
        "mismatch_abs_logp": float(delta.abs().sum()),
        "mismatch_kl": float((ratio - 1 - delta).sum()),
        "is_weight": float(kept.sum()),
        "is_changed": float((kept - 1).abs().gt(1e-6).sum()),
    }
