"""How the package's code is shaped: typed parameters, short functions, no long-argument-list suppressions.

STYLE.md P7/P8: helpers take one typed context, not long argument lists, and no function runs past
about 80 lines. These walk every function of the five package folders with `ast`.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("envs", "agent", "algos", "trainer", "turngym")
MAX_LINES = 80  # a function's lines, its docstring not counted


def functions() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    found.append((f"{path.relative_to(REPO)}:{node.lineno} {node.name}", node))
    return found


def untyped_parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    args = node.args
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, *[a for a in (args.vararg, args.kwarg) if a]]
    return [a.arg for i, a in enumerate(every) if a.annotation is None and not (i == 0 and a.arg in ("self", "cls"))]


def length(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    lines = node.end_lineno - node.lineno + 1
    if ast.get_docstring(node) is not None:
        docstring = node.body[0]
        lines -= docstring.end_lineno - docstring.lineno + 1
    return lines


def test_every_parameter_is_typed() -> None:
    untyped = [f"{where}({', '.join(names)})" for where, node in functions() if (names := untyped_parameters(node))]
    assert not untyped, f"untyped parameters: {untyped}"


def test_no_function_runs_past_80_lines() -> None:
    long = [f"{where}: {length(node)} lines" for where, node in functions() if length(node) >= MAX_LINES]
    assert not long, f"functions of {MAX_LINES} lines or more (docstring not counted): {long}"


def test_no_long_argument_list_is_suppressed() -> None:
    found = [
        f"{path.relative_to(REPO)}:{number}"
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "PLR0913" in line
    ]
    assert not found, f"long argument lists silenced instead of given a typed context: {found}"


def test_the_checks_can_fail() -> None:
    source = 'def f(a, b: int, *rest):\n    """Doc."""\n' + "    x = 1\n" * 80
    [node] = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef)]
    assert untyped_parameters(node) == ["a", "rest"]
    assert length(node) == 81  # the def line and 80 body lines; the docstring is not counted
