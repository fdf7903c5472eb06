"""LoRA adapters (trainer/lora.py): what trains, what the sampler gets, and the adapter-free reference.

The real-vLLM test uses the session's bf16 engine, so its tolerance is the one argued in
tests/agent/test_vllm_generator.py: bf16 keeps 8 significand bits and about ten roundings lie
between the weights and the logits of the two-layer tiny model, so vLLM's logprobs may differ from an
fp32 forward pass by up to 0.1 nats per token, 0.02 on average.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

from tests.helpers import chat_prompt
from turngym.agent import SamplingParams, VLLMGenerator
from turngym.trainer import lora
from turngym.trainer.policy import TokenScorer, load_model

MAX_TOL, MEAN_TOL = 0.1, 0.02  # bf16 sampler against the fp32 trainer (see the module docstring)


@pytest.fixture
def base(tiny_model_dir: Path) -> torch.nn.Module:
    model, _ = load_model(str(tiny_model_dir), torch.device("cpu"))
    return model


def _rows() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(0, 300, (3, 40), generator=torch.Generator().manual_seed(0))  # (3, 40)
    mask = torch.ones_like(ids)  # (3, 40)
    mask[:, :8] = 0
    return ids, mask


def _randomise_b(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every B matrix random values (peft starts B at 0, where the adapter changes nothing)."""
    noise = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(0.05 * torch.randn(param.shape, generator=noise))


def test_a_fresh_adapter_changes_nothing_and_only_it_trains(base: torch.nn.Module) -> None:
    ids, mask = _rows()
    before = TokenScorer(base)(ids, mask).detach()  # (3, 40)
    total = sum(p.numel() for p in base.parameters())
    adapted = lora.add_adapter(base, r=2, alpha=32)
    assert torch.equal(TokenScorer(adapted)(ids, mask), before)  # B = 0: W + B A = W
    trained = {n for n, p in adapted.named_parameters() if p.requires_grad}
    assert trained and all(".lora_A." in n or ".lora_B." in n for n in trained)
    # r=2 on 7 kinds of linear layer in each of 2 layers: A is (2, in), B is (out, 2)
    config = base.config
    hidden, inter = config.hidden_size, config.intermediate_size
    kv = config.num_key_value_heads * (hidden // config.num_attention_heads)
    shapes = [
        (hidden, hidden),
        (hidden, kv),
        (hidden, kv),
        (hidden, hidden),
        (hidden, inter),
        (hidden, inter),
        (inter, hidden),
    ]  # (in, out) of q k v o gate up down
    expected = config.num_hidden_layers * sum(2 * (i + o) for i, o in shapes)
    assert sum(p.numel() for p in adapted.parameters() if p.requires_grad) == expected
    assert sum(p.numel() for p in adapted.parameters()) == total + expected


def test_merged_weights_equal_peft_merge_and_leave_the_model_alone(base: torch.nn.Module) -> None:
    adapted = lora.add_adapter(base, r=4, alpha=8)
    _randomise_b(adapted)
    params = {n: p.detach().clone() for n, p in adapted.named_parameters()}
    merged = dict(lora.merged_weights(adapted))
    reference = copy.deepcopy(adapted).merge_and_unload().state_dict()
    layers = base.config.num_hidden_layers
    assert len(merged) == 7 * layers  # every adapted linear layer, nothing else
    for name, weight in merged.items():
        torch.testing.assert_close(weight, reference[name], rtol=0, atol=1e-6)
        assert not torch.equal(weight, params[f"base_model.model.{name.replace('.weight', '.base_layer.weight')}"])
    assert all(torch.equal(p, params[n]) for n, p in adapted.named_parameters())  # computed apart


def test_a_fused_layer_is_sent_whole(base: torch.nn.Module) -> None:
    """Adapting only q_proj still sends k_proj and v_proj (vLLM fuses them into one qkv layer)."""
    adapted = lora.add_adapter(base, r=2, alpha=4, target_modules=("q_proj", "down_proj"))
    names = [name for name, _ in lora.merged_weights(adapted)]
    leaves = sorted({name.split(".")[-2] for name in names})
    assert leaves == ["down_proj", "k_proj", "q_proj", "v_proj"]
    k_weight = dict(lora.merged_weights(adapted))["model.layers.0.self_attn.k_proj.weight"]
    assert torch.equal(k_weight, base.model.layers[0].self_attn.k_proj.weight)  # sent as it is


def test_without_the_adapter_the_model_is_the_base_model(base: torch.nn.Module, tiny_model_dir: Path) -> None:
    """The KL reference: the adapted model with its adapter disabled equals a separately loaded base."""
    ids, mask = _rows()
    separate, _ = load_model(str(tiny_model_dir), torch.device("cpu"))
    expected = TokenScorer(separate)(ids, mask)  # (3, 40)
    adapted = lora.add_adapter(base, r=2, alpha=32)
    _randomise_b(adapted)
    scorer = TokenScorer(adapted)
    assert (scorer(ids, mask) - expected).abs().max() > 0.01  # the adapter does change the policy
    with torch.no_grad(), lora.base_model_only(adapted):
        torch.testing.assert_close(scorer(ids, mask), expected, rtol=0, atol=0)
    assert (scorer(ids, mask) - expected).abs().max() > 0.01  # and is back after the block


def test_an_unknown_target_module_names_the_ones_there_are(base: torch.nn.Module) -> None:
    with pytest.raises(ValueError, match=r"the model has no qkv_proj; its linear layers: \[.*'q_proj'"):
        lora.add_adapter(base, r=2, alpha=4, target_modules=("qkv_proj",))


def test_vllm_samples_from_base_plus_adapter_after_a_merged_sync(
    vllm_tiny: VLLMGenerator, base: torch.nn.Module, tiny_model_dir: Path
) -> None:
    """Only the adapted layers are sent; vLLM's logprobs then match the trainer's base + adapter."""
    prompt = chat_prompt(vllm_tiny.tokenizer, "Guess the number between 1 and 100.")
    sampling = SamplingParams(n=4, temperature=1.0, max_tokens=24, seed=5)
    before = vllm_tiny.generate([prompt], sampling)
    adapted = lora.add_adapter(base, r=2, alpha=32)
    _randomise_b(adapted, seed=1)
    scorer = TokenScorer(adapted)
    try:
        vllm_tiny.load_weights(lora.merged_weights(adapted))
        after = vllm_tiny.generate([prompt], sampling)
        assert [c.token_ids for c in after] != [c.token_ids for c in before]  # a changed adapter, other samples
        diffs = []
        for completion in after:
            ids = torch.tensor([prompt + completion.token_ids])  # (1, T)
            mask = torch.zeros_like(ids)  # (1, T)
            mask[0, len(prompt) :] = 1
            with torch.no_grad():
                logps = scorer(ids, mask)[0, len(prompt) :]  # (C,)
            diffs.append((logps - torch.tensor(completion.logprobs)).abs())  # (C,)
        diff = torch.cat(diffs)
        assert diff.max() <= MAX_TOL and diff.mean() <= MEAN_TOL
    finally:
        fresh, _ = load_model(str(tiny_model_dir), torch.device("cpu"))
        vllm_tiny.load_weights(fresh.named_parameters())


LORA = {"r": 2, "alpha": 32}


def test_a_lora_step_trains_only_the_adapter_and_the_engine_samples_base_plus_adapter(
    engine: VLLMGenerator, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """One GRPO + KL step with `model.lora`: the checkpoint is an adapter, the base is untouched, vLLM follows."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from tests.helpers import hf_token_logps
    from tests.trainer.support import tiny_recipe
    from turngym.trainer import load_recipe, train
    from turngym.trainer.checkpoint import latest_checkpoint
    from turngym.trainer.metrics import read_metrics

    recipe = tiny_recipe(
        tiny_model_dir, tmp_path / "run", model={"lora": LORA}, objective={"name": "grpo", "kl_coef": 0.05},
        optimizer={"lr": 1e-2},
    )  # fmt: skip
    result = train(load_recipe(recipe), generator=engine)
    [metrics] = read_metrics(result.run_dir)
    assert metrics["skipped_update"] == 0
    assert metrics["kl"] == 0.0  # before the first update the adapter adds exactly 0: policy == reference
    checkpoint = latest_checkpoint(result.run_dir)
    assert (checkpoint / "adapter_model.safetensors").is_file() and not (checkpoint / "model.safetensors").exists()
    adapter = load_file(str(checkpoint / "adapter_model.safetensors"))
    assert all(".lora_A." in name or ".lora_B." in name for name in adapter)
    assert max(float(t.abs().max()) for name, t in adapter.items() if ".lora_B." in name) > 1e-4  # B moved off 0
    # The adapter loads in peft on the base model; the base weights under it are the original ones.
    initial = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    trained = PeftModel.from_pretrained(base, str(checkpoint)).merge_and_unload().eval()
    # The engine samples from base + adapter now (bf16 tolerance, see the module docstring), not from the base.
    prompt = chat_prompt(engine.tokenizer, "Say something with many vowels.")
    to_trained, to_initial = [], []
    for c in engine.generate([prompt] * 4, SamplingParams(max_tokens=16, seed=0)):
        sampled = torch.tensor(c.logprobs)  # (C,)
        to_trained.append((hf_token_logps(trained, prompt, c.token_ids) - sampled).abs())
        to_initial.append((hf_token_logps(initial, prompt, c.token_ids) - sampled).abs())
    to_trained, to_initial = torch.cat(to_trained), torch.cat(to_initial)
    assert to_trained.max() <= MAX_TOL and to_trained.mean() <= MEAN_TOL
    assert to_initial.mean() > 3 * to_trained.mean()


def test_a_lora_checkpoint_exports_to_a_model_transformers_loads(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`export_model` merges the adapter into its base; `resolve_model` does the same for samplers (cached)."""
    monkeypatch.setenv("TURNGYM_CACHE", str(tmp_path / "cache"))
    from transformers import AutoModelForCausalLM

    from turngym.agent.adapters import export_model
    from turngym.agent.models import resolve_model

    model, tokenizer = load_model(str(tiny_model_dir), torch.device("cpu"))
    adapted = lora.add_adapter(model, r=2, alpha=32)
    _randomise_b(adapted)
    checkpoint = tmp_path / "step-000001"
    adapted.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    ids, mask = _rows()
    with torch.no_grad():
        expected = TokenScorer(adapted)(ids, mask)  # (3, 40)
    exported = export_model(checkpoint, tmp_path / "exported")
    for directory in (exported, Path(resolve_model(str(checkpoint)))):
        merged = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
        with torch.no_grad():
            torch.testing.assert_close(TokenScorer(merged)(ids, mask), expected, rtol=0, atol=1e-5)
    assert resolve_model(str(checkpoint)) == resolve_model(str(checkpoint))  # merged once, then reused
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        export_model(checkpoint, tmp_path / "exported")


def test_turngym_eval_takes_a_lora_run_directory(engine: VLLMGenerator, tiny_model_dir: Path, tmp_path: Path) -> None:
    """`turngym eval -m RUN_DIR` on a LoRA run: its newest checkpoint, merged into the base, played by vLLM."""
    import os
    import subprocess
    import sys

    import yaml

    from tests.trainer.support import tiny_recipe
    from turngym.trainer import load_recipe, train

    run_dir = tmp_path / "lora-run"
    train(load_recipe(tiny_recipe(tiny_model_dir, run_dir, model={"lora": LORA})), generator=engine)
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "tiny", "num_seeds": 2, "sampling": {"temperature": 1.0, "max_tokens": 12},
        "envs": [{"id": "turngym/GuessNumber-v0", "name": "guess", "kwargs": {"high": 4}, "max_turns": 2}],
    }))  # fmt: skip
    out, cache = tmp_path / "out", tmp_path / "cache"
    command = [sys.executable, "-m", "turngym", "eval", str(suite), "-m", str(run_dir), "--out", str(out),
               "--max-model-len", "1024", "--kv-cache-gib", "0.25"]  # fmt: skip
    env = {**os.environ, "COLUMNS": "200", "TURNGYM_CACHE": str(cache)}
    done = subprocess.run(command, cwd=Path(__file__).parents[2], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "lora-run/step-000001" in done.stdout
    [merged] = (cache / "merged").iterdir()
    assert (merged / "config.json").is_file() and (merged / "model.safetensors").is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["models"] == ["lora-run/step-000001"]


def test_turngym_export_writes_a_run_s_newest_lora_checkpoint_as_a_model(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoModelForCausalLM
    from typer.testing import CliRunner

    from turngym.cli import app
    from turngym.trainer.checkpoint import save_checkpoint

    monkeypatch.setenv("COLUMNS", "200")
    model, tokenizer = load_model(str(tiny_model_dir), torch.device("cpu"))
    adapted = lora.add_adapter(model, r=2, alpha=32)
    _randomise_b(adapted)
    checkpoint = save_checkpoint(tmp_path / "run", 3, adapted, tokenizer, {"step": 3}, keep=2)
    assert (checkpoint / "adapter_model.safetensors").is_file()  # megabytes: the adapter, not the model
    result = CliRunner().invoke(app, ["export", str(tmp_path / "run"), str(tmp_path / "model")])
    assert result.exit_code == 0, result.output
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "model", dtype=torch.float32).eval()
    ids, mask = _rows()
    with torch.no_grad():
        torch.testing.assert_close(TokenScorer(merged)(ids, mask), TokenScorer(adapted)(ids, mask), rtol=0, atol=1e-5)
    bad = CliRunner().invoke(app, ["export", str(tmp_path / "model"), str(tmp_path / "other")])
    assert bad.exit_code == 2 and "neither a checkpoint" in bad.output and not (tmp_path / "other").exists()
