"""Held-out evaluation during training: an evaluation suite played with the training generator's weights.

There is one evaluation path, `turngym eval`'s: a suite (`turngym.trainer.suite`) is played by
`eval_run.play` and scored by `report.env_stats` into one `EnvStats` per env. A recipe's
`eval.suite` names a suite file; without one, `training_suite` turns `eval.episodes` into the
built-in suite: every env of the recipe under its name (`TrainConfig.env_names`), one episode on
each of `eval.episodes` held-out seeds (`seeds.eval_seeds`, which training never draws), sampled
like the rollouts (`eval.temperature` if set). The seeds are the same at every evaluation, so the
numbers before and after training are measured on the same games.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from turngym.agent.records import Trajectory, save_episodes
from turngym.trainer.config import TrainConfig
from turngym.trainer.distributed import Processes
from turngym.trainer.eval_run import play
from turngym.trainer.report import EnvStats, env_stats
from turngym.trainer.suite import SuiteConfig, SuiteEnv, SuiteSampling, load_suite


def training_suite(config: TrainConfig) -> SuiteConfig:
    """The suite a recipe evaluates on: `eval.suite`, or the built-in one made from `eval.episodes` (see above)."""
    if config.eval.suite is not None:
        return load_suite(config.eval.suite, check_envs=False)  # checked with the recipe
    envs = [
        SuiteEnv(id=env.id, kwargs=env.kwargs, name=name, max_turns=env.max_turns, system_prompt=env.system_prompt)
        for env, name in zip(config.envs, config.env_names, strict=True)  # metrics: eval/<name>/success
    ]
    temperature = config.eval.temperature if config.eval.temperature is not None else config.rollout.temperature
    sampling = SuiteSampling(
        temperature=temperature, top_p=config.rollout.top_p, max_tokens=config.rollout.max_tokens, seed=config.run.seed
    )
    return SuiteConfig(
        envs=envs,
        name=config.name,
        num_seeds=config.eval.episodes,
        episodes_per_seed=1,
        pass_k=[],  # one episode per seed: pass@1 would repeat the success rate
        max_context_tokens=config.rollout.max_context_tokens,
        sampling=sampling,
    )


def evaluate_suite(
    generator: Any, suite: SuiteConfig, procs: Processes, episodes_path: Path | None = None
) -> list[EnvStats]:
    """Play `suite` with `generator`, its seeds shared over processes; one `EnvStats` per env, named by its label.

    Args:
        generator: the policy's sampler.
        suite: what to play.
        procs: the run's processes (each plays its share of every env's seeds).
        episodes_path: also write every episode there (JSONL, `turngym.agent.load_episodes` reads it).
    """
    results = []
    for env in suite.envs:
        seeds = suite.seeds_of(env)
        groups = play(generator, suite, env, [seeds[i] for i in procs.share(len(seeds))])
        gathered = sorted((g for part in procs.gather(groups) for g in part), key=lambda g: g.seed)
        if episodes_path is not None and procs.is_main:
            episodes_path.parent.mkdir(parents=True, exist_ok=True)
            save_episodes(episodes_path, gathered)
        results.append(env_stats("policy", env.label, gathered, suite.ks_of(env)))
    return results


def transcript(trajectory: Trajectory, width: int = 100) -> list[str]:
    """An episode as short lines: `> action` and `< feedback`, one line each, cut at `width` characters."""

    def line(mark: str, text: str) -> str:
        flat = " ".join(text.split())
        return f"{mark} {flat if len(flat) <= width else flat[: width - 3] + '...'}"

    return [part for turn in trajectory.turns for part in (line(">", turn.action), line("<", turn.feedback))]
