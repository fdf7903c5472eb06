"""Held-out evaluation during training: success with a Wilson 95% interval on seeds training never draws.

Each env of the recipe is played for `eval.episodes` episodes, one per held-out seed
(`seeds.eval_seeds`), with the training generator's current weights. The seeds are the same at
every evaluation, so the numbers before and after training are measured on the same games.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from turngym.agent.generator import SamplingParams
from turngym.agent.records import Trajectory, save_episodes
from turngym.agent.rollout import collect_groups
from turngym.trainer.config import EnvConfig
from turngym.trainer.distributed import Processes
from turngym.trainer.metrics import success
from turngym.trainer.seeds import eval_seeds
from turngym.trainer.stats import wilson_interval


@dataclass
class EnvEval:
    """One env's evaluation.

    Attributes:
        env_id: the env.
        episodes: finished episodes (failed ones excluded).
        successes: episodes won.
        success: `successes / episodes`.
        low, high: the Wilson 95% interval of `success`.
        reward: mean total reward.
        invalid_rate: share of turns the env marked invalid.
        turns: mean turns per episode.
        failed: episodes whose env raised.
        pass_at: k -> pass@k (suites with several episodes per seed).
    """

    env_id: str
    episodes: int
    successes: int
    success: float
    low: float
    high: float
    reward: float
    invalid_rate: float
    turns: float
    failed: int
    pass_at: dict[int, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    def summary(self) -> str:
        """`37.5% (48/128, 95% CI 29.6-46.1%)`."""
        return f"{self.success:.1%} ({self.successes}/{self.episodes}, 95% CI {self.low:.1%}-{self.high:.1%})"


def evaluate_envs(
    generator: Any,
    envs: list[EnvConfig],
    episodes: int,
    sampling: SamplingParams,
    max_context_tokens: int | None,
    procs: Processes,
    episodes_path: Path | None = None,
) -> list[EnvEval]:
    """Play `episodes` held-out episodes per env (shared over processes) and score them.

    Args:
        generator: the policy's sampler.
        envs: the envs to evaluate (the recipe's).
        episodes: episodes per env, one per held-out seed.
        sampling: sampling settings.
        max_context_tokens: token budget of an episode.
        procs: the run's processes.
        episodes_path: also write every episode there (JSONL, `turngym.agent.load_episodes` reads it).
    """
    results = []
    for env in envs:
        seeds = eval_seeds(episodes)
        mine = [seeds[i] for i in procs.share(len(seeds))]
        groups = collect_groups(
            env.id,
            mine,
            1,
            generator,
            max_turns=env.max_turns,
            sampling=sampling,
            max_context_tokens=max_context_tokens,
            env_kwargs=env.kwargs,
            system_prompt=env.system_prompt,
            progress=False,
            errors="record",
        )
        gathered = [g for part in procs.gather(groups) for g in part]
        if episodes_path is not None and procs.is_main:
            episodes_path.parent.mkdir(parents=True, exist_ok=True)
            save_episodes(episodes_path, gathered)
        trajectories = [t for g in gathered for t in g.trajectories]
        done = [t for t in trajectories if t.stop_reason != "error"]
        wins = sum(success(t) for t in done)
        turns = [turn for t in done for turn in t.turns]
        low, high = wilson_interval(wins, len(done))
        results.append(
            EnvEval(
                env_id=env.id,
                episodes=len(done),
                successes=wins,
                success=wins / len(done) if done else 0.0,
                low=low,
                high=high,
                reward=sum(t.reward for t in done) / len(done) if done else 0.0,
                invalid_rate=sum(bool(turn.metrics.get("invalid_action")) for turn in turns) / len(turns)
                if turns
                else 0.0,
                turns=sum(t.num_turns for t in done) / len(done) if done else 0.0,
                failed=len(trajectories) - len(done),
            )
        )
    return results


def evaluate_suite(generator: Any, suite: Any, procs: Processes, episodes_path: Path | None = None) -> list[EnvEval]:
    """Play an evaluation suite (`turngym.trainer.suite`) with `generator`, seeds shared over processes.

    The same statistics as `turngym eval` (`turngym.trainer.report.env_stats`), one `EnvEval` per
    suite env, named by its label.
    """
    from turngym.trainer.eval_run import play
    from turngym.trainer.report import env_stats

    results = []
    for env in suite.envs:
        seeds = suite.seeds_of(env)
        groups = play(generator, suite, env, [seeds[i] for i in procs.share(len(seeds))])
        gathered = sorted((g for part in procs.gather(groups) for g in part), key=lambda g: g.seed)
        if episodes_path is not None and procs.is_main:
            episodes_path.parent.mkdir(parents=True, exist_ok=True)
            save_episodes(episodes_path, gathered)
        s = env_stats("policy", env.label, gathered, suite.ks_of(env))
        results.append(
            EnvEval(
                env_id=env.label,
                episodes=s.episodes,
                successes=s.successes,
                success=0.0 if s.episodes == 0 else s.success,
                low=s.low,
                high=s.high,
                reward=0.0 if s.episodes == 0 else s.reward,
                invalid_rate=s.invalid_rate,
                turns=0.0 if s.episodes == 0 else s.turns,
                failed=s.failed,
                pass_at=s.pass_at,
            )
        )
    return results


def transcript(trajectory: Trajectory, width: int = 100) -> list[str]:
    """An episode as short lines: `> action` and `< feedback`, one line each, cut at `width` characters."""

    def line(mark: str, text: str) -> str:
        flat = " ".join(text.split())
        return f"{mark} {flat if len(flat) <= width else flat[: width - 3] + '...'}"

    return [part for turn in trajectory.turns for part in (line(">", turn.action), line("<", turn.feedback))]
