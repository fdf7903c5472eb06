"""Evaluation suites: a YAML list of envs, seeds, episodes per seed and sampling settings.

A suite names what to measure once, so every model (a base model, a checkpoint, an endpoint) is
played on the same games:

    name: quick
    num_seeds: 16            # held-out seeds EVAL_SEED_BASE + seed_base + i (training never draws them)
    episodes_per_seed: 2     # n samples per seed, for pass@k (k = 1, 2, 4, ... <= n unless pass_k says)
    sampling: {temperature: 0.7, max_tokens: 128}
    envs:
      - id: turngym/GuessNumber-v0
        kwargs: {high: 4}
        max_turns: 3
      - turngym/MathVerify-v0        # a bare id is short for {id: ...}

Every env entry may override `seeds` (an explicit list), `num_seeds`, `episodes_per_seed`,
`max_turns` and `system_prompt`; `name` is what reports call it (default: `env_name_of(id)`) and
tells two entries of the same id apart. `imports: [my_pkg.envs]` names modules to import first,
for the env ids they register (`gymnasium.register`). `load_suite` checks every key and value
like a training recipe (unknown keys with the closest valid one, types, ranges) and makes each env
once, so a bad id or kwarg fails before any model loads.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from turngym.envs import registration
from turngym.envs.registration import UnknownEnvError, is_class_path
from turngym.trainer.schema import RecipeError, Schema, load_yaml
from turngym.trainer.seeds import EVAL_SEED_BASE, eval_seeds

SUITE = Schema()
"""The suite's schema: the generic machinery of `turngym.trainer.schema`, no named choices."""


@dataclass
class SuiteEnv:
    """One env of a suite."""

    id: str = ""
    """An env id, `textarena/<GameId>`, `reasoning_gym/<dataset>`, `module:Class` or `path/file.py:Class`."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Constructor arguments."""
    name: str | None = None
    """How reports name this entry (default: the id; for your own env, `module:Class` or `path/file.py:Class`, the
    class name); needed when one id appears twice."""
    seeds: list[int] | None = None
    """Explicit env seeds (default: the suite's)."""
    num_seeds: int | None = None
    """How many held-out seeds (default: the suite's)."""
    episodes_per_seed: int | None = None
    """Episodes per seed (default: the suite's)."""
    max_turns: int | None = None
    """Cut episodes after this many turns (default: the suite's, else the env's own limit). The env's own
    limit, which built-in envs state in their first message, is `kwargs: {max_turns: N}`."""
    system_prompt: str | None = None
    """System message (default: the suite's, else the env's `instructions`)."""

    @property
    def label(self) -> str:
        """The name reports use."""
        return self.name if self.name is not None else env_name_of(self.id)


@dataclass
class SuiteSampling:
    """How the models sample."""

    temperature: float = 0.7
    """Sampling temperature (> 0 when `episodes_per_seed` > 1, or the samples of a seed coincide)."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    max_tokens: int = 256
    """Tokens per reply."""
    seed: int | None = 0
    """Sampling seed (null: unseeded)."""


@dataclass
class SuiteConfig:
    """A whole evaluation suite."""

    envs: list[SuiteEnv] = field(default_factory=list)
    """The envs to evaluate."""
    imports: list[str] = field(default_factory=list)
    """Modules to import before the envs are made, for the env ids they register (`gymnasium.register`)."""
    name: str = "suite"
    """The suite's name (default: the file's stem); names the output directory."""
    num_seeds: int = 32
    """Held-out seeds per env: `EVAL_SEED_BASE + seed_base + i`, a range training never draws from."""
    seed_base: int = 0
    """Offset of the first seed in the held-out range."""
    seeds: list[int] | None = None
    """Explicit seeds for every env instead of `num_seeds` held-out ones."""
    episodes_per_seed: int = 1
    """Episodes per seed (n): pass@k needs n >= k."""
    pass_k: list[int] | None = None
    """The k of pass@k (default: 1, 2, 4, ... up to `episodes_per_seed`; `[]`: none)."""
    max_turns: int | None = None
    """Default turn limit of every env (null: each env's own)."""
    max_context_tokens: int | None = None
    """Token budget of an episode (default: the model's context length)."""
    system_prompt: str | None = None
    """Default system message (null: each env's `instructions`)."""
    sampling: SuiteSampling = field(default_factory=SuiteSampling)
    """Sampling settings."""

    def __post_init__(self) -> None:
        _validate(self)

    def seeds_of(self, env: SuiteEnv) -> list[int]:
        """The env seeds this entry plays."""
        if env.seeds is not None:
            return list(env.seeds)
        if env.num_seeds is None and self.seeds is not None:
            return list(self.seeds)
        return eval_seeds(env.num_seeds or self.num_seeds, offset=self.seed_base)

    def episodes_of(self, env: SuiteEnv) -> int:
        """Episodes per seed of this entry."""
        return env.episodes_per_seed or self.episodes_per_seed

    def ks_of(self, env: SuiteEnv) -> list[int]:
        """The pass@k values reported for this entry (those <= its episodes per seed)."""
        n = self.episodes_of(env)
        ks = self.pass_k if self.pass_k is not None else [2**i for i in range(n.bit_length()) if 2**i <= n]
        return [k for k in ks if k <= n]

    def to_dict(self) -> dict[str, Any]:
        """The suite as plain YAML-ready data (saved with every report)."""
        data = dataclasses.asdict(self)
        if not self.imports:  # an evaluation directory saved before suites had `imports` still resumes
            del data["imports"]
        return data


def load_suite(source: str | Path | Mapping[str, Any], check_envs: bool = True) -> SuiteConfig:
    """Read and check a suite (a YAML path or a mapping).

    Raises:
        RecipeError: a key or value that cannot be used; the message names the key and the fix.
    """
    if isinstance(source, Mapping):
        raw, default_name = copy.deepcopy(dict(source)), "suite"
    else:
        raw = load_yaml(source, "suite", "envs:, num_seeds:, ... (examples: examples/suites/*.yaml)")
        default_name = Path(source).stem
    suite = SUITE.build(SuiteConfig, {"name": default_name, **raw})
    for i, module in enumerate(suite.imports):
        import_env_module(module, f"imports.{i}")
    if check_envs:
        make_each(suite.envs)  # a bad id or kwarg fails before any model loads
    return suite


def make_each(envs: Sequence[Any]) -> set[str] | None:
    """Make every env entry (`.id`, `.kwargs`) once; a failure is a `RecipeError` naming `envs.<i>`.

    Returns:
        Every reward component the envs declare (their union), or None when one of them is a plain
        Gymnasium env, whose components are known only once it reports them.
    """
    from turngym.envs import GymnasiumTextEnv, make

    components: set[str] | None = set()
    for i, env in enumerate(envs):
        try:
            instance = make(env.id, **env.kwargs)
        except Exception as err:  # noqa: BLE001 (any failure to build the env is a recipe error)
            hint = registration.import_hint(env.id, "`imports: [MODULE]`") if isinstance(err, UnknownEnvError) else ""
            raise RecipeError(f"envs.{i}", f"cannot make {env.id!r}: {err}{' ' + hint if hint else ''}") from err
        if components is not None and not isinstance(instance, GymnasiumTextEnv):
            components |= set(instance.reward_weights)
        else:
            components = None
        instance.close()
    return components


def env_name_of(env_id: str) -> str:
    """The name an env goes by in metrics, reports and plots when its entry gives no `name`.

    An id is its own name (`turngym/GuessNumber-v0`); your own env, `package.module:Class` or
    `path/to/file.py:Class`, goes by its class name (`Class`): no path in metric keys and plot titles.
    """
    return env_id.rpartition(":")[2] if is_class_path(env_id) else env_id


def import_env_module(module: str, key: str) -> None:
    """`turngym.envs.registration.import_env_module`, its failure a `RecipeError` naming `key` (`imports.<i>`)."""
    try:
        registration.import_env_module(module)
    except registration.EnvModuleError as err:
        raise RecipeError(key, str(err)) from err


def _validate(suite: SuiteConfig) -> None:  # noqa: C901 (a flat list of checks reads best)
    if not suite.envs:
        raise RecipeError("envs", "the suite names no env; add e.g. `envs: [turngym/GuessNumber-v0]`")
    labels = [env.label for env in suite.envs]
    if len(set(labels)) != len(labels):
        twice = sorted({label for label in labels if labels.count(label) > 1})
        raise RecipeError("envs", f"{twice} appear twice; give the entries different `name:`s")
    for key, value in (("num_seeds", suite.num_seeds), ("episodes_per_seed", suite.episodes_per_seed)):
        if value < 1:
            raise RecipeError(key, f"must be >= 1, got {value}")
    if suite.seed_base < 0 or suite.seed_base + suite.num_seeds > EVAL_SEED_BASE:
        raise RecipeError("seed_base", f"must be in 0..{EVAL_SEED_BASE - suite.num_seeds}, got {suite.seed_base}")
    for k in suite.pass_k or []:
        if not 1 <= k <= suite.episodes_per_seed:
            raise RecipeError("pass_k", f"k={k} needs 1 <= k <= episodes_per_seed ({suite.episodes_per_seed})")
    s = suite.sampling
    if s.temperature < 0 or not 0 < s.top_p <= 1 or s.max_tokens < 1:
        raise RecipeError("sampling", "needs temperature >= 0, 0 < top_p <= 1 and max_tokens >= 1")
    if s.temperature == 0 and suite.episodes_per_seed > 1:
        raise RecipeError("sampling.temperature", "is 0 (greedy) with episodes_per_seed > 1: the samples coincide")
    for key, value in (("max_turns", suite.max_turns), ("max_context_tokens", suite.max_context_tokens)):
        if value is not None and value < 1:
            raise RecipeError(key, f"must be >= 1, got {value}")
    for i, env in enumerate(suite.envs):
        _validate_env(env, f"envs.{i}")


def _validate_env(env: SuiteEnv, key: str) -> None:
    if not env.id:
        raise RecipeError(f"{key}.id", "is missing; name an env id (`turngym envs list`)")
    for name in ("num_seeds", "episodes_per_seed", "max_turns"):
        value = getattr(env, name)
        if value is not None and value < 1:
            raise RecipeError(f"{key}.{name}", f"must be >= 1, got {value}")
    if env.seeds is not None:
        if not env.seeds:
            raise RecipeError(f"{key}.seeds", "is empty; list seeds or drop the key")
        if any(s < 0 for s in env.seeds) or len(set(env.seeds)) != len(env.seeds):
            raise RecipeError(f"{key}.seeds", "must be distinct ints >= 0")
