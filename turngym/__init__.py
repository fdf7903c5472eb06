"""turngym: train and evaluate LLM agents on multi-turn text environments.

The names below are re-exported lazily (PEP 562), so `import turngym` stays fast and does not import
torch, transformers or vLLM until one of them is used. `_EXPORTS` is the whole table. Importing
`turngym` registers the built-in env ids with Gymnasium (entry-point strings: no env module is
imported), so `gymnasium.make("turngym/GuessNumber-v0")` works after `import turngym`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "make": "turngym.envs",
    "register": "turngym.envs",
    "registry": "turngym.envs",
    "check_env": "turngym.envs",
    "TextEnv": "turngym.envs",
    "Turn": "turngym.envs",
    "GymnasiumTextEnv": "turngym.envs",
    "resolve_model": "turngym.agent.models",
    "prepare_model": "turngym.agent.models",
    "SamplingParams": "turngym.agent.generator",
    "Completion": "turngym.agent.generator",
    "Generator": "turngym.agent.generator",
    "VLLMGenerator": "turngym.agent.vllm_generator",
    "OpenAIGenerator": "turngym.agent.openai_generator",
    "collect_groups": "turngym.agent.rollout",
    "Trajectory": "turngym.agent.records",
    "TrajectoryGroup": "turngym.agent.records",
    "save_episodes": "turngym.agent.records",
    "load_episodes": "turngym.agent.records",
    "HFGenerator": "turngym.agent.hf_generator",
}
__all__ = [
    "Completion",
    "OpenAIGenerator",
    "Trajectory",
    "TrajectoryGroup",
    "collect_groups",
    "load_episodes",
    "save_episodes",
    "TextEnv",
    "Turn",
    "GymnasiumTextEnv",
    "check_env",
    "make",
    "register",
    "registry",
    "Generator",
    "HFGenerator",
    "SamplingParams",
    "VLLMGenerator",
    "prepare_model",
    "resolve_model",
]

if TYPE_CHECKING:
    from turngym.agent.generator import Completion, Generator, SamplingParams
    from turngym.agent.hf_generator import HFGenerator
    from turngym.agent.models import prepare_model, resolve_model
    from turngym.agent.openai_generator import OpenAIGenerator
    from turngym.agent.records import Trajectory, TrajectoryGroup, load_episodes, save_episodes
    from turngym.agent.rollout import collect_groups
    from turngym.agent.vllm_generator import VLLMGenerator
    from turngym.envs import GymnasiumTextEnv, TextEnv, Turn, check_env, make, register, registry


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'turngym' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


import turngym.envs  # noqa: E402, F401 (registers the built-in ids with Gymnasium; imports gymnasium and numpy only)
