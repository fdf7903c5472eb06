"""`textarena/<GameId>`: any single-player TextArena game behind the `TextEnv` contract.

TextArena's `step` returns `(done, info)` without a reward; the reward comes from `close()` when the
game ends. TextArena also seeds and draws from Python's global `random` module. This adapter runs
every TextArena call inside the env's own saved random state, so games are reproducible per seed and
never disturb (or depend on) other code's global random state. Some games print debug lines; those
are discarded, and so are nltk's messages while a word game tries to download its data.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
import os
import random
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
from typing_extensions import override

from turngym.envs.core import TextEnv, Turn

INVALID_WEIGHT = 0.0  # TextArena's own outcome already accounts for invalid moves
INVALID_PREFIX = "You attempted an invalid move"
# TextArena registers each game again with other observation wrappers; we use no wrappers at all
WRAPPER_VARIANTS = ("-raw", "-train")
# The nltk data TextArena's word games load (its sources call nltk.download for these, and nltk.pos_tag
# needs the tagger); one `python -m nltk.downloader` command fetches them all.
NLTK_DATA = ("words", "averaged_perceptron_tagger_eng")
OFFLINE_WORD_GAME = "turngym/WordGuess-v0"


class EnvUnavailableError(RuntimeError):
    """A game that cannot run on this machine (e.g. it needs data from the network)."""


class TextArenaEnv(TextEnv):
    """A single-player TextArena game; its id is `textarena/<GameId>`, e.g. `textarena/TowerOfHanoi-v0`.

    Args:
        game_id: a TextArena id such as `GuessTheNumber-v0` (its default kwargs apply).
        max_turns: our turn limit on top of the game's own (default 200).
        reward_weights: weights of `outcome` and `invalid`.
        **game_kwargs: overrides of the game's constructor arguments.

    Reward components: `outcome` (TextArena's reward for player 0 from `close()`, on the final
    step), `invalid` (1 when TextArena reported an invalid move; weight 0 by default).

    Raises:
        UnknownEnvError: no such TextArena id (the message lists close matches).
        EnvUnavailableError: the game is not single-player, or cannot run offline.
    """

    default_reward_weights = {"outcome": 1.0, "invalid": INVALID_WEIGHT}
    default_max_turns = 200

    def __init__(
        self,
        game_id: str,
        *,
        max_turns: int | None = None,
        reward_weights: dict[str, float] | None = None,
        render_mode: str | None = None,
        **game_kwargs: Any,
    ) -> None:
        super().__init__(max_turns=max_turns, reward_weights=reward_weights, render_mode=render_mode)
        self.game_id = game_id
        self._random_state = random.Random(0).getstate()
        self._numpy_state = np.random.RandomState(0).get_state()
        with self._own_random_state(), _quiet_nltk():
            self.game = _construct(game_id, game_kwargs)
            self._reset_game(seed=0)  # fail now, with a clear message, not in the first episode

    @override
    def on_reset(self, options: dict[str, Any]) -> str:
        with self._own_random_state():
            return self._reset_game(seed=int(self.np_random.integers(2**31)))

    @override
    def on_step(self, action: str) -> Turn:
        with self._own_random_state():
            try:
                done, _ = self.game.step(action=action)
                messages = self._new_messages()
            except Exception as err:  # TextArena game code failing on odd input must not end training
                return Turn(
                    f"The game could not process that move ({type(err).__name__}). Try another move.",
                    {"invalid": 1.0},
                    metrics={"invalid_action": True, "env_error": f"{type(err).__name__}: {str(err)[:200]}"},
                )
            invalid = any(m.startswith(INVALID_PREFIX) for m in messages)
            if not done:
                feedback = "\n\n".join(messages) or "(no message from the game)"
                return Turn(feedback, {"invalid": float(invalid)}, metrics={"invalid_action": invalid})
            rewards, game_info = self.game.close()
        outcome = _as_reward((rewards or {}).get(0, 0.0))
        reason = (game_info or {}).get(0, {}).get("reason") or "the game ended."
        invalid |= reason.lower().startswith("invalid move")  # the invalid move that ended the game
        feedback = "\n\n".join([*messages, f"Game over: {reason}"])
        return Turn(
            feedback,
            {"outcome": outcome, "invalid": float(invalid)},
            terminated=True,
            metrics={"won": outcome >= 1.0, "invalid_action": invalid, "outcome": outcome},
        )

    def _reset_game(self, seed: int) -> str:
        try:
            random.seed(seed)
            self.game.reset(num_players=1, seed=seed)
            return "\n\n".join(self._new_messages())
        except AssertionError as err:
            raise EnvUnavailableError(f"textarena/{self.game_id} is not a single-player game ({err})") from err
        except Exception as err:
            raise _unavailable(self.game_id, err) from err

    def _new_messages(self) -> list[str]:
        """Messages for player 0 since the last call, without the echo of its own action."""
        import textarena as ta

        _, observation = self.game.get_observation()
        messages = []
        for entry in observation:  # (sender, text, kind) in most games; some put the kind first
            if ta.ObservationType.PLAYER_ACTION not in entry:
                messages += [part.strip() for part in entry if isinstance(part, str)]
        return messages

    @contextlib.contextmanager
    def _own_random_state(self) -> Iterator[None]:
        """Run TextArena code with this env's random state, and without its debug prints on stdout.

        Both are process-wide, so one env at a time swaps them (`_GLOBAL_STATE`): per-episode
        rollouts step envs on several threads.
        """
        with _GLOBAL_STATE, self._swapped_random_state():
            yield

    @contextlib.contextmanager
    def _swapped_random_state(self) -> Iterator[None]:
        outer, outer_numpy = random.getstate(), np.random.get_state()
        random.setstate(self._random_state)
        np.random.set_state(self._numpy_state)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                yield
        finally:
            self._random_state, self._numpy_state = random.getstate(), np.random.get_state()
            random.setstate(outer)
            np.random.set_state(outer_numpy)


_GLOBAL_STATE = threading.RLock()  # held while an env has swapped the process's random state and stdout


@contextlib.contextmanager
def _quiet_nltk() -> Iterator[None]:
    """Make TextArena's `nltk.download(...)` calls quiet: no "[nltk_data] Error loading words" lines.

    nltk prints download errors to the `sys.stderr` it saw when it was imported (a default
    argument), which `redirect_stderr` cannot reach, so each call gets `quiet=True` and a private
    stream. A missing corpus then surfaces as the game's `LookupError` (see `_unavailable`).
    """
    try:
        import nltk  # textarena imports it anyway
    except ImportError:
        yield
        return
    download = nltk.download

    def quiet_download(info_or_id: Any = None, download_dir: str | None = None, **kwargs: Any) -> Any:
        return download(info_or_id, download_dir, **{**kwargs, "quiet": True, "print_error_to": io.StringIO()})

    nltk.download = quiet_download
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        nltk.download = download


def single_player_games() -> dict[str, str]:
    """TextArena's single-player game ids, each mapped to a note ("" when it runs offline).

    Read from the games' source files (single-player games use `SinglePlayerState`) without
    importing them; wrapper variants (`-raw`, `-train`) are left out. Notes: games that download
    nltk data, that need an OpenRouter API key (an LLM plays a role), or whose source does not
    compile on this Python.
    """
    from pathlib import Path

    import textarena
    from textarena.envs.registration import ENV_REGISTRY

    root = Path(textarena.__file__).parent.parent  # find_spec would import (and run) each game package
    games = {}
    for game_id, spec in sorted(ENV_REGISTRY.items()):
        if game_id.endswith(WRAPPER_VARIANTS) or not isinstance(spec.entry_point, str):
            continue
        path = root / (spec.entry_point.partition(":")[0].replace(".", "/") + ".py")
        source = path.read_text() if path.is_file() else ""
        if "SinglePlayerState" in source:
            games[game_id] = _offline_note(source, path)
    return games


def _offline_note(source: str, path: Any) -> str:
    try:
        compile(source, str(path), "exec")
    except SyntaxError:
        return "does not import on this Python (a SyntaxError in TextArena's source)"
    if "nltk" in source:
        return "needs nltk data from the network; fails offline"
    if "OpenRouter" in source:
        return "needs an OpenRouter API key (an LLM plays a role)"
    return ""


def _as_reward(value: Any) -> float:
    """TextArena's reward for player 0; some games put a message there by mistake, which scores 0."""
    try:
        reward = float(value)
    except (TypeError, ValueError):
        return 0.0
    return reward if math.isfinite(reward) else 0.0


def _construct(game_id: str, game_kwargs: dict[str, Any]) -> Any:
    """Build the raw game (no TextArena wrappers: we format observations ourselves)."""
    from turngym.envs.registration import TEXTARENA_PREFIX, UnknownEnvError, close_names, did_you_mean

    try:
        from textarena.envs.registration import ENV_REGISTRY
    except ImportError as err:
        raise EnvUnavailableError(f"textarena is not installed ({err}); pip install textarena") from err
    spec = ENV_REGISTRY.get(game_id)
    if spec is None:
        base_ids = [i for i in ENV_REGISTRY if not i.endswith(WRAPPER_VARIANTS)]
        hint = did_you_mean([TEXTARENA_PREFIX + c for c in close_names(game_id, base_ids)])
        raise UnknownEnvError(
            f"unknown TextArena game {game_id!r}.{hint} `turngym envs list --textarena` lists the single-player games."
        )
    try:
        entry = spec.entry_point
        if isinstance(entry, str):
            module, _, name = entry.partition(":")
            entry = getattr(importlib.import_module(module), name)
        return entry(**{**spec.kwargs, **game_kwargs})
    except Exception as err:
        raise _unavailable(game_id, err) from err


def _unavailable(game_id: str, err: Exception) -> EnvUnavailableError:
    lines = [line.strip() for line in str(err).splitlines() if any(c.isalnum() for c in line)]
    first_line = lines[0] if lines else ""
    if isinstance(err, LookupError) or "nltk" in str(err).lower():
        return EnvUnavailableError(
            f"textarena/{game_id} needs nltk data from the network, which is not on this machine "
            f"({type(err).__name__}: {first_line}); fetch it with: {nltk_download_command()} "
            f"(or play the offline word game {OFFLINE_WORD_GAME})"
        )
    return EnvUnavailableError(f"textarena/{game_id} could not start: {type(err).__name__}: {first_line}")


def nltk_download_command() -> str:
    """The command that fetches every nltk package TextArena's games use, for this Python."""
    python = sys.executable or "python"
    relative = os.path.relpath(python) if python.startswith(os.getcwd() + os.sep) else python
    return f"{relative} -m nltk.downloader {' '.join(NLTK_DATA)}"
