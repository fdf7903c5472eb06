"""turngym.agent: models, generators, episode records, token-level chat turns and rollouts.

Generators: vLLM, transformers, OpenAI-compatible endpoints, and a scripted test double.

Names are imported on first use (PEP 562), so `import turngym.agent.records` does not pull in
transformers; vLLM is imported only when a `VLLMGenerator` is created, `openai` only with an
`OpenAIGenerator`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ChatFormat": "turngym.agent.chat",
    "ChatGenerator": "turngym.agent.generator",
    "Completion": "turngym.agent.generator",
    "Generator": "turngym.agent.generator",
    "SamplingParams": "turngym.agent.generator",
    "HFGenerator": "turngym.agent.hf_generator",
    "DEFAULT_MODEL": "turngym.agent.models",
    "MODEL_ALIASES": "turngym.agent.models",
    "prepare_model": "turngym.agent.models",
    "resolve_model": "turngym.agent.models",
    "EndpointAuthError": "turngym.agent.openai_generator",
    "EndpointError": "turngym.agent.openai_generator",
    "OpenAIGenerator": "turngym.agent.openai_generator",
    "Trajectory": "turngym.agent.records",
    "TrajectoryGroup": "turngym.agent.records",
    "TurnRecord": "turngym.agent.records",
    "load_episodes": "turngym.agent.records",
    "save_episodes": "turngym.agent.records",
    "collect_groups": "turngym.agent.rollout",
    "GroupSpec": "turngym.agent.rollout",
    "play_groups": "turngym.agent.rollout",
    "ScriptedGenerator": "turngym.agent.scripted",
    "make_tiny_llama": "turngym.agent.tiny",
    "VLLMGenerator": "turngym.agent.vllm_generator",
}
__all__ = [
    "ChatFormat",
    "ChatGenerator",
    "Completion",
    "DEFAULT_MODEL",
    "EndpointAuthError",
    "EndpointError",
    "Generator",
    "GroupSpec",
    "HFGenerator",
    "MODEL_ALIASES",
    "OpenAIGenerator",
    "SamplingParams",
    "ScriptedGenerator",
    "Trajectory",
    "TrajectoryGroup",
    "TurnRecord",
    "VLLMGenerator",
    "collect_groups",
    "load_episodes",
    "make_tiny_llama",
    "play_groups",
    "prepare_model",
    "resolve_model",
    "save_episodes",
]

if TYPE_CHECKING:
    from turngym.agent.chat import ChatFormat
    from turngym.agent.generator import ChatGenerator, Completion, Generator, SamplingParams
    from turngym.agent.hf_generator import HFGenerator
    from turngym.agent.models import DEFAULT_MODEL, MODEL_ALIASES, prepare_model, resolve_model
    from turngym.agent.openai_generator import EndpointAuthError, EndpointError, OpenAIGenerator
    from turngym.agent.records import Trajectory, TrajectoryGroup, TurnRecord, load_episodes, save_episodes
    from turngym.agent.rollout import GroupSpec, collect_groups, play_groups
    from turngym.agent.scripted import ScriptedGenerator
    from turngym.agent.tiny import make_tiny_llama
    from turngym.agent.vllm_generator import VLLMGenerator


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'turngym.agent' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
