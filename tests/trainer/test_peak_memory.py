"""PeakMemory: a live child's memory counts with this process's; a child that has exited adds nothing later."""

from __future__ import annotations

import resource
import subprocess
import sys

import psutil

from turngym.trainer.memory import PeakMemory

CHILD = "import time; block = bytearray({size}); block[::4096] = b'x' * len(block[::4096]); time.sleep({seconds})"


def test_a_live_childs_memory_counts_with_this_process() -> None:
    size = 256 * 2**20  # touched page by page, so resident
    with PeakMemory(interval=0.05) as memory:
        own = psutil.Process().memory_info().rss
        subprocess.run([sys.executable, "-c", CHILD.format(size=size, seconds=1.0)], check=True)
    assert memory.peak_gib() * 2**30 >= own + size


def test_a_child_that_has_exited_adds_nothing() -> None:
    # the old figure, this process's peak plus every waited-for child's (RUSAGE_CHILDREN), counted it
    subprocess.run([sys.executable, "-c", CHILD.format(size=256 * 2**20, seconds=0.0)], check=True)
    with PeakMemory(interval=0.05) as memory:
        pass
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert own <= memory.peak_gib() * 2**30 < own + 128 * 2**20
