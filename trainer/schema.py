"""Typed dataclasses from YAML: how recipes and evaluation suites are read, overridden, checked and documented.

    schema.load_yaml(path, ...)           a YAML file that must hold a mapping
    schema.apply_override(cls, raw, "a.b=1")   a dotted `key=value` on the raw data, before building
    schema.build(cls, raw)                the raw data as an instance of dataclass `cls`, every key and value checked
    schema.to_plain(instance)             the instance as YAML-ready data that `build` reads back
    schema.reference(sections)            every field: type, default, docstring (`--help`, the README's table)

A mistake raises `RecipeError` with one line: the key path, what is wrong, and the fix (the closest
valid key for a typo). Types come from the dataclasses' annotations: bool, int, float (YAML's
`1e-5` string included), str, Literal, Optional/unions, lists, tuples, mappings and nested
dataclasses; `envs: [an/id]` is short for `[{id: an/id}]` where the item class has an `id` field.

A field may hold one of several dataclasses chosen by name, like a recipe's objective: a `Choice`
maps the base class to its named options. In YAML it is a mapping of `name` and that option's
fields (`{name: grpo, eps_high: 0.28}`), or just the name (`grpo`); `params: {...}` is accepted as
a nested spelling of the same fields, in files and in overrides (`objective.params.eps_high=0.28`
sets `objective.eps_high`, and the last override given wins).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import inspect
import math
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

PARAMS = "params"  # the nested spelling of a choice's fields


class RecipeError(ValueError):
    """A recipe or suite key or value that cannot be used; the message names the key and the fix."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key


@dataclass(frozen=True)
class Choice:
    """A field whose value is one of several dataclasses, chosen by `name`.

    Attributes:
        options: name -> dataclass (e.g. `turngym.algos.OBJECTIVES`).
        default: the option a section without `name` gets.
        noun: what an option is called in messages ("objective").
        field_noun: what its fields are called ("hyperparameter").
        doc: what the section is, for the reference.
    """

    options: Mapping[str, type]
    default: str
    noun: str
    field_noun: str = "field"
    doc: str = ""

    def name_of(self, value: Any) -> str:
        """The name `value`'s class is chosen by."""
        return next(name for name, cls in self.options.items() if type(value) is cls)


@dataclass(frozen=True)
class Schema:
    """The generic machinery, with the named choices of one kind of file (recipes: the objective)."""

    choices: Mapping[type, Choice] = field(default_factory=dict)

    # --- reading ----------------------------------------------------------------------------

    def build(self, cls: type, raw: Any, key: str = "") -> Any:
        """Build dataclass `cls` from YAML data, checking every key (closest valid one) and value."""
        if isinstance(raw, cls):
            return raw
        if isinstance(raw, str) and "id" in {f.name for f in dataclasses.fields(cls)}:
            raw = {"id": raw}  # `envs: [an/id]` is short for `[{id: an/id}]`
        if not isinstance(raw, Mapping):
            raise RecipeError(key, f"must be a mapping of {_field_list(cls)}, got {describe(raw)}")
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        for unknown in [k for k in raw if k not in names]:
            raise RecipeError(
                join(key, str(unknown)), f"unknown key.{suggest(str(unknown), names)} Valid keys: {', '.join(names)}."
            )
        return _construct(cls, self._values(cls, raw, key), key)

    def coerce(self, value: Any, hint: Any, key: str) -> Any:
        """`value` as type `hint` (an annotation), or a `RecipeError` naming `key`."""
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if hint is Any:
            return value
        if origin in (typing.Union, types.UnionType):
            return self._union(value, args, hint, key)
        if origin is Literal:
            return _literal(value, args, key)
        if isinstance(hint, type) and hint in self.choices:
            return self._choose(value, self.choices[hint], key)
        if dataclasses.is_dataclass(hint):
            return self.build(hint, value, key)
        if hint in (bool, int, float, str):
            return _scalar(value, hint, key)
        if origin in (dict, Mapping) or hint in (dict, Mapping):
            if not isinstance(value, Mapping):
                raise RecipeError(key, f"must be a mapping (key: value), got {describe(value)}")
            value_hint = args[1] if len(args) == 2 else Any
            return {str(k): self.coerce(v, value_hint, join(key, str(k))) for k, v in value.items()}
        if origin in (list, tuple):
            return self._sequence(value, origin, args, key)
        raise RecipeError(key, f"has an unsupported type {hint!r}")  # a bug in the dataclasses

    def _values(self, cls: type, raw: Mapping[str, Any], key: str) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        return {name: self.coerce(value, hints[name], join(key, name)) for name, value in raw.items()}

    def _union(self, value: Any, args: tuple[Any, ...], hint: Any, key: str) -> Any:
        if value is None and type(None) in args:
            return None
        errors = []
        for option in [a for a in args if a is not type(None)]:
            try:
                return self.coerce(value, option, key)
            except RecipeError as err:
                errors.append(err)
        raise errors[0] if len(errors) == 1 else RecipeError(key, f"{describe(value)} is not {type_name(hint)}")

    def _sequence(self, value: Any, origin: Any, args: tuple[Any, ...], key: str) -> list[Any] | tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise RecipeError(key, f"must be a list, got {describe(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise RecipeError(key, f"must be a list of {len(args)} values, got {len(value)}")
            return tuple(self.coerce(v, a, f"{key}.{i}") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        items = [self.coerce(v, args[0] if args else Any, f"{key}.{i}") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items

    def _choose(self, raw: Any, choice: Choice, key: str) -> Any:
        """One of `choice.options` from `name` plus its fields (or the bare name)."""
        if any(isinstance(raw, cls) for cls in choice.options.values()):
            return raw
        raw = flatten_params(raw, key)
        if isinstance(raw, Mapping) and "name" not in raw:
            raw = {"name": choice.default, **raw}
        if not isinstance(raw, Mapping):
            options = ", ".join(choice.options)
            raise RecipeError(key, f"needs `name` (one of {options}), got {describe(raw)}")
        name = raw["name"]
        if not isinstance(name, str) or name not in choice.options:
            raise RecipeError(
                join(key, "name"),
                f"unknown {choice.noun} {name!r}.{suggest(str(name), list(choice.options))} "
                f"Choose one of: {', '.join(choice.options)}.",
            )
        cls = choice.options[name]
        names = [f.name for f in dataclasses.fields(cls) if f.init]
        for unknown in [k for k in raw if k != "name" and k not in names]:
            raise RecipeError(
                join(key, str(unknown)),
                f"{name} has no {choice.field_noun} {unknown!r}.{suggest(str(unknown), names)} "
                f"Its {choice.field_noun}s: {', '.join(names)}.",
            )
        values = self._values(cls, {k: v for k, v in raw.items() if k != "name"}, key)
        return _construct(cls, values, key, prefix=f"{name}: ")

    # --- overrides --------------------------------------------------------------------------

    def apply_override(self, cls: type, raw: dict[str, Any], override: str) -> None:
        """Apply `a.b.c=value` (the value read as YAML) to the raw data of dataclass `cls`, in place.

        Inside a choice, `params.` is dropped from the path and a bare name becomes `{name: ...}`,
        so both spellings set the same key and the last override wins.
        """
        key, sep, text = override.partition("=")
        if not sep or not key:
            raise RecipeError("", f"override {override!r} is not KEY=VALUE (e.g. rollout.group_size=4)")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        parts, hint, node = key.split("."), cls, raw
        depth = 0
        while depth < len(parts) - 1:
            part, where = parts[depth], ".".join(parts[: depth + 1])
            hint = self._child_hint(hint, part)
            if self._is_choice(hint):
                _expand_choice(node, part, where)
            node = _step_into(node, part, where, key)
            depth += 1
            if self._is_choice(hint) and parts[depth] == PARAMS:
                if depth == len(parts) - 1:  # `objective.params={eps_high: 0.28}`: merge the fields
                    node.update(flatten_params({PARAMS: value}, where))
                    return
                parts.pop(depth)  # `objective.params.eps_high` is `objective.eps_high`
        last = parts[-1]
        if isinstance(node, list):
            node[_list_index(node, last, key)] = value
        else:
            node[last] = value

    def _child_hint(self, hint: Any, part: str) -> Any:
        """The annotation of `part` inside a value of annotation `hint` (Any when unknown)."""
        hint = _unoptional(hint)
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if origin in (list, tuple):
            return args[0] if args else Any
        if origin in (dict, Mapping):
            return args[1] if len(args) == 2 else Any
        if isinstance(hint, type) and hint in self.choices:
            options = self.choices[hint].options.values()
            return next((typing.get_type_hints(c)[part] for c in options if part in typing.get_type_hints(c)), Any)
        if dataclasses.is_dataclass(hint):
            return typing.get_type_hints(hint).get(part, Any)
        return Any

    def _is_choice(self, hint: Any) -> bool:
        hint = _unoptional(hint)
        return isinstance(hint, type) and hint in self.choices

    # --- writing ----------------------------------------------------------------------------

    def to_plain(self, value: Any, defaults: bool = True) -> Any:
        """YAML-ready data that `build` reads back.

        Dataclasses become mappings and tuples lists; a choice becomes `{name, **its fields}`, or with
        `defaults=False` only the fields that differ from their defaults (what a user would write).
        """
        for base, choice in self.choices.items():
            if isinstance(value, base):
                fields = {
                    f.name: self.to_plain(getattr(value, f.name), defaults)
                    for f in dataclasses.fields(value)
                    if f.init and (defaults or getattr(value, f.name) != _default(f))
                }
                return {"name": choice.name_of(value), **fields}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: self.to_plain(getattr(value, f.name), defaults) for f in dataclasses.fields(value)}
        if isinstance(value, Mapping):
            return {k: self.to_plain(v, defaults) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.to_plain(v, defaults) for v in value]
        return value

    def reference(self, sections: Mapping[str, type], markdown: bool = False, width: int = 88) -> str:
        """Every field of every section: `section.key`, type, default and docstring (text wrapped to `width`).

        A choice section lists `name`, the fields every option shares (documented in the base
        class's `Attributes:`), and each option's own fields with their defaults.
        """
        lines: list[str] = []
        for section, cls in sections.items():
            doc = self.choices[cls].doc if cls in self.choices else (cls.__doc__ or "").strip().splitlines()[0]
            title = f"{section}: {doc}"
            lines += [f"### `{section}`" if markdown else title, ""]
            if markdown:
                lines += [title.split(": ", 1)[1], "", "| key | type | default | meaning |", "|---|---|---|---|"]
            for name, kind, default, doc in self._rows(cls):
                if markdown:
                    lines.append(f"| `{name}` | {kind.replace('|', chr(92) + '|')} | `{default}` | {doc} |")
                else:
                    lines.append(f"  {section}.{name} ({kind}, default {default})")
                    lines += [f"      {line}" for line in textwrap.wrap(doc, width - 6)]
            if cls in self.choices:
                lines += ["", *self._options(self.choices[cls], markdown, width)]
            lines.append("")
        return "\n".join(lines)

    def docs(self, cls: type) -> dict[str, str]:
        """Field -> docstring of a section: attribute docstrings, or a choice base's `Attributes:` section."""
        if cls in self.choices:
            return {name: doc[:1].upper() + doc[1:] for name, doc in attribute_docs(cls).items()}
        return field_docs(cls)

    def _rows(self, cls: type) -> list[tuple[str, str, str, str]]:
        """(name, type, default, doc) of each field of a section."""
        hints = typing.get_type_hints(cls)
        if cls in self.choices:
            choice = self.choices[cls]
            names = " | ".join(choice.options)
            rows = [("name", names, choice.default, f"Which {choice.noun}.")]
        else:
            rows = []
        docs = self.docs(cls)
        for f in dataclasses.fields(cls):
            if f.init:
                shown = "null" if _default(f) is None else json_like(self.to_plain(_default(f), defaults=False))
                rows.append((f.name, type_name(hints[f.name]), shown, docs.get(f.name, "")))
        return rows

    def _options(self, choice: Choice, markdown: bool, width: int) -> list[str]:
        base = next(b for b, c in self.choices.items() if c is choice)
        shared = {f.name for f in dataclasses.fields(base)}
        lines = [f"Each {choice.noun}'s own {choice.field_noun}s (defaults):", ""]
        for name, cls in choice.options.items():
            own = [f"{f.name}={json_like(self.to_plain(_default(f), defaults=False))}" for f in dataclasses.fields(cls)]
            own = [item for item, f in zip(own, dataclasses.fields(cls), strict=True) if f.name not in shared]
            text = ", ".join(own) or "none"
            if markdown:
                lines.append(f"- `{name}`: {text}")
            else:
                lines += textwrap.wrap(f"  {name}: {text}", width, subsequent_indent="      ")
        return lines


# --- files ---------------------------------------------------------------------------------------


def load_yaml(path: str | Path, what: str, example: str) -> dict[str, Any]:
    """A YAML file holding a mapping, or a `RecipeError` (missing file, bad YAML, not a mapping).

    Args:
        path: the file.
        what: what the file is, for messages ("recipe", "suite").
        example: what the mapping holds, for messages ("model:, envs:, ...").
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError("", f"{what} file {str(path)!r} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise RecipeError("", f"{path} is not valid YAML: {' '.join(str(err).split())}") from err
    if not isinstance(raw, dict):
        raise RecipeError("", f"{path} must hold a mapping ({example}), not a {type(raw).__name__}")
    return raw


def flatten_params(raw: Any, key: str) -> Any:
    """A choice's mapping with `params: {...}` merged into it (a key given both ways is an error)."""
    if not isinstance(raw, Mapping) or PARAMS not in raw:
        return raw if not isinstance(raw, str) else {"name": raw}
    params = raw[PARAMS] or {}
    if not isinstance(params, Mapping):
        raise RecipeError(join(key, PARAMS), f"must be a mapping (name: value), got {describe(params)}")
    flat = {k: v for k, v in raw.items() if k != PARAMS}
    for name, value in params.items():
        if name in flat:
            raise RecipeError(join(key, f"{PARAMS}.{name}"), f"is also given as {join(key, name)}; give it once")
        flat[name] = value
    return flat


# --- docs ----------------------------------------------------------------------------------------


def field_docs(cls: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass (the string literal under each field)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            if (
                isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def attribute_docs(cls: type) -> dict[str, str]:
    """The `Attributes:` section of a Google-style class docstring, as name -> one line."""
    text = inspect.cleandoc(cls.__doc__ or "")
    _, found, section = text.partition("Attributes:\n")
    docs: dict[str, str] = {}
    name = None
    for line in section.splitlines() if found else []:
        if line and not line.startswith(" "):
            break  # the next section
        head, colon, rest = line.strip().partition(": ")
        if line.startswith("    ") and not line.startswith("        ") and colon and head.isidentifier():
            name, docs[head] = head, rest.strip()
        elif name is not None and line.strip():
            docs[name] += " " + line.strip()
    return docs


def type_name(hint: Any) -> str:
    """A short readable name of an annotation (`int | null`, `list of str`, `[float, float]`)."""
    if hint is type(None):
        return "null"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin in (list, tuple):
        inner = ", ".join(type_name(a) for a in args if a is not Ellipsis)
        return f"[{inner}]" if origin is tuple else f"list of {inner}"
    if origin in (dict, Mapping) or hint is dict:
        return "mapping"
    return getattr(hint, "__name__", str(hint))


def json_like(value: Any) -> str:
    """A compact YAML-flow rendering of a value."""
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("\n...").strip()


# --- messages ------------------------------------------------------------------------------------


def join(key: str, name: str) -> str:
    """`key.name`, or `name` at the top level."""
    return f"{key}.{name}" if key else name


def suggest(word: str, options: Sequence[str]) -> str:
    """` Did you mean 'x'?` for the closest option, or nothing."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def describe(value: Any) -> str:
    """A value as a message shows it (cut at 60 characters)."""
    text = repr(value)
    return f"{text[:60]}..." if len(text) > 63 else text


# --- helpers -------------------------------------------------------------------------------------


def _construct(cls: type, values: dict[str, Any], key: str, prefix: str = "") -> Any:
    """`cls(**values)`, with the class's own checks (`__post_init__`) turned into a `RecipeError`."""
    try:
        return cls(**values)
    except RecipeError:
        raise
    except (TypeError, ValueError) as err:
        raise RecipeError(key, f"{prefix}{err}") from err


def _literal(value: Any, args: tuple[Any, ...], key: str) -> Any:
    if value in args:
        return value
    choices = ", ".join(str(a) for a in args)
    raise RecipeError(key, f"{describe(value)} is not one of: {choices}.{suggest(str(value), [str(a) for a in args])}")


def _scalar(value: Any, hint: type, key: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise RecipeError(key, f"must be true or false, got {describe(value)}")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise RecipeError(key, f"must be a string, got {describe(value)}")
    return _number(value, hint, key)


def _number(value: Any, kind: type, key: str) -> int | float:
    if isinstance(value, str):  # YAML reads 1e-5 as a string
        try:
            value = float(value)
        except ValueError:
            raise RecipeError(key, f"must be a number, got {describe(value)}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecipeError(key, f"must be a number, got {describe(value)}")
    if not math.isfinite(value):
        raise RecipeError(key, f"must be finite, got {value}")
    if kind is int:
        if float(value) != int(value):
            raise RecipeError(key, f"must be a whole number, got {value}")
        return int(value)
    return float(value)


def _step_into(node: Any, part: str, where: str, key: str) -> Any:
    """The child `part` of a raw mapping or list, created as a mapping when missing."""
    if isinstance(node, list):
        index = _list_index(node, part, where)
        if isinstance(node[index], str):  # `envs: [an/id]` is short for `[{id: an/id}]`
            node[index] = {"id": node[index]}
        return node[index]
    if node.get(part) is None:  # absent, or an optional section set to null (`model.lora: null`)
        node[part] = {}
    if not isinstance(node[part], dict | list):
        raise RecipeError(where, f"is a value, not a section; cannot set {key}")
    return node[part]


def _expand_choice(parent: Any, part: str, where: str) -> None:
    """Make a choice's raw node a flat mapping, in place: a bare name becomes `{name: ...}`, `params` merges."""
    if isinstance(parent, list):
        index = _list_index(parent, part, where)
        parent[index] = flatten_params(parent[index], where)
    elif part in parent:
        parent[part] = flatten_params(parent[part], where)


def _list_index(items: list[Any], part: str, where: str) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise RecipeError(
            where, f"index {part!r} is not one of 0..{len(items) - 1} (the list has {len(items)} entries)"
        )
    return int(part)


def _unoptional(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _field_list(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls) if f.init)
