"""Fixtures for trainer tests: the session's vLLM engine, restored to the tiny model's weights after each use."""

from __future__ import annotations

import pytest
import torch

from tests.trainer.support import register_test_envs


@pytest.fixture
def engine(vllm_tiny, tiny_model_dir):
    """The shared tiny vLLM engine; training syncs new weights into it, so they are put back afterwards."""
    from transformers import AutoModelForCausalLM

    register_test_envs()
    yield vllm_tiny
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    vllm_tiny.load_weights(original.named_parameters())


@pytest.fixture
def restore(vllm_tiny, tiny_model_dir):
    """Call to put the tiny model's original weights back into the shared engine mid-test."""
    from transformers import AutoModelForCausalLM

    def put_back() -> None:
        original = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        vllm_tiny.load_weights(original.named_parameters())

    return put_back
