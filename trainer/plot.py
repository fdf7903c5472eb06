"""`turngym plot RUN_DIR [RUN_DIR ...]`: PNG learning curves, several runs overlaid with a legend.

One run's PNGs go into `<run>/plots`; an overlay of several goes into `plots/compare-<A>-<B>` in the
current directory, so that no run's own plots are overwritten. One figure per topic, each a grid of
panels with labelled axes (series of few points get markers, so a one-step run shows its points):

    reward.png    reward (mean and the spread of episode rewards), every reward component
                  (`reward/<name>`: the component's unweighted value summed over an episode's turns,
                  averaged over the step's episodes; `reward/invalid` rising means more invalid turns)
    success.png   training success, held-out success with its 95% interval, invalid-action rate
    length.png    turns per episode, sampled tokens per episode, stop reasons
    kl_clip.png   sampler/trainer mismatch, KL to the reference, clip fractions, grad norm
    time.png      seconds per step split into rollout / update / sync, and tokens/s of each
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from turngym.trainer.metrics import read_metrics

FEW_POINTS = 10  # a series with at most this many points gets markers (a line through one point is invisible)
NAMED_RUNS = 3  # an overlay's default folder names this many runs, then counts the rest


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path | None = None) -> list[Path]:
    """Write the learning-curve PNGs of `run_dirs` into `out` (default: `default_out(run_dirs)`).

    Returns:
        The PNG paths written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {_label(Path(d), run_dirs): _series(read_metrics(d)) for d in run_dirs}
    out_dir = Path(out) if out is not None else default_out(run_dirs)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, panels in _figures(runs).items():
        panels = [p for p in panels if any(key in series for series in runs.values() for key in p["keys"])]
        if not panels:
            continue
        cols = min(len(panels), 3)
        rows = -(-len(panels) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
        for ax, panel in zip(axes.flat, panels, strict=False):
            _draw(ax, panel, runs)
        for ax in list(axes.flat)[len(panels) :]:
            ax.set_visible(False)
        fig.suptitle(f"{name}: {', '.join(runs)}" if len(runs) <= 3 else name, fontsize=11)
        written.append(save_png(fig, out_dir / f"{name}.png"))
    return written


def default_out(run_dirs: Sequence[str | Path]) -> Path:
    """`<run>/plots` for one run; `plots/compare-<A>-<B>` (in the current directory) for an overlay.

    An overlay is not any one run's, so it does not go into (and overwrite) the first run's plots.

    Example:
        >>> str(default_out(["runs/a", "runs/b/"])), str(default_out(["runs/a"]))
        ('plots/compare-a-b', 'runs/a/plots')
    """
    if len(run_dirs) == 1:
        return Path(run_dirs[0]) / "plots"
    names = [re.sub(r"[^\w.-]+", "_", Path(d).resolve().name) for d in run_dirs]
    more = len(names) - NAMED_RUNS
    return Path("plots") / "-".join(["compare", *names[:NAMED_RUNS], *([f"and-{more}-more"] if more > 0 else [])])


def save_png(fig: Any, path: Path) -> Path:
    """Lay out, write (110 dpi) and close a matplotlib figure; returns `path`. Every turngym PNG goes through here."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _label(path: Path, all_dirs: Sequence[str | Path]) -> str:
    names = [Path(d).name for d in all_dirs]
    return path.name if names.count(path.name) == 1 else str(path)


def _series(records: list[dict[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """Key -> (steps, values), merging records of the same step (training and evaluation lines)."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for record in records:
        step = record["step"]
        for key, value in record.items():
            if key == "step" or not isinstance(value, int | float) or isinstance(value, bool):
                continue
            steps, values = series.setdefault(key, ([], []))
            steps.append(step)
            values.append(float(value))
    return series


def _figures(runs: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    keys = sorted({k for series in runs.values() for k in series})
    components = [k for k in keys if k.startswith("reward/")]
    evals = sorted(
        {
            k.removeprefix("eval/").removesuffix("/success")
            for k in keys
            if k.startswith("eval/") and k.endswith("/success")
        }
    )
    stops = [k for k in keys if k.startswith("stop/")]
    return {
        "reward": [
            {"title": "reward per episode", "keys": ["reward"], "band": ("reward", "reward_std"), "ylabel": "reward"},
            *(
                {"title": f"{k}: unweighted sum per episode", "keys": [k], "ylabel": "mean over the step's episodes"}
                for k in components
            ),
        ],
        "success": [
            {"title": "training success", "keys": ["success"], "ylabel": "fraction of episodes", "unit": True},
            *(
                {
                    "title": f"held-out success: {e}",
                    "keys": [f"eval/{e}/success"],
                    "ylabel": "fraction (95% CI)",
                    "interval": (f"eval/{e}/low", f"eval/{e}/high"),
                    "unit": True,
                    "marker": "o",
                }
                for e in evals
            ),
            {"title": "invalid actions", "keys": ["invalid_rate"], "ylabel": "fraction of turns", "unit": True},
        ],  # fmt: skip
        "length": [
            {"title": "turns per episode", "keys": ["turns"], "ylabel": "turns"},
            {"title": "sampled tokens per episode", "keys": ["sampled_tokens"], "ylabel": "tokens"},
            {"title": "how episodes ended", "keys": stops, "ylabel": "fraction of episodes", "unit": True},
        ],
        "kl_clip": [
            {"title": "sampler/trainer mismatch", "keys": ["mismatch_kl"], "ylabel": "KL(sampler || trainer)"},
            {"title": "KL to the reference", "keys": ["kl"], "ylabel": "KL per token"},
            {"title": "clip fractions", "keys": ["clip_fraction_low", "clip_fraction_high"], "ylabel": "fraction"},
            {"title": "gradient norm (before clipping)", "keys": ["grad_norm"], "ylabel": "norm"},
        ],
        "time": [
            {
                "title": "seconds per step",
                "keys": ["time/rollout", "time/update", "time/sync"],
                "ylabel": "seconds",
                "stack": True,
            },
            {"title": "throughput", "keys": ["tokens_per_s/rollout", "tokens_per_s/update"], "ylabel": "tokens / s"},
        ],  # fmt: skip
    }


def _draw(ax: Any, panel: dict[str, Any], runs: dict[str, dict[str, Any]]) -> None:
    colors = [f"C{i}" for i in range(10)]
    styles = ["-", "--", ":", "-."]
    several_keys = len(panel["keys"]) > 1
    for r, (run, series) in enumerate(runs.items()):
        present = [k for k in panel["keys"] if k in series]
        if panel.get("stack") and len(runs) == 1 and len(series[present[0]][0]) > 1:  # one step: no area, lines
            steps = series[present[0]][0]
            ax.stackplot(steps, *[series[k][1] for k in present], labels=[k.split("/")[-1] for k in present], alpha=0.8)
            continue
        for k, key in enumerate(present):
            steps, values = series[key]
            color = colors[(k if several_keys and len(runs) == 1 else r) % 10]
            short = key.split("/")[-1]
            name = run if not several_keys else (short if len(runs) == 1 else f"{run}: {short}")
            marker = panel.get("marker") or ("o" if len(steps) <= FEW_POINTS else None)
            ax.plot(steps, values, styles[k % 4] if len(runs) > 1 else "-", color=color, label=name,
                    marker=marker, markersize=4, linewidth=1.6)  # fmt: skip
            if "interval" in panel and all(b in series for b in panel["interval"]):
                low, high = (series[b][1] for b in panel["interval"])
                _spread(ax, series[panel["interval"][0]][0], low, high, color=color, alpha=0.2)
            if "band" in panel and panel["band"][1] in series:
                std = series[panel["band"][1]][1]
                low = [v - s for v, s in zip(values, std, strict=False)]
                high = [v + s for v, s in zip(values, std, strict=False)]
                _spread(ax, steps, low, high, color=color, alpha=0.15)
    from matplotlib.ticker import MaxNLocator

    ax.set_title(panel["title"], fontsize=10)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    low, high = ax.get_xlim()
    if high - low < 2:  # a single step: widen to the steps either side, or the ticks are fractions
        ax.set_xlim(round((low + high) / 2) - 1, round((low + high) / 2) + 1)
    ax.set_ylabel(panel["ylabel"])
    if panel.get("unit"):
        ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    if len(runs) > 1 or several_keys:
        ax.legend(fontsize=8)


def _spread(ax: Any, steps: list[int], low: list[float], high: list[float], **style: Any) -> None:
    """Shade an interval or band (`style`: color, alpha); a single step has no area, so it gets a thick bar."""
    if len(steps) > 1:
        ax.fill_between(steps, low, high, **style)
    else:
        ax.vlines(steps, low, high, **{**style, "alpha": 2 * style["alpha"]}, linewidth=6)
