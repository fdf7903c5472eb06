"""Recipes: loading, overrides, one-line errors that name the key and the fix, the reference."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import yaml

from turngym.algos import DAPO, GFPO, GRPO
from turngym.trainer.config import (
    SECTIONS,
    RecipeError,
    dump_recipe,
    field_docs,
    load_recipe,
    recipe_changes,
    recipe_reference,
)

BASE = {"envs": [{"id": "turngym/GuessNumber-v0"}]}


def error(overrides=(), recipe=None) -> RecipeError:
    with pytest.raises(RecipeError) as caught:
        load_recipe(recipe or BASE, list(overrides))
    return caught.value


def test_defaults_and_dotted_overrides() -> None:
    config = load_recipe(
        {"envs": ["turngym/GuessNumber-v0"]},
        ["rollout.group_size=4", "envs.0.kwargs.high=8", "objective.eps_high=0.28", "optimizer.lr=3e-5"],
    )
    assert config.rollout.group_size == 4 and config.rollout.groups_per_step == 8
    assert config.envs[0].id == "turngym/GuessNumber-v0" and config.envs[0].kwargs == {"high": 8}
    assert config.objective.build() == GRPO(eps_high=0.28)
    assert config.optimizer.lr == 3e-5  # YAML reads "3e-5" as a string; numbers are coerced


def test_recipe_changes_lists_exactly_the_non_default_settings() -> None:
    config = load_recipe(
        {"envs": ["turngym/GuessNumber-v0"]},
        ["rollout.group_size=4", "envs.0.kwargs.high=8", "objective.eps_high=0.28", "optimizer.lr=3e-5"],
    )
    assert recipe_changes(config) == [
        "envs.0.kwargs.high=8", "rollout.group_size=4", "objective.eps_high=0.28", "optimizer.lr=3.0e-05",
    ]  # fmt: skip
    assert recipe_changes(load_recipe(BASE)) == []


def test_gfpo_takes_a_base_objective_and_round_trips() -> None:
    recipe = {**BASE, "objective": {"name": "gfpo", "k": 2, "metric": "won", "base": {"name": "dapo", "eps_high": 0.3}}}
    config = load_recipe(recipe)
    assert config.objective.build() == GFPO(base=DAPO(eps_high=0.3), k=2, metric="won")
    again = load_recipe(yaml.safe_load(dump_recipe(config)))
    assert again == config  # the saved recipe loads back to the same config


def test_correction_auto_resolves_per_objective() -> None:
    assert load_recipe(BASE).correction.mode == "token_truncate"
    assert load_recipe(BASE, ["objective.name=gvpo"]).correction.mode == "none"  # GVPO's loss takes no weights


@pytest.mark.parametrize(
    ("overrides", "key", "fragment"),
    [
        (["rollout.gruop_size=4"], "rollout.gruop_size", "Did you mean 'group_size'?"),
        (["modle.name=x"], "modle", "Did you mean 'model'?"),
        (["rollout.group_size=abc"], "rollout.group_size", "must be a number"),
        (["rollout.group_size=2.5"], "rollout.group_size", "whole number"),
        (["run.deterministic=maybe"], "run.deterministic", "true or false"),
        (["model.sampler_dtype=fp16"], "model.sampler_dtype", "one of: auto, bfloat16, float32"),
        (["objective.name=grpoo"], "objective.name", "Did you mean 'grpo'?"),
        (["objective.eps_hgh=0.3"], "objective.eps_hgh", "Did you mean 'eps_high'?"),
        (["objective.reward_weights.won=lots"], "objective.reward_weights.won", "must be a number"),
        (["rollout.group_size=1"], "rollout.group_size", "set rollout.group_size=2 or more"),
        (["objective.name=gvpo", "correction.mode=token_truncate"], "correction.mode", "set correction.mode=none"),
        (["objective.name=pg", "optimizer.update_epochs=2"], "optimizer.update_epochs", "on-policy only"),
        (["envs.3.id=x"], "envs.3", "index '3' is not one of 0..0"),
        (["optimizer.lr=-1"], "optimizer.lr", "must be > 0"),
        (["rollout.max_context_tokens=99999"], "rollout.max_context_tokens", "model.max_model_len"),
        (["rollout.temperature=nan"], "rollout.temperature", "must be finite"),
    ],
)
def test_bad_values_name_the_key_and_the_fix(overrides, key, fragment) -> None:
    err = error(overrides)
    assert err.key == key
    assert fragment in str(err) and str(err).startswith(f"{key}:")
    assert "\n" not in str(err)  # one line


def test_recipe_shape_errors() -> None:
    assert "names no env" in str(error(recipe={"model": {}}))
    assert "must be a mapping" in str(error(recipe={**BASE, "rollout": [1, 2]}))
    assert error(["x"]).key == "" and "KEY=VALUE" in str(error(["x"]))


def test_recipe_files(tmp_path) -> None:
    assert "does not exist" in str(_file_error(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    assert "not valid YAML" in str(_file_error(bad))
    good = tmp_path / "mine.yaml"
    good.write_text(yaml.safe_dump(BASE))
    assert load_recipe(good).name == "mine"  # the file's stem names the run


def _file_error(path) -> RecipeError:
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    return caught.value


def test_every_field_has_a_docstring_and_is_in_the_reference() -> None:
    text = recipe_reference()
    table = recipe_reference(markdown=True)
    for section, cls in SECTIONS.items():
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            assert docs.get(f.name), f"{section}.{f.name} has no docstring"
            assert f"{section}.{f.name} (" in text and f"| `{f.name}` |" in table
        assert set(typing.get_type_hints(cls)) >= {f.name for f in dataclasses.fields(cls)}


def test_examples_recipes_load(examples_dir) -> None:
    recipes = sorted((examples_dir / "recipes").glob("*.yaml"))
    assert recipes
    for path in recipes:
        config = load_recipe(path)
        assert config.envs and config.objective.build() is not None


def test_readme_holds_the_current_recipe_reference() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert recipe_reference(markdown=True).replace("### `", "#### `").strip() in readme
