"""Terminal output shared by the commands that print tables (`turngym check`, `envs list`, `eval`).

It lives in the lowest layer so that `turngym.cli` and `turngym.trainer.report` can both use it.
"""

from __future__ import annotations

from rich.console import Console

WIDE = 1000  # columns a table may take when nothing limits it (it takes only what its cells need)


def full_width(console: Console) -> Console:
    """`console` on an interactive terminal; else a console on the same file with no 80-column limit.

    Piped (`| tee`, a CI log), rich makes the console 80 columns wide (or $COLUMNS) and cuts and
    wraps a wider table to fit; `console.print(width=...)` cannot widen it past the console's own
    width. A file has no width, so the table is printed at the width its cells need.
    """
    isatty = getattr(console.file, "isatty", None)  # is_terminal is also true where FORCE_COLOR forces styles
    if console.is_terminal and isatty is not None and isatty():
        return console
    return Console(file=console.file, width=WIDE, force_terminal=console.is_terminal, color_system=console.color_system)
