"""Environment ids: an explicit table registered with Gymnasium, plus two prefixes resolved on demand.

- `turngym/<Name>-v0`: built-in envs, registered by hand in `turngym.envs.__init__` (grep finds
  every id there) and with Gymnasium, so `gymnasium.make("turngym/GuessNumber-v0")` also works.
- `textarena/<GameId>`: any single-player TextArena game, wrapped by `TextArenaEnv`.
- `reasoning_gym/<dataset>`: any reasoning-gym task, wrapped by `ReasoningGymEnv`.

`make` also takes ids registered only with Gymnasium, `package.module:Class`,
`path/to/file.py:Class`, a class or a factory; plain Gymnasium text envs are wrapped in
`GymnasiumTextEnv` (`turngym.envs.adapter`).

Entry points are strings, imported only when an env is made, so importing `turngym.envs` does not
import textarena, reasoning_gym or math_verify.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import gymnasium

from turngym.envs.core import TextEnv

TEXTARENA_PREFIX = "textarena/"
REASONING_GYM_PREFIX = "reasoning_gym/"
BUILT_IN_PREFIXES = ("turngym/", TEXTARENA_PREFIX, REASONING_GYM_PREFIX)  # an unknown id there is a typo of ours
# close_names: difflib similarity that counts as close, and when the best match is the only one named
CLOSE_SCORE = 0.6
CLEAR_SCORE = 0.85
CLEAR_MARGIN = 0.1  # the runner-up is at least this much less similar
PREFIX_SCORE = 0.8  # a name that starts with the word ("basic" -> "basic_arithmetic") scores at least this
MIN_PREFIX_CHARS = 3


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
        entry_point: `"module.path:ClassName"` of a `TextEnv` subclass or a plain Gymnasium text
            env (imported lazily), or the class or a factory itself (handy in a script).
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


def make(env: str | type | Callable[..., Any], **kwargs: Any) -> TextEnv:
    """Create an environment, without Gymnasium's wrappers.

    Args:
        env: what to make, any of:
            - a registered id (`turngym/GuessNumber-v0`), `textarena/<GameId>` or
              `reasoning_gym/<dataset>`;
            - an id registered only with Gymnasium (`gymnasium.register`): a `TextEnv` is made as it
              is, with `max_episode_steps` as its `max_turns`; a plain env keeps its `TimeLimit`;
            - `"package.module:Class"` or `"path/to/file.py:Class"`;
            - a class or a factory function (anything called with the kwargs that returns an env).
            A plain Gymnasium env with text observations and actions is wrapped in
            `GymnasiumTextEnv` (see `turngym.envs.adapter`).
        **kwargs: constructor arguments, overriding the registered defaults. For a plain
            Gymnasium env, `max_turns` and `won` go to the adapter unless its constructor takes them.

    Raises:
        UnknownEnvError: an unknown id; the message lists close matches.
        TypeError: a kwarg of the wrong type or unknown (the message lists the accepted ones), or a
            factory that returned something other than an env.
    """
    if not isinstance(env, str):
        if not callable(env):
            raise TypeError(
                f"env must be an id, 'module:Class', 'path/to/file.py:Class', an env class or a factory; got {env!r}"
            )
        return _build(env, kwargs)
    if env.startswith(TEXTARENA_PREFIX):
        return _load("turngym.envs.textarena_env:TextArenaEnv")(game_id=env[len(TEXTARENA_PREFIX) :], **kwargs)
    if env.startswith(REASONING_GYM_PREFIX):
        factory = _load("turngym.envs.reasoning_gym_env:ReasoningGymEnv")
        try:
            return construct(factory, {"dataset": env[len(REASONING_GYM_PREFIX) :], **kwargs})
        except TypeError as err:
            if "has no argument" not in str(err):
                raise
            raise TypeError(
                f"{err}. reasoning-gym dataset options go in config={{...}}, e.g. -k 'config={{size: 50}}'"
            ) from None
    info = _REGISTRY.get(env)
    if info is not None:
        return _build(_load(info.entry_point), {**info.kwargs, **kwargs})
    if is_class_path(env):
        return _build(import_class_path(env), kwargs)
    if env in gymnasium.registry:
        return _make_gymnasium_id(env, kwargs)
    raise UnknownEnvError(_unknown_message(env))


def env_name(env: str | type | Callable[..., Any]) -> str:
    """The name an env goes by in records and logs: the id or class path itself, or `module:Class`."""
    if isinstance(env, str):
        return env
    return f"{getattr(env, '__module__', '?')}:{getattr(env, '__qualname__', type(env).__name__)}"


def _make_gymnasium_id(id: str, kwargs: dict[str, Any]) -> TextEnv:
    """An id registered only with Gymnasium: a `TextEnv` as it is, a plain env in turngym's adapter.

    A `TextEnv` is taken out of Gymnasium's wrappers (it keeps its own turn limit, so the
    registration's `max_episode_steps` becomes its `max_turns` unless one is given) and keeps its
    own reward components. A plain env keeps its wrappers, `TimeLimit` included.
    """
    spec = gymnasium.spec(id)
    creator = _load(spec.entry_point)
    if isinstance(creator, type) and issubclass(creator, TextEnv):
        if spec.max_episode_steps is not None and "max_turns" not in {**spec.kwargs, **kwargs}:
            kwargs = {**kwargs, "max_turns": spec.max_episode_steps}
        return construct(creator, kwargs, lambda **kw: gymnasium.make(id, disable_env_checker=True, **kw).unwrapped)
    adapter_kwargs = {k: kwargs.pop(k) for k in ("max_turns", "won") if k in kwargs}
    inner = gymnasium.make(id, disable_env_checker=True, **kwargs)
    if isinstance(inner.unwrapped, TextEnv):  # a factory that returns a TextEnv
        if adapter_kwargs:
            raise TypeError(f"{id} is made by a factory that takes no {' or '.join(adapter_kwargs)}")
        return inner.unwrapped
    return _adapt(inner, adapter_kwargs, id)


def _build(factory: Callable[..., Any], kwargs: dict[str, Any]) -> TextEnv:
    """`construct` the env, then wrap it if it is a plain Gymnasium env."""
    adapter_kwargs: dict[str, Any] = {}
    if not (isinstance(factory, type) and issubclass(factory, TextEnv)):
        accepted = _constructor_parameters(factory)
        for name in ("max_turns", "won", "reward_weights"):  # the adapter's, unless the env names them itself
            if name in kwargs and name not in accepted:
                adapter_kwargs[name] = kwargs.pop(name)
    return _adapt(construct(factory, kwargs), adapter_kwargs, _name(factory))


def _adapt(instance: Any, adapter_kwargs: dict[str, Any], source: str) -> TextEnv:
    from turngym.envs.adapter import as_text_env

    if not (callable(getattr(instance, "reset", None)) and callable(getattr(instance, "step", None))):
        raise TypeError(f"{source} returned {type(instance).__name__}, not an env (it needs reset() and step())")
    return as_text_env(instance, **adapter_kwargs)


def is_class_path(target: str) -> bool:
    """`pkg.module:Class` or `path/to/file.py:Class` (ids like `textarena/X` have no colon)."""
    module, sep, name = target.rpartition(":")
    return bool(sep and name) and (module.endswith(".py") or "/" not in module)


_FILE_MODULES: dict[str, Any] = {}  # resolved path -> module: a file is executed once per process


def import_class_path(target: str) -> Callable[..., Any]:
    """Import `Class` from `package.module:Class` or `path/to/file.py:Class`, with one-line errors."""
    import importlib.util
    import sys
    from pathlib import Path

    module_name, _, class_name = target.rpartition(":")
    if module_name.endswith(".py"):
        path = Path(module_name).resolve()
        module = _FILE_MODULES.get(str(path))
        if module is None:
            if not path.is_file():
                raise ImportError(f"no such file: {module_name} (in {target!r})")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules.setdefault(path.stem, module)  # classes defined there must be importable by name
            spec.loader.exec_module(module)
            _FILE_MODULES[str(path)] = module
    else:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            raise ImportError(
                f"cannot import {module_name!r} (in {target!r}): {err}; "
                "run from the directory that holds it, or give a path such as path/to/file.py:Class"
            ) from err
    if not hasattr(module, class_name):
        found = [n for n, v in vars(module).items() if isinstance(v, type) and not n.startswith("_")]
        close = close_names(class_name, found, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        defined = ", ".join(found) or "no classes"
        raise AttributeError(f"{module_name} has no {class_name!r}.{hint} It defines: {defined}")
    return getattr(module, class_name)


def construct(
    factory: Callable[..., TextEnv], kwargs: dict[str, Any], call: Callable[..., TextEnv] | None = None
) -> TextEnv:
    """`factory(**kwargs)`, with one-line errors for a kwarg of the wrong type or an unknown one.

    Arguments annotated `int`, `float`, `bool` or `str` in the constructors are type-checked first
    (`high="abc"` is an error here, not a comparison failing deep inside the env); an argument no
    constructor takes gets the list of those it does take. `call`, if given, makes the env in
    `factory`'s place (e.g. through `gymnasium.make`), with the same kwargs.
    """
    accepted = _constructor_parameters(factory)
    for name, value in kwargs.items():
        expected = accepted.get(name)
        if expected is not None and not _is_instance(value, expected):
            raise TypeError(
                f"{_name(factory)}: {name} must be {expected.__name__}, got {value!r} ({type(value).__name__})"
            )
    try:
        return (call or factory)(**kwargs)
    except TypeError as err:
        if "unexpected keyword argument" not in str(err):
            raise
        unknown = next((n for n in kwargs if f"'{n}'" in str(err)), None)
        close = close_names(unknown or "", accepted, n=1)
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


def close_names(word: str, names: Collection[str], n: int = 3) -> list[str]:
    """Up to `n` of `names` closest to `word`, best first; only the best one when it is clearly closest.

    Case is ignored, and ids compare by their name after the namespace (`gym/GuessNumber-v0` is
    close to `turngym/GuessNumber-v0`). A name that starts with `word` counts as close
    (`basic` -> `basic_arithmetic`), as does one within difflib's similarity cutoff (a typo).

    Example:
        >>> close_names("turngym/GuessNumbr-v0", ["turngym/GuessNumber-v0", "turngym/WordGuess-v0"])
        ['turngym/GuessNumber-v0']
        >>> close_names("basic", ["basic_arithmetic", "aiw", "bf"])
        ['basic_arithmetic']
    """
    key = word.lower().rpartition("/")[2]
    scores = {}
    for name in names:
        other = name.lower().rpartition("/")[2]
        score = difflib.SequenceMatcher(None, key, other).ratio()
        if len(key) >= MIN_PREFIX_CHARS and other.startswith(key):
            score = max(score, PREFIX_SCORE)
        if score >= CLOSE_SCORE:
            scores[name] = score
    ranked = sorted(scores, key=lambda name: (-scores[name], len(name), name))
    runner_up = scores[ranked[1]] if len(ranked) > 1 else 0.0
    if ranked and scores[ranked[0]] >= CLEAR_SCORE and runner_up < scores[ranked[0]] - CLEAR_MARGIN:
        return ranked[:1]
    return ranked[:n]


def did_you_mean(close: list[str]) -> str:
    """` Did you mean a?` / ` Did you mean a, b or c?` for `close`, or "" when it is empty."""
    if not close:
        return ""
    return f" Did you mean {close[0] if len(close) == 1 else ', '.join(close[:-1]) + ' or ' + close[-1]}?"


def _unknown_message(id: str) -> str:
    close = suggestions(id)
    if close:
        return f"unknown env id {id!r}.{did_you_mean(close)} `turngym envs list` shows every id."
    return (
        f"unknown env id {id!r}. Registered ids: {', '.join(_REGISTRY)}; "
        f"also '{TEXTARENA_PREFIX}<GameId>' (single-player TextArena games) and "
        f"'{REASONING_GYM_PREFIX}<dataset>' (reasoning-gym tasks), ids registered with Gymnasium, and your own "
        f"env as 'package.module:Class' or 'path/to/file.py:Class'. `turngym envs list` shows the ids."
    )


def suggestions(id: str) -> list[str]:
    """The ids closest to an unknown `id`: registered ids, TextArena games and reasoning-gym datasets.

    Under a namespace (`turngym/GuessNum-v0`, or a misspelt one: `reasoning-gym/countdown`,
    `TextArena/Wordle-v0`), the names of that namespace come first, and a misspelt namespace is
    corrected only towards a name that exists there. A bare name (`Wordle-v0`, `gsm_symbolic`) finds
    the prefixed id.

    Example:
        >>> suggestions("turngym/GuesNumber-v0")
        ['turngym/GuessNumber-v0']
    """
    by_namespace: dict[str, list[str]] = {}
    for known in [*_REGISTRY, *(name for names in _prefixed_names().values() for name in names)]:
        by_namespace.setdefault(known.partition("/")[0], []).append(known)
    namespace, slash, rest = id.partition("/")
    for known, ids in by_namespace.items():
        if slash and close_names(namespace, [known]):
            close = _close_ids(rest, ids)
            if close:
                return close
    return _close_ids(id, [known for ids in by_namespace.values() for known in ids])


_VERSION = re.compile(r"-v\d+")


def _close_ids(word: str, ids: list[str]) -> list[str]:
    """`close_names` over ids compared by name alone, or every id whose name is `word`'s.

    The namespace and version (`-v0`) are left out: many ids share them, which makes short names look
    alike (`nope-v0` and `wordle-v0`).
    """
    by_name: dict[str, list[str]] = {}
    for known in ids:
        by_name.setdefault(_VERSION.sub("", known.rpartition("/")[2]).lower(), []).append(known)
    name = _VERSION.sub("", word.rpartition("/")[2]).lower()
    if name in by_name:  # the same name in several namespaces (turngym/ and textarena/ Mastermind-v0)
        return by_name[name]
    return [known for close in close_names(name, list(by_name)) for known in by_name[close]]


@functools.cache
def _prefixed_names() -> dict[str, list[str]]:
    """`textarena/<GameId>` and `reasoning_gym/<dataset>` ids, by prefix (none for a package not installed)."""
    names: dict[str, list[str]] = {TEXTARENA_PREFIX: [], REASONING_GYM_PREFIX: []}
    try:
        from turngym.envs.textarena_env import single_player_games

        names[TEXTARENA_PREFIX] = [TEXTARENA_PREFIX + game for game in single_player_games()]
    except Exception:  # noqa: BLE001,S110 (no textarena, or a broken one: no names to suggest)
        pass
    try:
        import reasoning_gym

        names[REASONING_GYM_PREFIX] = [REASONING_GYM_PREFIX + name for name in sorted(reasoning_gym.factory.DATASETS)]
    except Exception:  # noqa: BLE001,S110
        pass
    return names


def import_hint(id: str, how: str) -> str:
    """`An id that a module of yours registers needs {how}.` for an unknown `id`, or "".

    Only when nothing close to `id` exists and it is not under a built-in prefix (`turngym/`,
    `textarena/`, `reasoning_gym/`): then it is most likely an id of the user's own.

    Args:
        id: the unknown id.
        how: how the user imports a module here, e.g. `--import MODULE` or `` `imports: [MODULE]` ``.
    """
    if id.startswith(BUILT_IN_PREFIXES) or suggestions(id):
        return ""
    return f"An id that a module of yours registers needs {how}."


class EnvModuleError(ImportError):
    """A module named for the env ids it registers (`--import`, `imports:`) that cannot be imported."""


def import_env_module(module: str) -> None:
    """Import `module` for the env ids it registers (`gymnasium.register`, `turngym.envs.register`).

    It is searched on `sys.path`: PYTHONPATH, the installed packages, and the current directory,
    which the `turngym` command puts last there.

    Raises:
        EnvModuleError: the module and why it cannot be imported (with the closest module name for
            a typo, or where the module raised), in one line.
    """
    if module.endswith(".py") or "/" in module or "\\" in module:
        stem = module.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".py")
        raise EnvModuleError(
            f"{module!r} is a file; name the module ({stem}) and run from its directory, or add that to PYTHONPATH"
        )
    if not all(part.isidentifier() for part in module.split(".")):
        raise EnvModuleError(f"{module!r} is not a module name; write it dotted, e.g. my_pkg.envs")
    try:
        importlib.import_module(module)
    except Exception as err:  # noqa: BLE001 (anything the module raises: one line naming it)
        raise EnvModuleError(f"cannot import {module!r}: {_import_problem(module, err)}") from err


def _import_problem(module: str, err: Exception) -> str:
    """Why `module` did not import: a missing module with the closest name, or the error and where it was raised."""
    import pkgutil
    import traceback

    if isinstance(err, ModuleNotFoundError) and err.name and f"{module}.".startswith(f"{err.name}."):
        parent = err.name.rpartition(".")[0]
        path = getattr(importlib.import_module(parent), "__path__", []) if parent else None
        known = [f"{parent}.{m.name}" if parent else m.name for m in pkgutil.iter_modules(path)]
        close = difflib.get_close_matches(err.name, known, n=1, cutoff=CLOSE_SCORE)
        if close:
            return f"{err}. Did you mean {close[0]!r}?"
        return f"{err}. Run from the directory that holds it, or add that directory to PYTHONPATH."
    frames = [f for f in traceback.extract_tb(err.__traceback__) if not f.filename.startswith("<")]
    inside = frames and frames[-1].filename not in (__file__, importlib.__file__)
    return f"{type(err).__name__}: {err}" + (f" (at {frames[-1].filename}:{frames[-1].lineno})" if inside else "")
