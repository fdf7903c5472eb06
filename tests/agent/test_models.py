"""Model resolution: aliases, local dirs, pass-through, atomic conversion of the embedded model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers import chat_prompt
from turngym.agent import models
from turngym.agent.models import ModelNotFoundError, is_prepared, prepare_model, resolve_model


def test_local_directory_is_used_as_is(tiny_model_dir: Path) -> None:
    assert resolve_model(str(tiny_model_dir)) == str(tiny_model_dir)


def test_hub_ids_pass_through_unchanged() -> None:
    assert resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_missing_path_names_the_aliases(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="smollm2-135m"):
        resolve_model(str(tmp_path / "does-not-exist"))
    # neither an alias nor a hub id: an error at once, naming the closest alias (never a hub lookup)
    with pytest.raises(ModelNotFoundError, match=r"unknown model 'smollm2'\. Did you mean smollm2-135m\?"):
        resolve_model("smollm2")
    with pytest.raises(ModelNotFoundError, match=r"unknown model 'gpt-17'\. Give an alias \(smollm2-135m\)"):
        resolve_model("gpt-17")


def test_unknown_alias_is_an_error() -> None:
    with pytest.raises(ModelNotFoundError, match="known: smollm2-135m"):
        prepare_model("gpt-17")


def test_alias_converts_once_into_a_loadable_directory(smollm2_dir: Path) -> None:
    assert smollm2_dir == models.prepared_path("smollm2-135m")
    assert is_prepared("smollm2-135m")
    assert {"config.json", "model.safetensors", "tokenizer.json", models.MARKER_FILE} <= {
        p.name for p in smollm2_dir.iterdir()
    }
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert "quantization_config" not in config  # otherwise loaders treat it as GGUF-quantized
    mtime = (smollm2_dir / "model.safetensors").stat().st_mtime_ns
    assert resolve_model("smollm2-135m") == str(smollm2_dir)  # second call: cached, not redone
    assert (smollm2_dir / "model.safetensors").stat().st_mtime_ns == mtime


def _fake_convert(gguf_dir, gguf_file, out, *, label, progress):
    (out / "config.json").write_text("{}")


def test_failed_conversion_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNGYM_CACHE", str(tmp_path))

    def broken(gguf_dir, gguf_file, out, *, label, progress):
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle of writing

    monkeypatch.setattr(models, "_convert_gguf", broken)
    with pytest.raises(KeyboardInterrupt):
        prepare_model("smollm2-135m")
    assert not models.prepared_path("smollm2-135m").exists()
    assert list((tmp_path / "models").glob(".smollm2-135m.tmp-*")) == []


def test_killed_conversion_is_never_loaded_and_is_cleaned_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL a real conversion mid-way: no target directory appears; the next prepare cleans up."""
    env = {**os.environ, "TURNGYM_CACHE": str(tmp_path)}
    code = "from turngym.agent.models import prepare_model; prepare_model('smollm2-135m', progress=False)"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    models_dir = tmp_path / "models"
    deadline = time.monotonic() + 120
    # kill as soon as the conversion has started writing files (config first, weights next)
    while not list(models_dir.glob(".smollm2-135m.tmp-*/config.json")) and time.monotonic() < deadline:
        assert proc.poll() is None, "the conversion process ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    leftovers = list(models_dir.glob(".smollm2-135m.tmp-*"))
    assert leftovers and not (leftovers[0] / models.MARKER_FILE).exists(), "killed before it finished"
    monkeypatch.setenv("TURNGYM_CACHE", str(tmp_path))
    assert not is_prepared("smollm2-135m")
    assert not models.prepared_path("smollm2-135m").exists()

    monkeypatch.setattr(models, "_convert_gguf", _fake_convert)
    path = prepare_model("smollm2-135m")
    assert is_prepared("smollm2-135m") and (path / "config.json").exists()
    assert list(models_dir.glob(".smollm2-135m.tmp-*")) == []


def test_incomplete_target_directory_is_replaced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNGYM_CACHE", str(tmp_path))
    target = models.prepared_path("smollm2-135m")
    target.mkdir(parents=True)
    (target / "junk").write_text("no marker: not a finished conversion")
    monkeypatch.setattr(models, "_convert_gguf", _fake_convert)
    prepare_model("smollm2-135m")
    assert sorted(p.name for p in target.iterdir()) == ["config.json", models.MARKER_FILE]


def test_prepared_model_generates_the_same_greedy_tokens_as_the_gguf(smollm2_dir: Path) -> None:
    """The converted directory is the GGUF model: same weights, same greedy completion."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = models.MODEL_ALIASES["smollm2-135m"]
    gguf_dir = models._package_dir(spec)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=spec.gguf_file, dtype=torch.float32)
    gguf_tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=spec.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)

    prompt = chat_prompt(tokenizer, "What is 7+5?")
    assert prompt == chat_prompt(gguf_tokenizer, "What is 7+5?")
    kwargs = dict(max_new_tokens=24, do_sample=False, top_k=None, top_p=None, temperature=None)
    ids = torch.tensor([prompt])
    expected = gguf_model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)[0, len(prompt) :]
    got = model.generate(ids, attention_mask=torch.ones_like(ids), **kwargs)[0, len(prompt) :]
    assert got.tolist() == expected.tolist()
    assert "12" in tokenizer.decode(got, skip_special_tokens=True)  # 7 + 5 = 12
    gguf_state = gguf_model.state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, gguf_state[name]), name
