"""Bad arguments to the agent's Python API (`SamplingParams`, `collect_groups`) are one-line errors."""

from __future__ import annotations

import re

import pytest


def test_python_api_arguments_get_one_line_errors(tiny_model_dir) -> None:
    from transformers import AutoTokenizer

    from turngym.agent import SamplingParams, ScriptedGenerator, collect_groups

    for kwargs, message in [
        ({"temperature": float("nan")}, "temperature must be a finite number, got nan"),
        ({"max_tokens": 1.5}, "max_tokens must be an int, got 1.5"),
        ({"seed": "x"}, "seed must be an int >= 0 or None, got 'x'"),
    ]:
        with pytest.raises((TypeError, ValueError), match=re.escape(message)):
            SamplingParams(**kwargs)
    generator = ScriptedGenerator(AutoTokenizer.from_pretrained(tiny_model_dir), lambda prompt: "[2]")
    groups = collect_groups("turngym/GuessNumber-v0", (s for s in (3, 4)), 1, generator, progress=False)
    assert [g.seed for g in groups] == [3, 4]  # a generator of seeds is fine
    with pytest.raises(TypeError, match="seeds must be an ordered sequence"):
        collect_groups("turngym/GuessNumber-v0", {3, 4}, 1, generator, progress=False)
    with pytest.raises(ValueError, match="errors must be 'raise' or 'record'"):
        collect_groups("turngym/GuessNumber-v0", [3], 1, generator, progress=False, errors="ignore")
    with pytest.raises(TypeError, match="sampling must be a SamplingParams, got dict"):
        collect_groups("turngym/GuessNumber-v0", [3], 1, generator, progress=False, sampling={"temperature": 0.5})
