"""Environment ids: an explicit table registered with Gymnasium, plus two prefixes resolved on demand.

- `turngym/<Name>-v0`: built-in envs, registered by hand in `turngym.envs.__init__` (grep finds
  every id there) and with Gymnasium, so `gymnasium.make("turngym/GuessNumber-v0")` also works.
- `textarena/<GameId>`: any single-player TextArena game, wrapped by `TextArenaEnv`.
- `reasoning_gym/<dataset>`: any reasoning-gym task, wrapped by `ReasoningGymEnv`.

Entry points are strings, imported only when an env is made, so importing `turngym.envs` does not
import textarena, reasoning_gym or math_verify.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium

from turngym.envs.core import TextEnv

TEXTARENA_PREFIX = "textarena/"
REASONING_GYM_PREFIX = "reasoning_gym/"


@dataclass(frozen=True)
class EnvInfo:
    """One registered id: where its class lives, its default kwargs, and a one-line description."""

    id: str
    entry_point: str | Callable[..., TextEnv]
    description: str
    kwargs: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, EnvInfo] = {}


class UnknownEnvError(KeyError):
    """An id that is neither registered nor a known prefix; the message lists close matches."""

    def __str__(self) -> str:
        return str(self.args[0])


def register(id: str, entry_point: str | Callable[..., TextEnv], description: str, **kwargs: Any) -> None:
    """Register an env id with turngym and Gymnasium.

    Args:
        id: `namespace/Name-vN`, e.g. `turngym/GuessNumber-v0`.
        entry_point: `"module.path:ClassName"` of a `TextEnv` subclass (imported lazily), or the
            class itself (handy in a script).
        description: one line for `turngym envs list`.
        **kwargs: default constructor arguments (overridable in `make`).
    """
    if id in _REGISTRY:
        raise ValueError(f"env id {id!r} is already registered")
    _REGISTRY[id] = EnvInfo(id=id, entry_point=entry_point, description=description, kwargs=dict(kwargs))
    # Turn limits live in the env (truncation), so Gymnasium gets no max_episode_steps.
    gymnasium.register(id=id, entry_point=entry_point, kwargs=dict(kwargs))


def registry() -> dict[str, EnvInfo]:
    """Return the registered ids (a copy), in registration order."""
    return dict(_REGISTRY)


def make(id: str, **kwargs: Any) -> TextEnv:
    """Create an environment by id, without Gymnasium's wrappers.

    Args:
        id: a registered id (`turngym/GuessNumber-v0`), `textarena/<GameId>` or
            `reasoning_gym/<dataset>`.
        **kwargs: constructor arguments, overriding the registered defaults.

    Raises:
        UnknownEnvError: the id is unknown; the message lists close matches.
    """
    if id.startswith(TEXTARENA_PREFIX):
        return _load("turngym.envs.textarena_env:TextArenaEnv")(game_id=id[len(TEXTARENA_PREFIX) :], **kwargs)
    if id.startswith(REASONING_GYM_PREFIX):
        return _load("turngym.envs.reasoning_gym_env:ReasoningGymEnv")(
            dataset=id[len(REASONING_GYM_PREFIX) :], **kwargs
        )
    info = _REGISTRY.get(id)
    if info is None:
        raise UnknownEnvError(_unknown_message(id))
    return construct(_load(info.entry_point), {**info.kwargs, **kwargs})


def construct(factory: Callable[..., TextEnv], kwargs: dict[str, Any]) -> TextEnv:
    """`factory(**kwargs)`, with one-line errors for a kwarg of the wrong type or an unknown one.

    Arguments annotated `int`, `float`, `bool` or `str` in the constructors are type-checked first
    (`high="abc"` is an error here, not a comparison failing deep inside the env); an argument no
    constructor takes gets the list of those it does take.
    """
    accepted = _constructor_parameters(factory)
    for name, value in kwargs.items():
        expected = accepted.get(name)
        if expected is not None and not _is_instance(value, expected):
            raise TypeError(
                f"{_name(factory)}: {name} must be {expected.__name__}, got {value!r} ({type(value).__name__})"
            )
    try:
        return factory(**kwargs)
    except TypeError as err:
        if "unexpected keyword argument" not in str(err):
            raise
        unknown = next((n for n in kwargs if f"'{n}'" in str(err)), None)
        close = difflib.get_close_matches(unknown or "", list(accepted), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise TypeError(f"{_name(factory)} has no argument {unknown!r}.{hint} It takes: {', '.join(accepted)}") from err


_SIMPLE_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def _constructor_parameters(factory: Callable[..., Any]) -> dict[str, type | None]:
    """Keyword parameters of `factory`'s `__init__` and of the bases its `**kwargs` reach, with simple types."""
    import inspect

    classes = [c for c in getattr(factory, "__mro__", ()) if "__init__" in vars(c) and c is not object]
    out: dict[str, type | None] = {}
    for cls in classes or [factory]:
        init = cls.__init__ if isinstance(cls, type) else cls
        try:
            parameters = inspect.signature(init).parameters.values()
        except (TypeError, ValueError):
            break
        for p in parameters:
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                annotation = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
                out.setdefault(p.name, _SIMPLE_TYPES.get(annotation))
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break  # this constructor does not pass further keywords on
    return out


def _is_instance(value: Any, expected: type) -> bool:
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _name(factory: Callable[..., Any]) -> str:
    return getattr(factory, "__name__", repr(factory))


def _load(entry_point: str | Callable[..., TextEnv]) -> Callable[..., TextEnv]:
    if callable(entry_point):
        return entry_point
    module, _, name = entry_point.partition(":")
    return getattr(importlib.import_module(module), name)


def _unknown_message(id: str) -> str:
    known = list(_REGISTRY)
    close = difflib.get_close_matches(id, known, n=3, cutoff=0.5)
    # also match on the bare name, so "GuessNumber" or "guess-number" finds turngym/GuessNumber-v0
    bare = {k.split("/")[-1].lower(): k for k in known}
    close += [bare[m] for m in difflib.get_close_matches(id.lower(), bare, n=3, cutoff=0.5) if bare[m] not in close]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return (
        f"unknown env id {id!r}.{hint} Registered ids: {', '.join(known)}; "
        f"also '{TEXTARENA_PREFIX}<GameId>' (single-player TextArena games) and "
        f"'{REASONING_GYM_PREFIX}<dataset>' (reasoning-gym tasks). `turngym envs list` shows them."
    )
