"""`turngym eval`: play a suite with one or more models into a directory, resumably.

Each model plays every env of the suite on the same seeds. Finished groups (all episodes of one
seed) are appended to `<out>/episodes.jsonl` as they finish, one JSON line each:
`{"model": label, "env": env label, "seed": s, "group": TrajectoryGroup}`. Running the same command
into the same directory reads that file first and plays only what is missing, so a run killed
mid-way loses at most the chunk of seeds in flight. `<out>/run.json` records the suite and each
model once it has played every seed (a model that fails to load is not recorded); a directory
that holds another suite's results is refused, not mixed. A report shows the command's models
first (the first is the baseline of the comparisons), then earlier commands' models.

Models: an alias (`smollm2-135m`), a local model directory, a training checkpoint
(`runs/demo/checkpoints/step-000024`) or a run directory (its newest checkpoint), each played by
an in-process vLLM engine; or `openai:MODEL@BASE_URL`, any OpenAI-compatible endpoint (the key comes
from an environment variable and is never printed or saved).
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from turngym.agent.generator import SamplingParams
from turngym.agent.records import TrajectoryGroup
from turngym.trainer.suite import SuiteConfig, SuiteEnv

EPISODES = "episodes.jsonl"
RUN_INFO = "run.json"
OPENAI_PREFIX = "openai:"


@dataclass(frozen=True)
class EvalModel:
    """A model to evaluate.

    Attributes:
        spec: what the user gave (`--model`).
        label: how reports name it.
        path: the local model directory (vLLM), or None for an endpoint.
        endpoint_model, base_url: the endpoint's model name and URL (`openai:MODEL@BASE_URL`).
    """

    spec: str
    label: str
    path: str | None = None
    endpoint_model: str | None = None
    base_url: str | None = None


def parse_model(spec: str) -> EvalModel:
    """Resolve `--model`: an alias, a model or checkpoint directory, a run directory, or `openai:MODEL@URL`.

    Raises:
        ValueError: a malformed `openai:` spec, or a run directory without a complete checkpoint.
        ModelNotFoundError: an unknown alias or missing directory (the message lists the aliases).
    """
    if spec.startswith(OPENAI_PREFIX):
        model, at, url = spec[len(OPENAI_PREFIX) :].rpartition("@")
        if not at or not model or not url.startswith(("http://", "https://")):
            raise ValueError(
                f"{spec!r}: write an endpoint as openai:MODEL@BASE_URL, e.g. openai:tiny@http://127.0.0.1:8000/v1"
            )
        host = url.split("://", 1)[1].split("/", 1)[0]
        return EvalModel(spec, f"{model}@{host}", endpoint_model=model, base_url=url)
    path = Path(spec)
    if (path / "checkpoints").is_dir() or (path / "recipe.yaml").is_file():  # a run: its newest whole checkpoint
        from turngym.trainer.checkpoint import latest_checkpoint

        checkpoint = latest_checkpoint(path)
        if checkpoint is None:
            raise ValueError(f"{spec!r} is a run directory without a complete checkpoint yet")
        return EvalModel(spec, f"{path.name}/{checkpoint.name}", path=str(checkpoint))
    from turngym.agent.models import resolve_model

    resolved = resolve_model(spec)
    label = (
        spec
        if not path.exists()
        else (f"{path.parent.parent.name}/{path.name}" if path.parent.name == "checkpoints" else path.name)
    )
    return EvalModel(spec, label, path=str(resolved))


def run_suite(
    suite: SuiteConfig,
    models: Sequence[EvalModel],
    out: Path,
    *,
    open_generator: Callable[[EvalModel], Any],
    chunk_seeds: int = 16,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Play every (model, env, seed) not yet in `out/episodes.jsonl`; returns the episodes file.

    Args:
        suite: what to play.
        models: who plays, in report order.
        out: the output directory (created; reused to resume).
        open_generator: builds a model's generator; called only for models with work left, and the
            generator is released before the next model's.
        chunk_seeds: seeds per batched rollout (and per write to the episodes file).
        progress: called with a line of text as each chunk finishes.
    """
    out.mkdir(parents=True, exist_ok=True)
    _check_run_info(out, suite, models)
    path = out / EPISODES
    done = {(r["model"], r["env"], r["seed"]) for r in read_records(path)}
    for model in models:
        todo = [
            (env, [s for s in suite.seeds_of(env) if (model.label, env.label, s) not in done]) for env in suite.envs
        ]
        todo = [(env, seeds) for env, seeds in todo if seeds]
        if todo:
            generator = open_generator(model)  # a model that fails to load is never recorded
            try:
                for env, seeds in todo:
                    for start in range(0, len(seeds), chunk_seeds):
                        groups = play(generator, suite, env, seeds[start : start + chunk_seeds])
                        _append(path, model.label, env.label, groups)
                        if progress is not None:
                            finished = min(start + chunk_seeds, len(seeds))
                            progress(f"{model.label} | {env.label}: {finished}/{len(seeds)} seeds played")
            finally:
                del generator
                gc.collect()  # an in-process engine frees its memory before the next model's starts
        _record_model(out, model)
    return path


def play(generator: Any, suite: SuiteConfig, env: SuiteEnv, seeds: Sequence[int]) -> list[TrajectoryGroup]:
    """One batched rollout of `seeds` of one suite env (episodes that raise are recorded, not fatal)."""
    from turngym.agent.rollout import collect_groups

    s = suite.sampling
    return collect_groups(
        env.id,
        list(seeds),
        suite.episodes_of(env),
        generator,
        max_turns=env.max_turns or suite.max_turns,
        sampling=SamplingParams(temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_tokens, seed=s.seed),
        max_context_tokens=suite.max_context_tokens,
        env_kwargs=env.kwargs,
        system_prompt=env.system_prompt or suite.system_prompt,
        progress=False,
        errors="record",
    )


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """The records of an episodes file; a last line cut by a kill mid-write is skipped."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue  # a partial last line: that chunk is played again


def _append(path: Path, model: str, env: str, groups: Sequence[TrajectoryGroup]) -> None:
    text = "".join(
        json.dumps({"model": model, "env": env, "seed": g.seed, "group": g.to_dict()}, ensure_ascii=False) + "\n"
        for g in groups
    )
    with open(path, "a", encoding="utf-8") as out:
        out.write(text)
        out.flush()


def _check_run_info(out: Path, suite: SuiteConfig, models: Sequence[EvalModel]) -> None:
    """Refuse a directory of another suite, or a label that meant another model; record the suite if new."""
    path = out / RUN_INFO
    if not path.is_file():
        path.write_text(json.dumps({"suite": suite.to_dict(), "models": []}, indent=1) + "\n")
        return
    saved = json.loads(path.read_text())
    if saved.get("suite") != suite.to_dict():
        raise ValueError(
            f"{out} holds results of a different suite ({saved.get('suite', {}).get('name')!r} with other "
            "settings); pass another --out, or delete it to start again"
        )
    known = {m["label"]: m for m in saved.get("models", [])}
    for model in models:  # a label must keep meaning the same model
        if model.label in known and known[model.label] != asdict(model):
            raise ValueError(f"{out}: model label {model.label!r} meant {known[model.label]['spec']!r} before")


def _record_model(out: Path, model: EvalModel) -> None:
    """Add a model to run.json once it has played every seed (later commands may compare against it)."""
    path = out / RUN_INFO
    info = json.loads(path.read_text())
    if all(m["label"] != model.label for m in info["models"]):
        info["models"].append(asdict(model))
        path.write_text(json.dumps(info, indent=1) + "\n")


def report_models(
    out: Path,
    current: Sequence[EvalModel],
    records: Sequence[dict[str, Any]],
    warn: Callable[[str], None] | None = None,
) -> list[str]:
    """The models a report shows, baseline first: this command's, then earlier commands' with results.

    Args:
        out: the output directory (its run.json lists earlier commands' models).
        current: this command's models, in `-m` order.
        records: the episodes file's records (`read_records`).
        warn: told about a model run.json lists without episodes (a directory an older version wrote).
    """
    recorded = [m["label"] for m in json.loads((out / RUN_INFO).read_text())["models"]]
    with_results = {r["model"] for r in records}
    order = [m.label for m in current] + [label for label in recorded if label not in {m.label for m in current}]
    for label in order:
        if label not in with_results and warn is not None:
            warn(f"{label} is listed in {out / RUN_INFO} but has no results there; it is left out of the report")
    return [label for label in order if label in with_results]


def evaluate(
    suite: SuiteConfig | str | Path,
    models: Sequence[str | EvalModel],
    out: str | Path | None = None,
    *,
    api_key_env: str | None = "OPENAI_API_KEY",
    max_model_len: int = 4096,
    kv_cache_gib: float = 2.0,
    chunk_seeds: int = 16,
    progress: Callable[[str], None] | None = None,
) -> Any:
    """Python's `turngym eval` (the CLI calls it): play `suite` into `out`, resumably, and write the report.

    Example:
        >>> report = evaluate("examples/suites/quick.yaml", ["smollm2-135m"])  # doctest: +SKIP
        >>> report.stats[("smollm2-135m", "GuessNumber 1..4")].success  # doctest: +SKIP

    Args:
        suite: a `SuiteConfig` or a suite YAML path.
        models: `--model` specs (see `parse_model`) or parsed `EvalModel`s.
        out: the output directory (default `evals/<suite name>`).
        api_key_env: the environment variable with the endpoints' key (None: no key).
        max_model_len: context length of vLLM models.
        kv_cache_gib: KV cache memory of vLLM models.
        chunk_seeds: seeds per batched rollout and per write to `episodes.jsonl`.
        progress: called with a line of text as each chunk finishes and as engines start.

    Returns:
        The `turngym.trainer.report.Report` of this command's models (the first is the baseline of
        the comparisons) and of earlier commands' into `out` (also written there: report.md,
        report.json, plots).
    """
    from turngym.trainer.report import summarize, write_report
    from turngym.trainer.suite import load_suite

    suite = suite if isinstance(suite, SuiteConfig) else load_suite(suite)
    parsed = [m if isinstance(m, EvalModel) else parse_model(m) for m in models]
    out = Path(out) if out is not None else Path("evals") / suite.name

    def open_generator(model: EvalModel) -> Any:
        if model.base_url is not None:
            from turngym.agent import OpenAIGenerator

            return OpenAIGenerator(model.endpoint_model, base_url=model.base_url, api_key_env=api_key_env)
        from turngym.agent import VLLMGenerator

        if progress is not None:
            progress(f"starting vLLM for {model.label} ...")
        return VLLMGenerator(model.path, max_model_len=max_model_len, kv_cache_gib=kv_cache_gib)

    path = run_suite(suite, parsed, out, open_generator=open_generator, chunk_seeds=chunk_seeds, progress=progress)
    records = list(read_records(path))  # read once: the models with results, then their statistics
    models = report_models(out, parsed, records, progress)  # this command's first (the baseline), then earlier ones
    report = summarize(records, suite.to_dict(), models)
    write_report(report, out)
    return report
