"""The math-verify worker process: one JSON request per line in, one verdict per line out.

Started by `turngym.envs.verify`, which kills it when a verification overruns its time limit.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


def _verdict(gold: str, answer: str, parse: Callable[[str], Any], verify: Callable[[Any, Any], bool]) -> str:
    gold_parsed, answer_parsed = parse(f"${gold}$"), parse(f"${answer}$")
    if not gold_parsed:  # the reference is not math: compare as text
        return "correct" if gold.strip() == answer.strip() else "incorrect"
    if not answer_parsed:
        return "incorrect"
    return "correct" if verify(gold_parsed, answer_parsed) else "incorrect"


def main() -> None:
    """Serve verification requests on stdin/stdout until stdin closes."""
    try:
        from math_verify import parse, verify
    except ImportError as err:
        print(
            json.dumps({"error": f"math-verify is not installed ({err}); pip install math-verify"}),
            flush=True,
        )
        return
    # The first parse and verify load sympy's parsers and caches (a second or more on a busy CPU):
    # pay that here, within the start timeout, not within the first answer's time limit.
    _verdict("x^2+2x+1", "(x+1)^2", parse, verify)
    _verdict("\\frac{1}{2}", "0.5", parse, verify)
    print("ready", flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            verdict = _verdict(request["gold"], request["answer"], parse, verify)
        except Exception:  # any parser failure on odd input means we cannot decide
            verdict = "unverifiable"
        print(json.dumps({"verdict": verdict}), flush=True)


if __name__ == "__main__":
    main()
