"""Recipes ("episode scripts"): YAML files loaded into one typed dataclass per concern.

A recipe is a YAML mapping with the sections below; every field has a default, so a recipe names
only what it changes. `load_recipe(path, overrides)` reads it, applies dotted `key=value`
overrides (`rollout.group_size=4`, `envs.0.kwargs.high=8`, `objective.eps_high=0.28`), checks
every key and value, and returns a `TrainConfig`. Mistakes raise `RecipeError` with one line that
names the key, what is wrong, and the fix (with the closest valid key for a typo).

    model:     the policy and the precision it samples and trains in
    envs:      one or several envs with mixture weights and constructor kwargs
    rollout:   groups, group size and sampling
    data:      recorded episodes to train on, alone or mixed with live rollouts
    objective: the `Objective` itself, written as an `OBJECTIVES` name plus its hyperparameters
               (`{name: dapo, eps_high: 0.28}`, or just `dapo`; GFPO takes a `base` objective)
    correction: the sampler/trainer mismatch correction
    optimizer: AdamW, learning-rate schedule, update epochs and micro-batching
    run:       steps, run directory, seeds, checkpoints, resume, logging
    eval:      held-out evaluation before, during and after training

and two top-level keys: `name` (names the run directory) and `imports` (modules imported before
the envs are made, for the env ids they register with `gymnasium.register`).

The reading, overriding, checking and documenting is `turngym.trainer.schema`'s (shared with
evaluation suites); this module holds the recipe's sections and the checks across fields.
`recipe_reference()` renders every field with its type, default and docstring (`turngym train
--help`, docs/recipe-reference.md).
"""

from __future__ import annotations

import copy
import math
import textwrap
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from turngym.algos import GRPO, OBJECTIVES, Objective
from turngym.trainer.lora import ALL_LINEAR
from turngym.trainer.schema import Choice, RecipeError, Schema, field_docs, json_like, load_yaml, type_name
from turngym.trainer.seeds import EVAL_SEED_BASE
from turngym.trainer.suite import env_name_of, import_env_module, load_suite, make_each

CorrectionMode = Literal["auto", "token_truncate", "sequence_truncate", "token_mask", "sequence_mask", "none"]


@dataclass
class LoraConfig:
    """LoRA adapters (peft): `model.lora: {}` trains them instead of every weight; absent or null: full fine-tuning.

    Only the adapters are in AdamW; the sampler gets the merged weights of the layers they change, and a KL
    reference is the same model with its adapters switched off. Rule of thumb for the learning rate: about 10x
    full fine-tuning's (Schulman et al., "LoRA Without Regret", Thinking Machines 2025, which found rank 1-16 on
    every linear layer, MLP included, to learn RL as well as full fine-tuning).
    """

    r: int = 16
    """The adapters' rank."""
    alpha: float = 32.0
    """Scale: an adapter adds `alpha / r * B @ A` to its layer's weight."""
    dropout: float = 0.0
    """Dropout on the adapters' input while training."""
    target_modules: list[str] = field(default_factory=lambda: list(ALL_LINEAR))
    """The linear layers that get adapters (default: every linear layer of attention and MLP)."""


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
    kv_cache_gib: Literal["auto"] | float = "auto"
    """Memory reserved for vLLM's KV cache. `auto`: room for one step's episodes at once (`rollout.groups_per_step` x
    `rollout.group_size`, this process's share) at `rollout.max_context_tokens` (default `max_model_len`) tokens
    each, at most 2 GiB; a smaller cache only makes the engine queue requests.
    """
    gradient_checkpointing: bool = False
    """Recompute each layer's activations in the backward pass instead of keeping them: a micro-batch's activation
    memory shrinks to about one layer's, for about a third more compute. A group's shared prompt is then computed
    once per episode (`optimizer.share_prefix` needs the kept activations).
    """
    lora: LoraConfig | None = None
    """Train LoRA adapters instead of every weight (`model.lora: {r: 16}`; see `model.lora.*`); null: full
    fine-tuning. Give LoRA about 10x full fine-tuning's `optimizer.lr` ("LoRA Without Regret", Thinking Machines,
    2025: rank 1-16 on every linear layer learned RL as well as full fine-tuning at that rate)."""


@dataclass
class EnvConfig:
    """One env of the training mixture; `envs` is a list of these (a bare id string is short for `{id: ...}`)."""

    id: str = ""
    """An env id (`turngym envs list`, or one a module of `imports` registers), `textarena/<GameId>`,
    `reasoning_gym/<dataset>`, or your own env as `package.module:Class` or `path/to/file.py:Class` (a TextEnv or a
    plain Gymnasium text env)."""
    name: str | None = None
    """What metrics and plots call this env (`eval/<name>/success`, `env/<name>/success`). Default: the id; for your
    own env the class name (`path/to/anagram.py:Anagram` is `Anagram`); `<id>#<index>` when unnamed entries share
    it. Names must differ."""
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
    temperature_stages: list[tuple[int, float]] = field(default_factory=list)
    """Later temperatures, `[[step, temperature], ...]`, each from that step (2..run.steps) on: `[[7, 1.0]]`
    samples at `temperature` for steps 1-6, then at 1.0 (live episodes only; evaluations keep `eval.temperature`).
    A low start learns the answer format from more wins; a higher temperature later keeps the policy exploring
    once it is confident (POLARIS raises it in stages).
    """
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
    schedule: Literal["lock_step", "per_episode"] = "lock_step"
    """`lock_step`: each turn, every live episode is sampled together, then every env steps. `per_episode`: an
    episode's next turn joins the running batch as soon as its env answers (env steps on worker threads), so
    short replies and slow envs hold nobody up; the same episodes under seeded sampling (`run.deterministic`).
    """

    def temperature_at(self, step: int) -> float:
        """The temperature of rollout step `step` (1-based): the last stage begun by then, else `temperature`."""
        begun = [t for start, t in self.temperature_stages if start <= step]
        return begun[-1] if begun else self.temperature


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
    """Compute the prompt a group's episodes share once per micro-batch, not once per episode (exact: same
    logprobs and gradients); a group's episodes then go into the same micro-batch, a group larger than
    `micro_batch_tokens` split into parts that each compute the prompt once.
    """


@dataclass
class DataConfig:
    """Recorded episodes as training data: saved runs (`run.save_episodes`), `turngym eval` episodes, transcripts."""

    episodes: list[str] = field(default_factory=list)
    """JSONL files or globs of episode groups (`save_episodes` lines: `{env_id, seed, trajectories}`, `.gz` too):
    a run's `episodes/step-*.jsonl.gz`, `turngym eval`'s `episodes.jsonl`, or text-only transcripts of the same
    shape without `token_ids` (tokenized with the policy's chat template). A recorded group is a group: its
    `env_id` must name an entry of `envs`."""
    live_fraction: float | None = None
    """Share of each step's groups played live by the policy (default: 0 with `episodes`, else 1). At 0 no vLLM
    engine starts for training (one starts for evaluations, if any are set)."""
    shuffle: bool = True
    """Take the recorded groups in a new order each pass over them (seeded by `run.seed`); false: file order."""


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
    save_episodes: bool = False
    """Save every step's episodes to `<run dir>/episodes/step-NNNNNN.jsonl.gz` (`data.episodes` reads them)."""


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
    """Sampling temperature (default: `rollout.temperature`, not its later stages)."""
    suite: str | None = None
    """An evaluation suite (examples/suites/*.yaml) to run instead: its envs, seeds and sampling, with pass@k.
    It also runs at step 0, so the curve starts at the untrained model."""


@dataclass
class TrainConfig:
    """A whole training recipe."""

    model: ModelConfig = field(default_factory=ModelConfig)
    envs: list[EnvConfig] = field(default_factory=list)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    data: DataConfig = field(default_factory=DataConfig)
    objective: Objective = field(default_factory=GRPO)
    correction: CorrectionConfig = field(default_factory=CorrectionConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    run: RunConfig = field(default_factory=RunConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    name: str = "run"
    """The recipe's name (default: the file's stem); names the run directory."""
    imports: list[str] = field(default_factory=list)
    """Modules to import before the envs are made, for the env ids they register (`gymnasium.register`), e.g.
    `[my_pkg.envs]`. The `turngym` command finds them in the current directory (as `python -m` does) or on
    PYTHONPATH, like `--import`."""

    def __post_init__(self) -> None:
        _validate(self)
        # derived
        if self.correction.mode == "auto":
            self.correction.mode = "token_truncate" if self.objective.accepts_is_weights else "none"

    @property
    def live_fraction(self) -> float:
        """`data.live_fraction`, resolved: 0 with recorded episodes, else 1, unless set."""
        if self.data.live_fraction is not None:
            return self.data.live_fraction
        return 0.0 if self.data.episodes else 1.0

    @property
    def live_groups(self) -> int:
        """Groups of each step played live: `live_fraction` of `rollout.groups_per_step`, rounded half up.

        The rest come from the recorded episodes (`data.episodes`).
        """
        return math.floor(self.live_fraction * self.rollout.groups_per_step + 0.5)

    @property
    def evaluates(self) -> bool:
        """Whether any held-out evaluation is scheduled (`eval.at_start`, `at_end`, `every` or `suite`)."""
        e = self.eval
        return e.at_start or e.at_end or e.every > 0 or e.suite is not None

    @property
    def env_names(self) -> list[str]:
        """What metrics and plots call each env entry: its `name`, else its id's (`EnvConfig.name` says how)."""
        defaults = [env_name_of(env.id) for env in self.envs]
        unnamed = [default for env, default in zip(self.envs, defaults, strict=True) if env.name is None]
        names = []
        for i, (env, default) in enumerate(zip(self.envs, defaults, strict=True)):
            if env.name is not None:
                names.append(env.name)
            elif unnamed.count(default) > 1:  # one id twice in a mixture, with other kwargs
                names.append(f"{default}#{i}")
            else:
                names.append(default)
        return names

    @property
    def run_dir(self) -> Path:
        """Where this run writes (before any `-N` suffix for a taken directory)."""
        return Path(self.run.dir or Path("runs") / self.name)


# --- loading -----------------------------------------------------------------------------------

OBJECTIVE = Choice(
    OBJECTIVES,
    default="grpo",
    noun="objective",
    field_noun="hyperparameter",
    doc="The objective: `name` picks one of `turngym.algos.OBJECTIVES`; the other keys are its hyperparameters "
    "(GFPO takes a `base` objective, written the same way).",
)
RECIPE = Schema({Objective: OBJECTIVE})
"""The recipe's schema: the generic machinery of `turngym.trainer.schema` with the objective as a named choice."""


def load_recipe(source: str | Path | Mapping[str, Any], overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a recipe (a YAML path or a mapping), apply `key.sub=value` overrides, and validate it.

    Raises:
        RecipeError: a key or value that cannot be used; the message names the fix.
    """
    if isinstance(source, Mapping):
        raw, name = copy.deepcopy(dict(source)), str(source.get("name", "run"))
    else:
        raw = load_yaml(source, "recipe", "model:, envs:, ...")
        name = str(raw.get("name", Path(source).stem))
    raw = {**raw, "name": name}
    for override in overrides:
        RECIPE.apply_override(TrainConfig, raw, override)
    return RECIPE.build(TrainConfig, raw)


def recipe_to_dict(config: TrainConfig, defaults: bool = True) -> dict[str, Any]:
    """The recipe as plain YAML-ready data: every field, the objective as `name` plus its hyperparameters.

    With `defaults=False` the objective keeps only the hyperparameters that differ from its defaults.
    """
    data = RECIPE.to_plain(config, defaults)
    order = [
        "name",
        "imports",
        "model",
        "envs",
        "rollout",
        "data",
        "objective",
        "correction",
        "optimizer",
        "run",
        "eval",
    ]
    return {key: data[key] for key in order}


def dump_recipe(config: TrainConfig) -> str:
    """The resolved recipe as YAML text."""
    return yaml.safe_dump(recipe_to_dict(config), sort_keys=False, allow_unicode=True, width=100)


def recipe_changes(config: TrainConfig) -> list[str]:
    """`key=value` for each setting that differs from its default, in recipe order (a run's header line)."""
    lora = LoraConfig() if config.model.lora is not None else None  # LoRA's own defaults are not news
    baseline = TrainConfig(model=ModelConfig(lora=lora), envs=[EnvConfig(id=env.id) for env in config.envs])
    mine, default = dotted(recipe_to_dict(config, False)), dotted(recipe_to_dict(baseline, False))
    if lora is not None:
        default.pop("model.lora.r")  # but LoRA itself is: its rank is always shown
    return [f"{key}={json_like(value)}" for key, value in mine.items() if default.get(key, ...) != value]


def dotted(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested recipe data as one level of dotted keys; a list of mappings is indexed (`envs.0.id`).

    Example:
        >>> dotted({"run": {"seed": 1}, "envs": [{"id": "e", "kwargs": {"high": 8}}], "imports": []})
        {'run.seed': 1, 'envs.0.id': 'e', 'envs.0.kwargs.high': 8, 'imports': []}
    """
    if isinstance(data, dict):
        items = data.items()
    elif isinstance(data, list) and any(isinstance(v, dict) for v in data):
        items = enumerate(data)
    else:
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in items:
        out.update(dotted(value, f"{prefix}{key}."))
    return {k.rstrip("."): v for k, v in out.items()}


def _validate(config: TrainConfig) -> None:
    """Cross-field checks; each names the key and the fix."""
    _check_names_and_envs(config)
    _check_lora(config.model.lora)
    _check_rollout(config)
    _check_optimizer(config)
    _check_run_and_eval(config)
    _check_data(config)


def _check_temperature_stages(config: TrainConfig) -> None:
    """Stages start after step 1 (step 1 samples at `rollout.temperature`), within the run, on live episodes only."""
    stages, key = config.rollout.temperature_stages, "rollout.temperature_stages"
    starts = [start for start, _ in stages]
    if any(start < 2 for start in starts) or starts != sorted(set(starts)):
        raise RecipeError(key, f"steps must be >= 2 (step 1 is rollout.temperature's) and increasing, got {starts}")
    if any(start > config.run.steps for start in starts):
        raise RecipeError(key, f"a stage starts after the last step (run.steps={config.run.steps}), got {starts}")
    if any(t <= 0 for _, t in stages):
        raise RecipeError(key, "temperatures must be > 0 for training")
    if stages and config.live_groups < config.rollout.groups_per_step:
        raise RecipeError(
            key,
            "recorded episodes (data.episodes) are scored at one temperature, which stages would change under "
            "them; drop the stages or the recorded share (data.live_fraction=1)",
        )


def _check_data(config: TrainConfig) -> None:
    """Recorded episodes against the live share of each step (the files themselves are read at start)."""
    share = config.data.live_fraction
    if share is not None and not 0 <= share <= 1:
        raise RecipeError("data.live_fraction", f"must be in [0, 1], got {share}")
    total = config.rollout.groups_per_step
    if share is not None and 0 < share < 1 and config.live_groups in (0, total):
        raise RecipeError(
            "data.live_fraction",
            f"{share} of rollout.groups_per_step ({total}) rounds to {config.live_groups} live groups; use 0, 1, "
            f"or a share that leaves 1..{total - 1} live (e.g. {1 / total:.3g})"
            if total > 1
            else "use 0 or 1",
        )
    if config.live_groups < total and not config.data.episodes:
        raise RecipeError(
            "data.live_fraction",
            f"{share} leaves part of each step to recorded episodes, but data.episodes names none; "
            "add files (data.episodes=[runs/x/episodes/*.jsonl.gz]) or set data.live_fraction=1",
        )
    objective, name = config.objective, OBJECTIVE.name_of(config.objective)
    if config.live_groups < total and objective.recorded_data_needs == "logprobs" and config.correction.mode == "none":
        raise RecipeError(
            "correction.mode",
            f"recorded episodes come from another policy, and {name} is sound on them only when each token is "
            "weighted by pi_old / mu from their logprobs; set correction.mode=token_truncate (or use gvpo, "
            "which needs no correction)",
        )


def _check_names_and_envs(config: TrainConfig) -> None:
    """The recipe's name, model and env entries."""
    m = config.model
    if not config.envs:
        raise RecipeError("envs", "the recipe names no env; add e.g. `envs: [{id: turngym/GuessNumber-v0}]`")
    if not config.name or config.name in (".", "..") or "/" in config.name or "\\" in config.name:
        raise RecipeError("name", f"must be a non-empty name without '/', got {config.name!r}; it names runs/<name>")
    if not m.name:
        raise RecipeError("model.name", "is empty; name an alias (smollm2-135m), a model directory or org/name")
    for i, env in enumerate(config.envs):
        if not env.id:
            raise RecipeError(f"envs.{i}.id", "is missing; name an env id (`turngym envs list`)")
        if env.name is not None and not env.name.strip():
            raise RecipeError(f"envs.{i}.name", "is empty; give a name (it keys the metrics) or drop the key")
        if env.weight <= 0:
            raise RecipeError(f"envs.{i}.weight", f"must be > 0, got {env.weight}")
        if env.max_turns is not None and env.max_turns < 1:
            raise RecipeError(f"envs.{i}.max_turns", f"must be >= 1, got {env.max_turns}")
    names = config.env_names
    for j, name in enumerate(names):
        if name in names[:j]:
            raise RecipeError(
                f"envs.{j}.name",
                f"{name!r} is also the name of envs.{names.index(name)}; names key the metrics "
                f"(eval/<name>/success), so give the entries different `name:`s",
            )


def _check_lora(lora: LoraConfig | None) -> None:
    """`model.lora`'s numbers and names (the names are checked against the model when it loads)."""
    if lora is None:
        return
    if lora.r < 1:
        raise RecipeError("model.lora.r", f"must be >= 1, got {lora.r}")
    if lora.alpha <= 0:
        raise RecipeError("model.lora.alpha", f"must be > 0, got {lora.alpha}")
    if not 0 <= lora.dropout < 1:
        raise RecipeError("model.lora.dropout", f"must be in [0, 1), got {lora.dropout}")
    if not lora.target_modules:
        raise RecipeError("model.lora.target_modules", f"is empty; name linear layers, e.g. {list(ALL_LINEAR)}")


def _check_rollout(config: TrainConfig) -> None:
    """Rollout sizes and sampling against the objective and the model's context."""
    m, r = config.model, config.rollout
    name = OBJECTIVE.name_of(config.objective)
    if r.group_size < 2:
        raise RecipeError(
            "rollout.group_size",
            f"{name} needs groups of at least 2 episodes (its advantages are relative to the "
            f"group; with {r.group_size} every advantage is 0); set rollout.group_size=2 or more",
        )
    try:
        config.objective.check_group_size(r.group_size)
    except ValueError as err:
        raise RecipeError("objective", str(err)) from err
    _positive(r.groups_per_step, "rollout.groups_per_step")
    _positive(r.max_tokens, "rollout.max_tokens")
    if r.temperature <= 0:
        raise RecipeError(
            "rollout.temperature", f"must be > 0 for training (sampled tokens need logprobs), got {r.temperature}"
        )
    _check_temperature_stages(config)
    if not 0 < r.top_p <= 1:
        raise RecipeError("rollout.top_p", f"must be in (0, 1], got {r.top_p}")
    if r.max_refill_rounds < 0:
        raise RecipeError("rollout.max_refill_rounds", f"must be >= 0, got {r.max_refill_rounds}")
    _positive(m.max_model_len, "model.max_model_len")
    if m.kv_cache_gib != "auto" and m.kv_cache_gib <= 0:
        raise RecipeError("model.kv_cache_gib", f"must be > 0, got {m.kv_cache_gib}")
    context = r.max_context_tokens
    if context is not None and not 0 < context <= m.max_model_len:
        raise RecipeError(
            "rollout.max_context_tokens", f"must be in 1..model.max_model_len ({m.max_model_len}), got {context}"
        )
    if r.max_tokens >= m.max_model_len:
        raise RecipeError(
            "rollout.max_tokens",
            f"{r.max_tokens} leaves no room for a prompt in model.max_model_len ({m.max_model_len})",
        )


def _check_optimizer(config: TrainConfig) -> None:
    """AdamW, its schedule and batching against the objective."""
    r, o = config.rollout, config.optimizer
    objective, name = config.objective, OBJECTIVE.name_of(config.objective)
    if o.lr <= 0:
        raise RecipeError("optimizer.lr", f"must be > 0, got {o.lr}")
    if o.grad_clip < 0:
        raise RecipeError("optimizer.grad_clip", f"must be >= 0 (0 = off), got {o.grad_clip}")
    if not 0 <= o.min_lr_ratio <= 1:
        raise RecipeError("optimizer.min_lr_ratio", f"must be in [0, 1], got {o.min_lr_ratio}")
    for key in ("update_epochs", "mini_batches", "micro_batch_tokens"):
        _positive(getattr(o, key), f"optimizer.{key}")
    if o.warmup_steps < 0:
        raise RecipeError("optimizer.warmup_steps", f"must be >= 0, got {o.warmup_steps}")
    if o.mini_batches > r.groups_per_step:
        raise RecipeError("optimizer.mini_batches", f"cannot exceed rollout.groups_per_step ({r.groups_per_step})")
    if (o.update_epochs > 1 or o.mini_batches > 1) and not objective.uses_ratio:
        raise RecipeError(
            "optimizer.update_epochs",
            f"{name} has no importance ratio, so it is on-policy only; "
            "set optimizer.update_epochs=1 and optimizer.mini_batches=1, or use a ratio objective (grpo, dapo, gspo)",
        )
    if not all(0 <= b < 1 for b in o.betas):
        raise RecipeError("optimizer.betas", f"must be two numbers in [0, 1), got {list(o.betas)}")


def _check_run_and_eval(config: TrainConfig) -> None:
    """Run length, seeds, checkpoints, evaluation and the mismatch correction."""
    r, run, ev, c = config.rollout, config.run, config.eval, config.correction
    objective, name = config.objective, OBJECTIVE.name_of(config.objective)
    _positive(run.steps, "run.steps")
    for key in ("checkpoint_every", "seed_start"):
        if getattr(run, key) < 0:
            raise RecipeError(f"run.{key}", f"must be >= 0, got {getattr(run, key)}")
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
            f"{name}'s loss is not a weighted policy gradient, so importance weights have no place "
            "in it; set correction.mode=none",
        )


def _positive(value: int, key: str) -> None:
    if value < 1:
        raise RecipeError(key, f"must be >= 1, got {value}")


# --- the reference -----------------------------------------------------------------------------

SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "model.lora": LoraConfig,
    "envs": EnvConfig,
    "rollout": RolloutConfig,
    "data": DataConfig,
    "objective": Objective,
    "correction": CorrectionConfig,
    "optimizer": OptimizerConfig,
    "run": RunConfig,
    "eval": EvalConfig,
}


TOP_LEVEL = ("name", "imports")
"""The recipe's keys outside any section."""


def recipe_reference(markdown: bool = False, width: int = 88) -> str:
    """Every recipe field: `section.key`, type, default and what it does (text wrapped to `width`)."""
    return _top_level_reference(markdown, width) + RECIPE.reference(SECTIONS, markdown, width)


def _top_level_reference(markdown: bool, width: int) -> str:
    """The keys of `TOP_LEVEL`, laid out like a section of the reference."""
    docs, hints = field_docs(TrainConfig), typing.get_type_hints(TrainConfig)
    defaults = {"name": "the file's stem", "imports": "[]"}
    if markdown:
        head = "### top level\n\nKeys outside any section.\n\n| key | type | default | meaning |\n|---|---|---|---|"
        shown = {**defaults, "imports": "`[]`"}
        rows = [f"| `{k}` | {type_name(hints[k])} | {shown[k]} | {docs[k]} |" for k in TOP_LEVEL]
        return "\n".join([head, *rows, "", ""])
    lines = ["top level: keys outside any section", ""]
    for k in TOP_LEVEL:
        lines.append(f"  {k} ({type_name(hints[k])}, default {defaults[k]})")
        lines += [f"      {line}" for line in textwrap.wrap(docs[k], width - 6)]
    return "\n".join([*lines, "", ""])


def recipe_reference_page() -> str:
    """docs/recipe-reference.md (`tests/trainer/test_config.py` says how to rewrite it)."""
    intro = (
        "Every key of a training recipe (`examples/recipes/*.yaml`), generated from the dataclasses of\n"
        "`trainer/config.py` and the objectives' in `algos/` (`turngym train --help` prints the same).\n"
        "A recipe names only what it changes; overrides on the command line are dotted keys\n"
        "(`rollout.group_size=4`, `envs.0.kwargs.high=8`, `objective.eps_high=0.28`).\n"
    )
    return f"# Recipe reference\n\n{intro}\n{recipe_reference(markdown=True)}"


def check_envs(config: TrainConfig) -> None:
    """Make every env of the recipe and of its `eval.suite` once: a bad id or kwarg fails before any model loads.

    The objective's settings that name reward components (`reward_weights`, GFPO's `metric`, DAPO's
    `filter_metric`) are checked against the components the envs declare. The recipe's `imports` are
    imported first, for the env ids they register.
    """
    for i, module in enumerate(config.imports):
        import_env_module(module, f"imports.{i}")
    components = make_each(config.envs)
    if components is not None:
        try:
            config.objective.check_components(components)
        except ValueError as err:
            raise RecipeError("objective", str(err)) from err
    if config.eval.suite is not None:
        try:
            load_suite(config.eval.suite)
        except RecipeError as err:
            raise RecipeError("eval.suite", str(err)) from err
