"""The examples in public docstrings run and print what they say.

The modules are discovered, not listed: every module of the package whose source has a `>>>`.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

PACKAGES = ("turngym", "turngym.envs", "turngym.agent", "turngym.algos", "turngym.trainer")


def modules_with_examples() -> list[str]:
    """Every module of the packages whose source contains `>>>`, found without importing it."""
    names = set(PACKAGES)
    for package in PACKAGES:
        # the four subpackages live outside turngym/ on disk, so each is walked on its own path
        path = importlib.import_module(package).__path__
        names.update(info.name for info in pkgutil.walk_packages(path, package + "."))
    return sorted(name for name in names if ">>>" in Path(importlib.util.find_spec(name).origin).read_text())


MODULES = modules_with_examples()


def test_discovery_finds_the_modules_with_examples() -> None:
    assert {"turngym.envs.core", "turngym.agent.vllm_generator", "turngym.trainer.stats"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    examples = [example for test in doctest.DocTestFinder().find(module) for example in test.examples]
    runnable = [example for example in examples if not example.options.get(doctest.SKIP)]
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert examples, f"{name} has `>>>` in its source but no docstring example that doctest finds"
    # every example not marked `# doctest: +SKIP` ran; none may run where all are skipped (they start vLLM)
    assert result.attempted == len(runnable)
