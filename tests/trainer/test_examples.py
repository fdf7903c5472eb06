"""Every example recipe trains for real: one step on the tiny model through vLLM (the recipe's envs and objective)."""

from __future__ import annotations

from pathlib import Path

import pytest

from turngym.trainer import load_recipe, train
from turngym.trainer.metrics import read_metrics

RECIPES = sorted((Path(__file__).resolve().parents[2] / "examples" / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.stem for p in RECIPES])
def test_example_recipe_runs_a_step(path, engine, tiny_model_dir, tmp_path) -> None:
    tiny = [
        f"model.name={tiny_model_dir}",
        "model.max_model_len=1024",
        f"run.dir={tmp_path / 'run'}",
        "run.steps=1",
        "run.progress=false",
        "rollout.groups_per_step=2",
        "rollout.max_tokens=8",
        "eval.episodes=2",
    ]
    config = load_recipe(path, tiny)
    result = train(config, generator=engine)
    [step] = [r for r in read_metrics(result.run_dir) if r["step"] == 1 and "groups_collected" in r]
    assert step["groups_collected"] >= 2 and step["episodes"] >= 2 * config.rollout.group_size // 2
    assert step["failed_episodes"] == 0
    assert (result.run_dir / "checkpoints").is_dir() and (result.run_dir / "recipe.yaml").is_file()
