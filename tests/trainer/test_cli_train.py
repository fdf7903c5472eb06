"""`turngym train` and `turngym plot` as a user runs them: exit codes, one-line errors, nothing written on error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from turngym.cli import app
from turngym.trainer.plot import plot_runs

runner = CliRunner()
GOOD = {"envs": [{"id": "turngym/GuessNumber-v0", "kwargs": {"high": 8}}]}
REPO = Path(__file__).resolve().parents[2]


def train_in_subprocess(model_dir, tmp_path, name, envs, rollout, steps) -> subprocess.CompletedProcess:
    """`turngym train NAME.yaml` as a user runs it, on the tiny model, with the run in tmp_path/run."""
    recipe = {
        "name": name,
        "model": {"name": str(model_dir), "max_model_len": 1024, "kv_cache_gib": 0.25},
        "envs": envs,
        "rollout": {"max_tokens": 12, **rollout},
        "run": {"steps": steps, "dir": str(tmp_path / "run")},
    }
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(recipe))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_", "TURNGYM_"))}
    command = [sys.executable, "-m", "turngym", "train", str(tmp_path / f"{name}.yaml")]
    return subprocess.run(
        command, capture_output=True, text=True, cwd=REPO, env={**env, "CI": "true", "COLUMNS": "200"}
    )


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("recipe", "overrides", "expected"),
    [
        (GOOD, ["rollout.gruop_size=4"], "rollout.gruop_size: unknown key. Did you mean 'group_size'?"),
        (GOOD, ["rollout.group_size=four"], "rollout.group_size: must be a number, got 'four'"),
        (GOOD, ["objective.name=ppo"], "objective.name: unknown objective 'ppo'."),
        (GOOD, ["rollout.group_size=1"], "set rollout.group_size=2 or more"),
        ({"envs": ["turngym/GuesNumber-v0"]}, [], "cannot make 'turngym/GuesNumber-v0': unknown env id"),
        ({"envs": [{"id": "turngym/GuessNumber-v0", "kwargs": {"hgh": 3}}]}, [], "envs.0: cannot make"),
        (GOOD, ["name=../up"], "name: must be a non-empty name without '/'"),
        (GOOD, ["model.name="], "model.name: is empty"),
        (GOOD, ["run.seed=-1"], "run.seed: must be in 0..4294967295"),
        (GOOD, ["run.seed_start=999999999"], "run.seed_start: 999999999 leaves too few training seeds"),
        (GOOD, ["optimizer.betas=[2,3]"], "optimizer.betas: must be two numbers in [0, 1), got [2.0, 3.0]"),
        (GOOD, ["model.max_model_len=10"], "rollout.max_tokens: 64 leaves no room for a prompt"),
        (GOOD, ["objective.eps_high=-1"], "eps_high must be >= 0, got -1.0"),
        (GOOD, ["objective.dual_clip_c=0.5"], "dual_clip_c must be > 1"),
        (GOOD, ["objective.name=gfpo", "objective.metric=wonn"], "objective: metric 'wonn' is not 'length'"),
        (GOOD, ["objective.name=gfpo", "objective.k=8"], "objective: k=8 keeps every response of a group of 8"),
    ],
    ids=[
        "unknown-key",
        "wrong-type",
        "unknown-objective",
        "group-size-1",
        "unknown-env",
        "bad-env-kwarg",
        "name-escapes",
        "empty-model",
        "seed-range",
        "seed-start",
        "betas",
        "max-model-len",
        "eps-high",
        "dual-clip",
        "gfpo-metric-not-a-component",
        "gfpo-k-not-below-group-size",
    ],  # fmt: skip
)
def test_bad_recipes_exit_2_with_one_line_and_write_nothing(in_tmp, recipe, overrides, expected) -> None:
    (in_tmp / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = runner.invoke(app, ["train", "recipe.yaml", *overrides])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("recipe error:") and expected in lines[0], result.output
    assert sorted(p.name for p in in_tmp.iterdir()) == ["recipe.yaml"]  # no run directory


def test_an_unknown_env_id_suggests_the_close_one(in_tmp) -> None:
    (in_tmp / "recipe.yaml").write_text(yaml.safe_dump({"envs": ["turngym/GuesNumber-v0"]}))
    result = runner.invoke(app, ["train", "recipe.yaml"])
    assert result.exit_code == 2 and "Did you mean turngym/GuessNumber-v0?" in result.output


def test_train_help_documents_every_field() -> None:
    import dataclasses
    import subprocess
    import sys

    from turngym.trainer.config import SECTIONS

    done = subprocess.run(
        [sys.executable, "-m", "turngym", "train", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            assert f"{section}.{f.name} (" in done.stdout


def _fake_run(path, steps: int, slope: float) -> None:
    path.mkdir()
    records = [{"step": 0, "eval/e/success": 0.05, "eval/e/low": 0.02, "eval/e/high": 0.1}]
    for s in range(1, steps + 1):
        records.append(
            {
                "step": s,
                "reward": slope * s,
                "reward_std": 0.1,
                "reward/won": slope * s,
                "success": min(1, slope * s),
                "invalid_rate": 1 - min(1, slope * s),
                "turns": 2.5,
                "sampled_tokens": 40.0,
                "stop/terminated": 0.5,
                "stop/truncated": 0.5,
                "mismatch_kl": 1e-4,
                "clip_fraction_low": 0.0,
                "clip_fraction_high": 0.01,
                "grad_norm": 1.0,
                "time/rollout": 30.0,
                "time/update": 60.0,
                "time/sync": 0.5,
                "tokens_per_s/rollout": 100.0,
                "tokens_per_s/update": 150.0,
            }  # fmt: skip
        )
    records.append({"step": steps, "eval/e/success": 0.8, "eval/e/low": 0.7, "eval/e/high": 0.87})
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_plot_writes_one_png_per_topic_and_overlays_runs(in_tmp) -> None:
    _fake_run(in_tmp / "a", 5, 0.1)
    _fake_run(in_tmp / "b", 8, 0.05)
    result = runner.invoke(app, ["plot", "a", "b", "--out", "plots"])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in (in_tmp / "plots").iterdir())
    assert written == ["kl_clip.png", "length.png", "reward.png", "success.png", "time.png"]
    for name in written:
        data = (in_tmp / "plots" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert [str(p) for p in plot_runs(["a"])] == [
        f"a/plots/{n}" for n in ("reward.png", "success.png", "length.png", "kl_clip.png", "time.png")
    ]


def test_plot_seeds_draws_one_line_per_recipe_with_the_runs_mean_and_range(in_tmp) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from turngym.trainer.config import dump_recipe, load_recipe
    from turngym.trainer.metrics import read_metrics
    from turngym.trainer.plot import _draw, _series, mean_and_spread, seed_groups

    runs = [
        ("t0", "trajectory", 0, 0.1),
        ("s0", "step", 0, 0.05),
        ("t1", "trajectory", 1, 0.2),
        ("s1", "step", 1, 0.15),
    ]
    for name, credit, seed, slope in runs:
        _fake_run(in_tmp / name, 5, slope)
        bookkeeping = [f"run.keep_checkpoints={2 + seed}", f"eval.every={seed}"]  # no new line for these
        recipe = load_recipe(GOOD, [f"objective.credit={credit}", f"run.seed={seed}", f"run.dir={name}", *bookkeeping])
        (in_tmp / name / "recipe.yaml").write_text(dump_recipe(recipe))
    with open(in_tmp / "t1" / "metrics.jsonl", "a") as out:  # t1's last evaluation: 60% instead of 80%
        out.write(json.dumps({"step": 5, "eval/e/success": 0.6, "time/step": 90.0}) + "\n")
    groups = seed_groups(["t0", "s0", "t1", "s1"])
    assert groups == {
        "credit=trajectory (2 runs)": [Path("t0"), Path("t1")],
        "credit=step (2 runs)": [Path("s0"), Path("s1")],
    }
    assert seed_groups(["t1", "t0"]) == {"run (2 runs)": [Path("t1"), Path("t0")]}  # one recipe: its name
    old = yaml.safe_load((in_tmp / "t1" / "recipe.yaml").read_text())  # saved before these keys existed
    del old["data"], old["rollout"]["schedule"]
    (in_tmp / "t1" / "recipe.yaml").write_text(yaml.safe_dump(old))
    assert seed_groups(["t1", "t0"]) == {"run (2 runs)": [Path("t1"), Path("t0")]}  # absent = the default
    shutil.copytree(in_tmp / "s1", in_tmp / "m1")  # a second env in one recipe: labelled once, by its name
    mixed = yaml.safe_load((in_tmp / "m1" / "recipe.yaml").read_text())
    mixed["envs"].append({**mixed["envs"][0], "name": "warm-up", "kwargs": {"low": 1, "high": 3}})
    (in_tmp / "m1" / "recipe.yaml").write_text(yaml.safe_dump(mixed))
    assert list(seed_groups(["s0", "m1"])) == ["envs.1=(absent) (1 run)", "envs.1=warm-up (1 run)"]
    merged = mean_and_spread([_series(read_metrics(d)) for d in ("t0", "t1")])
    steps = [1, 2, 3, 4, 5]
    assert merged["reward"] == (steps, pytest.approx([(0.1 * s + 0.2 * s) / 2 for s in steps]))
    assert merged["reward#lowest"] == (steps, pytest.approx([0.1 * s for s in steps]))
    assert merged["reward#highest"] == (steps, pytest.approx([0.2 * s for s in steps]))
    assert merged["eval/e/success"] == ([0, 5], [0.05, pytest.approx(0.7)])
    assert "eval/e/low" not in merged and "reward_std" not in merged  # one run's interval is no interval of a mean
    fig, ax = plt.subplots()
    _draw(ax, {"title": "t", "keys": ["reward"], "ylabel": "r"}, {"trajectory": merged})
    assert len(ax.lines) == 1 and len(ax.collections) == 1  # the mean, and the range shaded around it
    plt.close(fig)
    result = runner.invoke(app, ["plot", "--seeds", "t0", "s0", "t1", "s1", "--out", "p"])
    assert result.exit_code == 0, result.output
    pngs = [f"p/{n}.png" for n in ("reward", "success", "length", "kl_clip", "time")]
    assert [line for line in result.output.splitlines() if line.startswith("p/")] == ["p/seeds.md", *pngs]
    assert (in_tmp / "p" / "seeds.md").read_text().splitlines() == [
        "held-out success, e",
        "",
        "| line | step 0 | step 5 | training minutes |",
        "|---|---|---|---|",
        "| credit=trajectory (2 runs) | 5.0 (5.0, 5.0) | 70.0 (80.0, 60.0) | 1.5 (-, 1.5) |",
        "| credit=step (2 runs) | 5.0 (5.0, 5.0) | 80.0 (80.0, 80.0) | - |",
    ]
    (in_tmp / "t1" / "recipe.yaml").unlink()
    result = runner.invoke(app, ["plot", "--seeds", "t0", "t1"])
    assert result.exit_code == 2 and "--seeds groups runs by their recipes; is t1 a turngym run" in result.output


def test_plot_of_a_directory_that_is_not_a_run_exits_2(in_tmp) -> None:
    (in_tmp / "empty").mkdir()
    result = runner.invoke(app, ["plot", "empty"])
    assert result.exit_code == 2 and "is empty a turngym run directory?" in result.output


def test_a_three_step_run_prints_seven_lines_and_no_library_noise(tiny_model_dir, tmp_path) -> None:
    """Real CLI in a subprocess, on the plain Gymnasium env of tests/envs/plain_env.py."""
    envs = [{"id": str(REPO / "tests/envs/plain_env.py") + ":VowelGame", "max_turns": 2}]
    done = train_in_subprocess(tiny_model_dir, tmp_path, "three", envs, {"group_size": 4, "groups_per_step": 3}, 3)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 7, done.stdout  # header, non-default keys, 3 steps, summary, plots
    assert lines[1].startswith("not default: name=three model.name=") and "run.steps=3" in lines[1]
    assert [line.split("|")[0].strip() for line in lines[2:5]] == ["step 1/3", "step 2/3", "step 3/3"]
    assert "WARNING" not in done.stdout and "vLLM" not in done.stdout
    # stderr: only the count of hidden warnings, which train.log keeps
    assert [line for line in done.stderr.splitlines() if line.strip()] == [
        line for line in done.stderr.splitlines() if "vLLM warnings hidden; --verbose" in line
    ]
    assert "WARNING vllm." in (tmp_path / "run" / "train.log").read_text()


def test_a_start_that_failed_before_step_1_does_not_block_the_next(in_tmp) -> None:
    from turngym.trainer.config import load_recipe
    from turngym.trainer.distributed import Processes
    from turngym.trainer.run import open_run

    run_dir = in_tmp / "runs" / "r"
    config = load_recipe(GOOD, [f"run.dir={run_dir}"])
    open_run(config, Processes.from_environment())  # writes recipe.yaml and train.log, then (say) the model fails
    assert open_run(config, Processes.from_environment()).path == run_dir  # the same dir, not "already holds a run"
    (run_dir / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(Exception, match="already holds a run"):
        open_run(config, Processes.from_environment())


BREAKS_LATER = '''
import gymnasium as gym

made = 0


class BreaksLater(gym.Env):
    """Made once for the recipe check; the rollout's second construction fails (a fatal error, not an episode's)."""

    def __init__(self):
        global made
        made += 1
        if made > 1:
            raise RuntimeError("the env's data went away")
        self.observation_space = gym.spaces.Text(64)
        self.action_space = gym.spaces.Text(64)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return "Say something.", {}

    def step(self, action):
        return "Thanks.", 1.0, True, False, {}
'''


def test_a_fatal_error_is_one_line_on_screen_and_a_traceback_in_train_log(tiny_model_dir, tmp_path) -> None:
    (tmp_path / "breaks.py").write_text(BREAKS_LATER)
    envs = [{"id": f"{tmp_path / 'breaks.py'}:BreaksLater"}]
    done = train_in_subprocess(tiny_model_dir, tmp_path, "breaks", envs, {"group_size": 2, "groups_per_step": 1}, 2)
    assert done.returncode == 1, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.strip() and "vLLM warnings hidden" not in line]
    log = tmp_path / "run" / "train.log"
    assert errors == [f"the run stopped: RuntimeError: the env's data went away (traceback in {log})"]
    text = log.read_text()
    assert "a run starts" in text and "turngym train breaks" in text and "not default:" in text  # the screen's lines
    assert "the run stopped with an error" in text and "Traceback (most recent call last)" in text
    assert "RuntimeError: the env's data went away" in text
