"""What a person watching a run sees: one line per step, and a live bar with the ETA in a terminal."""

from __future__ import annotations

import logging
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from turngym.envs.core import count_of

LOG = logging.getLogger("turngym.train")  # the run's train.log keeps every line the screen shows


def step_line(step: int, total: int, m: dict[str, Any]) -> str:
    """`step 3/20  reward 0.41  ... |  rollout 48s  update 61s  sync 0.4s  memory 3.4 GiB (peak 5.1)  |  ...`.

    Memory: this process's resident memory after the step and its peak so far (`memory/*` metrics).
    """
    parts = [f"step {step}/{total}"]
    if "reward" in m:
        parts.append(
            f"reward {m['reward']:+.3f}  success {m.get('success', 0):.0%}  "
            f"invalid {m.get('invalid_rate', 0):.0%}  turns {m.get('turns', 0):.1f}"
        )
    elif "recorded/reward" in m:  # recorded episodes alone (`data.episodes`, no live rollout)
        parts.append(
            f"recorded: reward {m['recorded/reward']:+.3f}  success {m.get('recorded/success', 0):.0%}  "
            f"invalid {m.get('recorded/invalid_rate', 0):.0%}"
        )
    cost = f"rollout {m.get('time/rollout', 0):.0f}s  update {m.get('time/update', 0):.0f}s  "
    cost += f"sync {m.get('time/sync', 0):.1f}s"
    if "memory/peak_gib" in m:
        cost += f"  memory {m['memory/resident_gib']:.1f} GiB (peak {m['memory/peak_gib']:.1f})"
    parts.append(cost)
    detail = []
    if "loss" in m:
        detail.append(f"loss {m['loss']:+.4f}")
    if "grad_norm" in m:
        detail.append(f"grad {m['grad_norm']:.2f}")
    if "mismatch_kl" in m:
        detail.append(f"mismatch {m['mismatch_kl']:.1e}")
    if m.get("failed_episodes"):
        detail.append(f"[yellow]{count_of(int(m['failed_episodes']), 'failed episode')}[/yellow]")
    if m.get("skip_reason"):
        detail.append(f"[yellow]update skipped: {m['skip_reason']}[/yellow]")
    if detail:
        parts.append("  ".join(detail))
    return "  |  ".join(parts)


class Display:
    """The step lines plus, in a terminal, a progress bar with step count, ETA and the last reward.

    Args:
        total: the run's last step.
        enabled: False prints nothing (other processes than the main one).
        live: show the bar (`run.progress`, and only in a terminal), from `begin` on.
    """

    def __init__(self, total: int, enabled: bool, live: bool, console: Console | None = None) -> None:
        self.total, self.enabled = total, enabled
        self.console = console or Console()
        self.live = enabled and live and self.console.is_terminal
        self.progress: Progress | None = None

    def begin(self, start: int) -> None:
        """Start the bar at step `start` (0, or the step a resumed run continues after)."""
        if not self.live:
            return
        self.progress = Progress(
            TextColumn("[bold]training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[last]}"),
            TextColumn("[dim]{task.fields[phase]}"),
            console=self.console,
        )
        self.task = self.progress.add_task("train", total=self.total - start, last="", phase="")
        self.progress.start()

    def print(self, text: str) -> None:
        """A line (above the bar), also written to the run's train.log."""
        if self.enabled:
            self.console.print(text, highlight=False, soft_wrap=True)
            LOG.info("%s", Text.from_markup(text).plain)

    def step(self, step: int, metrics: dict[str, Any]) -> None:
        """Report a finished step."""
        self.print(step_line(step, self.total, metrics))
        if self.progress is not None:
            last = f"reward {metrics.get('reward', 0):+.3f} success {metrics.get('success', 0):.0%}"
            self.progress.update(self.task, advance=1, last=last)

    def phase(self, text: str) -> None:
        """What the run is doing now (shown next to the bar)."""
        if self.progress is not None:
            self.progress.update(self.task, phase=text)

    def close(self) -> None:
        """Stop the bar."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
