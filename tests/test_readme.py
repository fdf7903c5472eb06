"""Every Python block of README.md runs as written, in order, in one namespace (like a reader's session).

The one change: the model alias `smollm2-135m` becomes the tiny test model, and `VLLMGenerator`
on it returns the session's shared engine (a real vLLM engine; starting two more would only cost
time). Lines of the form `expression  # {python literal}: ...` must evaluate to that literal.
A block preceded by `<!-- fragment -->` is exempt (none is, today).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(<!-- fragment -->\n)?```python\n(.*?)```", re.S)
SHOWN = re.compile(r"^(?P<expr>[^#\s][^#\n=]*?)\s+#\s+(?P<value>\{[^\n]*?\}):", re.M)


def python_blocks() -> list[str]:
    return [m.group(2) for m in BLOCK.finditer(README.read_text()) if not m.group(1)]


def test_the_readme_has_python_blocks_and_none_is_a_fragment() -> None:
    assert len(python_blocks()) >= 4
    assert "<!-- fragment -->" not in README.read_text()


def test_every_readme_python_block_runs(vllm_tiny, tiny_model_dir, tmp_path, monkeypatch) -> None:
    import turngym.agent

    def shared_engine(model, **kwargs):
        assert model == str(tiny_model_dir), model
        return vllm_tiny

    monkeypatch.setattr(turngym.agent, "VLLMGenerator", shared_engine)
    monkeypatch.chdir(tmp_path)  # blocks may write files (episodes.jsonl)
    namespace: dict = {}
    for number, source in enumerate(python_blocks(), start=1):
        source = source.replace('"smollm2-135m"', repr(str(tiny_model_dir)))
        try:
            exec(compile(source, f"README.md python block {number}", "exec"), namespace)  # noqa: S102
        except Exception as err:
            pytest.fail(f"README python block {number} failed: {type(err).__name__}: {err}\n{source}")
        for shown in SHOWN.finditer(source):
            value = eval(shown.group("expr"), namespace)  # noqa: S307
            assert value == ast.literal_eval(shown.group("value")), f"block {number}: {shown.group('expr')}"
    assert (tmp_path / "episodes.jsonl").is_file()
