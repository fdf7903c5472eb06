"""turngym.agent: models, generators, episode records, token-level chat turns and rollouts.

Generators: vLLM, transformers, OpenAI-compatible endpoints, and a scripted test double.

vLLM is imported only when a `VLLMGenerator` is created; `openai` only with an `OpenAIGenerator`.
"""

from turngym.agent.chat import ChatFormat
from turngym.agent.generator import ChatGenerator, Completion, Generator, SamplingParams
from turngym.agent.hf_generator import HFGenerator
from turngym.agent.models import DEFAULT_MODEL, MODEL_ALIASES, prepare_model, resolve_model
from turngym.agent.openai_generator import EndpointAuthError, OpenAIGenerator
from turngym.agent.records import Trajectory, TrajectoryGroup, TurnRecord, load_episodes, save_episodes
from turngym.agent.rollout import collect_groups
from turngym.agent.scripted import ScriptedGenerator
from turngym.agent.tiny import make_tiny_llama
from turngym.agent.vllm_generator import VLLMGenerator

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_ALIASES",
    "ChatFormat",
    "ChatGenerator",
    "Completion",
    "EndpointAuthError",
    "Generator",
    "HFGenerator",
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
    "prepare_model",
    "resolve_model",
    "save_episodes",
]
