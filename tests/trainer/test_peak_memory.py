"""PeakMemory: a live child's memory counts with this process's; a child that has exited adds nothing later."""

from __future__ import annotations

import subprocess
import sys

import psutil

from turngym.trainer.memory import PeakMemory

CHILD = "import time; block = bytearray({size}); block[::4096] = b'x' * len(block[::4096]); time.sleep({seconds})"
SIZE = 256 * 2**20  # touched page by page, so resident


def test_a_live_childs_memory_is_sampled_with_this_process() -> None:
    with PeakMemory(interval=0.05) as memory:
        own = psutil.Process().memory_info().rss
        subprocess.run([sys.executable, "-c", CHILD.format(size=SIZE, seconds=1.0)], check=True)
    assert memory.sampled_gib() * 2**30 >= 0.9 * own + SIZE  # the sample, not this process's lifetime peak


def test_a_child_that_has_exited_adds_nothing() -> None:
    # In a fresh interpreter (this one may have children of its own): the old figure, the process's
    # peak plus every waited-for child's (RUSAGE_CHILDREN), counted the exited child's 256 MiB.
    script = f"""
import resource, subprocess, sys
from turngym.trainer.memory import PeakMemory
subprocess.run([sys.executable, "-c", {CHILD.format(size=SIZE, seconds=0.0)!r}], check=True)
with PeakMemory(interval=0.05) as memory:
    pass
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
assert own <= memory.peak_gib() * 2**30 < own + {SIZE // 2}, (own, memory.peak_gib())
"""
    subprocess.run([sys.executable, "-c", script], check=True)
