"""The training loop: rollout -> filter -> advantages -> update -> weight sync -> metrics, every step.

`train(config)` reads top to bottom:

    set-up        run directory, model + AdamW (+ reference model when kl_coef > 0), vLLM engine,
                  and, when resuming, the checkpoint's weights, optimiser, RNG and seed cursor
    every step    collect_and_select   groups on every env of the mixture; the objective's filter,
                                       collecting more groups while it says the batch is incomplete
                  objective.advantages + StepRows (collate.py)
                  update               micro-batches, step-global totals, clip, AdamW (update.py)
                  generator.load_weights   the sampler gets the new weights
                  metrics, evaluation, checkpoint
    the end       a final checkpoint and evaluation; success before/after

Nothing here knows which objective runs: objectives declare what they need (`uses_ratio`,
`needs_ref_logps`, `needs_whole_groups`, `accepts_is_weights`) and the loop reads those flags.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
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
from turngym.agent.records import TrajectoryGroup, load_episodes
from turngym.agent.rollout import collect_groups
from turngym.algos import Objective, Selection
from turngym.trainer import checkpoint as ckpt
from turngym.trainer.collate import StepRows
from turngym.trainer.config import TrainConfig, check_envs, recipe_changes
from turngym.trainer.display import Display
from turngym.trainer.distributed import Processes
from turngym.trainer.heldout import EnvEval, evaluate_envs, evaluate_suite, transcript
from turngym.trainer.metrics import MetricsLog, rollout_metrics, success
from turngym.trainer.policy import TokenScorer, load_model, resolve_autocast
from turngym.trainer.run import LOG, RunDir, open_run
from turngym.trainer.seeds import SeedCursor, mixture_counts, step_rng
from turngym.trainer.update import Learner, advance_schedule, make_optimizer, update


@dataclass
class TrainState:
    """What a checkpoint restores besides weights and optimiser: the last step and the seed cursor."""

    step: int = 0
    next_seed: int = 0


@dataclass
class TrainResult:
    """What `train` returns.

    Attributes:
        run_dir: the run directory.
        step: the last completed step.
        interrupted: stopped by Ctrl-C (a checkpoint of `step` was saved).
        evals: held-out evaluations by step (0 = before training).
        train_seconds: wall time of the training steps (rollout, update, sync, logging), without
            set-up and evaluations.
        peak_memory_gib: the process's peak resident memory.
        plots: the learning-curve PNGs written into `<run dir>/plots`.
    """

    run_dir: Path
    step: int
    interrupted: bool = False
    evals: dict[int, list[EnvEval]] = field(default_factory=dict)
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
    run = open_run(config, procs)
    _seed_everything(config, procs)
    if procs.device.type == "cpu":
        keep_freed_memory()  # reuse freed activation memory instead of page-faulting it in every micro-batch
    display = Display(config.run.steps, procs.is_main, config.run.progress)
    display.print(f"[bold]turngym train[/bold] {config.name} -> {run.path} (the whole recipe: recipe.yaml there)")
    display.print(f"[dim]not default: {escape(' '.join(recipe_changes(config)) or 'nothing')}[/dim]")
    objective = config.objective.build()
    learner, tokenizer, state = _build_learner(config, objective, run, procs)
    generator = generator or _build_generator(config, procs)
    if run.checkpoint is not None:
        generator.load_weights(learner.model.named_parameters())  # sample from the resumed weights
        display.print(f"resumed from {run.checkpoint} (step {state.step})")
    log = MetricsLog(run.path, config.run.tensorboard, procs.is_main)
    log.truncate_after(state.step)
    result = TrainResult(run.path, state.step, evals=_read_evals(run.path))
    display.begin(state.step)
    try:
        if (config.eval.at_start or config.eval.suite) and 0 not in result.evals:
            result.evals[0] = _evaluate(config, generator, procs, run.path, 0, log, display)
        _run_steps(config, objective, learner, tokenizer, generator, state, procs, run, log, display, result)
        if config.eval.at_end and state.step not in result.evals and not result.interrupted:
            result.evals[state.step] = _evaluate(config, generator, procs, run.path, state.step, log, display)
    finally:
        display.close()
        log.close()
    result.step = state.step
    result.peak_memory_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if procs.is_main:
        result.plots = _plot(run.path)
    _summarise(result, display)
    return result


def _plot(run_dir: Path) -> list[Path]:
    """Learning-curve PNGs into `<run dir>/plots` (a plotting problem never fails the run)."""
    from turngym.trainer.plot import plot_runs

    try:
        return plot_runs([run_dir])
    except Exception:  # noqa: BLE001
        LOG.warning("could not plot the run", exc_info=True)
        return []


def _run_steps(config, objective, learner, tokenizer, generator, state, procs, run, log, display, result) -> None:  # noqa: PLR0913
    """Steps `state.step + 1 .. run.steps`, checkpointing on schedule, at the end and on Ctrl-C."""
    saved = state.step
    snapshot = ckpt.objective_state(objective)
    with Interrupts(enabled=not procs.distributed, display=display) as interrupts:
        try:
            for step in range(state.step + 1, config.run.steps + 1):
                start = time.perf_counter()
                snapshot = ckpt.objective_state(objective)
                metrics = _train_step(config, objective, learner, generator, state, procs, step, interrupts, display)
                metrics["time/step"] = time.perf_counter() - start
                result.train_seconds += metrics["time/step"]
                log.write(step, metrics)
                display.step(step, metrics)
                if config.eval.every and step % config.eval.every == 0 and step != config.run.steps:
                    result.evals[step] = _evaluate(config, generator, procs, run.path, step, log, display)
                if step == config.run.steps or (
                    config.run.checkpoint_every and step % config.run.checkpoint_every == 0
                ):
                    _save(config, objective, learner, tokenizer, state, procs, run.path)
                    saved = step
                if interrupts.requested:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            ckpt.load_objective_state(objective, snapshot)  # a half-collected step leaves no trace
            if state.step > saved:
                _save(config, objective, learner, tokenizer, state, procs, run.path)
            display.print(
                f"[yellow]interrupted after step {state.step}; checkpoint saved. Continue with --resume.[/yellow]"
            )
            result.interrupted = True


def _train_step(config, objective, learner, generator, state, procs, step, interrupts, display) -> dict[str, Any]:  # noqa: PLR0913
    """One step: collect and select groups, advantages, update, weight sync. Returns its metrics."""
    # ROLLOUT: groups on every env of the mixture, filtered by the objective, refilled while incomplete
    start = time.perf_counter()
    cursor = SeedCursor(state.next_seed)
    _, selection, metrics = _collect_and_select(config, objective, generator, procs, cursor, step, display)
    metrics["time/rollout"] = time.perf_counter() - start
    sampled = metrics.pop("sampled_tokens_total")
    metrics["tokens_per_s/rollout"] = sampled / max(metrics["time/rollout"], 1e-9)
    # UPDATE and SYNC, together: a Ctrl-C now waits until the weights and the sampler agree again
    with interrupts.deferred():
        start = time.perf_counter()
        display.phase("update")
        metrics |= _learn(config, objective, learner, selection, procs)
        metrics["time/update"] = time.perf_counter() - start
        start = time.perf_counter()
        if not metrics["skipped_update"]:
            display.phase("weight sync")
            generator.load_weights(learner.model.named_parameters())
        metrics["time/sync"] = time.perf_counter() - start
        state.step, state.next_seed = step, cursor.next_seed
    if metrics.get("tokens_trained"):  # none when the update was skipped
        metrics["tokens_per_s/update"] = metrics["tokens_trained"] / max(metrics["time/update"], 1e-9)
    return metrics


def _collect_and_select(
    config, objective, generator, procs, cursor, step, display
) -> tuple[list[TrajectoryGroup], Selection, dict[str, Any]]:  # noqa: PLR0913
    """Collect `groups_per_step` groups; while the objective's filter is incomplete, collect more (bounded)."""
    collected: list[TrajectoryGroup] = []
    failed = 0
    for round_ in range(config.rollout.max_refill_rounds + 1):
        display.phase(f"rollout{f' (refill {round_})' if round_ else ''}")
        new = _collect_round(config, generator, procs, cursor, step, round_)
        broken = [g for g in new if any(t.stop_reason == "error" for t in g.trajectories)]
        failed += _report_failures(broken, procs)
        collected += [g for g in new if g not in broken]
        selection = objective.filter(collected, config.rollout.groups_per_step)
        if selection.complete:
            break
    metrics = rollout_metrics(collected)
    metrics |= {f"filter/{k}": v for k, v in selection.metrics.items()}
    metrics |= {
        "groups_collected": float(len(collected)),
        "groups_trained": float(len(selection.groups)),
        "kept_fraction": len(selection.groups) / max(len(collected), 1),
        "refill_rounds": float(round_),
        "filter_complete": float(selection.complete),
        "failed_episodes": float(failed),
        "sampled_tokens_total": float(sum(t.num_sampled_tokens for g in collected for t in g.trajectories)),
    }
    return collected, selection, metrics


def _collect_round(config, generator, procs, cursor, step, round_) -> list[TrajectoryGroup]:  # noqa: PLR0913
    """One round of `groups_per_step` groups over the env mixture; this process plays its share."""
    rollout = config.rollout
    counts = mixture_counts(
        [env.weight for env in config.envs], rollout.groups_per_step, step_rng(config.run.seed, step, round_)
    )
    seeds = cursor.take(rollout.groups_per_step)
    plan = [(e, seed) for e, count in enumerate(counts) for seed in seeds[sum(counts[:e]) : sum(counts[: e + 1])]]
    mine = [plan[i] for i in procs.share(len(plan))]
    groups: list[TrajectoryGroup] = []
    for e, env in enumerate(config.envs):
        env_seeds = [seed for index, seed in mine if index == e]
        if not env_seeds:
            continue
        sampling_seed = None
        if config.run.deterministic:
            sampling_seed = int(np.random.default_rng([config.run.seed, step, round_, e, procs.rank]).integers(2**30))
        sampling = SamplingParams(
            temperature=rollout.temperature, top_p=rollout.top_p, max_tokens=rollout.max_tokens, seed=sampling_seed
        )
        groups += collect_groups(
            env.id,
            env_seeds,
            rollout.group_size,
            generator,
            max_turns=env.max_turns,
            sampling=sampling,
            max_context_tokens=rollout.max_context_tokens,
            env_kwargs=env.kwargs,
            system_prompt=env.system_prompt,
            progress=False,
            errors="record",
        )
    return [group for part in procs.gather(groups) for group in part]


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


def _learn(
    config: TrainConfig, objective: Objective, learner: Learner, selection: Selection, procs: Processes
) -> dict[str, Any]:
    """Advantages of the selected groups, then the update (skipped when there is nothing to learn)."""
    if not selection.groups:
        advance_schedule(learner)
        return {"skipped_update": 1.0, "skip_reason": "no usable groups this step"}
    advantages = objective.advantages(selection.groups)
    rows = StepRows.of(selection.groups, advantages)
    values = rows.advantages[rows.trainable]
    metrics: dict[str, Any] = {f"adv/{k}": v for k, v in advantages.metrics.items()}
    metrics |= {
        "advantage_std": float(values.std()) if values.numel() > 1 else 0.0,
        "advantage_nonzero": float((values != 0).float().mean()) if values.numel() else 0.0,
    }
    if not bool(values.any()) and not objective.needs_ref_logps:
        advance_schedule(learner)
        LOG.info("update skipped: every advantage is 0")
        return metrics | {"skipped_update": 1.0, "skip_reason": "no learning signal (every advantage is 0)"}
    metrics |= update(learner, objective, rows, config.optimizer, config.correction, procs)
    if metrics.get("skip_reason"):
        LOG.warning("update skipped: %s", metrics["skip_reason"])
    return metrics


# --- set-up ------------------------------------------------------------------------------------


def _seed_everything(config: TrainConfig, procs: Processes) -> None:
    seed = config.run.seed + procs.rank
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if config.run.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def _build_learner(
    config: TrainConfig, objective: Objective, run: RunDir, procs: Processes
) -> tuple[Learner, Any, TrainState]:
    """The fp32 model (from the checkpoint when resuming), AdamW, schedule and reference model."""
    source = str(run.checkpoint) if run.checkpoint is not None else resolve_model(config.model.name)
    model, tokenizer = load_model(source, procs.device)
    model.train()
    scorer = procs.prepare(TokenScorer(model, share_prefix=config.optimizer.share_prefix))
    optimizer, scheduler = make_optimizer(model, config.optimizer, config.run.steps)
    reference = None
    if objective.needs_ref_logps:  # the KL anchor is the initial policy, also when resuming
        ref_model, _ = load_model(resolve_model(config.model.name), procs.device)
        reference = TokenScorer(ref_model.eval().requires_grad_(False), share_prefix=config.optimizer.share_prefix)
    state = TrainState(step=0, next_seed=config.run.seed_start)
    if run.checkpoint is not None:
        saved = ckpt.load_trainer_state(run.checkpoint)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        ckpt.set_rng_state(saved["rng"][min(procs.rank, len(saved["rng"]) - 1)])
        ckpt.load_objective_state(objective, saved["objective"])
        state = TrainState(step=saved["step"], next_seed=saved["next_seed"])
    autocast = resolve_autocast(config.model.autocast, procs.device.type)
    learner = Learner(scorer, model, optimizer, scheduler, reference, autocast, config.rollout.temperature)
    return learner, tokenizer, state


def _build_generator(config: TrainConfig, procs: Processes) -> Any:
    """This process's vLLM engine, in the dtype the hardware computes fastest."""
    from turngym.agent.vllm_generator import VLLMGenerator

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    return VLLMGenerator(
        config.model.name,
        dtype=config.model.sampler_dtype,
        max_model_len=config.model.max_model_len,
        kv_cache_gib=config.model.kv_cache_gib,
        seed=config.run.seed + procs.rank,
        **procs.engine_kwargs(),
    )


def _save(config, objective, learner, tokenizer, state, procs, run_dir) -> None:  # noqa: PLR0913
    """A checkpoint of the last completed step (written by the main process)."""
    trainer_state = {
        "step": state.step,
        "next_seed": state.next_seed,
        "optimizer": learner.optimizer.state_dict(),
        "scheduler": learner.scheduler.state_dict(),
        "rng": procs.gather(ckpt.rng_state()),
        "objective": ckpt.objective_state(objective),
    }
    digests = procs.gather(ckpt.parameter_digest(learner.model))
    if len(set(digests)) > 1:  # DDP keeps replicas equal; if they drift, say so rather than save one of them
        raise RuntimeError(f"the processes' weights differ at step {state.step} (digests {digests})")
    if procs.is_main:
        ckpt.save_checkpoint(
            run_dir, state.step, learner.model, tokenizer, trainer_state, config.run.keep_checkpoints, digests
        )
    procs.barrier()


# --- evaluation and the summary ----------------------------------------------------------------


def _evaluate(config, generator, procs, run_dir, step, log, display) -> list[EnvEval]:  # noqa: PLR0913
    """Held-out evaluation (the recipe's envs, or `eval.suite`) with the current weights; logged to eval.jsonl."""
    start = time.perf_counter()
    episodes_path = eval_episodes_path(run_dir, step)
    if procs.is_main:  # the main process writes it; an evaluation cut short by a crash is redone whole
        episodes_path.unlink(missing_ok=True)
    if config.eval.suite is not None:
        from turngym.trainer.suite import load_suite

        suite = load_suite(config.eval.suite, check_envs=False)  # checked with the recipe
        display.phase(f"evaluating suite {suite.name}")
        results = evaluate_suite(generator, suite, procs, episodes_path)
    else:
        display.phase(f"evaluating ({config.eval.episodes} episodes per env)")
        temperature = config.eval.temperature if config.eval.temperature is not None else config.rollout.temperature
        sampling = SamplingParams(
            temperature=temperature,
            top_p=config.rollout.top_p,
            max_tokens=config.rollout.max_tokens,
            seed=config.run.seed,
        )
        results = evaluate_envs(
            generator,
            config.envs,
            config.eval.episodes,
            sampling,
            config.rollout.max_context_tokens,
            procs,
            episodes_path,
        )
    return _log_evaluation(results, run_dir, step, time.perf_counter() - start, procs, log, display)


def _log_evaluation(results, run_dir, step, seconds, procs, log, display) -> list[EnvEval]:  # noqa: PLR0913
    """Write an evaluation to eval.jsonl and the metrics, and print one line per env."""
    if procs.is_main:
        with open(run_dir / "eval.jsonl", "a", encoding="utf-8") as out:
            out.write(json.dumps({"step": step, "seconds": seconds, "envs": [r.to_dict() for r in results]}) + "\n")
    metrics = {
        f"eval/{r.env_id}/{k}": getattr(r, k)
        for r in results
        for k in ("success", "low", "high", "reward", "invalid_rate")
    }
    metrics |= {f"eval/{r.env_id}/pass@{k}": v for r in results for k, v in r.pass_at.items()}
    log.write(step, metrics | {"time/eval": seconds})
    for r in results:
        display.print(
            f"eval at step {step}: {r.env_id} success {r.summary()}, "
            f"invalid turns {r.invalid_rate:.0%} [{seconds:.0f}s]"
        )
    return results


def eval_episodes_path(run_dir: Path, step: int) -> Path:
    """Where the held-out episodes of the evaluation at `step` are saved."""
    return Path(run_dir) / "eval" / f"step-{step:06d}.jsonl"


def _read_evals(run_dir: Path) -> dict[int, list[EnvEval]]:
    path = run_dir / "eval.jsonl"
    if not path.is_file():
        return {}
    evals = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            evals[record["step"]] = [
                EnvEval(**{**r, "pass_at": {int(k): v for k, v in r.get("pass_at", {}).items()}})
                for r in record["envs"]
            ]
    return evals


def _summarise(result: TrainResult, display: Display) -> None:
    display.print(
        f"trained to step {result.step} in {result.train_seconds / 60:.1f} min of training steps; "
        f"peak memory {result.peak_memory_gib:.1f} GiB; run: {result.run_dir}"
    )
    if 0 in result.evals and result.step in result.evals and result.step != 0:
        _show_example(result.run_dir, result.step, display)
        for before, after in zip(result.evals[0], result.evals[result.step], strict=True):
            display.print(f"[bold]{before.env_id}[/bold] success before {before.summary()} -> after {after.summary()}")
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
