"""A complete custom environment: find a buried treasure from "warmer" / "colder" feedback.

python examples/custom_env.py                              # register, check, play a scripted game
turngym check examples/custom_env.py:TreasureHunt          # the checker report
turngym play examples/custom_env.py:TreasureHunt --seed 3  # play it yourself
"""

import re

import turngym
from turngym.envs import TextEnv, Turn, last_bracketed

INVALID_WEIGHT = -0.1


class TreasureHunt(TextEnv):
    """Dig one cell of a size x size grid per turn until you find the treasure."""

    default_reward_weights = {"found": 1.0, "warmer": 0.1, "invalid": INVALID_WEIGHT}
    default_max_turns = 12

    def __init__(self, size: int = 5, **kwargs):
        if not 1 <= size <= 20:
            raise ValueError(f"TreasureHunt: size must be in 1..20, got {size}")
        super().__init__(**kwargs)  # max_turns, reward_weights, render_mode
        self.size = size

    def on_reset(self, options):
        self.treasure = tuple(int(v) for v in self.np_random.integers(0, self.size, size=2))
        self.last_distance = None
        return (
            f"A treasure is buried on a {self.size}x{self.size} grid (rows and columns 0 to {self.size - 1}). "
            "Dig one cell per turn and I will tell you whether you got warmer or colder. "
            f"Reply with the cell in square brackets as [row, column], for example {self.valid_action()}."
        )

    def valid_action(self):  # optional: a move the env accepts now (the checker plays it)
        return f"[{self.size // 2}, {self.size // 2}]"

    def on_step(self, action):
        match = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*", last_bracketed(action) or "")
        if not match or max(int(n) for n in match.groups()) >= self.size:
            problem = f"Invalid dig: reply with [row, column], numbers from 0 to {self.size - 1}."
            return Turn(problem, {"invalid": 1.0}, metrics={"invalid_action": True})
        row, col = (int(n) for n in match.groups())
        distance = abs(row - self.treasure[0]) + abs(col - self.treasure[1])
        if distance == 0:
            return Turn(
                f"You found the treasure at [{row}, {col}]!",
                {"found": 1.0},
                terminated=True,
                metrics={"won": True},
            )
        warmer = self.last_distance is not None and distance < self.last_distance
        hint = "nothing here" if self.last_distance is None else "warmer" if warmer else "colder or no closer"
        self.last_distance = distance
        return Turn(f"Nothing at [{row}, {col}]: {hint}.", {"warmer": float(warmer)})


if __name__ == "__main__":
    turngym.register("custom/TreasureHunt-v0", TreasureHunt, "Find a buried treasure by warmer/colder feedback")
    env = turngym.make("custom/TreasureHunt-v0", size=3)
    for result in turngym.check_env(env):  # raises if any check fails
        print(f"pass  {result.name}: {result.detail}")

    obs, _ = env.reset(seed=3)
    print("\n" + obs)
    for cell in [(r, c) for r in range(3) for c in range(3)]:  # a scripted player: dig row by row
        obs, reward, terminated, truncated, info = env.step(f"I'll dig [{cell[0]}, {cell[1]}]")
        print(f"> [{cell[0]}, {cell[1]}]  {obs}  reward={reward:+.2f}")
        if terminated or truncated:
            break
    print("won" if info["metrics"]["won"] else "lost")
