"""Two processes with accelerate on CPU (gloo): the same gradient as one process, identical weights on both ranks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trainer.support import tiny_recipe
from turngym.trainer.checkpoint import MARKER, latest_checkpoint
from turngym.trainer.metrics import read_metrics

HERE = Path(__file__).parent
REPO = HERE.parents[1]
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], timeout: float = 600) -> str:
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*ACCELERATE, "--main_process_port", str(free_port()), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done.stdout + done.stderr


def test_two_processes_compute_the_single_process_gradient(tiny_model_dir, tmp_path) -> None:
    launch([str(HERE / "ddp_check.py"), str(tiny_model_dir), str(tmp_path)])
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for report in reports:
        assert report["max_abs_gradient"] > 1e-3  # a real gradient
        # fp32: the two processes sum their micro-batches' gradients in a different order than one process
        assert report["max_diff_to_single_process"] <= 1e-5 * report["max_abs_gradient"] + 1e-7
        assert report["max_diff_between_ranks"] == 0.0  # DDP gives both ranks the same all-reduced gradient
    assert reports[0]["tokens_trained"] == reports[1]["tokens_trained"]  # both report the step's totals


@pytest.mark.parametrize("lora", [None, {"r": 2, "alpha": 32}], ids=["full", "lora"])
def test_a_two_process_training_run(lora, tiny_model_dir, tmp_path) -> None:
    """Both processes end with the same weights (with LoRA: the same adapter on the same base)."""
    recipe = tiny_recipe(
        tiny_model_dir, tmp_path / "run", model={"lora": lora}, run={"steps": 3, "checkpoint_every": 2}
    )
    recipe_file = tmp_path / "recipe.json"
    recipe_file.write_text(json.dumps(recipe))
    launch([str(HERE / "train_script.py"), str(recipe_file)])
    run_dir = tmp_path / "run"
    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(r["groups_trained"] == 3 and r["episodes"] == 12 for r in records)  # both ranks' groups, gathered
    marker = json.loads((latest_checkpoint(run_dir) / MARKER).read_text())
    digests = marker["parameter_digests"]
    assert marker["step"] == 3 and len(digests) == 2 and digests[0] == digests[1]  # identical weights on both ranks
