"""Training through the real path: vLLM rollouts on the tiny model, transformers updates, weight sync."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from tests.helpers import chat_prompt, hf_token_logps
from tests.trainer.support import Flaky, tiny_recipe
from turngym.agent import SamplingParams, load_episodes
from turngym.trainer import load_recipe, train
from turngym.trainer.checkpoint import latest_checkpoint
from turngym.trainer.loop import eval_episodes_path
from turngym.trainer.metrics import read_metrics
from turngym.trainer.seeds import EVAL_SEED_BASE, eval_seeds
from turngym.trainer.stats import wilson_interval

OBJECTIVES = {
    "pg": {"name": "pg"},
    "rloo": {"name": "rloo"},
    "grpo": {"name": "grpo"},
    "dr_grpo": {"name": "dr_grpo"},
    "dapo": {"name": "dapo"},
    "gspo": {"name": "gspo"},
    "gspo_token": {"name": "gspo_token"},
    "gpg": {"name": "gpg"},
    "gvpo": {"name": "gvpo"},
    "gfpo": {"name": "gfpo", "k": 2, "metric": "vowels"},
    "grpo+kl": {"name": "grpo", "kl_coef": 0.05},
}


def weights(path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_one_real_step_per_objective(name, engine, tiny_model_dir, tmp_path) -> None:
    config = load_recipe(tiny_recipe(tiny_model_dir, tmp_path / "run", objective=OBJECTIVES[name]))
    result = train(config, generator=engine)
    [metrics] = read_metrics(result.run_dir)
    assert metrics["skipped_update"] == 0 and metrics["groups_trained"] >= 2
    assert metrics["mismatch_abs_logp"] < 0.1  # bf16 sampler vs fp32 trainer on the same tokens
    assert ("kl" in metrics) == (name == "grpo+kl")  # a reference model only when kl_coef > 0
    # this process holds torch, the vLLM engine and the model (0.5 GiB and more); a peak is never below the present
    assert 0.3 < metrics["memory/resident_gib"] <= metrics["memory/peak_gib"]
    trained_dir = latest_checkpoint(result.run_dir)
    initial, trained = weights(tiny_model_dir), weights(trained_dir)
    assert max(float((trained[k] - initial[k]).abs().max()) for k in initial) > 1e-4  # the parameters changed
    # The engine now samples from the trained weights: its logprobs are the checkpoint's (bf16 tolerance,
    # tests/agent/test_vllm_generator.py), and no longer the initial model's.
    model = AutoModelForCausalLM.from_pretrained(trained_dir, dtype=torch.float32).eval()
    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    prompt = chat_prompt(engine.tokenizer, "Say something with many vowels.")
    completions = engine.generate([prompt] * 4, SamplingParams(max_tokens=16, seed=0))
    to_trained, to_initial = [], []
    for c in completions:
        sampled = torch.tensor(c.logprobs)
        to_trained.append((hf_token_logps(model, prompt, c.token_ids) - sampled).abs())
        to_initial.append((hf_token_logps(before, prompt, c.token_ids) - sampled).abs())
    to_trained, to_initial = torch.cat(to_trained), torch.cat(to_initial)
    assert to_trained.max() <= 0.1 and to_trained.mean() <= 0.02
    assert to_initial.mean() > 3 * to_trained.mean()


def test_one_and_four_micro_batches_give_the_same_weights(engine, restore, tiny_model_dir, tmp_path) -> None:
    """Step-global totals: splitting the step into micro-batches, or sharing prompts, changes nothing."""
    # budget, share_prefix; "split": groups of 4 rows of 60-90 tokens exceed 250 padded tokens, so each is split
    runs = {"whole": (100_000, True), "rows": (250, False), "groups": (400, True), "split": (250, True)}
    metrics, trained = {}, {}
    for name, (budget, share) in runs.items():
        overrides = {
            "model": {"autocast": "off"},  # fp32: the claim is equality to fp32 rounding (bf16 rounds per shape)
            # AdamW's first step is lr * g / (|g| + eps): a rounding difference d in a gradient moves a weight by up
            # to lr * d / eps. Gradients summed in another order differ by ~1e-9, so eps=1e-6 bounds that at 1e-3 lr.
            "optimizer": {"micro_batch_tokens": budget, "share_prefix": share, "eps": 1e-6},
            "run": {"deterministic": True},
        }
        result = train(load_recipe(tiny_recipe(tiny_model_dir, tmp_path / name, **overrides)), generator=engine)
        restore()  # the next run starts from the same engine weights, so it samples the same episodes
        metrics[name], trained[name] = read_metrics(result.run_dir)[0], weights(latest_checkpoint(result.run_dir))
    # 3 groups of 4 rows: one group (at most 360 padded tokens) fits in 400, two do not
    assert [metrics[n]["micro_batches"] for n in ("whole", "groups")] == [1, 3]
    assert metrics["rows"]["micro_batches"] >= 4  # 12 rows of 60-90 tokens, at most 250 padded tokens each
    assert metrics["split"]["micro_batches"] > 3  # a group larger than the budget goes in parts
    assert len({metrics[n]["reward"] for n in runs}) == 1 and len({metrics[n]["tokens_trained"] for n in runs}) == 1
    for name in ("rows", "groups", "split"):
        # The gradient's norm (before clipping) sees any normalisation error; only fp32 summation order differs.
        assert metrics[name]["grad_norm"] == pytest.approx(metrics["whole"]["grad_norm"], rel=1e-5)
        # AdamW's first step moves a weight by about lr (1e-3) where |g| >> eps; the weights agree to 2% of that
        # everywhere (see eps above) and to 1e-5 of it on average.
        diff = torch.cat([(trained[name][k] - trained["whole"][k]).abs().flatten() for k in trained["whole"]])
        assert diff.max() < 2e-5 and diff.mean() < 1e-8
    initial = weights(tiny_model_dir)
    assert max(float((trained["whole"][k] - initial[k]).abs().max()) for k in initial) > 1e-4


def test_an_env_that_raises_in_one_episode_does_not_stop_the_step(engine, tiny_model_dir, tmp_path) -> None:
    Flaky.raised = False
    recipe = tiny_recipe(tiny_model_dir, tmp_path / "run", envs=[{"id": "tests/Flaky-v0", "kwargs": {"fail_seed": 1}}])
    result = train(load_recipe(recipe), generator=engine)
    [metrics] = read_metrics(result.run_dir)
    assert metrics["failed_episodes"] == 1
    assert metrics["groups_collected"] == 2 and metrics["groups_trained"] == 2  # the failed group is dropped
    assert metrics["skipped_update"] == 0
    assert "the flaky env broke" in (result.run_dir / "train.log").read_text()  # the traceback is in the log


def test_tensorboard_gets_the_same_scalars_as_the_jsonl(engine, tiny_model_dir, tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe = tiny_recipe(tiny_model_dir, tmp_path / "run", run={"steps": 2, "tensorboard": True})
    result = train(load_recipe(recipe), generator=engine)
    events = EventAccumulator(str(result.run_dir / "tensorboard"))
    events.Reload()
    logged = {e.step: e.value for e in events.Scalars("reward")}
    assert logged == pytest.approx({r["step"]: r["reward"] for r in read_metrics(result.run_dir)})
    assert {"time/update", "grad_norm", "mismatch_kl"} <= set(events.Tags()["scalars"])


def test_held_out_evaluation_before_and_after(engine, tiny_model_dir, tmp_path, capsys) -> None:
    recipe = tiny_recipe(tiny_model_dir, tmp_path / "run", eval={"at_start": True, "at_end": True, "episodes": 5})
    result = train(load_recipe(recipe), generator=engine)
    assert sorted(result.evals) == [0, 1]
    for step, [evaluation] in result.evals.items():
        groups = load_episodes(eval_episodes_path(result.run_dir, step))
        assert [g.seed for g in groups] == eval_seeds(5)  # the same held-out seeds at every evaluation
        assert all(len(g.trajectories) == 1 for g in groups)
        won = sum(bool(g.trajectories[0].metrics.get("won")) for g in groups)
        assert evaluation.episodes == 5 and evaluation.successes == won
        assert (evaluation.low, evaluation.high) == pytest.approx(wilson_interval(won, 5))
    logged = [json.loads(line)["step"] for line in (result.run_dir / "eval.jsonl").read_text().splitlines()]
    assert logged == [0, 1]
    out = capsys.readouterr().out
    assert "success before" in out and "-> after" in out
    assert f"held-out episode tests/Vowels-v0 seed {EVAL_SEED_BASE}, before and after training" in out


def test_a_step_on_a_plain_gymnasium_env_named_by_file_path(engine, tiny_model_dir, tmp_path) -> None:
    """A plain `gymnasium.Env` (tests/envs/plain_env.py) trains and evaluates like a TextEnv."""
    plain = Path(__file__).parents[1] / "envs" / "plain_env.py"
    env = {"id": f"{plain}:VowelGame", "max_turns": 2}
    recipe = tiny_recipe(tiny_model_dir, tmp_path / "run", envs=[env], eval={"at_end": True, "episodes": 4})
    result = train(load_recipe(recipe), generator=engine)
    metrics = read_metrics(result.run_dir)[0]  # the step's row (the evaluation adds a second)
    assert metrics["failed_episodes"] == 0 and metrics["groups_collected"] == 3
    assert metrics["skipped_update"] == 0 and metrics["groups_trained"] >= 1  # vowel shares vary within groups
    assert 0.0 <= metrics["reward"] <= 2.0  # at most two turns, each a share in [0, 1]
    [evaluation] = result.evals[1]
    assert evaluation.env == "VowelGame" and evaluation.episodes == 4  # its class name, not the file's path


def test_an_evaluation_suite_during_training_starts_at_step_0(engine, tiny_model_dir, tmp_path) -> None:
    suite = tmp_path / "suite.yaml"
    plain = Path(__file__).parents[1] / "envs" / "plain_env.py"
    suite.write_text(
        f"name: during\nnum_seeds: 3\nepisodes_per_seed: 2\nsampling: {{temperature: 1.0, max_tokens: 12}}\n"
        f"envs: [{{id: '{plain}:VowelGame', name: vowels, max_turns: 2}}]\n"
    )
    recipe = tiny_recipe(tiny_model_dir, tmp_path / "run", eval={"suite": str(suite), "at_end": True})
    result = train(load_recipe(recipe), generator=engine)
    assert sorted(result.evals) == [0, 1]  # step 0 without at_start: a suite always starts the curve
    for step, [evaluation] in result.evals.items():
        assert evaluation.env == "vowels" and evaluation.episodes == 6 and set(evaluation.pass_at) == {1, 2}
        groups = load_episodes(eval_episodes_path(result.run_dir, step))
        assert [g.seed for g in groups] == eval_seeds(3) and all(len(g.trajectories) == 2 for g in groups)
    logged = [r for r in read_metrics(result.run_dir) if "eval/vowels/success" in r]
    assert [r["step"] for r in logged] == [0, 1] and all("eval/vowels/pass@2" in r for r in logged)


def test_a_bad_suite_in_a_recipe_is_a_recipe_error(tiny_model_dir, tmp_path) -> None:
    from turngym.trainer.config import RecipeError, check_envs

    (tmp_path / "bad.yaml").write_text("envs: [turngym/GuesNumber-v0]\n")
    config = load_recipe(tiny_recipe(tiny_model_dir, tmp_path / "run", eval={"suite": str(tmp_path / "bad.yaml")}))
    with pytest.raises(RecipeError, match="eval.suite: envs.0: cannot make 'turngym/GuesNumber-v0'"):
        check_envs(config)


def test_a_temperature_stage_samples_and_scores_at_its_temperature(engine, tiny_model_dir, tmp_path) -> None:
    # Step 2 samples at 1.6 and the trainer scores at 1.6: had it scored at the first stage's 0.8, the
    # logprobs of the same tokens would differ by far more than the bf16 sampler's rounding.
    stages = {"temperature": 0.8, "temperature_stages": [[2, 1.6]]}
    recipe = tiny_recipe(tiny_model_dir, tmp_path / "run", rollout=stages, run={"steps": 2})
    result = train(load_recipe(recipe), generator=engine)
    first, second = read_metrics(result.run_dir)
    assert (first["temperature"], second["temperature"]) == (0.8, 1.6)
    assert first["mismatch_abs_logp"] < 0.1 and second["mismatch_abs_logp"] < 0.1
