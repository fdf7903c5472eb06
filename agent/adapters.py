"""LoRA checkpoints as models: a peft adapter merged into its base model, as a plain Hugging Face directory.

A LoRA checkpoint holds only the adapter (`adapter_config.json`, `adapter_model.safetensors`) and names
its base model (`base_model_name_or_path`). Samplers (vLLM, `HFGenerator`) load whole models, so
`resolve_model` hands them `merged_model_dir(checkpoint)`: the base with `W + alpha / r * B @ A` in every
adapted layer, written once into turngym's cache (the newest `KEEP_MERGED` are kept) and reused while
the adapter file is unchanged.
`export_model` writes the same directory where a user asks (`turngym export`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")


def is_adapter_dir(path: str | Path) -> bool:
    """Whether `path` holds a peft adapter rather than a whole model."""
    return (Path(path) / ADAPTER_CONFIG).is_file() and not (Path(path) / "config.json").is_file()


def base_model_of(adapter_dir: str | Path) -> str:
    """The base model an adapter was trained on, as its `adapter_config.json` names it."""
    config = json.loads((Path(adapter_dir) / ADAPTER_CONFIG).read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise ValueError(f"{adapter_dir}/{ADAPTER_CONFIG} names no base model (base_model_name_or_path)")
    return str(base)


def merged_model_dir(adapter_dir: str | Path) -> Path:
    """A cached Hugging Face directory of base + adapter (made on first use, atomically)."""
    from turngym.agent.models import cache_dir

    adapter_dir = Path(adapter_dir).resolve()
    weights = adapter_dir / ADAPTER_WEIGHTS
    stat = weights.stat()
    key = hashlib.sha256(f"{adapter_dir}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir() / "merged" / f"{adapter_dir.name}-{key}"
    if not (target / "config.json").is_file():
        export_model(adapter_dir, target)
        _prune(target.parent, keep=KEEP_MERGED)
    return target


KEEP_MERGED = 4  # merged copies kept in the cache (each is a whole model); the oldest go first


def _prune(root: Path, keep: int) -> None:
    """Delete all but the `keep` most recently written merged models under `root`."""
    done = sorted((p for p in root.iterdir() if (p / "config.json").is_file()), key=lambda p: p.stat().st_mtime)
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def export_model(checkpoint: str | Path, out: str | Path) -> Path:
    """Write `checkpoint` as a plain Hugging Face model directory at `out` (merged, for a LoRA checkpoint).

    A whole-model checkpoint is copied without its trainer state. The directory appears only when
    complete (written beside it, then renamed).

    Raises:
        FileExistsError: `out` exists and is not empty.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; give a new directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        if is_adapter_dir(checkpoint):
            _write_merged(checkpoint, tmp)
        else:
            for item in checkpoint.iterdir():
                if item.is_file() and (item.suffix in (".json", ".safetensors", ".jinja", ".txt", ".model")):
                    shutil.copy2(item, tmp / item.name)
            (tmp / "turngym_checkpoint.json").unlink(missing_ok=True)  # a model, no longer a checkpoint
        if out.exists():
            out.rmdir()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_merged(adapter_dir: Path, out: Path) -> None:
    """Base + adapter, merged, saved with the adapter directory's tokenizer (or the base's)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from turngym.agent.models import resolve_model

    hf_logging.disable_progress_bar()

    base_path = resolve_model(base_model_of(adapter_dir), progress=False)
    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(out, safe_serialization=True)
    has_tokenizer = any((adapter_dir / name).is_file() for name in TOKENIZER_FILES)
    AutoTokenizer.from_pretrained(str(adapter_dir) if has_tokenizer else base_path).save_pretrained(out)
