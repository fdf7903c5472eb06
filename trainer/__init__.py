"""turngym.trainer: recipes, the training loop, checkpoints, metrics, plots and held-out evaluation.

    from turngym.trainer import load_recipe, train, evaluate
    result = train(load_recipe("examples/recipes/guess_number.yaml", ["run.steps=5"]))
    report = evaluate("examples/suites/quick.yaml", ["smollm2-135m", str(result.run_dir)])

Importing this package imports neither vLLM nor transformers; `train` (loaded on first use) does.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from turngym.trainer.config import RecipeError, TrainConfig, load_recipe, recipe_reference
from turngym.trainer.seeds import EVAL_SEED_BASE, SeedCursor, eval_seeds

if TYPE_CHECKING:
    from turngym.trainer.eval_run import evaluate
    from turngym.trainer.loop import TrainResult, train
    from turngym.trainer.stats import wilson_interval
    from turngym.trainer.suite import load_suite

_LAZY = {
    "train": "turngym.trainer.loop",
    "TrainResult": "turngym.trainer.loop",
    "wilson_interval": "turngym.trainer.stats",
    "evaluate": "turngym.trainer.eval_run",
    "load_suite": "turngym.trainer.suite",
}

__all__ = [
    "EVAL_SEED_BASE",
    "RecipeError",
    "SeedCursor",
    "TrainConfig",
    "TrainResult",
    "eval_seeds",
    "evaluate",
    "load_recipe",
    "load_suite",
    "recipe_reference",
    "train",
    "wilson_interval",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'turngym.trainer' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)
