"""Answer checking with math-verify, bounded in time.

math-verify (sympy underneath) can take unbounded time on hostile input: `9^9^9^9^9`, deeply nested
parentheses, huge expressions. A signal-based timeout cannot interrupt a long computation inside C
code, so verification runs in a worker process (`python -m turngym.envs.verify_worker`) that is
killed when it overruns and replaced in the background. Cheap guards and an exact fast path for
plain numbers avoid the worker for most answers.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from fractions import Fraction
from typing import Literal

Verdict = Literal["correct", "incorrect", "unverifiable"]

VERIFY_TIMEOUT_S = 1.0  # per answer, after which the verdict is "unverifiable"
WORKER_START_TIMEOUT_S = 60.0  # starting Python and importing math-verify, counted separately
MAX_ANSWER_CHARS = 1_000
MAX_NESTING = 40

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?")
_FRACTION = re.compile(r"([+-]?\d+)\s*/\s*([+-]?\d+)")
_TEXT_BLOCK = re.compile(r"\\(?:text|mathrm|textbf|mbox|operatorname)\{[^{}]*\}")
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")  # 3+ letters not part of a LaTeX command
MATH_WORDS = {
    "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
    "log", "exp", "sqrt", "abs", "max", "min", "gcd", "lcm", "mod", "inf", "infty", "infinity", "and",
    "undefined", "none", "true", "false", "yes",
    "matrix", "pmatrix", "bmatrix", "vmatrix", "cases", "array", "aligned",  # \\begin{...} names
}  # fmt: skip
_LATEX_FRACTION = re.compile(r"([+-]?)\\[dt]?frac\{([+-]?\d+)\}\{([+-]?\d+)\}")


def verify_answer(gold: str, answer: str, *, timeout: float = VERIFY_TIMEOUT_S) -> Verdict:
    r"""Decide whether `answer` is mathematically equivalent to `gold`.

    Args:
        gold: the reference answer (LaTeX or plain: `1/2`, `\frac12`, `[1, 2)`, `\{1, 2\}`).
        answer: the model's answer, already extracted (e.g. the content of `\boxed{}`).
        timeout: seconds allowed for math-verify.

    Returns:
        "correct", "incorrect", or "unverifiable" (too long, too deeply nested, or timed out).
    """
    if len(answer) > MAX_ANSWER_CHARS or _nesting(answer) > MAX_NESTING:
        return "unverifiable"
    quick = _quick_verdict(gold, answer)
    if quick is not None:
        return quick
    if _has_prose(answer):
        return "incorrect"
    return _WORKER.verify(gold, answer, timeout)


def _normalize(text: str) -> str:
    return re.sub(r"\s+", "", text.strip().strip("$").strip())


def _as_fraction(text: str) -> Fraction | None:
    text = _normalize(text)
    if _THOUSANDS.fullmatch(text):  # 1,000 but not 1,2 (a pair, or a decimal comma)
        text = text.replace(",", "")
    if _NUMBER.fullmatch(text):
        return Fraction(text)
    match = _FRACTION.fullmatch(text)
    if match and int(match.group(2)) != 0:
        return Fraction(int(match.group(1)), int(match.group(2)))
    match = _LATEX_FRACTION.fullmatch(text)
    if match and int(match.group(3)) != 0:
        value = Fraction(int(match.group(2)), int(match.group(3)))
        return -value if match.group(1) == "-" else value
    return None


def _quick_verdict(gold: str, answer: str) -> Verdict | None:
    """Exact decisions that need no parser: identical text, or two plain rational numbers."""
    if _normalize(gold) == _normalize(answer):
        return "correct"
    g, a = _as_fraction(gold), _as_fraction(answer)
    if g is not None and a is not None:
        return "correct" if g == a else "incorrect"
    return None


def _has_prose(answer: str) -> bool:
    r"""True if the answer holds words, not just math.

    math-verify finds the last expression in free text, so `\boxed{ignore the reference, it is 2}`
    would count as 2. An answer must be math: words are allowed only inside `\text{}` (units)
    or as function names.
    """
    outside_text = _TEXT_BLOCK.sub(" ", answer)
    return any(word.lower() not in MATH_WORDS for word in _WORD.findall(outside_text))


def _nesting(text: str) -> int:
    depth = deepest = 0
    for char in text:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth = max(0, depth - 1)
    return deepest


class _Process:
    """One `verify_worker` process and its stdout line buffer."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "turngym.envs.verify_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
        )
        self.ready = False
        self._buffer = b""

    def wait_ready(self) -> None:
        if self.ready:
            return
        first = self.read_line(time.monotonic() + WORKER_START_TIMEOUT_S)
        if first != b"ready":
            detail = json.loads(first).get("error") if first else "no answer within the start timeout"
            raise RuntimeError(f"the math-verify worker did not start: {detail}")
        self.ready = True

    def read_line(self, deadline: float) -> bytes | None:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:  # the worker exited
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


class _Worker:
    """The active verification process plus a warm spare.

    When the active one overruns, it is killed and the spare (already started and importing
    math-verify in the background) takes over, so the next answer does not wait for a start.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: _Process | None = None
        self._spare: _Process | None = None

    def verify(self, gold: str, answer: str, timeout: float) -> Verdict:
        with self._lock:
            if self._active is None or self._active.proc.poll() is not None:
                self._active, self._spare = self._spare or _Process(), None
            try:
                self._active.wait_ready()
            except RuntimeError:
                self.close()
                raise
            if self._spare is None:
                self._spare = _Process()
            line = None
            try:
                request = json.dumps({"gold": gold, "answer": answer}).encode() + b"\n"
                self._active.proc.stdin.write(request)
                self._active.proc.stdin.flush()
                line = self._active.read_line(time.monotonic() + timeout)
            except OSError:  # broken pipe: the worker died
                pass
            if line is None:  # overran or died: the spare takes over
                self._active.kill()
                self._active = None
                return "unverifiable"
            return json.loads(line)["verdict"]

    def close(self) -> None:
        """Kill the worker processes, if any."""
        for process in (self._active, self._spare):
            if process is not None:
                process.kill()
        self._active = self._spare = None


_WORKER = _Worker()
atexit.register(_WORKER.close)
