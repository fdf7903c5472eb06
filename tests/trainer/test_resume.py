"""Crash safety: a run killed with SIGKILL resumes to the same per-step metrics; Ctrl-C saves and exits 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.trainer.support import tiny_recipe
from turngym.trainer import load_recipe
from turngym.trainer.checkpoint import MARKER, complete_checkpoints
from turngym.trainer.metrics import read_metrics

SCRIPT = Path(__file__).with_name("train_script.py")
REPO = Path(__file__).resolve().parents[2]
TIMING = ("time/", "tokens_per_s/", "memory/")  # vary from run to run


def start(recipe: dict, tmp_path: Path, *overrides: str) -> subprocess.Popen:
    path = tmp_path / f"recipe-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(recipe))
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    command = [sys.executable, str(SCRIPT), str(path), *overrides]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def wait_for_step(run_dir: Path, step: int, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = run_dir / "metrics.jsonl"
        if path.exists() and any(r["step"] >= step for r in read_metrics(run_dir)):
            return
        assert process.poll() is None, finish(process)[1][-3000:]
        time.sleep(0.05)
    raise TimeoutError(f"step {step} did not come")


def learning_metrics(run_dir: Path) -> dict[int, dict]:
    return {r["step"]: {k: v for k, v in r.items() if not k.startswith(TIMING)} for r in read_metrics(run_dir)}


def slow_recipe(model_dir, run_dir, lora: dict | None = None) -> dict:
    """Six deterministic steps, a checkpoint every two; the env sleeps so a step lasts about a second."""
    return tiny_recipe(
        model_dir,
        run_dir,
        model={"lora": lora},
        envs=[{"id": "tests/Vowels-v0", "kwargs": {"delay": 0.04}}],
        run={"steps": 6, "checkpoint_every": 2, "deterministic": True},
    )


@pytest.mark.parametrize("lora", [None, {"r": 2, "alpha": 32}], ids=["full", "lora"])
def test_sigkill_then_resume_repeats_the_uninterrupted_metrics(lora, tiny_model_dir, tmp_path) -> None:
    """With LoRA the checkpoint holds the adapter and its AdamW state; the resumed run repeats the same steps."""
    reference = tmp_path / "reference"
    code, output = finish(start(slow_recipe(tiny_model_dir, reference, lora), tmp_path))
    assert code == 0, output[-3000:]

    killed = tmp_path / "killed"
    process = start(slow_recipe(tiny_model_dir, killed, lora), tmp_path)
    wait_for_step(killed, 3, process)  # after the step-2 checkpoint, before the end
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    saved = complete_checkpoints(killed)
    assert saved and all((c / MARKER).is_file() for c in saved)
    resumed_from = int(saved[-1].name.removeprefix("step-"))
    assert 2 <= resumed_from < 6

    code, output = finish(start(slow_recipe(tiny_model_dir, killed, lora), tmp_path, "run.resume=auto"))
    assert code == 0, output[-3000:]
    assert f"resumed from {saved[-1]}" in output
    expected, got = learning_metrics(reference), learning_metrics(killed)
    assert sorted(got) == list(range(1, 7))
    for step in range(1, 7):
        assert got[step] == expected[step], f"step {step} differs after resuming from step {resumed_from}"


def test_ctrl_c_saves_a_checkpoint_and_exits_130(tiny_model_dir, tmp_path) -> None:
    run_dir = tmp_path / "run"
    recipe = slow_recipe(tiny_model_dir, run_dir)
    recipe["run"]["checkpoint_every"] = 0  # only the interrupt saves
    process = start(recipe, tmp_path)
    wait_for_step(run_dir, 1, process)
    process.send_signal(signal.SIGINT)
    code, output = finish(process)
    assert code == 130, output[-3000:]
    [checkpoint] = complete_checkpoints(run_dir)
    last = max(learning_metrics(run_dir))
    assert checkpoint.name == f"step-{last:06d}" and last < 6
    assert "checkpoint saved. Continue with --resume" in output


def test_a_damaged_checkpoint_is_found_and_passed_over(tiny_model_dir, tmp_path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from turngym.trainer.checkpoint import STATE_FILE, checkpoint_problem, latest_checkpoint, save_checkpoint

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for step in (1, 2, 3, 4):
        save_checkpoint(tmp_path, step, model, tokenizer, {"step": step}, keep=4)
    one, two, three, four = (tmp_path / "checkpoints" / f"step-{s:06d}" for s in (1, 2, 3, 4))
    assert [checkpoint_problem(c) for c in (one, two, three, four)] == [None] * 4
    (four / STATE_FILE).unlink()
    size = (three / STATE_FILE).stat().st_size
    with open(three / STATE_FILE, "r+b") as state:
        state.truncate(size // 2)
    (two / "model.safetensors").write_bytes(b"\0" * (two / "model.safetensors").stat().st_size)  # same size
    assert checkpoint_problem(four) == "trainer_state.pt is missing"
    assert checkpoint_problem(three) == f"trainer_state.pt has {size // 2} bytes, {size} were written"
    assert checkpoint_problem(two) == "model.safetensors is not a readable safetensors file"
    skipped = []
    assert latest_checkpoint(tmp_path, lambda c, problem: skipped.append(c.name)) == one
    assert skipped == ["step-000004", "step-000003", "step-000002"]


def test_resume_passes_over_a_damaged_newest_checkpoint(engine, tiny_model_dir, tmp_path) -> None:
    """The CLI as a user runs it: the newest checkpoint lost its trainer state; the one before is used."""
    from typer.testing import CliRunner

    from turngym.cli import app
    from turngym.trainer import load_recipe, train

    plain = REPO / "tests" / "envs" / "plain_env.py"
    recipe = tiny_recipe(tiny_model_dir, tmp_path / "run", envs=[{"id": f"{plain}:VowelGame", "max_turns": 2}])
    recipe["run"] |= {"steps": 2, "checkpoint_every": 1}
    train(load_recipe(recipe), generator=engine)
    (tmp_path / "run" / "checkpoints" / "step-000002" / "trainer_state.pt").unlink()
    (tmp_path / "recipe.yaml").write_text(json.dumps(recipe))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VLLM_", "TURNGYM_"))}
    command = [sys.executable, "-m", "turngym", "train", str(tmp_path / "recipe.yaml"), "run.steps=3", "--resume"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env={**env, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr[-3000:]
    first = tmp_path / "run" / "checkpoints" / "step-000001"
    assert f"skipped checkpoint {first.parent}/step-000002: trainer_state.pt is missing" in done.stdout
    assert f"resumed from {first} (step 1)" in done.stdout
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1, 2, 3]  # step 2 trained again
    assert "skipped checkpoint" in (tmp_path / "run" / "train.log").read_text()
    # with no whole checkpoint left: one line, exit 2, before any model loads
    for checkpoint in complete_checkpoints(tmp_path / "run"):
        (checkpoint / "trainer_state.pt").unlink(missing_ok=True)
    result = CliRunner().invoke(app, ["train", str(tmp_path / "recipe.yaml"), "run.steps=4", "--resume"])
    assert result.exit_code == 2
    [line] = [line for line in result.output.splitlines() if line.strip()]
    assert "has no complete checkpoint to resume from (skipped checkpoint" in line and "is missing" in line


def test_resuming_a_finished_run_says_so_without_loading_a_model(tiny_model_dir, tmp_path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from typer.testing import CliRunner

    from turngym.cli import app
    from turngym.trainer.checkpoint import save_checkpoint
    from turngym.trainer.config import dump_recipe
    from turngym.trainer.run import _choose

    plain = REPO / "tests" / "envs" / "plain_env.py"
    recipe = tiny_recipe(tiny_model_dir, tmp_path / "run", envs=[{"id": f"{plain}:VowelGame", "max_turns": 2}])
    recipe["run"]["steps"] = 3
    (tmp_path / "recipe.yaml").write_text(json.dumps(recipe))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "recipe.yaml").write_text(dump_recipe(load_recipe(recipe)))
    model, tokenizer = (
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        AutoTokenizer.from_pretrained(tiny_model_dir),
    )
    save_checkpoint(tmp_path / "run", 3, model, tokenizer, {"step": 3}, keep=2)  # a run that reached run.steps
    result = CliRunner().invoke(app, ["train", str(tmp_path / "recipe.yaml"), "--resume"])
    assert result.exit_code == 2
    [line] = [line for line in result.output.splitlines() if line.strip()]
    assert "run.steps: " in line and "is already at step 3 (run.steps=3); raise run.steps to train on" in line
    assert _choose(load_recipe(recipe, ["run.steps=5", "run.resume=auto"])).checkpoint.name == "step-000003"
