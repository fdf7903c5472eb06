"""Problem sources for `MathVerify`: procedural arithmetic and word problems, JSONL files.

Every generator takes the env's seeded `numpy.random.Generator`, so a seed fixes the problem.
Answers are computed exactly (integers or reduced fractions), never by floating point.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

MAX_DIFFICULTY = 5
NAMES = [
    "Ana",
    "Ben",
    "Chen",
    "Dara",
    "Eli",
    "Fatima",
    "Gus",
    "Hana",
    "Ivan",
    "Jo",
    "Kofi",
    "Lena",
    "Mateo",
    "Nia",
]
ITEMS = ["apples", "marbles", "stickers", "books", "coins", "shells", "pencils", "cookies", "stamps", "cards"]


@dataclass(frozen=True)
class Problem:
    """A question and its exact reference answer (as text math-verify can parse)."""

    question: str
    answer: str


def _fraction_text(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def arithmetic_problem(rng: np.random.Generator, difficulty: int = 1) -> Problem:
    """An arithmetic question; difficulty 1 (one-digit sums) to 5 (sums of fractions).

    1: a + b with one-digit numbers. 2: a + b or a - b with two-digit numbers. 3: a product of a
    two-digit and a one-digit number, or an exact division. 4: three or four terms with
    parentheses and mixed operations. 5: a sum or difference of two fractions, in lowest terms.
    """
    _check_difficulty(difficulty)

    def r(low: int, high: int) -> int:  # inclusive bounds
        return int(rng.integers(low, high + 1))

    if difficulty == 1:
        a, b = r(1, 9), r(1, 9)
        return Problem(f"What is {a} + {b}?", str(a + b))
    if difficulty == 2:
        a, b = r(10, 99), r(10, 99)
        return (
            Problem(f"What is {a} + {b}?", str(a + b))
            if rng.random() < 0.5
            else Problem(f"What is {a} - {b}?", str(a - b))
        )
    if difficulty == 3:
        a, b = r(11, 99), r(2, 9)
        return (
            Problem(f"What is {a} * {b}?", str(a * b))
            if rng.random() < 0.5
            else Problem(f"What is {a * b} / {b}?", str(a))
        )
    if difficulty == 4:
        a, b, c, d = r(2, 20), r(2, 20), r(2, 9), r(1, 30)
        forms = [
            (f"({a} + {b}) * {c} - {d}", (a + b) * c - d),
            (f"{a} * {c} + {b} * {c} - {d}", a * c + b * c - d),
            (f"({a} - {b}) * ({c} + {d})", (a - b) * (c + d)),
        ]
        expression, value = forms[int(rng.integers(len(forms)))]
        return Problem(f"What is {expression}?", str(value))
    p, q, s, t = r(1, 9), r(2, 9), r(1, 9), r(2, 9)
    op = "+" if rng.random() < 0.5 else "-"
    value = Fraction(p, q) + Fraction(s, t) if op == "+" else Fraction(p, q) - Fraction(s, t)
    return Problem(
        f"What is {p}/{q} {op} {s}/{t}? Give the answer as a fraction in lowest terms.", _fraction_text(value)
    )


def word_problem(rng: np.random.Generator, difficulty: int = 1) -> Problem:
    """A multi-step word problem with `difficulty` steps after the starting amount (1 to 5)."""
    _check_difficulty(difficulty)
    name = NAMES[int(rng.integers(len(NAMES)))]
    item = ITEMS[int(rng.integers(len(ITEMS)))]
    count = int(rng.integers(5, 30))
    sentences = [f"{name} has {count} {item}."]
    for _ in range(difficulty):
        step = int(rng.integers(4))
        if step == 0:
            k = int(rng.integers(2, 20))
            sentences.append(f"Then {name} gets {k} more {item}.")
            count += k
        elif step == 1 and count > 2:
            k = int(rng.integers(1, count))
            sentences.append(f"Then {name} gives {k} {item} to a friend.")
            count -= k
        elif step == 2 and count <= 200:
            k = int(rng.integers(2, 4))
            sentences.append(f"Then the number of {item} {name} has {['', '', 'doubles', 'triples'][k]}.")
            count *= k
        else:
            k = int(rng.integers(2, 6))
            extra = (-count) % k  # top up so the split is exact
            if extra:
                sentences.append(f"Then {name} finds {extra} more {item}.")
                count += extra
            sentences.append(f"Then {name} splits the {item} equally into {k} boxes and keeps one box.")
            count //= k
    sentences.append(f"How many {item} does {name} have now?")
    return Problem(" ".join(sentences), str(count))


def load_jsonl(path: str | Path) -> tuple[Problem, ...]:
    """Read problems from a JSONL file with one `{"question": ..., "answer": ...}` object per line.

    Cached per version of the file (path, size, modification time): the many envs of a rollout
    share one read, and an edited file is read again.

    Raises:
        FileNotFoundError: there is no such file.
        ValueError: a line is not JSON or lacks a field; the message gives the line number.
    """
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_file():
        raise FileNotFoundError(f"no JSONL file at {str(path)!r} (path= must name a file of question/answer lines)")
    stat = resolved.stat()
    return _read_jsonl(str(resolved), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _read_jsonl(path: str, size: int, mtime_ns: int) -> tuple[Problem, ...]:
    problems = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            problems.append(Problem(str(record["question"]), str(record["answer"])))
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path}:{number}: expected a JSON object with 'question' and 'answer' ({err})") from err
    if not problems:
        raise ValueError(f"{path} holds no problems")
    return tuple(problems)


def _check_difficulty(difficulty: int) -> None:
    if not 1 <= difficulty <= MAX_DIFFICULTY:
        raise ValueError(f"difficulty must be in 1..{MAX_DIFFICULTY}, got {difficulty}")
