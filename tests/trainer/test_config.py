"""Recipes: loading, overrides, one-line errors that name the key and the fix, the reference."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import yaml

from turngym.algos import DAPO, GFPO, GRPO
from turngym.trainer.config import (
    RECIPE,
    SECTIONS,
    RecipeError,
    dump_recipe,
    load_recipe,
    recipe_changes,
    recipe_reference,
    recipe_reference_page,
    recipe_to_dict,
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
    assert config.objective == GRPO(eps_high=0.28)
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
    assert config.objective == GFPO(base=DAPO(eps_high=0.3), k=2, metric="won")
    again = load_recipe(yaml.safe_load(dump_recipe(config)))
    assert again == config  # the saved recipe loads back to the same config


@pytest.mark.parametrize(
    ("recipe_objective", "overrides", "expected"),
    [
        # the override wins over the file, whichever spelling either uses
        ({"name": "grpo", "eps_high": 0.2}, ["objective.params.eps_high=0.28"], GRPO(eps_high=0.28)),
        ({"name": "grpo", "params": {"eps_high": 0.2}}, ["objective.eps_high=0.28"], GRPO(eps_high=0.28)),
        # the shorthand `objective: grpo` takes overrides of its hyperparameters
        ("grpo", ["objective.eps_high=0.28"], GRPO(eps_high=0.28)),
        ("grpo", ["objective.params.eps_high=0.28"], GRPO(eps_high=0.28)),
        # between overrides, the last one given wins
        ("grpo", ["objective.eps_high=0.3", "objective.params.eps_high=0.25"], GRPO(eps_high=0.25)),
        ("grpo", ["objective.params.eps_high=0.25", "objective.eps_high=0.3"], GRPO(eps_high=0.3)),
        # the whole nested mapping at once
        ("grpo", ["objective.params={eps_high: 0.28, eps_low: 0.1}"], GRPO(eps_high=0.28, eps_low=0.1)),
        # the nested spelling in the file itself
        ({"name": "dapo", "params": {"eps_high": 0.3}}, [], DAPO(eps_high=0.3)),
        # a section without a name is the default objective's
        ({"eps_high": 0.3}, [], GRPO(eps_high=0.3)),
        # GFPO's base objective: the same spellings one level down
        ({"name": "gfpo", "base": "dapo"}, ["objective.base.eps_high=0.3"], GFPO(base=DAPO(eps_high=0.3))),
        ({"name": "gfpo", "base": {"name": "dapo", "eps_high": 0.2}}, ["objective.base.params.eps_high=0.3"],
         GFPO(base=DAPO(eps_high=0.3))),
        ("gfpo", ["objective.params.base.name=dapo", "objective.base.eps_high=0.3"], GFPO(base=DAPO(eps_high=0.3))),
    ],
)  # fmt: skip
def test_objective_hyperparameters_take_every_spelling_and_the_last_wins(recipe_objective, overrides, expected) -> None:
    config = load_recipe({**BASE, "objective": recipe_objective}, overrides)
    assert config.objective == expected  # the built, validated objective is the recipe's
    assert load_recipe(yaml.safe_load(dump_recipe(config))).objective == expected  # recipe.yaml says the same


def test_a_hyperparameter_given_twice_in_one_file_is_an_error() -> None:
    err = error(recipe={**BASE, "objective": {"name": "grpo", "eps_high": 0.2, "params": {"eps_high": 0.3}}})
    assert err.key == "objective.params.eps_high" and "also given as objective.eps_high" in str(err)


def test_recipe_yaml_holds_every_hyperparameter_and_the_header_only_the_changed_ones() -> None:
    config = load_recipe(BASE, ["objective.name=gfpo", "objective.k=2", "objective.base.kl_coef=0.05"])
    saved = yaml.safe_load(dump_recipe(config))["objective"]
    assert saved["name"] == "gfpo" and saved["k"] == 2 and saved["metric"] == "length"  # defaults written out too
    assert saved["base"] == {"name": "grpo", **{k: v for k, v in saved["base"].items() if k != "name"}}
    assert saved["base"]["kl_coef"] == 0.05 and saved["base"]["eps_high"] == 0.2
    assert recipe_to_dict(config, defaults=False)["objective"] == {
        "name": "gfpo", "base": {"name": "grpo", "kl_coef": 0.05}, "k": 2
    }  # fmt: skip
    assert recipe_changes(config) == [
        "objective.name=gfpo", "objective.base.name=grpo", "objective.base.kl_coef=0.05", "objective.k=2"
    ]  # fmt: skip


def test_loading_a_mapping_leaves_it_as_it_was() -> None:
    recipe = {"envs": ["turngym/GuessNumber-v0"], "objective": "grpo"}
    load_recipe(recipe, ["envs.0.kwargs.high=8", "objective.eps_high=0.3"])
    assert recipe == {"envs": ["turngym/GuessNumber-v0"], "objective": "grpo"}


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
        (["objective.name=gvpo", "correction.mode=token_truncate"], "correction.mode", "gvpo's loss is not a weighted"),
        (["objective.name=gvpo", "correction.mode=token_truncate"], "correction.mode", "set correction.mode=none"),
        (["objective.name=pg", "optimizer.update_epochs=2"], "optimizer.update_epochs", "pg has no importance ratio"),
        (["objective.name=pg", "optimizer.update_epochs=2"], "optimizer.update_epochs", "on-policy only"),
        (["objective.params=5"], "objective.params", "must be a mapping"),
        (["objective.name=[grpo]"], "objective.name", "unknown objective"),
        (["envs.3.id=x"], "envs.3", "index '3' is not one of 0..0"),
        (["optimizer.lr=-1"], "optimizer.lr", "must be > 0"),
        (["rollout.max_context_tokens=99999"], "rollout.max_context_tokens", "model.max_model_len"),
        (["rollout.temperature=nan"], "rollout.temperature", "must be finite"),
        (["model.lora.r=0"], "model.lora.r", "must be >= 1"),
        (["model.lora.dropout=1"], "model.lora.dropout", "must be in [0, 1)"),
        (["model.lora.target_modules=[]"], "model.lora.target_modules", "is empty"),
        (["model.lora.rank=2"], "model.lora.rank", "Valid keys: r, alpha, dropout, target_modules"),
        (["model.lora=5"], "model.lora", "must be a mapping"),
        (["rollout.temperature_stages=[[7, 1.0], [3, 0.9]]"], "rollout.temperature_stages", "increasing"),
        (["rollout.temperature_stages=[[1, 1.0]]"], "rollout.temperature_stages", "steps must be >= 2"),
        (["rollout.temperature_stages=[[30, 1]]", "run.steps=24"], "rollout.temperature_stages", "after the last step"),
        (
            ["rollout.temperature_stages=[[2, 1.0]]", "data.live_fraction=0", "data.episodes=[x.jsonl]"],
            "rollout.temperature_stages",
            "drop the stages or the recorded share",
        ),
        (["rollout.temperature_stages=[[7, 0]]"], "rollout.temperature_stages", "must be > 0"),
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
        docs = RECIPE.docs(cls)
        for f in dataclasses.fields(cls):
            assert docs.get(f.name), f"{section}.{f.name} has no docstring"
            assert f"{section}.{f.name} (" in text and f"| `{f.name}` |" in table
        assert set(typing.get_type_hints(cls)) >= {f.name for f in dataclasses.fields(cls)}


def test_examples_recipes_load(examples_dir) -> None:
    recipes = sorted((examples_dir / "recipes").glob("*.yaml"))
    assert recipes
    for path in recipes:
        config = load_recipe(path)
        assert config.envs and config.objective is not None


def test_docs_hold_the_current_recipe_reference() -> None:
    from pathlib import Path

    page = Path(__file__).resolve().parents[2] / "docs" / "recipe-reference.md"
    assert page.read_text() == recipe_reference_page(), (
        "docs/recipe-reference.md is stale; rewrite it with .venv/bin/python -c 'from turngym.trainer.config "
        'import recipe_reference_page as p; print(p(), end="")\' > docs/recipe-reference.md'
    )


def test_a_resume_compares_the_objective_hyperparameters(tmp_path) -> None:
    from turngym.trainer.run import _check_same_recipe

    saved = tmp_path / "recipe.yaml"
    saved.write_text(dump_recipe(load_recipe(BASE, ["objective.eps_high=0.28"])))
    _check_same_recipe(load_recipe(BASE, ["objective.params.eps_high=0.28"]), saved)  # the same objective
    with pytest.raises(RecipeError) as caught:
        _check_same_recipe(load_recipe(BASE, ["objective.eps_high=0.3"]), saved)
    assert caught.value.key == "objective.eps_high" and "(0.28 -> 0.3)" in str(caught.value)


def test_a_run_saved_with_defaults_written_out_resumes_with_the_same_recipe(tmp_path) -> None:
    """recipe.yaml of older versions held the objective keys as the user wrote them: compared as built, they match."""
    from turngym.trainer.run import _check_same_recipe

    saved = tmp_path / "recipe.yaml"
    raw = yaml.safe_load(dump_recipe(load_recipe(BASE, ["objective.name=dapo"])))
    raw["objective"] = {"name": "dapo", "eps_high": 0.28, "dynamic_sampling": True}  # defaults, given by hand
    saved.write_text(yaml.safe_dump(raw))
    _check_same_recipe(load_recipe(BASE, ["objective.name=dapo"]), saved)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["objective.name=gfpo", "objective.metric=wonn"], "metric 'wonn' is not 'length', 'token_efficiency' or a"),
        (["objective.name=gfpo", "objective.metric=wonn"], "ruled_out, several_guesses, won). Did you mean 'won'?"),
        (["objective.reward_weights={wonn: 1}"], "reward_weights names ['wonn'], which the envs do not report"),
        (["objective.name=dapo", "objective.filter_metric=score"], "filter_metric 'score' is not 'reward'"),
        (["objective.name=gfpo", "objective.base.reward_weights={wonn: 1}"], "reward_weights names ['wonn']"),
    ],
)
def test_objective_settings_naming_components_are_checked_against_the_envs(overrides, fragment) -> None:
    """The envs are made when the recipe is checked, so a misspelt component fails before any model loads."""
    from turngym.trainer.config import check_envs

    config = load_recipe(BASE, overrides)  # valid on its own: the components are the envs'
    with pytest.raises(RecipeError) as caught:
        check_envs(config)
    assert caught.value.key == "objective" and fragment in str(caught.value) and "\n" not in str(caught.value)
    check_envs(load_recipe(BASE, [o.replace("wonn", "won").replace("score", "won") for o in overrides]))


def test_a_plain_gymnasium_env_leaves_component_names_to_the_run() -> None:
    """Its components are known only once it reports them: nothing to check against before the run."""
    from pathlib import Path

    from turngym.trainer.config import check_envs

    plain = Path(__file__).parents[1] / "envs" / "plain_env.py"
    check_envs(load_recipe({"envs": [f"{plain}:VowelGame"]}, ["objective.name=gfpo", "objective.metric=anything"]))


def test_gfpo_must_keep_fewer_than_the_group_size() -> None:
    for overrides in (["objective.k=8"], ["objective.k=9"], ["objective.adaptive_k=[8, 8, 8, 8]"]):
        err = error(["objective.name=gfpo", *overrides])  # rollout.group_size is 8
        assert err.key == "objective" and "keeps every response of a group of 8" in str(err)
    load_recipe(BASE, ["objective.name=gfpo", "objective.k=7"])
    load_recipe(BASE, ["objective.name=gfpo", "objective.adaptive_k=[4, 6, 8, 8]"])  # hard groups kept whole


# --- imports: modules that register env ids ---------------------------------------------------------


@pytest.fixture
def user_envs(tmp_path, monkeypatch):
    """A module `cfg_user_envs` in a directory on sys.path that registers `cfgtest/Qwzx-v0` with Gymnasium."""
    import sys
    from pathlib import Path

    import gymnasium

    plain = Path(__file__).parents[1] / "envs" / "plain_env.py"
    register = "\ngymnasium.register(id='cfgtest/Qwzx-v0', entry_point=VowelGame)\n"
    (tmp_path / "cfg_user_envs.py").write_text(plain.read_text() + register)
    (tmp_path / "cfg_broken_envs.py").write_text("raise RuntimeError('no GPU here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "cfg_user_envs"
    gymnasium.registry.pop("cfgtest/Qwzx-v0", None)
    for name in ("cfg_user_envs", "cfg_broken_envs"):
        sys.modules.pop(name, None)


def test_recipe_imports_register_env_ids_before_the_envs_are_made(user_envs) -> None:
    from turngym.trainer.config import check_envs

    recipe = {"envs": ["cfgtest/Qwzx-v0"]}
    with pytest.raises(RecipeError) as caught:
        check_envs(load_recipe(recipe))
    assert caught.value.key == "envs.0" and "needs `imports: [MODULE]`" in str(caught.value)
    config = load_recipe({**recipe, "imports": [user_envs]})
    check_envs(config)
    assert recipe_to_dict(config)["imports"] == [user_envs] and list(recipe_to_dict(config))[:2] == ["name", "imports"]
    assert load_recipe(yaml.safe_load(dump_recipe(config))).imports == [user_envs]  # recipe.yaml keeps them
    assert "imports=[cfg_user_envs]" in recipe_changes(config)


@pytest.mark.parametrize(
    ("imports", "message"),
    [
        (["cfg_user_env"], "imports.0: cannot import 'cfg_user_env': No module named 'cfg_user_env'. Did you mean "
                           "'cfg_user_envs'?"),
        (["cfg_user_envs", "cfg_broken_envs"], "imports.1: cannot import 'cfg_broken_envs': RuntimeError: no GPU here "
                                               "(at "),
        (["my-envs"], "imports.0: 'my-envs' is not a module name; write it dotted, e.g. my_pkg.envs"),
    ],
)  # fmt: skip
def test_a_recipe_import_that_fails_is_one_line_naming_it(user_envs, imports, message) -> None:
    from turngym.trainer.config import check_envs

    with pytest.raises(RecipeError) as caught:
        check_envs(load_recipe({"envs": ["turngym/GuessNumber-v0"], "imports": imports}))
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_suite_imports_register_env_ids_and_leave_old_suites_unchanged(user_envs) -> None:
    from turngym.trainer.suite import load_suite

    suite = load_suite({"envs": ["cfgtest/Qwzx-v0"], "imports": [user_envs]})
    assert suite.to_dict()["imports"] == [user_envs]
    assert "imports" not in load_suite({"envs": ["turngym/GuessNumber-v0"]}).to_dict()  # saved reports still match
    with pytest.raises(RecipeError, match="imports.0: cannot import 'cfg_broken_envs': RuntimeError: no GPU here"):
        load_suite({"envs": ["turngym/GuessNumber-v0"], "imports": ["cfg_broken_envs"]})


def test_the_reference_documents_the_top_level_keys() -> None:
    text, table = recipe_reference(), recipe_reference(markdown=True)
    for key in ("name", "imports"):
        assert f"\n  {key} (" in text and f"| `{key}` |" in table.split("### `model`")[0]
    assert "imports (list of str, default [])" in text


def test_lora_is_off_by_default_and_an_override_turns_it_on() -> None:
    assert load_recipe(BASE).model.lora is None
    for recipe, overrides in [(BASE, ["model.lora.r=1"]), ({**BASE, "model": {"lora": None}}, ["model.lora.r=1"])]:
        lora = load_recipe(recipe, overrides).model.lora
        assert (lora.r, lora.alpha, lora.dropout) == (1, 32.0, 0.0)
        assert lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    on = load_recipe({**BASE, "model": {"lora": {}}})
    assert on.model.lora.r == 16
    assert recipe_changes(on) == ["model.lora.r=16"]  # LoRA is named, its other defaults are not
    assert recipe_changes(load_recipe(BASE, ["model.lora.alpha=8"])) == ["model.lora.r=16", "model.lora.alpha=8.0"]
    assert load_recipe(yaml.safe_load(dump_recipe(on))).model.lora == on.model.lora  # recipe.yaml round-trips


def test_temperature_stages_take_over_from_their_step_on() -> None:
    stages = ["rollout.temperature=0.7", "rollout.temperature_stages=[[7, 1.0], [13, 1.2]]", "run.steps=24"]
    config = load_recipe(BASE, stages)
    temperatures = [config.rollout.temperature_at(step) for step in (1, 6, 7, 12, 13, 24)]
    assert temperatures == [0.7, 0.7, 1.0, 1.0, 1.2, 1.2]
    assert load_recipe(BASE).rollout.temperature_at(5) == 1.0  # no stages: `temperature` throughout
