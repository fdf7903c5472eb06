"""The recorded `turngym check` status of every single-player TextArena game, and the survey that makes it."""

from __future__ import annotations

import pytest

from tests.envs.test_cli_envs import turngym
from turngym.envs.textarena_env import single_player_games
from turngym.envs.textarena_survey import check_game, recorded, survey

# Every move of these answered "could not process that move (AttributeError)" before the adapter
# read TextArena's observation tuples by type; they pass now.
ONCE_BROKEN = ("Countdown-v0", "Cryptarithm-v0", "Slitherlink-v0")


def test_the_record_covers_every_single_player_game() -> None:
    record = recorded()
    assert set(record["games"]) == set(single_player_games())
    assert {r["status"] for r in record["games"].values()} <= {"pass", "fail", "slow", "unavailable"}
    assert all(record["games"][game]["status"] == "pass" for game in ONCE_BROKEN)
    assert record["games"]["Wordle-v0"]["status"] == "unavailable"  # nltk data from the network


def test_check_game_agrees_with_the_record_on_a_few_games() -> None:
    for game in (*ONCE_BROKEN, "TowerOfHanoi-v0", "Hangman-v0"):
        assert check_game(game, fuzz=50)["status"] == recorded()["games"][game]["status"], game


def test_envs_list_shows_the_recorded_status() -> None:
    out = " ".join(turngym("envs", "list", "--textarena").stdout.split())
    assert "textarena/Countdown-v0 │ single-player TextArena game; passes `turngym check`" in out
    assert "textarena/Sokoban-v0-medium │ resets can take minutes" in out
    assert "status from `turngym check` (200 fuzzed actions) with textarena" in out


@pytest.mark.slow
def test_a_new_survey_matches_the_record() -> None:
    """About 9 minutes: every game checked in a subprocess of its own, as `--write` does."""
    record = recorded()
    games = survey(fuzz=record["fuzz"])
    changed = {
        g: (record["games"][g]["status"], r["status"])
        for g, r in games.items()
        if r["status"] != record["games"][g]["status"]
    }
    assert not changed, (
        f"status changed (recorded, now): {changed}; run python -m turngym.envs.textarena_survey --write"
    )
