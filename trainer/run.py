"""A run directory: where it is, whether it resumes, its saved recipe and its log file.

runs/<name>/
    recipe.yaml        the resolved recipe (every field, defaults included)
    metrics.jsonl      one line per step (see `turngym.trainer.metrics`)
    eval.jsonl         held-out evaluations (step 0 = before training)
    eval/step-XXXXXX.jsonl   the episodes of each evaluation
    train.log          warnings and tracebacks (failed episodes, skipped updates)
    checkpoints/step-XXXXXX/   Hugging Face model + trainer state (see `checkpoint.py`)
    tensorboard/       with `run.tensorboard: true`
    plots/             `turngym plot` output
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from turngym.agent.logs import forward_hidden_warnings
from turngym.trainer.checkpoint import latest_checkpoint
from turngym.trainer.config import RecipeError, TrainConfig, dump_recipe, load_recipe, recipe_to_dict
from turngym.trainer.distributed import Processes

LOG = logging.getLogger("turngym.train")
# Keys that may differ between a run and its resume (everything else must match the saved recipe).
RESUMABLE_CHANGES = ("run.steps", "run.resume", "run.progress", "run.tensorboard", "run.checkpoint_every",
                     "run.keep_checkpoints", "eval.every", "eval.at_end", "run.dir")  # fmt: skip


@dataclass
class RunDir:
    """The run directory, the checkpoint to resume from (None for a fresh run), and newer ones passed over.

    Attributes:
        path: the run directory.
        checkpoint: the newest whole checkpoint when resuming, else None.
        skipped: one line per newer checkpoint that is damaged (`checkpoint_problem`), newest first.
    """

    path: Path
    checkpoint: Path | None
    skipped: list[str] = field(default_factory=list)


def open_run(config: TrainConfig, procs: Processes) -> RunDir:
    """Choose the run directory (rank 0 decides), check a resume, save the recipe, start the log.

    A fresh run never writes into a directory that holds another run: `runs/<name>` becomes
    `runs/<name>-2`, `-3`, ... (an explicit `run.dir` that holds a run is an error instead).
    """
    decision: RunDir | RecipeError | None = None
    if procs.is_main:
        try:
            decision = _choose(config)
        except RecipeError as err:
            decision = err
    decision = procs.gather(decision)[0]
    if isinstance(decision, RecipeError):
        raise decision
    path, checkpoint = decision.path, decision.checkpoint
    if procs.is_main:
        path.mkdir(parents=True, exist_ok=True)
        if checkpoint is not None:
            _check_same_recipe(config, path / "recipe.yaml")
        (path / "recipe.yaml").write_text(dump_recipe(config))
        _log_to(path / "train.log")  # the skipped checkpoints reach it through the display (`loop._start`)
    procs.barrier()
    return decision


def _choose(config: TrainConfig) -> RunDir:
    base = config.run_dir
    if config.run.resume == "auto":
        skipped: list[str] = []

        def note(checkpoint: Path, problem: str) -> None:
            skipped.append(f"skipped checkpoint {checkpoint}: {problem}")

        checkpoint = latest_checkpoint(base, note) if base.is_dir() else None
        if checkpoint is None and _holds_run(base):
            broken = f" ({'; '.join(skipped)})" if skipped else ""
            raise RecipeError(
                "run.resume",
                f"{base} has no complete checkpoint to resume from{broken}; start a new run without --resume",
            )
        done = int(checkpoint.name.removeprefix("step-")) if checkpoint is not None else 0
        if done >= config.run.steps:
            raise RecipeError(
                "run.steps",
                f"{base} is already at step {done} (run.steps={config.run.steps}); raise run.steps to train on, "
                f"e.g. run.steps={done + config.run.steps}",
            )
        return RunDir(base, checkpoint, skipped)
    if not _holds_run(base):
        return RunDir(base, None)
    if config.run.dir is not None:
        raise RecipeError(
            "run.dir", f"{base} already holds a run; pass --resume to continue it, or choose another run.dir"
        )
    n = 2
    while _holds_run(base.with_name(f"{base.name}-{n}")):
        n += 1
    return RunDir(base.with_name(f"{base.name}-{n}"), None)


def _holds_run(path: Path) -> bool:
    """A run that got as far as a step or a checkpoint; a start that failed before step 1 may be reused."""
    metrics = path / "metrics.jsonl"
    return path.is_dir() and ((path / "checkpoints").exists() or (metrics.is_file() and metrics.stat().st_size > 0))


def _check_same_recipe(config: TrainConfig, saved_path: Path) -> None:
    """Refuse to resume with a recipe that differs from the run's.

    Both are compared as built, so spellings and defaults written out or left out compare equal; a
    saved recipe this version cannot load is compared as written.
    """
    if not saved_path.is_file():
        return
    raw = yaml.safe_load(saved_path.read_text()) or {}
    try:
        saved = _flatten(recipe_to_dict(load_recipe(raw)))
    except RecipeError:
        saved = _flatten(raw)
    now = _flatten(recipe_to_dict(config))
    changed = sorted(
        k for k in set(saved) | set(now) if saved.get(k) != now.get(k) and not k.startswith(RESUMABLE_CHANGES)
    )
    if changed:
        shown = ", ".join(f"{k} ({saved.get(k)!r} -> {now.get(k)!r})" for k in changed[:4])
        raise RecipeError(
            changed[0], f"differs from the run being resumed: {shown}; resume with the same recipe, or start a new run"
        )


def _flatten(data: object, prefix: str = "") -> dict[str, object]:
    if isinstance(data, dict):
        out: dict[str, object] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): data}


def _log_to(path: Path) -> None:
    for old in list(LOG.handlers):  # a previous run in this process
        LOG.removeHandler(old)
        old.close()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
    LOG.info("%s", "=" * 30 + " a run starts " + "=" * 30)  # runs that continue one directory stay apart
    forward_hidden_warnings(LOG)  # vLLM's warnings, hidden from the terminal, are kept in train.log
