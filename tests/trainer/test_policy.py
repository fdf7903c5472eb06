"""TokenScorer against a plain transformers forward: same logprobs and gradients, whatever shortcuts it takes."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from turngym.trainer.policy import (
    CPU_ATTENTION,
    EAGER_MAX_KEYS,
    TokenScorer,
    grouped_eager_attention,
    length_buckets,
    load_model,
)


def plain_logps(model, input_ids: torch.Tensor, score_mask: torch.Tensor) -> torch.Tensor:
    """log p(token t | tokens < t) from the full logits, 0 where not scored: what people write by hand."""
    logits = model(input_ids=input_ids).logits.float()  # (N, T, V)
    picked = torch.log_softmax(logits[:, :-1], -1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # (N, T-1)
    return torch.nn.functional.pad(picked, (1, 0)) * score_mask  # (N, T)


@pytest.mark.parametrize("length", [EAGER_MAX_KEYS // 2, EAGER_MAX_KEYS + 60])  # the eager path, then SDPA
@pytest.mark.parametrize("share_prefix", [True, False])
@pytest.mark.parametrize("repeated_row", [False, True])  # identical episodes are computed once
@pytest.mark.parametrize("short_row", [False, True])  # a short episode among long ones: computed in its own bucket
def test_scorer_equals_the_plain_forward(tiny_model_dir, length, share_prefix, repeated_row, short_row) -> None:
    ours, _ = load_model(str(tiny_model_dir), torch.device("cpu"))
    assert ours.config._attn_implementation == CPU_ATTENTION
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)  # transformers' default (SDPA)
    generator = torch.Generator().manual_seed(length)
    input_ids = torch.randint(5, 480, (4, length), generator=generator)  # (4, T)
    input_ids[:, :40] = input_ids[0, :40]  # a shared prompt, as in a group
    input_ids[3, length - 30 :] = 0  # a shorter, right-padded row
    score_mask = torch.zeros(4, length)  # (4, T)
    score_mask[:, 45 : length - 40 : 3] = 1
    if repeated_row:
        input_ids[2] = input_ids[1]
    if short_row:  # row 0 ends early: at the longer length it is computed in a bucket of its own
        input_ids[0, 60:] = 0
        score_mask[0, 58:] = 0
    segments = torch.tensor([0, 0, 0, 1])  # rows 0-2 share their prefix; row 3 is scored alone

    logps = TokenScorer(ours, share_prefix=share_prefix)(input_ids, score_mask, 1.0, segments)  # (4, T)
    expected = plain_logps(plain, input_ids, score_mask)  # (4, T)
    assert float((logps - expected).detach().abs().max()) < 1e-5
    weights = torch.randn(4, length, generator=generator)  # (4, T) any loss that is linear in the logprobs
    (logps * weights).sum().backward()
    (expected * weights).sum().backward()
    for (name, ours_param), plain_param in zip(ours.named_parameters(), plain.parameters(), strict=True):
        scale = float(plain_param.grad.abs().max())
        assert float((ours_param.grad - plain_param.grad).abs().max()) <= 1e-4 * scale + 1e-7, name


def test_the_training_forward_keeps_no_attention_probabilities(tiny_model_dir, monkeypatch) -> None:
    """The eager path recomputes softmax(q k^T) in the backward pass (checkpointed) instead of keeping it;
    under bf16 autocast the gradients are the same, bit for bit, as when it keeps them."""
    model, _ = load_model(str(tiny_model_dir), torch.device("cpu"))
    assert model.config._attn_implementation == CPU_ATTENTION  # the eager path, not SDPA (which keeps none either)
    config = model.config
    rows, length, kv_heads = 2, 64, config.num_key_value_heads
    input_ids = torch.randint(5, 480, (rows, length), generator=torch.Generator().manual_seed(0))  # (2, T)
    probs = (rows, kv_heads, config.num_attention_heads // kv_heads * length, length)  # (B, K, G*Tq, Tk)

    def forward_backward() -> tuple[list[tuple[int, ...]], list[torch.Tensor]]:
        shapes: list[tuple[int, ...]] = []

        def keep(tensor: torch.Tensor) -> torch.Tensor:
            shapes.append(tuple(tensor.shape))
            return tensor

        model.zero_grad(set_to_none=True)
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t), torch.autocast("cpu", torch.bfloat16):
            logps = TokenScorer(model)(input_ids, torch.ones(rows, length))  # (2, T)
        logps.sum().backward()
        return shapes, [p.grad.clone() for p in model.parameters()]

    shapes, grads = forward_backward()
    assert shapes and probs not in shapes
    monkeypatch.setattr(torch.utils.checkpoint, "checkpoint", lambda fn, *args, **kwargs: fn(*args))
    kept_shapes, kept_grads = forward_backward()  # the control: without the checkpoint they are kept
    assert probs in kept_shapes
    assert all(torch.equal(ours, kept) for ours, kept in zip(grads, kept_grads, strict=True))


def test_length_buckets_minimise_the_padded_tokens() -> None:
    # sorted ends 100, 110 | 300: together 3 x (300 - 50) + 50 = 800; apart 2 x 60 + 50 + 250 + 50 = 470
    assert length_buckets([100, 300, 110, 0], overhead=50) == [[0, 2], [1]]  # end 0: nothing to score, left out
    # close ends stay together: 4 x (130 - 80) + 80 = 280 beats any split (each split adds 80)
    assert length_buckets([100, 110, 120, 130], overhead=80) == [[0, 1, 2, 3]]
    assert length_buckets([0, 0], overhead=10) == []


def test_grouped_attention_equals_transformers_eager_with_shared_key_heads() -> None:
    """6 query heads on 2 key/value heads: head h must use key/value head h // 3, as `repeat_kv` pairs them."""
    from types import SimpleNamespace

    from transformers.models.llama.modeling_llama import eager_attention_forward

    generator = torch.Generator().manual_seed(0)
    query = torch.randn(2, 6, 5, 4, generator=generator, requires_grad=True)  # (B, H, Tq, D)
    key = torch.randn(2, 2, 7, 4, generator=generator, requires_grad=True)  # (B, K, Tk, D)
    value = torch.randn(2, 2, 7, 4, generator=generator, requires_grad=True)  # (B, K, Tk, D)
    mask = torch.zeros(2, 1, 5, 7)  # (B, 1, Tq, Tk) a causal mask over 2 cached keys, row 1 left-padded
    mask[:, :, torch.arange(5)[:, None] + 2 < torch.arange(7)[None]] = float("-inf")
    mask[1, :, :, 0] = float("-inf")
    module = SimpleNamespace(num_key_value_groups=3, training=False)
    expected, _ = eager_attention_forward(module, query, key, value, mask, scaling=0.5)  # (B, Tq, H, D)
    ours = grouped_eager_attention(query, key, value, mask, scaling=0.5)  # (B, Tq, H, D)
    assert float((ours - expected).detach().abs().max()) < 1e-6
    weights = torch.randn(expected.shape, generator=generator)  # (B, Tq, H, D)
    expected_grads = torch.autograd.grad((expected * weights).sum(), (query, key, value))
    ours_grads = torch.autograd.grad((ours * weights).sum(), (query, key, value))
    for ours_grad, expected_grad in zip(ours_grads, expected_grads, strict=True):
        assert float((ours_grad - expected_grad).abs().max()) < 1e-5


def test_swiglu_backward_is_the_derivative_of_silu_gate_times_up() -> None:
    from turngym.trainer.policy import SwiGLU

    generator = torch.Generator().manual_seed(1)
    gate = torch.randn(3, 5, dtype=torch.float64, generator=generator, requires_grad=True)
    up = torch.randn(3, 5, dtype=torch.float64, generator=generator, requires_grad=True)
    assert torch.autograd.gradcheck(SwiGLU.apply, (gate, up))
    assert torch.equal(SwiGLU.apply(gate, up), torch.nn.functional.silu(gate) * up)


def test_load_model_routes_every_mlp_through_swiglu_and_the_model_still_pickles(tiny_model_dir) -> None:
    import pickle

    from turngym.trainer.policy import _swiglu_mlp_forward

    model, _ = load_model(str(tiny_model_dir), torch.device("cpu"))
    mlps = [layer.mlp for layer in model.model.layers]
    assert mlps and all(mlp.forward.func is _swiglu_mlp_forward for mlp in mlps)
    copy = pickle.loads(pickle.dumps(model))  # e.g. a spawned worker; a bound method on the instance would not load
    input_ids = torch.tensor([[5, 6, 7, 8]])
    assert torch.equal(copy(input_ids).logits, model(input_ids).logits)


def test_an_mlp_of_another_class_is_left_alone() -> None:
    from turngym.trainer.policy import lean_swiglu_mlps

    class ScaledMLP(torch.nn.Module):  # Llama's three projections and SiLU, but its own forward
        def __init__(self) -> None:
            super().__init__()
            self.gate_proj, self.up_proj = torch.nn.Linear(4, 8), torch.nn.Linear(4, 8)
            self.down_proj, self.act_fn = torch.nn.Linear(8, 4), torch.nn.SiLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2.0 * self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))

    model = torch.nn.Sequential(ScaledMLP())
    assert lean_swiglu_mlps(model) == 0
    assert "forward" not in vars(model[0])
