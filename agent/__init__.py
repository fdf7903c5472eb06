"""turngym.agent: model resolution and generators (vLLM, transformers).

vLLM is imported only when a `VLLMGenerator` is created.
"""

from turngym.agent.generator import Completion, Generator, SamplingParams
from turngym.agent.hf_generator import HFGenerator
from turngym.agent.models import DEFAULT_MODEL, MODEL_ALIASES, prepare_model, resolve_model
from turngym.agent.tiny import make_tiny_llama
from turngym.agent.vllm_generator import VLLMGenerator

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_ALIASES",
    "Completion",
    "Generator",
    "HFGenerator",
    "SamplingParams",
    "VLLMGenerator",
    "make_tiny_llama",
    "prepare_model",
    "resolve_model",
]
