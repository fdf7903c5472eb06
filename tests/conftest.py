"""Shared fixtures. Engines are session-scoped: starting vLLM is the expensive part of the suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before anything imports vLLM: the engine must run in-process.
os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama (2 layers, width 64, BPE vocab 512, ChatML template) saved to disk."""
    from turngym.agent import make_tiny_llama

    return make_tiny_llama(tmp_path_factory.mktemp("tiny") / "chatml", seed=0)


@pytest.fixture(scope="session")
def vllm_tiny(tiny_model_dir: Path):
    """The session's shared real vLLM engine in bf16 (whatever the hardware's default) on the tiny model."""
    from turngym.agent import VLLMGenerator

    return VLLMGenerator(str(tiny_model_dir), dtype="bfloat16", max_model_len=1024, kv_cache_gib=0.25)


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The embedded default model, prepared once into the user's turngym cache."""
    from turngym.agent import resolve_model

    return Path(resolve_model("smollm2-135m", progress=False))


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    """The repository's examples/ folder."""
    return Path(__file__).resolve().parents[1] / "examples"
