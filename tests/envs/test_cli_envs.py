"""`turngym envs list`, `turngym check` and `turngym play`, through a subprocess like a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from turngym.envs import make

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "COLUMNS": "200"}


def nltk_words_missing() -> bool:
    import nltk

    try:
        nltk.data.find("corpora/words")
    except LookupError:
        return True
    return False


NEEDS_MISSING_NLTK_DATA = pytest.mark.skipif(not nltk_words_missing(), reason="nltk's words corpus is installed here")


def turngym(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "turngym", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
    )


def test_envs_list_shows_ids_and_prefixes() -> None:
    out = turngym("envs", "list", "--textarena").stdout
    assert "turngym/GuessNumber-v0" in out and "turngym/MathVerify-v0" in out
    assert "textarena/TowerOfHanoi-v0" in out and "reasoning_gym/<dataset>" in out
    assert "textarena/Wordle-v0" in out and "needs nltk data from the network" in out
    assert "textarena/TwentyQuestions-v0" in out and "OpenRouter" in out


def test_check_passes_a_built_in_env() -> None:
    proc = turngym("check", "turngym/GuessNumber-v0", "--fuzz", "200")
    assert proc.returncode == 0, proc.stdout
    assert "200 fuzzed actions" in proc.stdout and "gymnasium env_checker" in proc.stdout
    assert "all checks passed" in proc.stdout


def piped(*args: str) -> subprocess.CompletedProcess:
    """`turngym ARGS`, its output a pipe and COLUMNS unset, as in `| tee` or a CI log."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR")}
    return subprocess.run([sys.executable, "-m", "turngym", *args], capture_output=True, text=True, env=env, cwd=ROOT)


def rows_of(output: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in output.splitlines() if line.startswith("│")]


def test_a_quick_check_prints_its_table_whole_and_no_progress() -> None:
    proc = piped("check", "turngym/GuessNumber-v0", "--fuzz", "10")
    assert proc.returncode == 0 and proc.stderr == ""  # no "check 3/11: ..." lines for checks under a second
    rows = rows_of(proc.stdout)
    assert [row[0] for row in rows][:2] == ["spaces and reward weights", "render modes"] and len(rows) == 11
    env = make("turngym/GuessNumber-v0")
    assert rows[0][2] == f"components {sorted(env.reward_weights)}, max_turns {env.max_turns}"  # whole, on one line
    assert max(len(line) for line in proc.stdout.splitlines()) > 80


def test_envs_list_prints_each_description_whole_when_piped() -> None:
    from turngym.envs import registry

    proc = piped("envs", "list")
    assert proc.returncode == 0, proc.stderr
    built_in = [[info.id, info.description] for info in registry().values() if info.id.startswith("turngym/")]
    assert rows_of(proc.stdout) == built_in  # (not the ids other tests register in this process)


def test_check_reports_a_broken_user_env(tmp_path: Path) -> None:
    module = tmp_path / "broken_env.py"
    module.write_text(
        "from turngym.envs import TextEnv, Turn\n"
        "class Broken(TextEnv):\n"
        "    default_reward_weights = {'won': 1.0}\n"
        "    def on_reset(self, options):\n"
        "        return 'go'\n"
        "    def on_step(self, action):\n"
        "        return Turn('ok', {'won': float(len(action[:1]))}) if len(action) < 1000 else 1 / 0\n"
    )
    proc = turngym("check", f"{module}:Broken", "--fuzz", "100")
    assert proc.returncode == 1
    assert "FAIL" in proc.stdout and "ZeroDivisionError" in proc.stdout and "2 checks failed" in proc.stdout


@pytest.mark.parametrize(
    ("env_id", "suggestion"),
    [
        ("turngym/GuessNum-v0", "turngym/GuessNumber-v0"),
        ("Wordle-v0", "textarena/Wordle-v0"),
        ("gsm_symbolic", "reasoning_gym/gsm_symbolic"),
    ],
)
def test_check_unknown_id_exits_2_with_suggestions(env_id: str, suggestion: str) -> None:
    proc = turngym("check", env_id)
    assert proc.returncode == 2 and f"Did you mean {suggestion}? `turngym envs list` shows every id." in proc.stderr
    assert "--import" not in proc.stderr and "Registered ids" not in proc.stderr  # no hint, no list of every id


@NEEDS_MISSING_NLTK_DATA
def test_a_textarena_game_without_its_nltk_data_is_one_line_with_the_fix_and_no_nltk_noise() -> None:
    for command in ("check", "play"):
        proc = turngym(command, "textarena/Wordle-v0")
        assert proc.returncode == 2 and proc.stdout == ""
        [line] = proc.stderr.splitlines()  # nltk's "[nltk_data] Error loading words: ..." lines are gone
        assert line.startswith("EnvUnavailableError: textarena/Wordle-v0 needs nltk data from the network")
        assert "-m nltk.downloader words averaged_perceptron_tagger_eng" in line and "turngym/WordGuess-v0" in line


def test_check_passes_a_plain_env_without_spaces_through_the_adapter() -> None:
    """README: "an env without spaces is checked through turngym's adapter"."""
    proc = turngym("check", "tests/envs/plain_env.py:LetterCount", "--fuzz", "50")
    assert proc.returncode == 0, proc.stdout
    out = " ".join(proc.stdout.split())
    assert "the env declares no spaces, so turngym's adapter (AnyText spaces) was checked" in out


def test_play_a_winning_game_from_scripted_stdin() -> None:
    env = make("turngym/GuessNumber-v0")
    env.reset(seed=11)
    wrong = 1 if env.secret != 1 else 2
    proc = turngym("play", "turngym/GuessNumber-v0", "--seed", "11", stdin=f"hmm\n[{wrong}]\n[{env.secret}]\n")
    assert proc.returncode == 0, proc.stderr
    assert "I am thinking of a whole number between 1 and 100" in proc.stdout
    assert "Invalid guess" in proc.stdout and "reward -0.1 (invalid=1)" in proc.stdout
    assert f"Correct! The number was {env.secret}" in proc.stdout
    assert "Result: WON after 3 turns (terminated); total reward +0.9 (won=1, invalid=1)" in proc.stdout


def test_play_stops_cleanly_at_end_of_input() -> None:
    proc = turngym("play", "turngym/Mastermind-v0", "--seed", "0", stdin="[1 2 3 4]\n")
    assert proc.returncode == 0 and "stopped: no more input" in proc.stdout and "not finished" in proc.stdout


def test_play_takes_constructor_kwargs() -> None:
    proc = turngym(
        "play",
        "turngym/GuessNumber-v0",
        "-k",
        "low=1",
        "-k",
        "high=3",
        "-k",
        "max_turns=3",
        stdin="[1]\n[2]\n[3]\n",
    )
    assert "between 1 and 3" in proc.stdout and "Result: WON" in proc.stdout


def test_custom_env_example_registers_checks_and_plays() -> None:
    proc = subprocess.run([sys.executable, "examples/custom_env.py"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("pass  ") == 11 and proc.stdout.strip().endswith("won")  # 10 checks + Gymnasium's
    assert "its valid_action() accepted on 3 seeds" in proc.stdout
    assert "pass  gymnasium env_checker" in proc.stdout
    check = turngym("check", "examples/custom_env.py:TreasureHunt", "--fuzz", "200")
    assert check.returncode == 0 and "all checks passed" in check.stdout


def test_a_model_plays_and_the_transcript_is_printed(tiny_model_dir) -> None:
    proc = turngym(
        "play", "turngym/GuessNumber-v0", "--model", str(tiny_model_dir), "--seed", "2",
        "--temperature", "0", "--max-tokens", "12",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert "I am thinking of a whole number" in out and out.count("model:") == 7 and out.count("env:") == 7
    assert "Result: not won after 7 turns (truncated)" in out
    assert "WARNING" not in out and "vLLM" not in out  # quiet by default: the transcript and nothing else
    assert out.splitlines()[0].startswith("I am thinking of a whole number")
    assert [line for line in proc.stderr.splitlines() if line.strip() and "vLLM warnings hidden" not in line] == []


def test_verbose_shows_the_libraries_own_logs(tiny_model_dir) -> None:
    proc = turngym(
        "--verbose", "play", "turngym/GuessNumber-v0", "--model", str(tiny_model_dir), "--seed", "2",
        "--temperature", "0", "--max-tokens", "4", "-k", "max_turns=1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "WARNING" in proc.stdout + proc.stderr and "vLLM warnings hidden" not in proc.stderr


def test_play_with_a_missing_jsonl_file_is_one_line() -> None:
    proc = turngym("play", "turngym/MathVerify-v0", "-k", "source=jsonl", "-k", "path=/no/such/problems.jsonl")
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr
    assert "no JSONL file at '/no/such/problems.jsonl'" in proc.stderr


def test_a_class_path_gets_the_same_kwarg_checks_as_an_id() -> None:
    proc = turngym("play", "examples/custom_env.py:TreasureHunt", "-k", "sise=3")
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr
    assert "TreasureHunt has no argument 'sise'. Did you mean 'size'?" in " ".join(proc.stderr.split())
