"""The peak resident memory of a process and its children, as the end-of-run line reports it.

A training process holds the vLLM engine and the trainer, so its own peak (`ru_maxrss`, exact) is
most of the story. Child processes come and go: vLLM inspects the model in a short-lived Python
subprocess while the engine starts (about 1.6 GiB of its own, when the trainer holds 0.5 GiB), and
an env may run a verifier process. Adding every child's lifetime peak to the parent's overstates
the run (a LoRA demo run whose process peaked at 6.54 GiB reported 8.2 GiB); leaving children out
could understate it. So `PeakMemory` samples, while the run lasts, this process's resident memory
plus its live descendants', and reports the larger of that sampled peak and this process's exact
peak. Pages a child shares with its parent (a forked child, shared libraries) count in both: an
overstatement, never an understatement.
"""

from __future__ import annotations

import resource
import threading
from types import TracebackType

import psutil

GIB = 2**30


class PeakMemory:
    """Context manager: the peak resident memory of this process and its descendants while it is open.

    Example:
        >>> with PeakMemory() as memory:
        ...     data = bytearray(2**20)
        >>> memory.peak_gib() > 0
        True

    Args:
        interval: seconds between samples of the process tree (only the tree's sum is sampled;
            this process's own peak is exact). A sample lists the processes (reads /proc): a
            short-lived child between two samples is missed.
    """

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self._sampled = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="turngym-peak-memory", daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()

    def peak_gib(self) -> float:
        """The larger of this process's exact peak and the sampled peak of the tree, in GiB."""
        return max(own_peak_gib(), self.sampled_gib())

    def sampled_gib(self) -> float:
        """The largest sampled resident memory of this process and its live descendants together, in GiB."""
        return self._sampled / GIB

    def _watch(self) -> None:
        process = psutil.Process()
        while True:
            try:
                self._sampled = max(self._sampled, tree_rss(process))
            except psutil.Error:  # e.g. /proc unreadable: keep the exact own peak, skip this sample
                pass
            if self._stop.wait(self.interval):
                break


def own_peak_gib() -> float:
    """This process's peak resident memory so far (exact, `ru_maxrss`), in GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB


def resident_gib() -> float:
    """This process's resident memory now, in GiB."""
    return psutil.Process().memory_info().rss / GIB


def tree_rss(process: psutil.Process) -> int:
    """Resident bytes of `process` and its live descendants now (a child that exits meanwhile counts 0)."""
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            continue
    return total
