"""Which single-player TextArena games pass `check_env` here: run the survey, read its record.

`turngym envs list --textarena` shows the recorded status of each game. The record
(`envs/data/textarena_checked.json`) is written by

    python -m turngym.envs.textarena_survey --write     # about 5 minutes on 2 CPU cores

which checks every game in a subprocess of its own (a game whose level generator hangs cannot stall
the survey) with `--fuzz` fuzzed actions and Gymnasium's checker, with a time limit per game. The
slow test `tests/envs/test_textarena_survey.py` runs the survey again and compares it with the record.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

RECORD = "textarena_checked.json"
DEFAULT_FUZZ = 200
DEFAULT_TIMEOUT_S = 180


def check_game(game_id: str, fuzz: int = DEFAULT_FUZZ) -> dict[str, str]:
    """Check one game in this process: `{"status": "pass" | "fail" | "unavailable", "detail": ...}`.

    `survey` adds `"slow"`: the check did not finish within its time limit.
    """
    from turngym.envs import make
    from turngym.envs.checker import check_env
    from turngym.envs.textarena_env import EnvUnavailableError

    try:
        env = make(f"textarena/{game_id}")
    except EnvUnavailableError as err:
        return {"status": "unavailable", "detail": str(err)}
    results = check_env(env, fuzz=fuzz, raise_on_failure=False)
    failed = [f"{r.name}: {r.detail}" for r in results if not r.passed]
    return {"status": "fail", "detail": failed[0][:300]} if failed else {"status": "pass", "detail": ""}


def survey(
    game_ids: list[str] | None = None, fuzz: int = DEFAULT_FUZZ, timeout_s: float = DEFAULT_TIMEOUT_S
) -> dict[str, dict[str, str]]:
    """Check every single-player game (or `game_ids`), each in a subprocess; returns game id -> result."""
    from rich.progress import track

    from turngym.envs.textarena_env import single_player_games

    out = {}
    for game_id in track(game_ids or list(single_player_games()), description="checking TextArena games"):
        command = [sys.executable, "-m", "turngym.envs.textarena_survey", "--one", game_id, "--fuzz", str(fuzz)]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            out[game_id] = {"status": "slow", "detail": f"the check took over {timeout_s:.0f} s (slow resets)"}
            continue
        lines = proc.stdout.strip().splitlines()
        if proc.returncode == 0 and lines:
            out[game_id] = json.loads(lines[-1])
        else:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            out[game_id] = {"status": "fail", "detail": f"the check crashed: {last[:300]}"}
    return out


def recorded() -> dict[str, Any]:
    """The record written by `--write` (empty if there is none): `{"fuzz", "textarena", "games": {...}}`."""
    path = resources.files("turngym.envs") / "data" / RECORD
    return json.loads(path.read_text()) if path.is_file() else {}


def main(argv: list[str] | None = None) -> None:
    """Command line: `--one GAME` checks a game and prints JSON; `--write` surveys all and saves the record."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", metavar="GAME", help="check one game in this process and print its result as JSON")
    parser.add_argument("--fuzz", type=int, default=DEFAULT_FUZZ)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per game")
    parser.add_argument("--write", action="store_true", help=f"save the survey to envs/data/{RECORD}")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(check_game(args.one, args.fuzz)))
        return
    from importlib.metadata import version

    games = survey(fuzz=args.fuzz, timeout_s=args.timeout)
    for game_id, result in games.items():
        print(f"{result['status']:<12} {game_id}  {result['detail']}")
    if args.write:
        record = {"fuzz": args.fuzz, "textarena": version("textarena"), "games": games}
        path = Path(__file__).with_name("data") / RECORD
        path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
