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
    time.png      seconds per step split into rollout / update / sync, tokens/s of each, and memory

With `seeds=True` (`turngym plot --seeds`), runs whose recipes differ only in `run.seed` (and in
keys that change nothing learned, `SEED_KEYS`: `run.dir`, `eval.every`, ...) are one line: the mean
of those runs at each step they all reached, shaded from the lowest to the highest run, labelled by
the recipe keys that set the lines apart. This is how to compare methods over several seeds
(`runs/traj_s0 runs/traj_s1 runs/step_s0 runs/step_s1`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from turngym.trainer.config import dotted
from turngym.trainer.metrics import read_metrics
from turngym.trainer.schema import json_like

FEW_POINTS = 10  # a series with at most this many points gets markers (a line through one point is invisible)
NAMED_RUNS = 3  # an overlay's default folder names this many runs, then counts the rest
SEED_KEYS = (  # recipe keys in which the runs of one `--seeds` line may differ: they change nothing it learns
    "run.seed", "run.dir", "run.checkpoint_every", "run.keep_checkpoints", "run.resume", "run.progress",
    "run.tensorboard", "run.save_episodes", "eval.every", "eval.at_start", "eval.at_end",
)  # fmt: skip
LOW, HIGH = "#lowest", "#highest"  # suffixes of the series that bound a `--seeds` line's shaded spread
EVAL_SUCCESS = re.compile(r"^eval/.+/success$")
PER_RUN = re.compile(r"^eval/.+/(low|high)$|^reward_std$")  # one run's interval/band: not averaged over runs


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path | None = None, seeds: bool = False) -> list[Path]:
    """Write the learning-curve PNGs of `run_dirs` into `out` (default: `default_out(run_dirs)`).

    Args:
        run_dirs: run directories (each with its `metrics.jsonl`).
        out: the folder for the PNGs.
        seeds: one line per group of runs that differ only in `run.seed` (`seed_groups`): their
            mean, shaded from the lowest to the highest run.

    Returns:
        The PNG paths written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out) if out is not None else default_out(run_dirs)
    written = []
    if seeds:
        groups = seed_groups(run_dirs)
        runs = {label: mean_and_spread([_series(read_metrics(d)) for d in dirs]) for label, dirs in groups.items()}
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "seeds.md").write_text(seeds_table(groups))
        written.append(out_dir / "seeds.md")
    else:
        runs = {_label(Path(d), run_dirs): _series(read_metrics(d)) for d in run_dirs}
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, panels in _figures(runs).items():
        panels = [p for p in panels if any(key in series for series in runs.values() for key in p["keys"])]
        if seeds:  # the shade is the runs' range, not one run's 95% interval
            panels = [{**p, "ylabel": "fraction (shaded: runs' range)"} if "interval" in p else p for p in panels]
        if not panels:
            continue
        cols = min(len(panels), 3)
        rows = -(-len(panels) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
        for ax, panel in zip(axes.flat, panels, strict=False):
            _draw(ax, panel, runs)
        for ax in list(axes.flat)[len(panels) :]:
            ax.set_visible(False)
        title = f"{name}: {', '.join(runs)}" if len(runs) <= 3 else name
        fig.suptitle(
            title + ("\n(mean of each line's runs, shaded from the lowest to the highest)" if seeds else ""),
            fontsize=11,
        )
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


def seed_groups(run_dirs: Sequence[str | Path]) -> dict[str, list[Path]]:
    """Runs whose recipes (`recipe.yaml`) differ only in `run.seed` and `run.dir`, one group per recipe.

    A key that a recipe lacks (it was saved before the key existed) counts as its default value.

    Each group is labelled by the recipe keys whose values tell the groups apart, by their last part
    where that is unambiguous (the recipe's name when there is one group), and its number of runs,
    e.g. `"credit=step (3 runs)"`.
    Groups keep the order in which their first run was given.

    Raises:
        FileNotFoundError: a directory without `recipe.yaml`.
    """
    recipes: list[tuple[dict[str, Any], list[Path]]] = []
    defaults = _recipe_defaults()
    for d in run_dirs:
        path = Path(d) / "recipe.yaml"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist: --seeds groups runs by their recipes; is {d} a turngym run directory?"
            )
        saved = dotted(yaml.safe_load(path.read_text()) or {})
        flat = {k: json_like(v) for k, v in {**defaults, **saved}.items() if k not in SEED_KEYS}
        same = [members for recipe, members in recipes if recipe == flat]
        if same:
            same[0].append(Path(d))
        else:
            recipes.append((flat, [Path(d)]))
    keys = list(dict.fromkeys(k for recipe, _ in recipes for k in recipe))
    apart = [k for k in keys if len({recipe.get(k, "(absent)") for recipe, _ in recipes}) > 1]
    short = {k: k.rpartition(".")[2] for k in apart}  # `credit`, not `objective.credit`, unless two keys end alike
    if len(set(short.values())) < len(short):
        short = {k: k for k in apart}
    entries = _lone_entries(apart, [recipe for recipe, _ in recipes])
    whole = {k for keys in entries.values() for k in keys}
    groups = {}
    for recipe, members in recipes:
        parts = [f"{short[k]}={recipe.get(k, '(absent)')}" for k in apart if k not in whole]
        parts += [f"{e}={recipe.get(f'{e}.name') or recipe.get(f'{e}.id', '(absent)')}" for e in entries]
        name = " ".join(parts) or recipe.get("name", "runs")
        groups[f"{name} ({len(members)} run{'s' if len(members) > 1 else ''})"] = members
    return groups


def _lone_entries(apart: list[str], recipes: list[dict[str, Any]]) -> dict[str, list[str]]:
    """List entries (`envs.1`) that some recipes lack altogether, with their keys among `apart`.

    Such an entry is labelled once, by its name or id (`envs.1=warm-up`), not key by key.
    """
    entries: dict[str, list[str]] = {}
    for key in apart:
        match = re.match(r"(\w+\.\d+)\.", key)
        if match and any(not any(k.startswith(match.group(1) + ".") for k in recipe) for recipe in recipes):
            entries.setdefault(match.group(1), []).append(key)
    return entries


def _recipe_defaults() -> dict[str, Any]:
    """Every recipe key outside `envs` at its default value (dotted)."""
    from turngym.trainer.config import EnvConfig, ModelConfig, TrainConfig, recipe_to_dict

    plain = TrainConfig(model=ModelConfig(), envs=[EnvConfig(id="turngym/GuessNumber-v0")])
    return {k: v for k, v in dotted(recipe_to_dict(plain)).items() if not k.startswith("envs.")}


def seeds_table(groups: dict[str, list[Path]]) -> str:
    """Markdown: held-out success of each `seed_groups` line at each evaluated step, mean and every run.

    A cell reads `mean (run, run, ...)` in percent, the runs in the order given; `-` where a run has
    no evaluation at that step. The last column is the minutes of training steps (`time/step`).
    """
    series = {label: [_series(read_metrics(d)) for d in dirs] for label, dirs in groups.items()}
    envs = sorted({k for runs in series.values() for run in runs for k in run if EVAL_SUCCESS.match(k)})
    tables = []
    for key in envs:
        steps = sorted({s for runs in series.values() for run in runs for s in run.get(key, ([], []))[0]})
        head = f"| line | {' | '.join(f'step {s}' for s in steps)} | training minutes |"
        lines = [f"held-out success, {key.removeprefix('eval/').removesuffix('/success')}", "", head]
        lines.append("|---" * (len(steps) + 2) + "|")
        for label, runs in series.items():
            cells = [_cell([dict(zip(*run[key], strict=True)).get(s) if key in run else None for run in runs], 100)
                     for s in steps]  # fmt: skip
            minutes = _cell([sum(run["time/step"][1]) / 60 if "time/step" in run else None for run in runs], 1)
            lines.append(f"| {label} | {' | '.join(cells)} | {minutes} |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables) + "\n" if tables else "no held-out evaluations in these runs\n"


def _cell(values: Sequence[float | None], scale: float) -> str:
    """`mean (a, b, c)` of the values times `scale`, one decimal; `-` for a missing one (not in the mean)."""
    present = [v * scale for v in values if v is not None]
    if not present:
        return "-"
    each = ", ".join("-" if v is None else f"{v * scale:.1f}" for v in values)
    return f"{sum(present) / len(present):.1f} ({each})" if len(values) > 1 else f"{present[0]:.1f}"


def mean_and_spread(
    runs: Sequence[dict[str, tuple[list[int], list[float]]]],
) -> dict[str, tuple[list[int], list[float]]]:
    """One series per key: the runs' mean at every step all of them have, plus `key#lowest` / `key#highest`.

    One run's own intervals (held-out 95% CI, the reward's std) are left out: their mean is no interval.

    Example:
        >>> merged = mean_and_spread([{"x": ([1, 2, 3], [0.0, 1.0, 2.0])}, {"x": ([1, 2], [2.0, 3.0])}])
        >>> merged["x"], merged["x#lowest"], merged["x#highest"]
        (([1, 2], [1.0, 2.0]), ([1, 2], [0.0, 1.0]), ([1, 2], [2.0, 3.0]))
    """
    merged: dict[str, tuple[list[int], list[float]]] = {}
    for key in set.intersection(*(set(run) for run in runs)):
        if PER_RUN.match(key):
            continue
        values = [dict(zip(*run[key], strict=True)) for run in runs]  # step -> value, one dict per run
        steps = sorted(set.intersection(*(set(v) for v in values)))
        if not steps:
            continue
        columns = [[v[step] for v in values] for step in steps]  # one list of the runs' values per step
        merged[key] = (steps, [sum(c) / len(c) for c in columns])
        merged[key + LOW] = (steps, [min(c) for c in columns])
        merged[key + HIGH] = (steps, [max(c) for c in columns])
    return merged


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
            {
                "title": "memory of the training process",
                "keys": ["memory/resident_gib", "memory/peak_gib"],
                "ylabel": "GiB (after each step; peak so far)",
            },
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
            if key + LOW in series:  # a `--seeds` line: shade from its lowest to its highest run
                _spread(ax, series[key + LOW][0], series[key + LOW][1], series[key + HIGH][1], color=color, alpha=0.2)
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
