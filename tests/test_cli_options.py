"""Options every `turngym` command shares: `--verbose` after the subcommand, `--import MODULE`, and help notation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer
import yaml
from typer.testing import CliRunner

from turngym.cli import app

ROOT = Path(__file__).resolve().parents[1]
PLAIN_ENV = ROOT / "tests" / "envs" / "plain_env.py"
QUIET = ("TURNGYM_VERBOSE", "VLLM_CONFIGURE_LOGGING", "TORCH_CPP_LOG_LEVEL", "TRANSFORMERS_VERBOSITY")


def leaf_commands() -> dict[str, click.Command]:
    """'check', 'models list', ...: every command a user can run, by its command line."""
    found = {}

    def walk(command: click.Command, path: tuple[str, ...]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            if getattr(sub, "commands", None):
                walk(sub, (*path, name))
            else:
                found[" ".join((*path, name))] = sub

    walk(typer.main.get_command(app), ())
    return found


def user_module(directory: Path, name: str, env_id: str) -> Path:
    """A module of the user's that registers `env_id` with Gymnasium (tests/envs/plain_env.py's VowelGame)."""
    source = PLAIN_ENV.read_text() + f"\ngymnasium.register(id={env_id!r}, entry_point=VowelGame)\n"
    (directory / f"{name}.py").write_text(source)
    return directory / f"{name}.py"


def run(
    args: list[str], cwd: Path, command: list[str] | None = None, stdin: str = "", **env: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*(command or [sys.executable, "-m", "turngym"]), *args], input=stdin,
        capture_output=True, text=True, cwd=cwd, env={**os.environ, "COLUMNS": "200", **env}, timeout=300,
    )  # fmt: skip


# --- --verbose ----------------------------------------------------------------------------------------


def test_every_command_takes_verbose_after_its_name() -> None:
    commands = leaf_commands()
    assert {"check", "play", "train", "eval", "plot", "models list", "models prepare", "envs list"} <= set(commands)
    for name, command in commands.items():
        options = [opt for param in command.params for opt in getattr(param, "opts", [])]
        assert {"--verbose", "-v"} <= set(options), f"turngym {name} has no --verbose/-v"


@pytest.mark.parametrize(
    ("args", "verbose"),
    [
        (["envs", "list", "--verbose"], True),
        (["envs", "list", "-v"], True),
        (["-v", "envs", "list"], True),  # before the subcommand, as before
        (["envs", "list"], False),
    ],
)
def test_verbose_after_the_subcommand_leaves_the_libraries_logs_alone(args, verbose, tmp_path) -> None:
    """The same effect as TURNGYM_VERBOSE=1: the quiet defaults (TRANSFORMERS_VERBOSITY=error, ...) are not set."""
    script = (
        "import os, sys\nfrom turngym.cli import app\napp(sys.argv[1:], standalone_mode=False)\n"
        "print(os.environ.get('TURNGYM_VERBOSE'), os.environ.get('TRANSFORMERS_VERBOSITY'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in QUIET}
    done = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == ("1 None" if verbose else "None error")


# --- help notation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(leaf_commands()))
def test_help_shows_metavars_not_python_types(name) -> None:
    result = CliRunner().invoke(app, [*name.split(), "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output and "<str>" not in result.output and "<int" not in result.output
    [usage] = [line for line in result.output.splitlines() if "Usage:" in line]
    assert "{" not in usage  # `check [OPTIONS] ENV`, not `check [OPTIONS] {target}`
    for param in leaf_commands()[name].params:
        if isinstance(param, click.Argument) or not getattr(param, "is_flag", True):
            assert param.metavar and param.metavar.split("...")[0].replace("=", "").replace("_", "").isupper(), (
                f"turngym {name}: {param.name} has no upper-case metavar"
            )


def test_usage_lines_name_the_arguments() -> None:
    runner = CliRunner()
    expected = {
        "check": "Usage: turngym check [OPTIONS] ENV",
        "play": "Usage: turngym play [OPTIONS] ENV",
        "train": "Usage: turngym train [OPTIONS] RECIPE [KEY=VALUE...]",
        "eval": "Usage: turngym eval [OPTIONS] SUITE",
        "plot": "Usage: turngym plot [OPTIONS] RUN_DIR...",
        "models prepare": "Usage: turngym models prepare [OPTIONS] [ALIAS]",
    }
    for name, usage in expected.items():
        output = runner.invoke(app, [*name.split(), "--help"], env={"COLUMNS": "200"}).output
        assert usage in output, output
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    assert "--version " in top and "<bool>" not in top


# --- --import ----------------------------------------------------------------------------------------


def test_check_imports_a_module_from_the_current_directory_with_the_turngym_command(tmp_path) -> None:
    """`turngym` finds modules in the current directory as `python -m turngym` does (its script's path would not)."""
    script = turngym_script()
    user_module(tmp_path, "my_envs", "mine/Vowels-v0")
    done = run(["check", "mine/Vowels-v0", "--import", "my_envs", "--fuzz", "50"], tmp_path, [str(script)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all checks passed" in done.stdout
    without = run(["check", "mine/Vowels-v0", "--fuzz", "50"], tmp_path, [str(script)])
    assert without.returncode == 2 and "unknown env id 'mine/Vowels-v0'" in without.stderr
    assert "needs --import MODULE" in without.stderr


def turngym_script() -> Path:
    """The `turngym` console script (whose own directory, not the current one, starts sys.path)."""
    script = Path(sys.executable).with_name("turngym")
    if not script.is_file():
        pytest.skip("no turngym console script beside this Python")
    return script


def test_a_yaml_py_in_the_current_directory_does_not_stand_in_for_pyyaml(tmp_path) -> None:
    """The current directory is searched after the installed packages (but still searched: see above)."""
    for stray in ("yaml", "random"):
        (tmp_path / f"{stray}.py").write_text(f"raise ImportError('the stray {stray}.py was imported')\n")
    done = run(["check", "turngym/GuessNumber-v0", "--fuzz", "10"], tmp_path, [str(turngym_script())])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all checks passed" in done.stdout


TEXT_ENV_MODULE = """
import gymnasium
from turngym.envs import TextEnv, Turn

class Echo(TextEnv):  # no default_reward_weights
    def on_reset(self, options):
        return "Say anything."

    def on_step(self, action):
        return Turn("Heard.")

gymnasium.register(id="mine/Echo-v0", entry_point=Echo, max_episode_steps=4)
"""


def test_check_takes_a_text_env_registered_with_gymnasium_as_it_is(tmp_path) -> None:
    """Not through the adapter, which would give it a `reward` component and hide the missing weights."""
    (tmp_path / "text_envs.py").write_text(TEXT_ENV_MODULE)
    done = run(["check", "mine/Echo-v0", "--import", "text_envs", "--fuzz", "10"], tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    rows = {cells[0]: cells[1:] for cells in table_cells(done.stdout)}
    result, detail = rows["spaces and reward weights"]
    assert result == "FAIL" and detail.startswith("Echo has no reward components: declare default_reward_weights")
    assert rows["turn limit ends the episode"] == ["pass", "ended at turn 4 of 4 (truncated)"]  # max_episode_steps
    assert rows["gymnasium env_checker"] == ["pass", "no warnings"]  # not "different from the unwrapped version"


def table_cells(output: str) -> list[list[str]]:
    """The cells of each row of a rich table printed in `output` (one line per row)."""
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in output.splitlines() if line.startswith("│")]


def test_import_does_not_load_torch(tmp_path) -> None:
    """`--import` needs turngym.envs only; the trainer package would import torch (seconds)."""
    user_module(tmp_path, "my_envs", "mine/Vowels-v0")
    script = (
        "import sys\nfrom turngym.cli import app\n"
        "app(['check', 'mine/Vowels-v0', '--import', 'my_envs', '--fuzz', '10'], standalone_mode=False)\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "all checks passed" in done.stdout and done.stdout.splitlines()[-1] == "False"


def test_train_help_after_a_main_option_still_has_the_recipe_reference() -> None:
    for args in (["train", "--help"], ["-v", "train", "--help"], ["--verbose", "train", "-h"]):
        done = run(args, ROOT)
        assert done.returncode == 0, done.stderr
        assert "Recipe reference" in done.stdout, args


def test_play_imports_a_module_from_pythonpath(tmp_path) -> None:
    modules = tmp_path / "on_path"
    modules.mkdir()
    user_module(modules, "path_envs", "onpath/Vowels-v0")
    done = run(
        ["play", "onpath/Vowels-v0", "--import", "path_envs", "--seed", "0"], ROOT, stdin="aeiou\n",
        PYTHONPATH=str(modules),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Result: WON after 1 turn (terminated)" in done.stdout


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("my_envz", "cannot import 'my_envz': No module named 'my_envz'. Did you mean 'my_envs'?"),
        ("broken_envs", "cannot import 'broken_envs': ZeroDivisionError: division by zero (at "),
        ("my_envs.py", "'my_envs.py' is a file; name the module (my_envs)"),
    ],
)
def test_a_module_that_does_not_import_is_one_line_naming_it(module, expected, tmp_path) -> None:
    user_module(tmp_path, "my_envs", "mine/Vowels-v0")
    (tmp_path / "broken_envs.py").write_text("import gymnasium\n\nratio = 1 / 0\n")
    done = run(["check", "mine/Vowels-v0", "--import", module], tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(f"import error: --import: {expected}"), line
    if module == "broken_envs":
        assert line.endswith(f"{tmp_path / 'broken_envs.py'}:3)")


def test_eval_imports_before_it_reads_the_suite(tmp_path) -> None:
    user_module(tmp_path, "my_envs", "mine/Vowels-v0")
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump({"envs": ["mine/Vowels-v0"], "num_seeds": 2}))
    args = ["eval", "suite.yaml", "-m", "no/such/model/dir"]
    without = run(args, tmp_path)
    assert without.returncode == 2 and without.stderr.startswith("suite error: envs.0: cannot make 'mine/Vowels-v0'")
    assert "needs `imports: [MODULE]`" in without.stderr
    done = run([*args, "--import", "my_envs"], tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("model error:"), done.stderr  # the suite was read


def test_train_imports_before_the_envs_are_made(tmp_path, monkeypatch) -> None:
    """`--import` on train: the recipe's env id is known when the run checks its envs (no run starts here)."""
    from turngym.trainer import loop
    from turngym.trainer.config import check_envs

    made = []

    def checks_envs_only(config):
        check_envs(config)
        made.append([env.id for env in config.envs])
        return loop.TrainResult(tmp_path, 0)

    monkeypatch.setattr(loop, "train", checks_envs_only)
    monkeypatch.syspath_prepend(str(tmp_path))
    user_module(tmp_path, "train_envs", "train/Vowels-v0")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"envs": ["train/Vowels-v0"]}))
    runner = CliRunner()
    try:
        without = runner.invoke(app, ["train", str(recipe)])
        assert without.exit_code == 2 and "cannot make 'train/Vowels-v0'" in without.output
        result = runner.invoke(app, ["train", str(recipe), "--import", "train_envs"])
        assert result.exit_code == 0, result.output
        assert made == [["train/Vowels-v0"]]
    finally:
        import gymnasium

        gymnasium.registry.pop("train/Vowels-v0", None)
        sys.modules.pop("train_envs", None)
