"""Test-only envs for trainer tests, registered on demand (`register_test_envs`), never at import.

Vowels: two turns, each reply rewarded by its share of vowels, so a random tiny model's rewards
vary within every group (a learning signal on every step). Flaky: Vowels whose first step on seed
`fail_seed` raises once per process, to test that one failing episode does not kill a step.
"""

from __future__ import annotations

import time

from turngym.envs import TextEnv, Turn, register, registry


class Vowels(TextEnv):
    """Reward = share of vowels in the reply; `delay` seconds per step slow a run down on purpose."""

    default_reward_weights = {"vowels": 1.0}
    default_max_turns = 2

    def __init__(self, delay: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.delay = delay

    def on_reset(self, options):
        return "Say something with many vowels."

    def on_step(self, action):
        time.sleep(self.delay)
        share = sum(c in "aeiou" for c in action.lower()) / max(len(action), 1)
        return Turn(f"{share:.2f} of that was vowels. Again.", {"vowels": share}, metrics={"won": share > 0.5})


class Flaky(Vowels):
    """Raises on the first step of one episode of seed `fail_seed` (once per process)."""

    raised = False

    def __init__(self, fail_seed: int = 1, **kwargs) -> None:
        super().__init__(**kwargs)
        self.fail_seed = fail_seed

    def on_reset(self, options):
        self.seed_now = self.np_random_seed
        return super().on_reset(options)

    def on_step(self, action):
        if self.seed_now == self.fail_seed and not Flaky.raised:
            Flaky.raised = True
            raise RuntimeError("the flaky env broke")
        return super().on_step(action)


def register_test_envs() -> None:
    """Register tests/Vowels-v0 and tests/Flaky-v0 (idempotent)."""
    for env_id, cls in (("tests/Vowels-v0", Vowels), ("tests/Flaky-v0", Flaky)):
        if env_id not in registry():
            register(env_id, cls, cls.__doc__.splitlines()[0])


def tiny_recipe(model_dir, run_dir, **sections) -> dict:
    """A recipe dict for the tiny model and the Vowels env; `sections` update it section by section."""
    recipe = {
        "name": "tiny",
        "model": {"name": str(model_dir), "max_model_len": 1024, "kv_cache_gib": 0.25},
        "envs": [{"id": "tests/Vowels-v0"}],
        "rollout": {"group_size": 4, "groups_per_step": 3, "max_tokens": 12},
        "optimizer": {"lr": 1e-3, "micro_batch_tokens": 4096},
        "run": {"steps": 1, "dir": str(run_dir), "progress": False},
    }
    for section, values in sections.items():
        recipe[section] = {**recipe.get(section, {}), **values} if isinstance(values, dict) else values
    return recipe


def synthetic_rows(groups: int = 3, group_size: int = 4, vocab: int = 300, seed: int = 0):
    """A step's rows without a rollout: random prompts (shared within a group), replies and rewards."""
    import random

    from turngym.agent.records import Trajectory, TrajectoryGroup, TurnRecord
    from turngym.algos import GRPO
    from turngym.trainer.collate import StepRows

    rng = random.Random(seed)
    out = []
    for g in range(groups):
        prompt = [rng.randrange(5, vocab) for _ in range(rng.randrange(20, 30))]
        trajectories = []
        for _ in range(group_size):
            reply = [rng.randrange(5, vocab) for _ in range(rng.randrange(5, 25))]
            feedback = [rng.randrange(5, vocab) for _ in range(6)]
            reward = rng.random()
            turn = TurnRecord("a", "f", {"r": reward}, reward, {}, len(prompt), len(prompt) + len(reply), "stop")
            ids = prompt + reply + feedback
            mask = [0] * len(prompt) + [1] * len(reply) + [0] * len(feedback)
            logps = [-rng.random() * m for m in mask]
            trajectories.append(
                Trajectory(ids, mask, logps, [turn], len(prompt), reward, {"r": reward}, True, False, "terminated")
            )
        out.append(TrajectoryGroup("synthetic", g, trajectories))
    return StepRows.of(out, GRPO().advantages(out))
