"""Memory settings: `model.gradient_checkpointing` and `model.kv_cache_gib: auto`.

Checkpointing must change what is kept, not what is computed: the same gradients, with fewer bytes
held for the backward pass. The automatic KV cache size is checked against the hand-computed
formula of `kv_cache_gib`'s docstring.
"""

from __future__ import annotations

import pytest
import torch

from tests.trainer.support import synthetic_rows, tiny_recipe
from turngym.algos import GRPO
from turngym.trainer import load_recipe, loop
from turngym.trainer.collate import collate
from turngym.trainer.distributed import Processes
from turngym.trainer.update import update

LORA = {"r": 4, "alpha": 8}


def _learner(tiny_model_dir, tmp_path, checkpointing: bool, lora: dict | None) -> tuple[loop.Learner, object]:
    model = {"gradient_checkpointing": checkpointing, "lora": lora}
    config = load_recipe(tiny_recipe(tiny_model_dir, tmp_path, model=model))
    torch.manual_seed(0)  # the same initial adapter in both learners
    learner, _, _ = loop._build_learner(config, None, Processes.from_environment())
    return learner, config


def _saved_bytes(learner: loop.Learner, rows) -> int:
    """Bytes autograd keeps for the backward pass of one forward over `rows` (every saved tensor)."""
    saved = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += tensor.numel() * tensor.element_size()
        return tensor

    batch = collate(rows, list(range(len(rows))))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        logps = learner.scorer(batch.input_ids, batch.policy.loss_mask, 1.0, batch.policy.group_ids)  # (N, T)
    logps.sum().backward()
    return saved


@pytest.mark.parametrize("lora", [None, LORA], ids=["full", "lora"])
def test_gradient_checkpointing_gives_the_same_gradients_and_keeps_less(tiny_model_dir, tmp_path, lora) -> None:
    plain, config = _learner(tiny_model_dir, tmp_path / "plain", checkpointing=False, lora=lora)
    checkpointed, _ = _learner(tiny_model_dir, tmp_path / "ckpt", checkpointing=True, lora=lora)
    assert checkpointed.model.is_gradient_checkpointing and not plain.model.is_gradient_checkpointing
    # Checkpointed layers drop a shared prefix's cached keys/values (3 nats off if the scorer still shared it).
    rows = synthetic_rows(groups=2, group_size=3)
    # Kept for the backward pass: each layer's input instead of each layer's intermediate tensors.
    assert _saved_bytes(checkpointed, rows) < 0.5 * _saved_bytes(plain, rows)
    batch = collate(rows, list(range(len(rows))))
    weights = torch.randn(batch.input_ids.shape, generator=torch.Generator().manual_seed(0))  # (N, T) any linear loss
    for learner in (plain, checkpointed):
        learner.optimizer.zero_grad()
        logps = learner.scorer(batch.input_ids, batch.policy.loss_mask, 1.0, batch.policy.group_ids)  # (N, T)
        (logps * weights).sum().backward()
    pairs = zip(plain.model.named_parameters(), checkpointed.model.parameters(), strict=True)
    compared = 0
    for (name, a), b in pairs:
        if a.grad is None:
            assert b.grad is None, name
            continue
        # fp32, the same operations recomputed, the prompt computed per row instead of once: rounding only.
        # (Compared before AdamW: its first step moves a weight by about lr whatever the size of its
        # gradient, so a rounding-level gradient near 0 could flip the update's sign.)
        scale = float(a.grad.abs().max())
        assert float((a.grad - b.grad).abs().max()) <= 1e-5 * scale + 1e-9, name
        compared += 1
    assert compared > 0
    before = [p.detach().clone() for p in checkpointed.model.parameters() if p.requires_grad]
    update(checkpointed, GRPO(), rows, config.optimizer, config.correction, Processes.from_environment())
    after = [p for p in checkpointed.model.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))  # the checkpointed update trains


def _config(model: dict, rollout: dict, tmp_path, model_dir) -> object:
    return load_recipe(tiny_recipe(model_dir, tmp_path, model=model, rollout=rollout))


def test_auto_kv_cache_holds_one_step_of_episodes_at_full_context(smollm2_dir, tmp_path) -> None:
    per_token = 2 * 30 * 3 * 64 * 4  # SmolLM2-135M in float32: K and V x 30 layers x 3 heads x 64 x 4 bytes
    base = {"name": str(smollm2_dir), "kv_cache_gib": "auto", "sampler_dtype": "float32", "max_model_len": 256}
    demo = _config(base, {"group_size": 8, "groups_per_step": 8}, tmp_path, smollm2_dir)
    assert loop.kv_cache_gib(demo) == pytest.approx(64 * 256 * per_token / 2**30)  # 0.70 GiB
    assert loop.kv_cache_gib(demo, processes=2) == pytest.approx(32 * 256 * per_token / 2**30)
    context = _config(base, {"group_size": 8, "groups_per_step": 8, "max_context_tokens": 100}, tmp_path, smollm2_dir)
    assert loop.kv_cache_gib(context) == pytest.approx(64 * 128 * per_token / 2**30)  # 100 tokens: one 128-block
    one = _config(base, {"group_size": 2, "groups_per_step": 1, "max_context_tokens": 16}, tmp_path, smollm2_dir)
    assert loop.kv_cache_gib(one) == pytest.approx(256 * per_token / 2**30)  # room for one max_model_len sequence
    long = _config({**base, "max_model_len": 4096}, {"group_size": 16, "groups_per_step": 8}, tmp_path, smollm2_dir)
    assert loop.kv_cache_gib(long) == loop.AUTO_KV_CACHE_MAX_GIB  # 128 x 4096 tokens would be 22.5 GiB
    fixed = _config({**base, "kv_cache_gib": 0.3}, {}, tmp_path, smollm2_dir)
    assert loop.kv_cache_gib(fixed) == 0.3


def test_kv_cache_gib_takes_auto_or_a_positive_number(tiny_model_dir, tmp_path) -> None:
    from turngym.trainer.schema import RecipeError

    with pytest.raises(RecipeError, match="model.kv_cache_gib"):
        _config({"kv_cache_gib": "big"}, {}, tmp_path, tiny_model_dir)
    with pytest.raises(RecipeError, match="model.kv_cache_gib: must be > 0"):
        _config({"kv_cache_gib": 0}, {}, tmp_path, tiny_model_dir)
