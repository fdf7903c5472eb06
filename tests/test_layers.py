"""No layer imports a layer above it: envs < agent < algos < trainer < front (issue 17).

Every `import turngym...` and `from turngym... import ...` counts: at module level, inside
functions and under `if TYPE_CHECKING:` alike (a lazy import is still a dependency). The front is
`turngym` itself and every `turngym.<x>` that is not one of the four subpackages (cli, __main__).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# folder on disk -> (dotted package name, layer); the mapping is pyproject.toml's [tool.setuptools] package-dir
PACKAGES = {
    "envs": ("turngym.envs", "envs"),
    "agent": ("turngym.agent", "agent"),
    "algos": ("turngym.algos", "algos"),
    "trainer": ("turngym.trainer", "trainer"),
    "turngym": ("turngym", "front"),
}
LAYERS = ("envs", "agent", "algos", "trainer", "front")  # low to high


def layer_of(module: str) -> str:
    """The layer a `turngym...` module belongs to."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS[:-1]:
        return parts[1]
    return "front"


def module_name(folder: str, path: Path) -> str:
    """The dotted name `path` (a file under `folder`) installs as."""
    relative = path.relative_to(ROOT / folder).with_suffix("").parts
    if relative[-1] == "__init__":
        relative = relative[:-1]
    return ".".join((PACKAGES[folder][0], *relative))


def turngym_imports(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module) for each import of a `turngym...` module in `source`, which is `module`'s code.

    `from turngym.x import y` counts as importing `turngym.x.y` when `y` is a module of the
    package on disk, else as importing `turngym.x`. Relative imports are resolved against `module`.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append((node.lineno, submodule if submodule in ALL_MODULES else base))
    return sorted((line, name) for line, name in found if name == "turngym" or name.startswith("turngym."))


def upward_imports(source: str, module: str, path: str, is_package: bool = False) -> list[str]:
    """'path:line: module (layer) imports target (layer)' for each import of a higher layer."""
    layer = layer_of(module)
    return [
        f"{path}:{line}: {module} ({layer}) imports {target} ({layer_of(target)})"
        for line, target in turngym_imports(source, module, is_package)
        if LAYERS.index(layer_of(target)) > LAYERS.index(layer)
    ]


def package_files() -> list[tuple[str, Path]]:
    return [(folder, path) for folder in PACKAGES for path in sorted((ROOT / folder).rglob("*.py"))]


ALL_MODULES = {module_name(folder, path) for folder, path in package_files()}


def test_no_module_imports_a_higher_layer() -> None:
    assert len(ALL_MODULES) > 40, "the walk found too few modules: did the folders move?"
    violations = []
    for folder, path in package_files():
        module = module_name(folder, path)
        assert layer_of(module) == PACKAGES[folder][1], module
        violations += upward_imports(
            path.read_text(), module, str(path.relative_to(ROOT)), is_package=path.name == "__init__.py"
        )
    assert not violations, "upward imports:\n" + "\n".join(violations)


def test_the_checker_reports_upward_imports_of_every_form() -> None:
    source = (
        "from turngym.trainer import loop\n"  # a subpackage's module
        "import turngym.algos.grpo\n"
        "def f():\n"
        "    from turngym.cli import app\n"  # inside a function
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from turngym import make\n"  # the front's lazy re-export
        "from ..agent import records\n"  # relative
        "from turngym.envs import core\n"  # same layer: fine
        "import os\n"
    )
    assert upward_imports(source, "turngym.envs.fake", "envs/fake.py") == [
        "envs/fake.py:1: turngym.envs.fake (envs) imports turngym.trainer.loop (trainer)",
        "envs/fake.py:2: turngym.envs.fake (envs) imports turngym.algos.grpo (algos)",
        "envs/fake.py:4: turngym.envs.fake (envs) imports turngym.cli (front)",
        "envs/fake.py:7: turngym.envs.fake (envs) imports turngym (front)",
        "envs/fake.py:8: turngym.envs.fake (envs) imports turngym.agent.records (agent)",
    ]
    # the front and the trainer may import downwards
    assert upward_imports("from turngym.trainer import loop\n", "turngym.cli", "turngym/cli.py") == []
    assert upward_imports("import turngym.algos.grpo\n", "turngym.trainer.loop", "trainer/loop.py") == []
    assert upward_imports("import turngym.cli\n", "turngym.trainer.loop", "trainer/loop.py") != []
