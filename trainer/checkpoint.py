"""Checkpoints: a Hugging Face model directory plus the trainer state for an exact resume.

`<run dir>/checkpoints/step-000010/` holds `config.json`, `model.safetensors`, the tokenizer and
its chat template (so `transformers`, vLLM and `VLLMGenerator` load it as a model); with `model.lora`,
the adapter in peft's format instead of the model (`adapter_config.json`, which names the base model,
and `adapter_model.safetensors`: megabytes, not the whole model), which `resolve_model` merges into its
base for samplers and `turngym export` writes out as a model. Either way, plus:

    trainer_state.pt      optimizer, scheduler, step, seed cursor, objective state (GFPO's
                          adaptive-k history), and every process's RNG states
    turngym_checkpoint.json   written last, with the size of every other file: a directory without
                          it is incomplete and never loaded

A checkpoint is written into a hidden temporary directory and renamed into place only when
complete, so a crash (even SIGKILL) mid-save never leaves a checkpoint that looks usable. A
checkpoint damaged later (a file deleted or cut short) is found by `checkpoint_problem` and skipped:
`latest_checkpoint` returns the newest one that is whole. Only the newest `keep` checkpoints are kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

MARKER = "turngym_checkpoint.json"
STATE_FILE = "trainer_state.pt"
FORMAT = 1


def checkpoint_dir(run_dir: Path) -> Path:
    """Where a run's checkpoints live."""
    return Path(run_dir) / "checkpoints"


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = checkpoint_dir(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.glob("step-*") if (p / MARKER).is_file()]
    return sorted(found, key=lambda p: int(p.name.removeprefix("step-")))


def latest_checkpoint(run_dir: Path, on_skip: Callable[[Path, str], None] | None = None) -> Path | None:
    """The newest complete checkpoint whose files are all there and readable, or None.

    Args:
        run_dir: the run directory.
        on_skip: called as `on_skip(checkpoint, problem)` for each newer checkpoint passed over.
    """
    for checkpoint in reversed(complete_checkpoints(run_dir)):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return checkpoint
        if on_skip is not None:
            on_skip(checkpoint, problem)
    return None


def checkpoint_problem(checkpoint: Path) -> str | None:
    """Why `checkpoint` cannot be loaded (a file missing, cut short or unreadable), or None when it is whole."""
    try:
        marker = json.loads((checkpoint / MARKER).read_text())
    except (OSError, ValueError):
        return f"{MARKER} is missing or unreadable (the save did not finish)"
    sizes = marker.get("files") or dict.fromkeys(("config.json", "model.safetensors", STATE_FILE))  # format 1
    for name, size in sizes.items():
        path = checkpoint / name
        if not path.is_file():
            return f"{name} is missing"
        if size is not None and path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, {size} were written"
    if not zipfile.is_zipfile(checkpoint / STATE_FILE):
        return f"{STATE_FILE} is not a readable torch file"
    for weights in checkpoint.glob("*.safetensors"):
        try:
            with safe_open(str(weights), framework="pt") as handle:
                handle.keys()
        except Exception:  # noqa: BLE001 (safetensors raises its own error types for a damaged header)
            return f"{weights.name} is not a readable safetensors file"
    return None


def rng_state() -> dict[str, Any]:
    """This process's random states (Python, NumPy, torch, CUDA)."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_objective_state(state: Any) -> dict[str, Any] | None:
    """An objective's state (`Objective.initial_state`, a dataclass of plain values) as plain data."""
    return dataclasses.asdict(state) if state is not None else None


def load_objective_state(objective: Any, saved: dict[str, Any] | None) -> Any:
    """Rebuild the state `save_objective_state` saved, for `objective` (its initial state if nothing was saved)."""
    initial = objective.initial_state()
    if initial is None or not saved:
        return initial
    if set(saved) == {"_history"}:  # written before the state left the objective (GFPO kept it in `_history`)
        saved = {"group_means": saved["_history"]}
    try:
        return type(initial)(**saved)
    except TypeError as err:
        raise ValueError(
            f"the checkpoint's objective state (keys {sorted(saved)}) does not fit {type(initial).__name__}; "
            "resume it with the turngym version that wrote it"
        ) from err


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: Any,
    tokenizer: Any,
    state: dict[str, Any],
    keep: int,
    digests: list[str] | None = None,
) -> Path:
    """Write `checkpoints/step-XXXXXX` atomically and delete all but the newest `keep`.

    Args:
        run_dir: the run directory.
        step: the last completed step.
        model: the Hugging Face model (unwrapped), or a peft model (its adapter is saved).
        tokenizer: its tokenizer (saved with the chat template).
        state: the trainer state (`trainer_state.pt`).
        keep: how many checkpoints to keep.
        digests: every process's `parameter_digest` (recorded in the marker file).
    """
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".step-*.tmp-*"):  # left by a killed save
        shutil.rmtree(stale, ignore_errors=True)
    final = root / f"step-{step:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".step-{step:06d}.tmp-", dir=root))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        torch.save(state, tmp / STATE_FILE)
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
        marker = {
            "format": FORMAT, "step": step, "time": time.time(), "parameter_digests": digests or [], "files": files
        }  # fmt: skip
        (tmp / MARKER).write_text(json.dumps(marker, indent=2))
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in complete_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def parameter_digest(model: Any) -> str:
    """A SHA-256 of every parameter's bytes, in name order (equal digests: equal weights)."""
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(param.detach().cpu().contiguous().view(torch.uint8).numpy())  # no copy: hashlib reads the buffer
    return digest.hexdigest()


def load_trainer_state(checkpoint: Path) -> dict[str, Any]:
    """The trainer state of a checkpoint."""
    return torch.load(checkpoint / STATE_FILE, weights_only=False)


def _fsync_dir(path: Path) -> None:
    for item in path.iterdir():
        if item.is_file():
            with open(item, "rb") as handle:
                os.fsync(handle.fileno())
