"""The trainer's model: loading, precision choice, and token logprobs at sampled positions only.

`TokenScorer` wraps a causal LM and returns `logps[:, t]`, the log-probability of token t under the
model at the sampling temperature, but evaluates the LM head and softmax only where `score_mask`
is 1 (the sampled tokens). In multi-turn episodes most positions are prompt, template or env
feedback, and the (positions x vocabulary) logits are the largest tensor of the forward pass, so
this cuts both time and memory. It is an `nn.Module`, so accelerate can wrap it (DDP) and the
gradient is synchronised through its forward.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import Tensor, nn

from turngym.agent.hardware import native_bf16


def resolve_autocast(setting: str, device_type: str) -> bool:
    """`model.autocast`: whether the update runs under bf16 autocast (`auto`: where bf16 is native)."""
    if setting == "auto":
        return native_bf16(device_type)
    return setting == "bf16"


def load_model(path: str, device: torch.device) -> tuple[nn.Module, Any]:
    """The fp32 causal LM and its tokenizer from a Hugging Face directory (or checkpoint).

    On CPU the model attends with `CPU_ATTENTION` (see `short_eager_attention`); gated SiLU MLPs keep
    less for the backward pass (`lean_swiglu_mlps`).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device)
    model.config.use_cache = False
    if device.type == "cpu" and model.config._attn_implementation == "sdpa" and model.config.model_type in LLAMA_LIKE:
        _register_cpu_attention()
        model.set_attn_implementation(CPU_ATTENTION)
    lean_swiglu_mlps(model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model, tokenizer


CPU_ATTENTION = "turngym_cpu"
LLAMA_LIKE = ("llama", "mistral", "qwen2", "qwen3")  # attention = Llama's eager_attention_forward + a mask
EAGER_MAX_KEYS = 256  # at or below this many keys, plain matmul-softmax-matmul beats SDPA on CPU


def short_eager_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Any,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """Attention for the trainer on CPU: eager (matmul, softmax, matmul) for short rows, SDPA for long ones.

    PyTorch's CPU flash-attention kernel is slow on the short rows of turn-based episodes: forward
    plus backward of one layer over 4,096 bf16 tokens took 78-106 ms in rows of 128 against 41 ms
    eager, the same at 256, and eager lost from 512 on (250 vs 125 ms), where it also stores the
    whole (rows, heads, T, T) attention matrix. Both get the same additive mask (`eager_mask`). Under
    autograd the eager path keeps q, k and v and recomputes the probabilities in the backward pass (a
    checkpoint; the crossover above was timed before it, when the backward reused them).
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if key.shape[2] <= EAGER_MAX_KEYS:
        scaling = scaling if scaling is not None else query.shape[-1] ** -0.5
        dropout = dropout if module.training else 0.0
        if not (torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))):
            return grouped_eager_attention(query, key, value, attention_mask, scaling, dropout), None
        # Keep q, k and v, not the (rows, heads, Tq, Tk) probabilities (fp32 for the softmax and their bf16
        # copy under autocast: a fifth of what a micro-batch keeps); the backward recomputes them exactly.
        out = torch.utils.checkpoint.checkpoint(
            grouped_eager_attention, query, key, value, attention_mask, scaling, dropout, use_reentrant=False
        )  # (B, Tq, H, D)
        return out, None
    return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling)


def grouped_eager_attention(
    query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None, scaling: float, dropout: float = 0.0
) -> Tensor:
    """softmax(q k^T * scaling + mask) v, with each key/value head shared by its group of query heads.

    transformers' eager attention copies every key and value head once per query head that uses it
    (`repeat_kv`) and keeps those copies for the backward pass; here each group of query heads is
    stacked along the query axis instead, so keys and values are used, and kept, once. With
    SmolLM2's 9 query and 3 key/value heads this keeps 8% less for the backward pass (measured on
    the demo's episodes).

    Args:
        query: (B, H, Tq, D), H a multiple of K; query head h uses key/value head h // (H / K), as
            `repeat_kv` pairs them.
        key: (B, K, Tk, D).
        value: (B, K, Tk, D).
        mask: additive, broadcastable to (B, 1, Tq, Tk), or None.
        scaling: the factor on q k^T (1 / sqrt(D) in most models).
        dropout: dropout probability on the attention weights (0 outside training).

    Returns:
        (B, Tq, H, D), the layout transformers' attention functions return.
    """
    batch, heads, length, dim = query.shape
    kv_heads, group = key.shape[1], heads // key.shape[1]
    stacked = query.reshape(batch, kv_heads, group * length, dim)  # (B, K, G*Tq, D) heads of a group stacked
    scores = torch.matmul(stacked, key.transpose(2, 3)) * scaling  # (B, K, G*Tq, Tk)
    if mask is not None:
        grouped = scores.view(batch, kv_heads, group, length, -1)  # (B, K, G, Tq, Tk)
        scores = (grouped + mask[:, :, None]).view_as(scores)  # (B, K, G*Tq, Tk)
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)  # (B, K, G*Tq, Tk)
    if dropout:
        probs = nn.functional.dropout(probs, p=dropout)  # (B, K, G*Tq, Tk)
    out = torch.matmul(probs, value)  # (B, K, G*Tq, D)
    return out.view(batch, heads, length, dim).transpose(1, 2).contiguous()  # (B, Tq, H, D)


class SwiGLU(torch.autograd.Function):
    """`silu(gate) * up` that keeps only `gate` and `up` for the backward pass and recomputes the rest.

    Written out, `act_fn(gate_proj(x)) * up_proj(x)` keeps four (tokens x intermediate) tensors per
    layer (silu's input, its output, `up`, and the product for `down_proj`); this keeps three. The
    recomputed sigmoid is elementwise, next to nothing beside the MLP's matrix products. Backward:
    d/dgate = grad * up * s * (1 + gate * (1 - s)) with s = sigmoid(gate); d/dup = grad * silu(gate).
    """

    @staticmethod
    def forward(ctx: Any, gate: Tensor, up: Tensor) -> Tensor:
        """(..., I) `silu(gate) * up`, keeping `gate` and `up`."""
        ctx.save_for_backward(gate, up)
        return nn.functional.silu(gate) * up  # (..., I)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor]:
        """Gradients for `gate` and `up` from the output's gradient (formulas above), computed in fp32."""
        gate, up = ctx.saved_tensors
        dtype = gate.dtype
        gate, up, grad = gate.float(), up.float(), grad.float()  # no-ops in fp32; bf16 would round each step
        sigmoid = torch.sigmoid(gate)  # (..., I)
        grad_up = grad * gate * sigmoid  # (..., I)
        grad_gate = grad * up * sigmoid * (1 + gate * (1 - sigmoid))  # (..., I)
        return grad_gate.to(dtype), grad_up.to(dtype)


def _swiglu_mlp_forward(self: nn.Module, x: Tensor) -> Tensor:
    """`LlamaMLP.forward` through `SwiGLU` (the same value)."""
    return self.down_proj(SwiGLU.apply(self.gate_proj(x), self.up_proj(x)))


SWIGLU_MLPS = ("LlamaMLP", "MistralMLP", "Qwen2MLP", "Qwen3MLP")  # forward: down(act(gate(x)) * up(x))


def lean_swiglu_mlps(model: nn.Module) -> int:
    """Route every MLP of `model` whose class is in `SWIGLU_MLPS` and whose activation is SiLU through `SwiGLU`.

    Other models' MLPs can have the same three projections and still compute something else (scale
    factors, clamps, expert routing), so classes are named, not guessed. Only the instance's
    `forward` changes: weights, saving and LoRA adapters (which replace the projections inside) are
    untouched. Returns how many MLPs were routed.
    """
    from transformers.activations import SiLUActivation

    count = 0
    for module in model.modules():
        if type(module).__name__ in SWIGLU_MLPS and isinstance(module.act_fn, (nn.SiLU, SiLUActivation)):
            module.forward = functools.partial(_swiglu_mlp_forward, module)  # a partial pickles; a bound method not
            count += 1
    return count


def _register_cpu_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

    AttentionInterface.register(CPU_ATTENTION, short_eager_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(CPU_ATTENTION, eager_mask)


class TokenScorer(nn.Module):
    """Log-probabilities of the sampled tokens under a causal LM.

    Rows that start with the same tokens (the episodes of a group share their first prompt) share
    that prefix's computation: it runs once, for one row, and its keys and values are repeated for
    every row, with gradients flowing back through them, so the result equals the plain forward
    pass (tested) while a group of G episodes pays for its prompt once instead of G times. Rows
    that are identical (episodes that played the same moves) are computed once.

    Args:
        model: a Hugging Face causal LM whose logits are `lm_head(last hidden state)` (Llama, Qwen,
            Mistral, SmolLM2; `final_logit_softcapping` is applied where the config has it).
        share_prefix: compute a prefix common to every row once (see above).
        min_prefix: shorter common prefixes are not worth a separate pass.
    """

    def __init__(self, model: nn.Module, share_prefix: bool = True, min_prefix: int = 16) -> None:
        super().__init__()
        self.model = model
        self.share_prefix, self.min_prefix = share_prefix, min_prefix
        self.softcap = getattr(model.config, "final_logit_softcapping", None)

    def forward(
        self, input_ids: Tensor, score_mask: Tensor, temperature: float = 1.0, segments: Tensor | None = None
    ) -> Tensor:
        """`logps[:, t] = log p(token t | tokens < t)` at `temperature`, 0 where `score_mask` is 0.

        Args:
            input_ids: (N, T) right-padded token ids (T >= 2).
            score_mask: (N, T) 1 on the tokens to score.
            temperature: the sampling temperature (logits are divided by it, as the sampler did).
            segments: (N,) rows with the same value are scored together and share their common
                prefix (pass group ids: a group's episodes share their first prompt); None: one segment.

        Returns:
            (N, T) float32 logprobs.
        """
        if segments is None or bool((segments == segments[0]).all()):
            return self._score(input_ids, score_mask, temperature)
        out = torch.zeros(input_ids.shape, dtype=torch.float32, device=input_ids.device)  # (N, T)
        for segment in torch.unique(segments):
            rows = (segments == segment).nonzero().squeeze(-1)  # (n,)
            out = out.index_put((rows,), self._score(input_ids[rows], score_mask[rows], temperature))  # (N, T)
        return out

    def _score(self, input_ids: Tensor, score_mask: Tensor, temperature: float) -> Tensor:
        """`forward` for one segment: (n, T) logprobs, each distinct row computed once."""
        width = input_ids.shape[1]
        rows = torch.cat([input_ids, score_mask.to(input_ids.dtype)], dim=1)  # (n, 2T) tokens and what is scored
        distinct, inverse = torch.unique(rows, dim=0, return_inverse=True)  # (u, 2T), (n,)
        if len(distinct) == len(rows):
            return self._score_buckets(input_ids, score_mask, temperature)
        # Episodes of a group often repeat each other once the policy is confident: identical rows have
        # identical logprobs, and indexing sums their gradients, so this is exact.
        logps = self._score_buckets(distinct[:, :width], distinct[:, width:].to(score_mask.dtype), temperature)
        return logps[inverse]  # (n, T)

    def _score_buckets(self, input_ids: Tensor, score_mask: Tensor, temperature: float) -> Tensor:
        """(n, T) logprobs, rows of very different lengths computed apart, each cut after its last scored token.

        The model is causal, so positions after a row's last scored token change nothing: a bucket of
        rows is computed only up to its longest row's last scored token. Rows are bucketed by that end
        (`length_buckets`) so a 1-turn episode is not padded to a 3-turn one; each bucket pays for
        the shared prefix once more, which the bucketing weighs.
        """
        n, width = input_ids.shape
        scored = score_mask[:, 1:].bool()  # (n, T-1)
        positions = torch.arange(1, width, device=input_ids.device)  # (T-1,) the token each column scores
        ends = torch.where(scored.any(1), (scored * positions).amax(1) + 1, 0).tolist()  # last scored token + 1
        buckets = length_buckets(ends, overhead=self._shared_prefix(input_ids, scored) + BUCKET_OVERHEAD_TOKENS)
        if not buckets:  # nothing to score: `_score_rows` scores one token of row 0 (DDP needs every parameter)
            buckets, ends = [[0]], [2] * n
        out = torch.zeros(input_ids.shape, dtype=torch.float32, device=input_ids.device)  # (n, T)
        for bucket in buckets:
            index = torch.tensor(bucket, device=input_ids.device)  # (b,)
            end = max(ends[r] for r in bucket)
            logps = self._score_rows(input_ids[index, :end], score_mask[index, :end], temperature)  # (b, end)
            out = out.index_put((index,), nn.functional.pad(logps, (0, width - end)))  # (n, T)
        return out

    def _score_rows(self, input_ids: Tensor, score_mask: Tensor, temperature: float) -> Tensor:
        """(n, T) logprobs of one segment's rows."""
        select = score_mask[:, 1:].bool()  # (n, T-1) position t-1 predicts token t
        if not bool(select.any()):  # score one token anyway: every parameter must take part (DDP)
            select = select.clone()
            select[0, 0] = True
        shared = self._shared_prefix(input_ids, select)
        hidden = self._hidden(input_ids, shared)  # (n, T - shared, H)
        states = hidden[:, :-1][select[:, shared:]]  # (M, H)
        logits = self.model.get_output_embeddings()(states).float()  # (M, V)
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap  # (M, V)
        if temperature != 1.0:
            logits = logits / temperature  # (M, V)
        targets = input_ids[:, 1:][select]  # (M,)
        picked = torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None]).squeeze(-1)  # (M,)
        scored = torch.zeros(select.shape, dtype=picked.dtype, device=picked.device).masked_scatter(select, picked)
        return nn.functional.pad(scored, (1, 0))  # (n, T)

    def _shared_prefix(self, input_ids: Tensor, select: Tensor) -> int:
        """Length of a prefix all rows share and no scored token needs the hidden states of.

        0 under gradient checkpointing: checkpointed layers drop the prefix's cached keys and values.
        """
        checkpointed = self.model.training and getattr(self.model, "is_gradient_checkpointing", False)
        if not self.share_prefix or input_ids.shape[0] < 2 or checkpointed:
            return 0
        differs = (input_ids != input_ids[:1]).any(0)  # (T,) a position where some row differs
        common = int(differs.float().argmax()) if bool(differs.any()) else input_ids.shape[1]
        first_scored = int(select.any(0).float().argmax())  # hidden state index of the first scored token
        length = min(common, first_scored)
        return length if length >= self.min_prefix else 0

    def _hidden(self, input_ids: Tensor, shared: int) -> Tensor:
        """Last hidden states of positions `shared..T-1`, the first `shared` computed once for all rows."""
        decoder = self.model.get_decoder()
        if shared == 0:
            return decoder(input_ids=input_ids, use_cache=False).last_hidden_state  # (N, T, H)
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        decoder(input_ids=input_ids[:1, :shared], past_key_values=cache, use_cache=True)
        cache.batch_repeat_interleave(input_ids.shape[0])  # the prefix's keys/values for every row, with grad
        positions = torch.arange(shared, input_ids.shape[1], device=input_ids.device)[None]  # (1, T - shared)
        out = decoder(input_ids=input_ids[:, shared:], past_key_values=cache, position_ids=positions, use_cache=True)
        return out.last_hidden_state  # (N, T - shared, H)


BUCKET_OVERHEAD_TOKENS = 32  # a forward pass's fixed cost, in tokens, when deciding to split rows


def length_buckets(ends: list[int], overhead: int) -> list[list[int]]:
    """Rows (by index) in buckets of similar `ends`, minimising the padded tokens computed.

    A bucket costs `rows x (its longest end - overhead) + overhead` tokens (the overhead is paid once
    per bucket: the shared prefix and a pass's fixed cost). Rows with end 0 (nothing to score) are
    left out. Exact minimum over splits of the rows sorted by end (dynamic programming, O(n^2)).

    Example:
        >>> length_buckets([100, 300, 110, 0], overhead=50)
        [[0, 2], [1]]
    """
    order = sorted((r for r, end in enumerate(ends) if end > 0), key=lambda r: ends[r])
    best = [0.0] + [float("inf")] * len(order)  # best[j]: cheapest cost of the first j rows
    cut = [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        widest = ends[order[j - 1]]
        for i in range(j):
            cost = best[i] + (j - i) * max(widest - overhead, 0) + overhead
            if cost < best[j]:
                best[j], cut[j] = cost, i
    buckets, j = [], len(order)
    while j > 0:
        buckets.append(order[cut[j] : j])
        j = cut[j]
    return buckets[::-1]
