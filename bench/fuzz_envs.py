"""Fuzz every built-in env with random and adversarial actions; count exceptions and contract breaks.

    .venv/bin/python bench/fuzz_envs.py [--actions 100000] [--env turngym/GuessNumber-v0 ...]

Each action's transition is checked (non-empty text feedback, finite float reward equal to the
weighted sum of its components, bool flags). Baseline measured in the same run: a trivial echo env
on the same TextEnv base, so `ratio` is each env's throughput relative to the base class alone.
The last line is `exceptions: N` (the total over all envs; 0 is the target).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from turngym.envs import TextEnv, Turn, make, registry
from turngym.envs.checker import _check_transition
from turngym.envs.fuzz import fuzz_actions


class Echo(TextEnv):
    default_reward_weights = {"said": 1.0}

    def on_reset(self, options):
        return "Say anything."

    def on_step(self, action):
        return Turn(f"{len(action)} characters", {"said": 1.0}, terminated=len(action) % 7 == 0)


def fuzz(env: TextEnv, n: int, seed: int = 0) -> tuple[float, int, int, str]:
    """Return (actions per second, exceptions, episodes, first error)."""
    rng = np.random.default_rng(seed)
    actions = list(fuzz_actions(rng, n))  # generated up front: time the env, not the generator
    env.reset(seed=seed)
    exceptions, episodes, first_error = 0, 1, ""
    start = time.perf_counter()
    for action in actions:
        try:
            transition = env.step(action)
            _check_transition(env, action, transition)
        except Exception as err:  # counted, not fatal: the bench reports every failure
            exceptions += 1
            first_error = first_error or f"{type(err).__name__}: {err}"[:200]
            transition = (None, 0.0, True, False, {})
        if transition[2] or transition[3]:
            env.reset(seed=int(rng.integers(2**31)))
            episodes += 1
    return n / (time.perf_counter() - start), exceptions, episodes, first_error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--actions", type=int, default=100_000)
    parser.add_argument("--env", action="append", help="env id (repeatable); default: every registered id")
    args = parser.parse_args()

    baseline, *_ = fuzz(Echo(), args.actions)
    print(f"baseline (echo env on the TextEnv base): {baseline:,.0f} actions/s")
    total = 0
    for env_id in args.env or list(registry()):
        rate, exceptions, episodes, error = fuzz(make(env_id), args.actions)
        total += exceptions
        print(
            f"{env_id:28s} {rate:>10,.0f} actions/s  ratio {rate / baseline:.3f}  episodes {episodes:>6}  "
            f"exceptions {exceptions}{'  first: ' + error if error else ''}"
        )
    print(f"exceptions: {total}")


if __name__ == "__main__":
    main()
