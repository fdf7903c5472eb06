"""Recipes ("episode scripts"): YAML files loaded into one typed dataclass per concern.

A recipe is a YAML mapping with the sections below; every field has a default, so a recipe names
only what it changes. `load_recipe(path, overrides)` reads it, applies dotted `key=value`
overrides (`rollout.group_size=4`, `envs.0.kwargs.high=8`, `objective.eps_high=0.28`), checks
every key and value, and returns a `TrainConfig`. Mistakes raise `RecipeError` with one line that
names the key, what is wrong, and the fix (with the closest valid key for a typo).

    model:     the policy and the precision it samples and trains in
    envs:      one or several envs with mixture weights and constructor kwargs
    rollout:   groups, group size and sampling
    objective: an `OBJECTIVES` name plus its hyperparameters (GFPO takes a `base` objective)
    correction: the sampler/trainer mismatch correction
    optimizer: AdamW, learning-rate schedule, update epochs and micro-batching
    run:       steps, run directory, seeds, checkpoints, resume, logging
    eval:      held-out evaluation before, during and after training

`recipe_reference()` renders every field with its type, default and docstring (`turngym train
--help`, README's recipe reference).
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

from turngym.algos import OBJECTIVES, Objective
from turngym.trainer.seeds import EVAL_SEED_BASE

CorrectionMode = Literal["auto", "token_truncate", "sequence_truncate", "token_mask", "sequence_mask", "none"]


class RecipeError(ValueError):
    """A recipe key or value that cannot be used; the message names the key and the fix."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key


@dataclass
class ModelConfig:
    """The policy model."""

    name: str = "smollm2-135m"
    """An alias (`smollm2-135m`), a local Hugging Face directory, or a turngym checkpoint directory."""
    sampler_dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    """vLLM's dtype. `auto`: bfloat16 where the hardware computes it natively (CUDA; CPUs with AVX-512 BF16 or AMX),
    else float32 (emulated bf16 is many times slower).
    """
    autocast: Literal["auto", "bf16", "off"] = "auto"
    """Mixed precision of the trainer's forward/backward; master weights and AdamW stay fp32. `auto`: bf16 where
    native, as for `sampler_dtype`.
    """
    max_model_len: int = 2048
    """Context length of the sampler (prompt plus every turn of an episode)."""
    kv_cache_gib: float = 2.0
    """Memory reserved for vLLM's KV cache (vLLM would otherwise take most of the RAM on CPU)."""


@dataclass
class EnvConfig:
    """One env of the training mixture."""

    id: str = ""
    """An env id (`turngym envs list`), `textarena/<GameId>`, `reasoning_gym/<dataset>`, or your own env as
    `package.module:Class` or `path/to/file.py:Class` (a TextEnv or a plain Gymnasium text env)."""
    weight: float = 1.0
    """Mixture weight: the share of each step's groups drawn from this env."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Constructor arguments (difficulty knobs, `reward_weights`, ...)."""
    max_turns: int | None = None
    """Stop episodes after this many agent turns (default: the env's own limit)."""
    system_prompt: str | None = None
    """System message (default: the env's `instructions`, if any)."""


@dataclass
class RolloutConfig:
    """How episodes are collected each step."""

    group_size: int = 8
    """Episodes per group (G): envs reset with the same seed; advantages are relative to the group."""
    groups_per_step: int = 8
    """Groups trained on per optimiser step (over all envs and processes)."""
    max_tokens: int = 64
    """Most tokens the model may generate per turn."""
    temperature: float = 1.0
    """Sampling temperature; the trainer scores tokens at the same temperature."""
    top_p: float = 1.0
    """Nucleus sampling mass (1.0 = off). Below 1 the sampler's logprobs are of the truncated distribution, which the
    trainer does not reproduce: the mismatch metrics grow.
    """
    max_context_tokens: int | None = None
    """Token budget of an episode (default `model.max_model_len`); longer episodes are cut."""
    max_refill_rounds: int = 2
    """Extra collection rounds when the objective's filter asks for more groups (DAPO dynamic sampling, GPG's
    threshold).
    """


@dataclass
class ObjectiveConfig:
    """The objective: `name` selects a class of `turngym.algos.OBJECTIVES`; other keys are its hyperparameters."""

    name: str = "grpo"
    """One of pg, rloo, grpo, dr_grpo, dapo, gspo, gspo_token, gpg, gvpo, gfpo."""
    params: dict[str, Any] = field(default_factory=dict)
    """Hyperparameters of the objective, written next to `name` in a recipe (`eps_high: 0.28`, `kl_coef: 0.04`,
    `reward_weights: {won: 1}`; GFPO: `k`, `metric`, `base: {name: grpo, ...}`).
    """

    def build(self) -> Objective:
        """The objective instance (validated when the recipe loads)."""
        return _build_objective({"name": self.name, **self.params}, "objective")


@dataclass
class CorrectionConfig:
    """Sampler/trainer mismatch correction (vLLM samples in its dtype and kernels; the trainer scores in fp32)."""

    mode: CorrectionMode = "auto"
    """`token_truncate`: per-token weight min(exp(old - sampling), clip) (TIS); `sequence_truncate`: the same on the
    sequence's product of ratios; `token_mask` / `sequence_mask`: weight 0 outside `band`, else 1; `none`. `auto`:
    token_truncate, or none for objectives whose loss is not a weighted policy gradient (gvpo).
    """
    clip: float = 2.0
    """The truncation C of the `*_truncate` modes."""
    band: tuple[float, float] = (0.5, 2.0)
    """The kept ratio range [low, high] of the `*_mask` modes."""


@dataclass
class OptimizerConfig:
    """AdamW, its schedule, and how a step's batch is split."""

    lr: float = 1e-5
    """Peak learning rate."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    eps: float = 1e-8
    """AdamW epsilon."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0 = off)."""
    schedule: Literal["constant", "cosine", "linear"] = "constant"
    """Learning-rate decay after warm-up, down to `min_lr_ratio * lr` at the last step."""
    warmup_steps: int = 0
    """Linear warm-up steps from 0 to `lr`."""
    min_lr_ratio: float = 0.0
    """Final learning rate as a fraction of `lr` (cosine and linear schedules)."""
    update_epochs: int = 1
    """Passes over each step's batch. Above 1 (or with `mini_batches` > 1), old logprobs come from one extra no-grad
    forward before the first update.
    """
    mini_batches: int = 1
    """Optimiser steps per pass (the batch is split into this many parts)."""
    micro_batch_tokens: int = 4096
    """Most padded tokens (rows x longest row) per forward/backward; rows are sorted by length so padding stays
    small.
    """
    share_prefix: bool = True
    """Compute the prompt a group's episodes share once per group, not once per episode (exact: same logprobs
    and gradients); micro-batches then hold whole groups.
    """


@dataclass
class RunConfig:
    """Length, output, seeds and checkpoints of a run."""

    steps: int = 100
    """Optimiser steps (rollout batches) to train."""
    dir: str | None = None
    """Run directory (default `runs/<recipe name>`, or `runs/<recipe name>-N` if that holds another run)."""
    seed: int = 0
    """Seeds the env mixture, training env seeds, sampling (deterministic mode) and torch."""
    seed_start: int = 0
    """First training env seed; the seed cursor counts up from here and never reuses a seed."""
    deterministic: bool = False
    """Seeded sampling and deterministic torch: a killed and resumed run repeats the same per-step metrics."""
    checkpoint_every: int = 50
    """Save a checkpoint every this many steps (and always at the end; 0 = only at the end)."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep."""
    resume: Literal["never", "auto"] = "never"
    """`auto`: continue from the newest complete checkpoint of the run directory (`--resume`)."""
    tensorboard: bool = False
    """Also write TensorBoard event files to `<run dir>/tensorboard`."""
    progress: bool = True
    """Show the live progress display (a plain line per step when not a terminal)."""


@dataclass
class EvalConfig:
    """Held-out evaluation on seeds that training never draws (`turngym.trainer.seeds.EVAL_SEED_BASE` upwards)."""

    at_start: bool = False
    """Evaluate the untrained model before step 1."""
    at_end: bool = False
    """Evaluate after the last step (and print success before/after when `at_start` is set)."""
    every: int = 0
    """Also evaluate every this many steps (0 = off)."""
    episodes: int = 64
    """Episodes per env, one per held-out seed."""
    temperature: float | None = None
    """Sampling temperature (default: `rollout.temperature`)."""
    suite: str | None = None
    """An evaluation suite (examples/suites/*.yaml) to run instead: its envs, seeds and sampling, with pass@k.
    It also runs at step 0, so the curve starts at the untrained model."""


@dataclass
class TrainConfig:
    """A whole training recipe."""

    model: ModelConfig = field(default_factory=ModelConfig)
    envs: list[EnvConfig] = field(default_factory=list)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    correction: CorrectionConfig = field(default_factory=CorrectionConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    run: RunConfig = field(default_factory=RunConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    name: str = "run"
    """The recipe's name (default: the file's stem); names the run directory."""

    def __post_init__(self) -> None:
        _validate(self)
        # derived
        objective = self.objective.build()
        if self.correction.mode == "auto":
            self.correction.mode = "token_truncate" if objective.accepts_is_weights else "none"

    @property
    def run_dir(self) -> Path:
        """Where this run writes (before any `-N` suffix for a taken directory)."""
        return Path(self.run.dir or Path("runs") / self.name)


# --- loading -----------------------------------------------------------------------------------


def load_recipe(source: str | Path | Mapping[str, Any], overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a recipe (a YAML path or a mapping), apply `key.sub=value` overrides, and validate it.

    Raises:
        RecipeError: a key or value that cannot be used; the message names the fix.
    """
    if isinstance(source, Mapping):
        raw, name = dict(source), str(source.get("name", "run"))
    else:
        path = Path(source)
        if not path.is_file():
            raise RecipeError("", f"recipe file {str(path)!r} does not exist")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise RecipeError("", f"{path} is not valid YAML: {' '.join(str(err).split())}") from err
        if not isinstance(raw, dict):
            raise RecipeError(
                "", f"{path} must hold a mapping of sections (model:, envs:, ...), not a {type(raw).__name__}"
            )
        name = str(raw.get("name", path.stem))
    raw = {**raw, "name": name}
    for override in overrides:
        _apply_override(raw, override)
    return _build_dataclass(TrainConfig, raw, "")


def recipe_to_dict(config: TrainConfig) -> dict[str, Any]:
    """The recipe as plain YAML-ready data (objective hyperparameters next to `name`), loadable again."""
    data = _plain(dataclasses.asdict(config))
    objective = data.pop("objective")
    data["objective"] = {"name": objective["name"], **objective["params"]}
    order = ["name", "model", "envs", "rollout", "objective", "correction", "optimizer", "run", "eval"]
    return {key: data[key] for key in order}


def dump_recipe(config: TrainConfig) -> str:
    """The resolved recipe as YAML text."""
    return yaml.safe_dump(recipe_to_dict(config), sort_keys=False, allow_unicode=True, width=100)


def recipe_changes(config: TrainConfig) -> list[str]:
    """`key=value` for each setting that differs from its default, in recipe order (a run's header line)."""
    baseline = TrainConfig(envs=[EnvConfig(id=env.id) for env in config.envs])
    mine, default = _dotted(recipe_to_dict(config)), _dotted(recipe_to_dict(baseline))
    return [f"{key}={json_like(value)}" for key, value in mine.items() if default.get(key, ...) != value]


def _dotted(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list) and any(isinstance(v, dict) for v in data):
        items = enumerate(data)
    else:
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(_dotted(value, f"{prefix}{key}."))
    return {k.rstrip("."): v for k, v in out.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise RecipeError("", f"override {override!r} is not KEY=VALUE (e.g. rollout.group_size=4)")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    parts = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            index = _list_index(node, part, where)
            if isinstance(node[index], str):  # `envs: [an/id]` is short for `[{id: an/id}]`
                node[index] = {"id": node[index]}
            node = node[index]
        else:
            if not isinstance(node.get(part, {}), dict | list):
                raise RecipeError(where, f"is a value, not a section; cannot set {key}")
            node = node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(node, last, key)] = value
    else:
        node[last] = value


def _list_index(items: list[Any], part: str, where: str) -> int:
    if not part.isdigit() or int(part) >= len(items):
        raise RecipeError(
            where, f"index {part!r} is not one of 0..{len(items) - 1} (the list has {len(items)} entries)"
        )
    return int(part)


# --- building and checking dataclasses --------------------------------------------------------


def _build_dataclass(cls: type, raw: Any, key: str) -> Any:
    if isinstance(raw, cls):
        return raw
    if cls is ObjectiveConfig:
        return _objective_config(raw, key)
    if isinstance(raw, str) and "id" in {f.name for f in dataclasses.fields(cls)}:
        raw = {"id": raw}  # `envs: [an/id]` is short for `[{id: an/id}]`
    if not isinstance(raw, Mapping):
        raise RecipeError(key, f"must be a mapping of {_field_list(cls)}, got {_describe(raw)}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    for unknown in [k for k in raw if k not in names]:
        raise RecipeError(
            _join(key, str(unknown)), f"unknown key.{_suggest(str(unknown), names)} Valid keys: {', '.join(names)}."
        )
    values = {name: _coerce(raw[name], hints[name], _join(key, name)) for name in names if name in raw}
    try:
        return cls(**values)
    except RecipeError:
        raise
    except (TypeError, ValueError) as err:
        raise RecipeError(key, str(err)) from err


def build_dataclass(cls: type, raw: Any, key: str = "") -> Any:
    """Build dataclass `cls` from YAML data with the recipe checks (unknown keys, types, ranges)."""
    return _build_dataclass(cls, raw, key)


def _coerce(value: Any, hint: Any, key: str) -> Any:  # noqa: C901 (one branch per kind of type)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for option in options:
            try:
                return _coerce(value, option, key)
            except RecipeError as err:
                errors.append(err)
        raise errors[0] if len(errors) == 1 else RecipeError(key, f"{_describe(value)} is not {_type_name(hint)}")
    if origin is Literal:
        if value in args:
            return value
        choices = ", ".join(str(a) for a in args)
        raise RecipeError(
            key, f"{_describe(value)} is not one of: {choices}.{_suggest(str(value), [str(a) for a in args])}"
        )
    if isinstance(hint, type) and issubclass(hint, Objective):
        return _build_objective(value, key)
    if dataclasses.is_dataclass(hint):
        return _build_dataclass(hint, value, key)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise RecipeError(key, f"must be true or false, got {_describe(value)}")
    if hint in (int, float):
        return _number(value, hint, key)
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise RecipeError(key, f"must be a string, got {_describe(value)}")
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise RecipeError(key, f"must be a mapping (key: value), got {_describe(value)}")
        value_hint = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, value_hint, _join(key, str(k))) for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise RecipeError(key, f"must be a list, got {_describe(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise RecipeError(key, f"must be a list of {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{key}.{i}") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{key}.{i}") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    raise RecipeError(key, f"has an unsupported type {hint!r}")  # a bug in the config classes


def _number(value: Any, kind: type, key: str) -> int | float:
    if isinstance(value, str):  # YAML reads 1e-5 as a string
        try:
            value = float(value)
        except ValueError:
            raise RecipeError(key, f"must be a number, got {_describe(value)}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecipeError(key, f"must be a number, got {_describe(value)}")
    if not math.isfinite(value):
        raise RecipeError(key, f"must be finite, got {value}")
    if kind is int:
        if float(value) != int(value):
            raise RecipeError(key, f"must be a whole number, got {value}")
        return int(value)
    return float(value)


def _objective_config(raw: Any, key: str) -> ObjectiveConfig:
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping):
        raise RecipeError(key, f"must be a mapping with `name` and hyperparameters, got {_describe(raw)}")
    raw = {"name": ObjectiveConfig.name, **raw}
    params = dict(raw.pop("params", None) or {})
    params.update(raw)
    objective = _build_objective(params, key)  # validates everything once
    name = params.pop("name")
    checked = {f.name: getattr(objective, f.name) for f in _objective_fields(type(objective)) if f.name in params}
    return ObjectiveConfig(name=name, params=_plain_objective(checked))


def _plain_objective(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in params.items():
        if isinstance(v, Objective):
            base = {f.name: getattr(v, f.name) for f in _objective_fields(type(v)) if getattr(v, f.name) != f.default}
            out[k] = {"name": _objective_name(type(v)), **_plain_objective(base)}
        elif isinstance(v, Mapping):
            out[k] = dict(v)
        elif isinstance(v, tuple):
            out[k] = list(v)
        else:
            out[k] = v
    return out


def _objective_name(cls: type) -> str:
    return next(name for name, c in OBJECTIVES.items() if c is cls)


def _objective_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")]


def _build_objective(raw: Any, key: str) -> Objective:
    if isinstance(raw, Objective):
        return raw
    if isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, Mapping) or "name" not in raw:
        raise RecipeError(key, f"needs `name` (one of {', '.join(OBJECTIVES)}), got {_describe(raw)}")
    name = raw["name"]
    if name not in OBJECTIVES:
        raise RecipeError(
            _join(key, "name"),
            f"unknown objective {name!r}.{_suggest(str(name), list(OBJECTIVES))} "
            f"Choose one of: {', '.join(OBJECTIVES)}.",
        )
    cls = OBJECTIVES[name]
    hints = typing.get_type_hints(cls)
    names = [f.name for f in _objective_fields(cls)]
    values = {}
    for param, value in raw.items():
        if param == "name":
            continue
        if param not in names:
            raise RecipeError(
                _join(key, str(param)),
                f"{name} has no hyperparameter {param!r}.{_suggest(str(param), names)} "
                f"Its hyperparameters: {', '.join(names)}.",
            )
        values[param] = _coerce(value, hints[param], _join(key, param))
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise RecipeError(key, f"{name}: {err}") from err


def _validate(config: TrainConfig) -> None:  # noqa: C901 (a flat list of checks reads best)
    """Cross-field checks; each names the key and the fix."""
    m, r, o, run, ev, c = config.model, config.rollout, config.optimizer, config.run, config.eval, config.correction
    if not config.envs:
        raise RecipeError("envs", "the recipe names no env; add e.g. `envs: [{id: turngym/GuessNumber-v0}]`")
    if not config.name or config.name in (".", "..") or "/" in config.name or "\\" in config.name:
        raise RecipeError("name", f"must be a non-empty name without '/', got {config.name!r}; it names runs/<name>")
    if not m.name:
        raise RecipeError("model.name", "is empty; name an alias (smollm2-135m), a model directory or org/name")
    for i, env in enumerate(config.envs):
        if not env.id:
            raise RecipeError(f"envs.{i}.id", "is missing; name an env id (`turngym envs list`)")
        if env.weight <= 0:
            raise RecipeError(f"envs.{i}.weight", f"must be > 0, got {env.weight}")
        if env.max_turns is not None and env.max_turns < 1:
            raise RecipeError(f"envs.{i}.max_turns", f"must be >= 1, got {env.max_turns}")
    objective = config.objective.build()
    if r.group_size < 2:
        raise RecipeError(
            "rollout.group_size",
            f"{config.objective.name} needs groups of at least 2 episodes (its advantages are relative to the "
            f"group; with {r.group_size} every advantage is 0); set rollout.group_size=2 or more",
        )
    _positive(r.groups_per_step, "rollout.groups_per_step")
    _positive(r.max_tokens, "rollout.max_tokens")
    if r.temperature <= 0:
        raise RecipeError(
            "rollout.temperature", f"must be > 0 for training (sampled tokens need logprobs), got {r.temperature}"
        )
    if not 0 < r.top_p <= 1:
        raise RecipeError("rollout.top_p", f"must be in (0, 1], got {r.top_p}")
    if r.max_refill_rounds < 0:
        raise RecipeError("rollout.max_refill_rounds", f"must be >= 0, got {r.max_refill_rounds}")
    _positive(m.max_model_len, "model.max_model_len")
    if m.kv_cache_gib <= 0:
        raise RecipeError("model.kv_cache_gib", f"must be > 0, got {m.kv_cache_gib}")
    context = r.max_context_tokens
    if context is not None and not 0 < context <= m.max_model_len:
        raise RecipeError(
            "rollout.max_context_tokens", f"must be in 1..model.max_model_len ({m.max_model_len}), got {context}"
        )
    if o.lr <= 0:
        raise RecipeError("optimizer.lr", f"must be > 0, got {o.lr}")
    if o.grad_clip < 0:
        raise RecipeError("optimizer.grad_clip", f"must be >= 0 (0 = off), got {o.grad_clip}")
    if not 0 <= o.min_lr_ratio <= 1:
        raise RecipeError("optimizer.min_lr_ratio", f"must be in [0, 1], got {o.min_lr_ratio}")
    for name in ("update_epochs", "mini_batches", "micro_batch_tokens"):
        _positive(getattr(o, name), f"optimizer.{name}")
    if o.warmup_steps < 0:
        raise RecipeError("optimizer.warmup_steps", f"must be >= 0, got {o.warmup_steps}")
    if o.mini_batches > r.groups_per_step:
        raise RecipeError("optimizer.mini_batches", f"cannot exceed rollout.groups_per_step ({r.groups_per_step})")
    if (o.update_epochs > 1 or o.mini_batches > 1) and not objective.uses_ratio:
        raise RecipeError(
            "optimizer.update_epochs",
            f"{config.objective.name} has no importance ratio, so it is on-policy only; "
            "set optimizer.update_epochs=1 and optimizer.mini_batches=1, or use a ratio objective (grpo, dapo, gspo)",
        )
    _positive(run.steps, "run.steps")
    for name in ("checkpoint_every", "seed_start"):
        if getattr(run, name) < 0:
            raise RecipeError(f"run.{name}", f"must be >= 0, got {getattr(run, name)}")
    if not 0 <= run.seed < 2**32:
        raise RecipeError("run.seed", f"must be in 0..{2**32 - 1} (NumPy's seed range), got {run.seed}")
    needed = run.seed_start + run.steps * r.groups_per_step * (1 + r.max_refill_rounds)
    if needed > EVAL_SEED_BASE:
        raise RecipeError(
            "run.seed_start",
            f"{run.seed_start} leaves too few training seeds below the held-out range ({EVAL_SEED_BASE})",
        )
    if run.dir is not None and Path(run.dir).exists() and not Path(run.dir).is_dir():
        raise RecipeError("run.dir", f"{run.dir} is a file, not a directory")
    if not all(0 <= b < 1 for b in o.betas):
        raise RecipeError("optimizer.betas", f"must be two numbers in [0, 1), got {list(o.betas)}")
    if r.max_tokens >= m.max_model_len:
        raise RecipeError(
            "rollout.max_tokens",
            f"{r.max_tokens} leaves no room for a prompt in model.max_model_len ({m.max_model_len})",
        )
    if run.keep_checkpoints < 1:
        raise RecipeError("run.keep_checkpoints", f"must be >= 1, got {run.keep_checkpoints}")
    if ev.every < 0:
        raise RecipeError("eval.every", f"must be >= 0, got {ev.every}")
    _positive(ev.episodes, "eval.episodes")
    if ev.temperature is not None and ev.temperature < 0:
        raise RecipeError("eval.temperature", f"must be >= 0 (0 = greedy), got {ev.temperature}")
    if c.clip <= 0:
        raise RecipeError("correction.clip", f"must be > 0, got {c.clip}")
    if not 0 <= c.band[0] < c.band[1]:
        raise RecipeError("correction.band", f"must be [low, high] with 0 <= low < high, got {list(c.band)}")
    if c.mode not in ("auto", "none") and not objective.accepts_is_weights:
        raise RecipeError(
            "correction.mode",
            f"{config.objective.name}'s loss is not a weighted policy gradient, so importance weights have no place "
            "in it; set correction.mode=none",
        )


def _positive(value: int, key: str) -> None:
    if value < 1:
        raise RecipeError(key, f"must be >= 1, got {value}")


# --- messages ----------------------------------------------------------------------------------


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _suggest(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{text[:60]}..." if len(text) > 63 else text


def _field_list(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls) if f.init)


def _type_name(hint: Any) -> str:
    if hint is type(None):
        return "null"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return " | ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin in (list, tuple):
        inner = ", ".join(_type_name(a) for a in args if a is not Ellipsis)
        return f"[{inner}]" if origin is tuple else f"list of {inner}"
    if origin in (dict, Mapping) or hint is dict:
        return "mapping"
    return getattr(hint, "__name__", str(hint))


# --- the reference -----------------------------------------------------------------------------

SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "envs": EnvConfig,
    "rollout": RolloutConfig,
    "objective": ObjectiveConfig,
    "correction": CorrectionConfig,
    "optimizer": OptimizerConfig,
    "run": RunConfig,
    "eval": EvalConfig,
}


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


def recipe_reference(markdown: bool = False, width: int = 88) -> str:
    """Every recipe field: `section.key`, type, default and what it does (text wrapped to `width`)."""
    lines = []
    for section, cls in SECTIONS.items():
        title = f"{section}: {(cls.__doc__ or '').strip()}"
        if section == "envs":
            title += " `envs` is a list of these (a bare id string is short for `{id: ...}`)."
        lines += [f"### `{section}`" if markdown else title, ""]
        if markdown:
            lines += [title.split(": ", 1)[1], "", "| key | type | default | meaning |", "|---|---|---|---|"]
        docs, hints = field_docs(cls), typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            default = list(default) if isinstance(default, tuple) else default
            shown = "null" if default is None else json_like(default)
            if markdown:
                kind = _type_name(hints[f.name]).replace("|", "\\|")  # a literal pipe inside a table cell
                lines.append(f"| `{f.name}` | {kind} | `{shown}` | {docs.get(f.name, '')} |")
            else:
                lines.append(f"  {section}.{f.name} ({_type_name(hints[f.name])}, default {shown})")
                lines += [f"      {line}" for line in textwrap.wrap(docs.get(f.name, ""), width - 6)]
        lines.append("")
    return "\n".join(lines)


def json_like(value: Any) -> str:
    """A compact YAML-flow rendering of a default value."""
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("\n...").strip()


def make_each(envs: Sequence[Any]) -> None:
    """Make every env entry (`.id`, `.kwargs`) once; a failure is a `RecipeError` naming `envs.<i>`."""
    from turngym.envs import make

    for i, env in enumerate(envs):
        try:
            instance = make(env.id, **env.kwargs)
        except Exception as err:  # noqa: BLE001 (any failure to build the env is a recipe error)
            raise RecipeError(f"envs.{i}", f"cannot make {env.id!r}: {err}") from err
        instance.close()


def check_envs(config: TrainConfig) -> None:
    """Make every env of the recipe and of its `eval.suite` once: a bad id or kwarg fails before any model loads."""
    make_each(config.envs)
    if config.eval.suite is not None:
        from turngym.trainer.suite import load_suite

        try:
            load_suite(config.eval.suite)
        except RecipeError as err:
            raise RecipeError("eval.suite", str(err)) from err
