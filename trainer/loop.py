"""The training loop: collect -> select -> advantages -> update -> sync -> metrics, every step.

`train(config)` reads top to bottom:

    set-up        `_start`: run directory, model + AdamW (+ a reference model when the objective
                  `needs_ref_logps`), vLLM engine, the evaluation suite, and, when resuming, the
                  checkpoint's weights, optimiser, RNG, seed cursor and objective state. It returns
                  a `Run` (what is fixed for the run) and a `TrainState` (what changes every step).
    every step    `_train_step(run, state, step)`, one screen:
                      collect, select   groups on every env of the mixture, played live and/or
                                        taken from recorded episodes (`data`, data.py);
                                        `objective.filter`, collecting more while it says the
                                        batch is incomplete
                      advantages        `objective.advantages` + `StepRows` (collate.py)
                      update            micro-batches, step-global totals, clip, AdamW (update.py),
                                        which returns an `UpdateResult`
                      sync              `generator.load_weights`, when the update changed the weights
                                        (on recorded episodes alone: before the next evaluation)
                      metrics           one record (metrics.py): rollout, selection, advantages, update
                  then, on schedule, a held-out evaluation (heldout.py) and a checkpoint
    the end       a final checkpoint and evaluation; success before/after

Nothing here knows which objective runs. The loop reads what objectives declare:
`needs_ref_logps` (load a reference model) and `initial_state` (what the objective carries from
step to step, kept in `TrainState.objective` and in checkpoints). The update reads
`zero_advantage_rows_are_inert` (skip rows, or a whole update, whose advantages are all 0) and
`needs_whole_groups`; the recipe checks read `uses_ratio` and `accepts_is_weights`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.markup import escape

from turngym.agent.generator import SamplingParams
from turngym.agent.hardware import keep_freed_memory
from turngym.agent.models import resolve_model
from turngym.agent.records import TrajectoryGroup, load_episodes, save_episodes
from turngym.agent.rollout import GroupSpec, play_groups
from turngym.algos import Objective, Selection
from turngym.trainer import checkpoint as ckpt
from turngym.trainer import lora
from turngym.trainer.collate import StepRows
from turngym.trainer.config import TrainConfig, check_envs, recipe_changes
from turngym.trainer.data import RecordedData, load_recorded
from turngym.trainer.display import Display
from turngym.trainer.distributed import Processes
from turngym.trainer.heldout import evaluate_suite, training_suite, transcript
from turngym.trainer.memory import PeakMemory, own_peak_gib, resident_gib
from turngym.trainer.metrics import MetricsLog, rollout_metrics, success
from turngym.trainer.policy import TokenScorer, load_model, resolve_autocast
from turngym.trainer.report import EnvStats
from turngym.trainer.run import LOG, RunDir, open_run
from turngym.trainer.seeds import SeedCursor, mixture_counts, step_rng
from turngym.trainer.suite import SuiteConfig
from turngym.trainer.update import Learner, make_optimizer, update


@dataclass
class Run:
    """What is fixed for the whole run: the recipe and what `_start` built from it.

    Attributes:
        config: the recipe (`config.objective` is the built objective).
        procs: this process and its peers.
        dir: the run directory.
        learner: the model, its optimiser and schedule, and the reference model.
        tokenizer: the model's tokenizer (saved with checkpoints).
        generator: the vLLM engine episodes are sampled from (its weights follow the learner's);
            None until first needed when the run trains on recorded episodes alone (`sampler`).
        suite: the held-out evaluation suite (`eval.suite`, or the built-in one from `eval.episodes`).
        log: metrics.jsonl (and TensorBoard).
        display: the terminal.
        data: the recorded episodes (`data.episodes`), or None.
        stale: the generator's weights lag the learner's (synced before it is next used).
    """

    config: TrainConfig
    procs: Processes
    dir: Path
    learner: Learner
    tokenizer: Any
    generator: Any
    suite: SuiteConfig
    log: MetricsLog
    display: Display
    data: RecordedData | None = None
    stale: bool = False

    def sampler(self) -> Any:
        """The vLLM engine with the learner's current weights, started on first use."""
        if self.generator is None:
            self.display.phase("starting the sampler")
            self.generator, self.stale = _build_generator(self.config, self.procs), True
        if self.stale:
            self.generator.load_weights(lora.sampler_weights(self.learner.model))
            self.stale = False
        return self.generator


@dataclass
class TrainState:
    """What changes every step; a checkpoint saves it and a resume restores it.

    Attributes:
        step: the last completed step.
        next_seed: the seed cursor (training env seeds are never reused).
        objective: the objective's state after that step (`Objective.initial_state`; None for most).
        data_position: how many recorded groups were taken so far (`RecordedData.take`).
        data_digest: `RecordedData.digest` of the recorded episodes the run trains on ("" without any).
    """

    step: int = 0
    next_seed: int = 0
    objective: Any = None
    data_position: int = 0
    data_digest: str = ""


@dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
        run_dir: the run directory.
        step: the last completed step.
        interrupted: stopped by Ctrl-C (a checkpoint of `step` was saved).
        evals: held-out evaluations by step (0 = before training), one `EnvStats` per env.
        train_seconds: wall time of the training steps (rollout, update, sync, logging), without
            set-up and evaluations.
        peak_memory_gib: peak resident memory of the run's processes and their children, summed (`PeakMemory`).
        plots: the learning-curve PNGs written into `<run dir>/plots`.
    """

    run_dir: Path
    step: int
    interrupted: bool = False
    evals: dict[int, list[EnvStats]] = field(default_factory=dict)
    train_seconds: float = 0.0
    peak_memory_gib: float = 0.0
    plots: list[Path] = field(default_factory=list)


def train(config: TrainConfig, generator: Any = None) -> TrainResult:
    """Train a policy from a recipe. Returns where the run went and how it ended.

    Args:
        config: the recipe.
        generator: a running `VLLMGenerator` on the same model to sample with (its weights are
            replaced as training goes); default: start one from `model.*` (one per process).

    Raises:
        RecipeError: an env of the recipe cannot be made, or a resume does not match its run
            (checked before any model loads).
    """
    check_envs(config)
    procs = Processes.from_environment()
    if generator is not None and procs.distributed:
        raise ValueError("pass no generator to a multi-process run: each process starts its own")
    run_dir = open_run(config, procs)
    with PeakMemory() as memory:  # this process and any child it starts (vLLM inspects the model in one)
        run, result = _train(config, procs, run_dir, generator)
    result.peak_memory_gib = sum(procs.gather(memory.peak_gib()))
    if procs.is_main:
        result.plots = _plot(run.dir)
    _summarise(result, run.display)
    return result


def _train(config: TrainConfig, procs: Processes, run_dir: RunDir, generator: Any) -> tuple[Run, TrainResult]:
    """`train` after the checks: start, evaluate before, run the steps, evaluate after."""
    try:
        run, state = _start(config, procs, run_dir, generator)
    except Exception as err:
        raise _logged(err, run_dir.path) from None
    result = TrainResult(run.dir, state.step, evals=_read_evals(run.dir))
    run.display.begin(state.step)
    try:
        if (config.eval.at_start or config.eval.suite) and state.step == 0 and 0 not in result.evals:
            result.evals[0] = _evaluate(run, 0)
        _run_steps(run, state, result)
        if config.eval.at_end and state.step not in result.evals and not result.interrupted:
            result.evals[state.step] = _evaluate(run, state.step)
    except Exception as err:
        raise _logged(err, run.dir) from None
    finally:
        run.display.close()
        run.log.close()
    result.step = state.step
    return run, result


def _run_steps(run: Run, state: TrainState, result: TrainResult) -> None:
    """Steps `state.step + 1 .. run.steps`, evaluating and checkpointing on schedule, at the end and on Ctrl-C."""
    config, saved = run.config, state.step
    with Interrupts(enabled=not run.procs.distributed, display=run.display) as interrupts:
        try:
            for step in range(state.step + 1, config.run.steps + 1):
                start = time.perf_counter()
                metrics = _train_step(run, state, step, interrupts)
                seconds = time.perf_counter() - start
                result.train_seconds += seconds
                metrics["time/step"] = seconds
                metrics["memory/resident_gib"], metrics["memory/peak_gib"] = resident_gib(), own_peak_gib()
                run.log.write(step, metrics)
                run.display.step(step, metrics)
                if _every(config.eval.every, step) and step != config.run.steps:
                    result.evals[step] = _evaluate(run, step)
                if step == config.run.steps or _every(config.run.checkpoint_every, step):
                    _save(run, state)
                    saved = step
                if interrupts.requested:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:  # a half-done step changed nothing: `state` moves only once it is whole
            if state.step > saved:
                _save(run, state)
            run.display.print(
                f"[yellow]interrupted after step {state.step}; checkpoint saved. Continue with --resume.[/yellow]"
            )
            result.interrupted = True


def _train_step(run: Run, state: TrainState, step: int, interrupts: Interrupts) -> dict[str, Any]:
    """One step: collect -> select -> advantages -> update -> sync -> metrics. Returns the step's metrics."""
    objective = run.config.objective
    run.learner.temperature = run.config.rollout.temperature_at(step)  # sampled and scored at it this step
    # COLLECT and SELECT: groups on every env of the mixture, filtered by the objective, refilled while incomplete
    start = time.perf_counter()
    cursor = SeedCursor(state.next_seed, state.data_position)
    rollout = _collect_and_select(run, cursor, step, state.objective)
    rollout_seconds = time.perf_counter() - start
    if run.config.run.save_episodes:
        _save_episodes(run, step, rollout.groups)  # the played ones: recorded groups are on file already
    # ADVANTAGES of the selected groups, as rows of tokens
    rows, advantage_metrics = _advantages(objective, rollout.selection)
    # UPDATE and SYNC, together: a Ctrl-C now waits until the weights and the sampler agree again
    with interrupts.deferred():
        run.display.phase("update")
        result = update(run.learner, objective, rows, run.config.optimizer, run.config.correction, run.procs)
        start = time.perf_counter()
        run.stale |= result.changed_weights
        if run.stale and run.config.live_groups > 0:  # on recorded episodes alone: before the next evaluation
            run.display.phase("weight sync")
            run.sampler()
        sync_seconds = time.perf_counter() - start
        state.step, state.next_seed, state.objective = step, cursor.next_seed, rollout.selection.state
        state.data_position = cursor.data_position
    # METRICS
    metrics = rollout.metrics(rollout_seconds) | advantage_metrics | result.to_metrics() | {"time/sync": sync_seconds}
    return metrics | ({"temperature": run.learner.temperature} if run.config.rollout.temperature_stages else {})


# --- collect and select --------------------------------------------------------------------------


@dataclass
class Rollout:
    """A step's episodes: every group collected, and the objective's selection of them.

    Attributes:
        groups: every group played this step (failed ones dropped).
        selection: what the objective chose to train on, and its state after choosing.
        refill_rounds: collection rounds after the first (the filter asked for more).
        failed_episodes: episodes whose env raised (their groups were dropped).
        recorded: groups taken from recorded episodes (`data.episodes`) rather than played.
    """

    groups: list[TrajectoryGroup]
    selection: Selection
    refill_rounds: int
    failed_episodes: int
    recorded: list[TrajectoryGroup] = field(default_factory=list)

    def metrics(self, seconds: float) -> dict[str, Any]:
        """The rollout's and the selection's metrics (see metrics.py); recorded groups under `recorded/`."""
        sampled = sum(t.num_sampled_tokens for g in self.groups for t in g.trajectories)
        metrics = rollout_metrics(self.groups) if self.groups else {}
        if self.recorded:
            data = rollout_metrics(self.recorded)
            metrics |= {f"recorded/{k}": data[k] for k in ("reward", "success", "invalid_rate")}
        metrics |= {f"filter/{k}": v for k, v in self.selection.metrics.items()}
        collected = len(self.groups) + len(self.recorded)
        return metrics | {
            "groups_collected": float(collected),
            "groups_recorded": float(len(self.recorded)),
            "groups_trained": float(len(self.selection.groups)),
            "kept_fraction": len(self.selection.groups) / max(collected, 1),
            "refill_rounds": float(self.refill_rounds),
            "filter_complete": float(self.selection.complete),
            "failed_episodes": float(self.failed_episodes),
            "time/rollout": seconds,
            "tokens_per_s/rollout": sampled / max(seconds, 1e-9),
        }


def _collect_and_select(run: Run, cursor: SeedCursor, step: int, objective_state: Any) -> Rollout:
    """Collect `groups_per_step` groups; while the objective's filter is incomplete, collect more (bounded).

    Every round's filter starts from the state the last step left (`objective_state`), so a
    refill does not count the first round's groups twice.
    """
    config = run.config
    played: list[TrajectoryGroup] = []
    recorded: list[TrajectoryGroup] = []
    failed = 0
    for round_ in range(config.rollout.max_refill_rounds + 1):
        run.display.phase(f"rollout{f' (refill {round_})' if round_ else ''}")
        new, old = _collect_round(run, cursor, step, round_)
        broken = [g for g in new if any(t.stop_reason == "error" for t in g.trajectories)]
        failed += _report_failures(broken, run.procs)
        played += [g for g in new if g not in broken]
        recorded += old
        selection = config.objective.filter(played + recorded, config.rollout.groups_per_step, objective_state)
        if selection.complete:
            break
    return Rollout(played, selection, round_, failed, recorded)


def _collect_round(
    run: Run, cursor: SeedCursor, step: int, round_: int
) -> tuple[list[TrajectoryGroup], list[TrajectoryGroup]]:
    """One round of `groups_per_step` groups: `live_groups` played live, the rest recorded; (played, recorded).

    The recorded groups are the same on every process (`RecordedData.take` at the cursor's position).
    """
    total, live = run.config.rollout.groups_per_step, run.config.live_groups
    played = _play(run, cursor, step, round_, live) if live else []
    if live == total:
        return played, []
    assert run.data is not None, "the recipe check requires data.episodes when live_groups < groups_per_step"
    return played, run.data.take(total - live, cursor.take_recorded(total - live))


def _play(run: Run, cursor: SeedCursor, step: int, round_: int, count: int) -> list[TrajectoryGroup]:
    """`count` groups played live over the env mixture, all in one rollout; this process plays its share.

    Each group is named by its entry's name (`TrainConfig.env_names`), not the id it was made from,
    so the mixture's metrics read `env/<name>/success` (an env named by file path has no path in its keys).
    """
    config, procs = run.config, run.procs
    rollout = config.rollout
    counts = mixture_counts([env.weight for env in config.envs], count, step_rng(config.run.seed, step, round_))
    seeds = cursor.take(count)
    plan = [(e, seed) for e, count in enumerate(counts) for seed in seeds[sum(counts[:e]) : sum(counts[: e + 1])]]
    entries = list(zip(config.envs, config.env_names, strict=True))
    specs = [
        GroupSpec(entries[e][0].id, seed, entries[e][0].kwargs, entries[e][0].max_turns, entries[e][0].system_prompt,
                  name=entries[e][1])
        for e, seed in (plan[i] for i in procs.share(len(plan)))
    ]  # fmt: skip
    sampling_seed = None
    if config.run.deterministic:
        sampling_seed = int(np.random.default_rng([config.run.seed, step, round_, procs.rank]).integers(2**30))
    sampling = SamplingParams(
        temperature=rollout.temperature_at(step), top_p=rollout.top_p, max_tokens=rollout.max_tokens, seed=sampling_seed
    )
    played = play_groups(
        specs,
        rollout.group_size,
        run.sampler(),
        sampling=sampling,
        max_context_tokens=rollout.max_context_tokens,
        errors="record",
        schedule=rollout.schedule,
        on_progress=lambda line: run.display.phase(f"rollout{f' (refill {round_})' if round_ else ''}: {line}"),
    )  # one engine batch (or stream) for the whole mixture
    return [group for part in procs.gather(played) for group in part]


def _save_episodes(run: Run, step: int, groups: list[TrajectoryGroup]) -> None:
    """`run.save_episodes`: the step's played groups to `<run dir>/episodes/step-NNNNNN.jsonl.gz`.

    Written under a temporary name and renamed, so a reader never sees half a file and a redone
    step replaces its file whole.
    """
    if run.procs.is_main and groups:
        path = episodes_path(run.dir, step)
        path.parent.mkdir(exist_ok=True)
        partial = path.with_name("." + path.name)  # hidden: a glob such as episodes/* does not take it
        partial.unlink(missing_ok=True)
        save_episodes(partial, groups)
        os.replace(partial, path)


def episodes_path(run_dir: Path, step: int) -> Path:
    """Where `run.save_episodes` writes the groups played at `step`."""
    return Path(run_dir) / "episodes" / f"step-{step:06d}.jsonl.gz"


def _report_failures(broken: list[TrajectoryGroup], procs: Processes) -> int:
    """Log each failed episode's traceback (its group is dropped); return how many failed."""
    failed = [(g, t) for g in broken for t in g.trajectories if t.stop_reason == "error"]
    if procs.is_main:
        for group, trajectory in failed:
            LOG.warning(
                "episode failed (env %s, seed %d); its group is dropped:\n%s",
                group.env_id,
                group.seed,
                trajectory.error,
            )
    return len(failed)


# --- advantages ----------------------------------------------------------------------------------


def _advantages(objective: Objective, selection: Selection) -> tuple[StepRows | None, dict[str, Any]]:
    """The selected groups' advantages as token rows (None when nothing was selected), and their metrics."""
    if not selection.groups:
        return None, {}
    advantages = objective.advantages(selection.groups)
    rows = StepRows.of(selection.groups, advantages)
    values = rows.advantages[rows.trainable]  # (n,) or (n, K): the trainable rows
    metrics: dict[str, Any] = {f"adv/{k}": v for k, v in advantages.metrics.items()}
    return rows, metrics | {
        "advantage_std": float(values.std()) if values.numel() > 1 else 0.0,
        "advantage_nonzero": float((values != 0).float().mean()) if values.numel() else 0.0,
    }


def _every(interval: int, step: int) -> bool:
    """Whether `step` is on a schedule of every `interval` steps (0 = never)."""
    return bool(interval) and step % interval == 0


# --- set-up --------------------------------------------------------------------------------------


def _start(config: TrainConfig, procs: Processes, run_dir: RunDir, generator: Any) -> tuple[Run, TrainState]:
    """Seeds, learner, generator, log and evaluation suite; the state to continue from (a resume's)."""
    _seed_everything(config, procs)
    if procs.device.type == "cpu":
        keep_freed_memory()  # reuse freed activation memory instead of page-faulting it in every micro-batch
    display = Display(config.run.steps, procs.is_main, config.run.progress)
    display.print(f"[bold]turngym train[/bold] {config.name} -> {run_dir.path} (the whole recipe: recipe.yaml there)")
    display.print(f"[dim]not default: {escape(' '.join(recipe_changes(config)) or 'nothing')}[/dim]")
    learner, tokenizer, state = _build_learner(config, run_dir.checkpoint, procs)
    data = _load_data(config, procs, state, display, tokenizer) if config.data.episodes else None
    if generator is None and (config.live_groups > 0 or config.evaluates):  # at start: it may not fit later (CUDA)
        generator = _build_generator(config, procs)
    for line in run_dir.skipped:
        display.print(f"[yellow]{escape(line)}[/yellow]")
    if run_dir.checkpoint is not None:
        display.print(f"resumed from {run_dir.checkpoint} (step {state.step})")
        if procs.is_main:  # episodes saved after the checkpoint are played again
            for path in (run_dir.path / "episodes").glob("step-*.jsonl.gz"):
                if int(path.name.removeprefix("step-")[:6]) > state.step:
                    path.unlink()
    log = MetricsLog(run_dir.path, config.run.tensorboard, procs.is_main)
    log.truncate_after(state.step)
    suite = training_suite(config)
    run = Run(config, procs, run_dir.path, learner, tokenizer, generator, suite, log, display, data)
    run.stale = run_dir.checkpoint is not None  # sample from the resumed weights
    return run, state


def _load_data(
    config: TrainConfig, procs: Processes, state: TrainState, display: Display, tokenizer: Any
) -> RecordedData:
    """The recorded episodes, the same on every process; a resumed run is told if they changed since it started."""
    data = load_recorded(config, tokenizer)
    digests = procs.gather(data.digest())
    if len(set(digests)) > 1:  # e.g. a glob over a run that was still writing when the processes read it
        raise RuntimeError(f"the processes read different recorded episodes ({data.summary()} here); rerun")
    display.print(escape(data.summary()))
    if state.data_digest not in ("", data.digest()):
        display.print(
            "[yellow]the recorded episodes changed since this run started (files added or rewritten): the run "
            f"continues at position {state.data_position} of the new data[/yellow]"
        )
    state.data_digest = data.digest()
    return data


def _seed_everything(config: TrainConfig, procs: Processes) -> None:
    seed = config.run.seed + procs.rank
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if config.run.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def _build_learner(config: TrainConfig, checkpoint: Path | None, procs: Processes) -> tuple[Learner, Any, TrainState]:
    """The fp32 model (from the checkpoint when resuming), AdamW, schedule and reference model."""
    objective = config.objective
    model, tokenizer = _build_model(config, checkpoint, procs)
    model.train()
    if config.model.gradient_checkpointing:  # recompute activations in the backward pass; keep none of them
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    share_prefix = config.optimizer.share_prefix
    scorer = procs.prepare(TokenScorer(model, share_prefix=share_prefix))
    optimizer, scheduler = make_optimizer(model, config.optimizer, config.run.steps)
    reference = None
    if objective.needs_ref_logps and lora.is_adapted(model):  # the KL anchor: the base model, adapter off
        reference = lora.WithoutAdapter(TokenScorer(model, share_prefix=share_prefix))
    elif objective.needs_ref_logps:  # the KL anchor is the initial policy, also when resuming
        ref_model, _ = load_model(resolve_model(config.model.name), procs.device)
        reference = TokenScorer(ref_model.eval().requires_grad_(False), share_prefix=share_prefix)
    state = TrainState(step=0, next_seed=config.run.seed_start, objective=objective.initial_state())
    if checkpoint is not None:
        saved = ckpt.load_trainer_state(checkpoint)
        optimizer.load_state_dict(saved["optimizer"])  # with its saved settings: a run begun unfused stays so
        scheduler.load_state_dict(saved["scheduler"])
        ckpt.set_rng_state(saved["rng"][min(procs.rank, len(saved["rng"]) - 1)])
        objective_state = ckpt.load_objective_state(objective, saved.get("objective"))
        position, digest = saved.get("data_position", 0), saved.get("data_digest", "")
        state = TrainState(saved["step"], saved["next_seed"], objective_state, position, digest)
    autocast = resolve_autocast(config.model.autocast, procs.device.type)
    learner = Learner(scorer, model, optimizer, scheduler, reference, autocast, config.rollout.temperature)
    return learner, tokenizer, state


def _build_model(config: TrainConfig, checkpoint: Path | None, procs: Processes) -> tuple[torch.nn.Module, Any]:
    """The model to train: `model.name`'s (or the checkpoint's) weights, with `model.lora`'s adapter, new or resumed."""
    settings = config.model.lora
    if settings is None:
        source = str(checkpoint) if checkpoint is not None else resolve_model(config.model.name)
        return load_model(source, procs.device)
    model, tokenizer = load_model(resolve_model(config.model.name), procs.device)
    if checkpoint is not None:
        return lora.load_adapter(model, checkpoint), tokenizer
    adapted = lora.add_adapter(model, settings.r, settings.alpha, settings.dropout, tuple(settings.target_modules))
    return adapted, tokenizer


def _build_generator(config: TrainConfig, procs: Processes) -> Any:
    """This process's vLLM engine, in the dtype the hardware computes fastest."""
    from turngym.agent.vllm_generator import VLLMGenerator

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    return VLLMGenerator(
        config.model.name,
        dtype=config.model.sampler_dtype,
        max_model_len=config.model.max_model_len,
        kv_cache_gib=kv_cache_gib(config, procs.world_size),
        seed=config.run.seed + procs.rank,
        **procs.engine_kwargs(),
    )


AUTO_KV_CACHE_MAX_GIB = 2.0  # `model.kv_cache_gib: auto` never reserves more (the fixed size it replaced)
KV_BLOCK_TOKENS = (
    128  # vLLM gives a sequence whole KV blocks (32 tokens on CPU here, 16 by default on CUDA; 128 at most)
)


def _whole_blocks(tokens: int) -> int:
    """`tokens` rounded up to whole KV blocks of the largest size vLLM uses."""
    return -(-tokens // KV_BLOCK_TOKENS) * KV_BLOCK_TOKENS


def kv_cache_gib(config: TrainConfig, processes: int = 1) -> float:
    """`model.kv_cache_gib`, with `auto` sized from the workload: one step's episodes at full context, at once.

    A process plays `groups_per_step x group_size / processes` episodes per turn, each holding at
    most `rollout.max_context_tokens` (default `model.max_model_len`) tokens, rounded up to whole
    blocks; at least one `max_model_len` sequence must fit, and the result is capped at
    `AUTO_KV_CACHE_MAX_GIB`. The demo at `max_model_len` 256 (64 episodes, SmolLM2-135M in float32):
    64 x 256 x 46,080 B = 0.70 GiB.
    """
    from turngym.agent.vllm_generator import kv_cache_bytes_per_token

    model, rollout = config.model, config.rollout
    if model.kv_cache_gib != "auto":
        return float(model.kv_cache_gib)
    episodes = math.ceil(rollout.groups_per_step * rollout.group_size / processes)
    context = _whole_blocks(rollout.max_context_tokens or model.max_model_len)
    tokens = max(episodes * context, _whole_blocks(model.max_model_len))
    per_token = kv_cache_bytes_per_token(model.name, model.sampler_dtype)
    return min(tokens * per_token / 2**30, AUTO_KV_CACHE_MAX_GIB)


def _save(run: Run, state: TrainState) -> None:
    """A checkpoint of the last completed step (written by the main process)."""
    learner, procs = run.learner, run.procs
    trainer_state = {
        "step": state.step,
        "next_seed": state.next_seed,
        "data_position": state.data_position,
        "data_digest": state.data_digest,
        "optimizer": learner.optimizer.state_dict(),
        "scheduler": learner.scheduler.state_dict(),
        "rng": procs.gather(ckpt.rng_state()),
        "objective": ckpt.save_objective_state(state.objective),
    }
    digests = procs.gather(ckpt.parameter_digest(learner.model))
    if len(set(digests)) > 1:  # DDP keeps replicas equal; if they drift, say so rather than save one of them
        raise RuntimeError(f"the processes' weights differ at step {state.step} (digests {digests})")
    if procs.is_main:
        ckpt.save_checkpoint(
            run.dir, state.step, learner.model, run.tokenizer, trainer_state, run.config.run.keep_checkpoints, digests
        )
    procs.barrier()


# --- evaluation and the summary ------------------------------------------------------------------


def _evaluate(run: Run, step: int) -> list[EnvStats]:
    """Held-out evaluation of the current weights on the run's suite; logged to eval.jsonl and the metrics."""
    start = time.perf_counter()
    episodes_path = eval_episodes_path(run.dir, step)
    if run.procs.is_main:  # the main process writes it; an evaluation cut short by a crash is redone whole
        episodes_path.unlink(missing_ok=True)
    if run.config.eval.suite is not None:
        run.display.phase(f"evaluating suite {run.suite.name}")
    else:
        run.display.phase(f"evaluating ({run.config.eval.episodes} episodes per env)")
    results = evaluate_suite(run.sampler(), run.suite, run.procs, episodes_path)
    _log_evaluation(run, step, results, time.perf_counter() - start)
    return results


def _log_evaluation(run: Run, step: int, results: list[EnvStats], seconds: float) -> None:
    """Write an evaluation to eval.jsonl and the metrics (`eval/<env>/<stat>`), and print one line per env."""
    if run.procs.is_main:
        with open(run.dir / "eval.jsonl", "a", encoding="utf-8") as out:
            out.write(json.dumps({"step": step, "seconds": seconds, "envs": [r.to_dict() for r in results]}) + "\n")
    metrics = {
        f"eval/{r.env}/{k}": getattr(r, k)
        for r in results
        for k in ("success", "low", "high", "reward", "invalid_rate")
    }
    metrics |= {f"eval/{r.env}/pass@{k}": v for r in results for k, v in r.pass_at.items()}
    run.log.write(step, metrics | {"time/eval": seconds})
    for r in results:
        run.display.print(
            f"eval at step {step}: {r.env} success {r.summary()}, invalid turns {r.invalid_rate:.0%} [{seconds:.0f}s]"
        )


def eval_episodes_path(run_dir: Path, step: int) -> Path:
    """Where the held-out episodes of the evaluation at `step` are saved."""
    return Path(run_dir) / "eval" / f"step-{step:06d}.jsonl"


def _read_evals(run_dir: Path) -> dict[int, list[EnvStats]]:
    """The evaluations a resumed run already made (a record this version cannot read is made again)."""
    path = run_dir / "eval.jsonl"
    if not path.is_file():
        return {}
    evals = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            with contextlib.suppress(KeyError, TypeError):
                evals[record["step"]] = [EnvStats.from_dict(r) for r in record["envs"]]
    return evals


def _logged(err: Exception, run_dir: Path) -> Exception:
    """Keep a fatal error's traceback in train.log, and say where it is (`err.train_log`) for a one-line report."""
    LOG.exception("the run stopped with an error")
    err.train_log = run_dir / "train.log"  # type: ignore[attr-defined]
    return err


def _plot(run_dir: Path) -> list[Path]:
    """Learning-curve PNGs into `<run dir>/plots` (a plotting problem never fails the run)."""
    from turngym.trainer.plot import plot_runs

    try:
        return plot_runs([run_dir])
    except Exception:  # noqa: BLE001
        LOG.warning("could not plot the run", exc_info=True)
        return []


def _summarise(result: TrainResult, display: Display) -> None:
    display.print(
        f"trained to step {result.step} in {result.train_seconds / 60:.1f} min of training steps; "
        f"peak memory {result.peak_memory_gib:.1f} GiB; run: {result.run_dir}"
    )
    if 0 in result.evals and result.step in result.evals and result.step != 0:
        _show_example(result.run_dir, result.step, display)
        for before, after in zip(result.evals[0], result.evals[result.step], strict=True):
            display.print(f"[bold]{before.env}[/bold] success before {before.summary()} -> after {after.summary()}")
    if result.plots:
        display.print(f"plots: {result.plots[0].parent}/ ({', '.join(p.name for p in result.plots)})")


def _show_example(run_dir: Path, step: int, display: Display) -> None:
    """The first held-out episode, played before training and after: what the numbers mean."""
    paths = [eval_episodes_path(run_dir, 0), eval_episodes_path(run_dir, step)]
    if not all(p.is_file() for p in paths):
        return
    before, after = (load_episodes(p)[0] for p in paths)
    display.print(f"held-out episode {before.env_id} seed {before.seed}, before and after training:")
    for when, group in (("before", before), ("after", after)):
        trajectory = group.trajectories[0]  # suites may play several episodes per seed
        display.print(f"  [bold]{when}[/bold]: {'won' if success(trajectory) else 'not won'}")
        for line in transcript(trajectory):
            display.print(f"    [dim]{escape(line)}[/dim]")


class Interrupts:
    """Ctrl-C handling for the loop.

    During a rollout Ctrl-C stops at once (nothing has changed yet); during an update and weight
    sync it waits for them to finish, so the saved checkpoint and the sampler agree.
    """

    def __init__(self, enabled: bool, display: Display) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.display = display
        self.requested = False
        self._deferring = False
        self._previous: Any = None

    def __enter__(self) -> Interrupts:
        if self.enabled:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: Any) -> None:
        if not self._deferring:
            raise KeyboardInterrupt
        self.requested = True
        self.display.print("[yellow]Ctrl-C: finishing this update, then saving a checkpoint[/yellow]")

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold Ctrl-C until the block ends."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
