"""What an env entry is called in metrics and plots: `name:`, else its id, else (own envs) its class name.

A recipe env named by file path (`/path/to/plain_env.py:VowelGame`) used to put the path in its
keys (`eval//path/to/plain_env.py:VowelGame/success`); now it goes by `VowelGame` unless named.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from turngym.trainer.config import RecipeError, load_recipe
from turngym.trainer.distributed import Processes
from turngym.trainer.heldout import training_suite
from turngym.trainer.suite import env_name_of, load_suite

PLAIN = str(Path(__file__).resolve().parents[1] / "envs" / "plain_env.py") + ":VowelGame"


def test_an_own_env_goes_by_its_class_name_and_an_id_by_itself() -> None:
    assert env_name_of(PLAIN) == "VowelGame"
    assert env_name_of("tests.envs.plain_env:VowelGame") == "VowelGame"
    for env_id in ("turngym/GuessNumber-v0", "textarena/Wordle-v0", "reasoning_gym/basic_arithmetic"):
        assert env_name_of(env_id) == env_id


def test_recipe_env_names_key_the_evaluation() -> None:
    config = load_recipe(
        {
            "envs": [
                PLAIN,
                "turngym/GuessNumber-v0",
                {"id": "turngym/GuessNumber-v0", "name": "guess-8", "kwargs": {"high": 8}},
                {"id": PLAIN, "name": "vowels-named"},
            ]
        }
    )
    names = ["VowelGame", "turngym/GuessNumber-v0", "guess-8", "vowels-named"]
    assert config.env_names == names
    assert [env.label for env in training_suite(config).envs] == names


def test_unnamed_entries_that_share_a_name_are_numbered() -> None:
    config = load_recipe({"envs": [PLAIN, {"id": PLAIN, "kwargs": {"target": 0.7}}, "turngym/Mastermind-v0"]})
    assert config.env_names == ["VowelGame#0", "VowelGame#1", "turngym/Mastermind-v0"]


@pytest.mark.parametrize(
    ("envs", "key", "message"),
    [
        (
            [{"id": "turngym/GuessNumber-v0", "name": "guess"}, {"id": "turngym/Mastermind-v0", "name": "guess"}],
            "envs.1.name",
            "'guess' is also the name of envs.0; names key the metrics (eval/<name>/success), so give the entries "
            "different `name:`s",
        ),
        (
            [{"id": "turngym/GuessNumber-v0", "name": "VowelGame"}, PLAIN],
            "envs.1.name",
            "'VowelGame' is also the name of envs.0",
        ),
        ([{"id": PLAIN, "name": " "}], "envs.0.name", "is empty; give a name (it keys the metrics) or drop the key"),
    ],
)
def test_colliding_or_empty_names_are_one_line_errors(envs, key, message) -> None:
    with pytest.raises(RecipeError) as caught:
        load_recipe({"envs": envs})
    assert caught.value.key == key and message in str(caught.value) and "\n" not in str(caught.value)


def test_a_suite_env_named_by_file_path_goes_by_its_class_name() -> None:
    suite = load_suite({"envs": [PLAIN, {"id": PLAIN, "name": "vowels", "kwargs": {"target": 0.7}}]})
    assert [env.label for env in suite.envs] == ["VowelGame", "vowels"]
    with pytest.raises(RecipeError, match=r"\['VowelGame'\] appear twice; give the entries different `name:`s"):
        load_suite({"envs": [PLAIN, {"id": PLAIN, "kwargs": {"target": 0.7}}]})


def test_rollout_and_evaluation_metrics_use_the_names(tiny_model_dir, tmp_path) -> None:
    """env/<name>/success each step and eval/<name>/success at evaluations: no file path in any key."""
    from transformers import AutoTokenizer

    from turngym.agent import ScriptedGenerator
    from turngym.trainer.heldout import evaluate_suite
    from turngym.trainer.loop import _collect_round, _log_evaluation
    from turngym.trainer.metrics import rollout_metrics
    from turngym.trainer.seeds import SeedCursor

    config = load_recipe(
        {
            "envs": [{"id": PLAIN, "max_turns": 1}, {"id": "turngym/GuessNumber-v0", "name": "guess", "max_turns": 1}],
            "rollout": {"group_size": 2, "groups_per_step": 4},
            "eval": {"episodes": 2},
        }
    )
    generator = ScriptedGenerator(AutoTokenizer.from_pretrained(tiny_model_dir), lambda prompt: "aeiou 5")
    logged: dict = {}
    run = SimpleNamespace(
        config=config,
        procs=Processes(),
        generator=generator,
        sampler=lambda: generator,
        dir=tmp_path,
        log=SimpleNamespace(write=lambda step, metrics: logged.update(metrics)),
        display=SimpleNamespace(print=lambda line: None, phase=lambda text: None),
    )
    groups, recorded = _collect_round(run, SeedCursor(0), step=1, round_=0)
    assert recorded == []
    assert {g.env_id for g in groups} == {"VowelGame", "guess"}  # mixture_counts gives each env its share
    keys = set(rollout_metrics(groups))
    assert {"env/VowelGame/success", "env/VowelGame/reward", "env/guess/success", "env/guess/reward"} <= keys
    _log_evaluation(run, 1, evaluate_suite(generator, training_suite(config), run.procs), seconds=0.0)
    assert {"eval/VowelGame/success", "eval/guess/success"} <= set(logged)
    assert not [key for key in {*keys, *logged} if "plain_env" in key or ".py" in key]
