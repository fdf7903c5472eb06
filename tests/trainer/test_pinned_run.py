"""A deterministic 3-step run on the tiny model logs the per-step metrics it logged before the trainer was restructured.

`data/pinned_runs.json` holds the learning metrics (everything but timings) of each run below, first recorded
with the trainer of commit 35151ab, before the run context, the typed update result and the single
evaluation path replaced its plumbing. Restructuring must not move a number: the same keys, and the
same values to float rounding. Re-recorded at commit 82c6933 on an AVX-512 CPU, for two deliberate
changes: seeded sampling seeds each request by episode and turn (so lock-step and per-episode
rollouts play the same episodes) and the metrics gained `groups_recorded`.

Seeded sampling is deterministic on one machine, but vLLM's CPU kernels differ between instruction
sets, so the values are compared only where torch reports the CPU capability of the recording; the
keys are compared everywhere. Re-record (only for a deliberate change of behaviour, said in the
commit) with `TURNGYM_RECORD_PINNED=1 pytest tests/trainer/test_pinned_run.py`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from tests.trainer.support import tiny_recipe
from turngym.trainer import load_recipe, train
from turngym.trainer.metrics import read_metrics

PINNED = Path(__file__).with_name("data") / "pinned_runs.json"
TIMING = ("time/", "tokens_per_s/", "memory/")  # vary from run to run
RUNS = {
    # GRPO with a held-out evaluation before and after: rollout, update, sync and eval metrics.
    "grpo": {"eval": {"at_start": True, "at_end": True, "episodes": 4}},
    # GFPO (adaptive k over a DAPO base): objective state carried across steps, filter metrics.
    "gfpo": {"objective": {"name": "gfpo", "k": 2, "adaptive_k": [2, 3, 4, 4], "base": {"name": "dapo"}}},
}


def cpu_capability() -> str:
    return torch.backends.cpu.get_cpu_capability()


def learning_metrics(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in read_metrics(run_dir)]


@pytest.mark.parametrize("name", list(RUNS))
def test_a_three_step_run_logs_the_pinned_metrics(name, engine, restore, tiny_model_dir, tmp_path) -> None:
    restore()  # start from the tiny model's own weights whatever ran before
    recipe = tiny_recipe(tiny_model_dir, tmp_path / name, run={"steps": 3, "deterministic": True}, **RUNS[name])
    got = learning_metrics(train(load_recipe(recipe), generator=engine).run_dir)
    if os.environ.get("TURNGYM_RECORD_PINNED"):
        pinned = json.loads(PINNED.read_text()) if PINNED.is_file() else {}
        pinned[name] = {"cpu_capability": cpu_capability(), "records": got}
        PINNED.parent.mkdir(exist_ok=True)
        PINNED.write_text(json.dumps(pinned, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"recorded {name} into {PINNED}")
    pinned = json.loads(PINNED.read_text())[name]
    expected = pinned["records"]
    assert [r["step"] for r in got] == [r["step"] for r in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert sorted(mine) == sorted(theirs), f"step {mine['step']}: the logged keys changed"
    if pinned["cpu_capability"] != cpu_capability():
        pytest.skip(f"values recorded on a {pinned['cpu_capability']} CPU; this one is {cpu_capability()}")
    for mine, theirs in zip(got, expected, strict=True):
        for key, value in theirs.items():
            if isinstance(value, float) and math.isfinite(value):
                assert mine[key] == pytest.approx(value, rel=1e-6, abs=1e-9), f"step {mine['step']}: {key}"
            else:
                assert mine[key] == value, f"step {mine['step']}: {key}"
