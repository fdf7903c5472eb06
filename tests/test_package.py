"""Packaging and the front door: layout, lazy imports, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import turngym

ROOT = Path(__file__).resolve().parents[1]
TURNGYM = [sys.executable, "-m", "turngym"]


def test_subsystems_install_from_the_root_folders() -> None:
    import turngym.agent
    import turngym.algos
    import turngym.envs
    import turngym.trainer

    for module, folder in [
        (turngym.envs, "envs"),
        (turngym.agent, "agent"),
        (turngym.algos, "algos"),
        (turngym.trainer, "trainer"),
    ]:
        assert Path(module.__file__).parent == ROOT / folder


def test_import_turngym_registers_the_built_in_ids_with_gymnasium() -> None:
    code = (
        "import gymnasium, turngym; env = gymnasium.make('turngym/GuessNumber-v0', high=8); "
        "obs, info = env.reset(seed=0); print(type(env.unwrapped).__name__, 'between 1 and 8' in obs)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["GuessNumber", "True"]


def test_import_turngym_is_light() -> None:
    """The front door must not drag in torch, transformers, vLLM or env packages."""
    heavy = "('torch', 'transformers', 'vllm', 'textarena', 'math_verify', 'reasoning_gym')"
    code = f"import sys, turngym; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_lazy_exports_resolve() -> None:
    from turngym.agent.models import resolve_model

    assert turngym.resolve_model is resolve_model
    assert set(turngym.__all__) == set(turngym._EXPORTS)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        turngym.nope  # noqa: B018


def test_cli_help_lists_only_working_commands() -> None:
    out = subprocess.run([*TURNGYM, "--help"], capture_output=True, text=True, check=True).stdout
    assert "models" in out


@pytest.mark.parametrize("args", [["-h"], ["envs", "-h"], ["models", "prepare", "-h"]])
def test_cli_short_help_option(args) -> None:
    out = subprocess.run([*TURNGYM, *args], capture_output=True, text=True, check=True).stdout
    usage = next(line for line in out.splitlines() if "Usage:" in line)
    assert usage.split("[OPTIONS]")[0].split() == ["Usage:", "python", "-m", "turngym", *args[:-1]]


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["check", "turngym/GuessNumber-v0", "--fuzz", "-5"], "--fuzz"),
        (["play", "turngym/GuessNumber-v0", "--seed", "-1"], "--seed"),
    ],
)
def test_cli_rejects_negative_counts_and_seeds_before_doing_anything(args, option) -> None:
    env = {**os.environ, "COLUMNS": "200"}  # the error box must not wrap the message
    proc = subprocess.run([*TURNGYM, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env)
    assert proc.returncode == 2
    assert f"Invalid value for '{option}'" in proc.stderr and "greater than or equal to 0" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "smollm2"], "unknown model 'smollm2'. Did you mean smollm2-135m?"),
        (["--model", "smollm2-135m", "-k", "hgh=8"], "GuessNumber has no argument 'hgh'. Did you mean 'high'?"),
    ],
)
def test_cli_play_checks_its_arguments_before_loading_a_model(args, message) -> None:
    env = {**os.environ, "COLUMNS": "300"}
    proc = subprocess.run([*TURNGYM, "play", "turngym/GuessNumber-v0", *args], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert message in proc.stdout + proc.stderr and "Traceback" not in proc.stdout + proc.stderr


def test_cli_version() -> None:
    out = subprocess.run([*TURNGYM, "--version"], capture_output=True, text=True, check=True).stdout
    assert out == f"turngym {turngym.__version__}\n"


def test_cli_models_list_shows_the_default_alias(tmp_path: Path) -> None:
    env = {**os.environ, "TURNGYM_CACHE": str(tmp_path), "COLUMNS": "200"}
    out = subprocess.run([*TURNGYM, "models", "list"], capture_output=True, text=True, check=True, env=env).stdout
    assert "smollm2-135m (default)" in out and str(tmp_path) in out
    assert " no " in out  # nothing prepared in an empty cache


def test_cli_models_prepare_unknown_alias_fails_clearly() -> None:
    proc = subprocess.run([*TURNGYM, "models", "prepare", "gpt-17"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "unknown model alias 'gpt-17'" in proc.stderr and "smollm2-135m" in proc.stderr and not proc.stdout


def test_cli_models_prepare_prints_only_the_path_on_stdout(smollm2_dir: Path) -> None:
    proc = subprocess.run([*TURNGYM, "models", "prepare"], capture_output=True, text=True, check=True)
    assert proc.stdout == f"{smollm2_dir}\n"  # so `P=$(turngym models prepare)` works
    assert "already prepared" in proc.stderr


def test_regular_install_maps_the_root_folders_into_turngym(tmp_path: Path) -> None:
    """A built wheel (what `pip install .` installs) holds turngym.envs etc., never top-level envs/."""
    import zipfile

    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        str(ROOT),
        "-w",
        str(tmp_path),
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    [wheel] = tmp_path.glob("turngym-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("turngym", "turngym/envs", "turngym/agent", "turngym/algos", "turngym/trainer"):
        assert f"{package}/__init__.py" in names
    assert not any(name.startswith(("envs/", "agent/", "algos/", "trainer/")) for name in names)
