"""The PNG plots of an evaluation report, every model side by side with a legend.

success.png      success per env with Wilson 95% intervals, and the macro average
components.png   each reward component, unweighted and summed over the episode's turns: its mean
                 over episodes (± one standard error), per env
lengths.png      distributions of turns and of sampled tokens per episode, per env
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from turngym.trainer.plot import save_png
from turngym.trainer.report import Report


def plot_report(report: Report, out: Path) -> list[Path]:
    """Write the report's PNGs into `out`; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in (("success", _success), ("components", _components), ("lengths", _lengths)):
        fig = draw(plt, report)
        if fig is not None:
            written.append(save_png(fig, out / f"{name}.png"))
    return written


def _offsets(n: int, width: float = 0.8) -> list[float]:
    step = width / n
    return [-width / 2 + step * (i + 0.5) for i in range(n)]


def _success(plt: ModuleType, report: Report):
    labels = [*report.envs, "overall (macro)"]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(labels) * max(1, len(report.models)) / 1.5), 4.2))
    width = 0.8 / len(report.models)
    for offset, model in zip(_offsets(len(report.models)), report.models, strict=True):
        values, lows, highs = [], [], []
        for env in report.envs:
            s = report.stats.get((model, env))
            values.append(s.success * 100 if s and s.episodes else 0.0)
            lows.append(max(0.0, s.success - s.low) * 100 if s and s.episodes else 0.0)  # max: rounding at 0%
            highs.append(max(0.0, s.high - s.success) * 100 if s and s.episodes else 0.0)
        o = report.overall.get(model, {})
        values.append(o.get("success", 0.0) * 100)
        lows.append(max(0.0, o.get("success", 0.0) - o.get("low", 0.0)) * 100)
        highs.append(max(0.0, o.get("high", 0.0) - o.get("success", 0.0)) * 100)
        xs = [i + offset for i in range(len(labels))]
        bars = ax.bar(xs, values, width, yerr=[lows, highs], capsize=3, label=model)
        ax.bar_label(bars, labels=[f"{v:.0f}%" for v in values], padding=2, fontsize=7)
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("success (% of episodes)")
    ax.set_ylim(0, 105)
    ax.set_title(f"{report.suite['name']}: success with 95% Wilson intervals")
    ax.legend(fontsize=8, title="model")
    ax.grid(axis="y", alpha=0.3)
    return fig


def _components(plt: ModuleType, report: Report):
    envs = [e for e in report.envs if any((m, e) in report.stats for m in report.models)]
    if not envs:
        return None
    cols = min(len(envs), 3)
    rows = -(-len(envs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 3.4 * rows), squeeze=False)
    for ax, env in zip(axes.flat, envs, strict=False):
        names = sorted(
            {n for m in report.models if (m, env) in report.stats for n in report.stats[(m, env)].components}
        )
        width = 0.8 / len(report.models)
        for offset, model in zip(_offsets(len(report.models)), report.models, strict=True):
            s = report.stats.get((model, env))
            means = [s.components.get(n, (0.0, 0.0))[0] if s else 0.0 for n in names]
            ses = [s.components.get(n, (0.0, 0.0))[1] if s else 0.0 for n in names]
            ses = [0.0 if se != se else se for se in ses]  # nan (one episode) draws no bar
            ax.bar([i + offset for i in range(len(names))], means, width, yerr=ses, capsize=3, label=model)
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_ylabel("unweighted sum per episode\n(mean ± SE)")
        ax.set_title(env, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes.flat[0].legend(fontsize=7, title="model")
    for ax in list(axes.flat)[len(envs) :]:
        ax.set_visible(False)
    fig.suptitle("reward components", fontsize=11)
    return fig


def _lengths(plt: ModuleType, report: Report):
    envs = report.envs
    fig, axes = plt.subplots(1, 2, figsize=(max(8.0, 2.2 * len(envs) * max(1, len(report.models))), 3.8))
    for ax, (title, value) in zip(
        axes,
        (("turns per episode", lambda t: t.num_turns), ("sampled tokens per episode", lambda t: t.num_sampled_tokens)),
        strict=True,
    ):
        width = 0.8 / len(report.models)
        handles = []
        for k, (offset, model) in enumerate(zip(_offsets(len(report.models)), report.models, strict=True)):
            data, positions = [], []
            for i, env in enumerate(envs):
                episodes = [
                    t for g in report.groups.get((model, env), []) for t in g.trajectories if t.stop_reason != "error"
                ]
                if episodes:
                    data.append([value(t) for t in episodes])
                    positions.append(i + offset)
            if not data:
                continue
            box = ax.boxplot(data, positions=positions, widths=width * 0.9, patch_artist=True, manage_ticks=False)
            color = f"C{k}"
            for patch in box["boxes"]:
                patch.set_facecolor(color)
                patch.set_alpha(0.6)
            handles.append((box["boxes"][0], model))
        ax.set_xticks(range(len(envs)), envs, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(title)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        if handles:
            ax.legend([h for h, _ in handles], [m for _, m in handles], fontsize=7, title="model")
    fig.suptitle("episode lengths", fontsize=11)
    return fig
