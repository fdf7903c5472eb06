"""turngym.algos: GRPO-family objectives as small pure functions and named objectives.

`OBJECTIVES` selects a named objective by the name a recipe uses. Each is a frozen dataclass of
hyperparameters with `filter`, `advantages` and `loss` (see `turngym.algos.objective`).
"""

from turngym.algos.dapo import DAPO
from turngym.algos.dr_grpo import DrGRPO
from turngym.algos.functional import (
    aggregate,
    broadcast_to_tokens,
    dynamic_sampling_keep,
    gfpo_select,
    gpg_alpha,
    group_advantage,
    gvpo_loss,
    kl_token,
    overlong_penalty,
    ppo_clip_token_loss,
    ratio,
    reinforce_token_loss,
    rloo_advantage,
)
from turngym.algos.gfpo import GFPO, GFPOState
from turngym.algos.gpg import GPG
from turngym.algos.grpo import GRPO
from turngym.algos.gspo import GSPO
from turngym.algos.gspo_token import GSPOToken
from turngym.algos.gvpo import GVPO
from turngym.algos.objective import Advantages, Objective, PolicyBatch, Selection, StepTotals, closest
from turngym.algos.pg import PG
from turngym.algos.rewards import RewardTable, discounted_returns
from turngym.algos.rloo import RLOO


class UnknownObjectiveError(KeyError):
    """A name `OBJECTIVES` does not hold; the message names the closest one and lists them all."""

    def __str__(self) -> str:
        return str(self.args[0])


class _ByName(dict):
    """A dict of objectives whose missing keys raise `UnknownObjectiveError` with the closest name."""

    def __missing__(self, name: object) -> type[Objective]:
        hint = closest(str(name), self)
        raise UnknownObjectiveError(f"unknown objective {name!r}.{hint} Choose one of: {', '.join(self)}.")


OBJECTIVES: dict[str, type[Objective]] = _ByName({
    "pg": PG,
    "rloo": RLOO,
    "grpo": GRPO,
    "dr_grpo": DrGRPO,
    "dapo": DAPO,
    "gspo": GSPO,
    "gspo_token": GSPOToken,
    "gpg": GPG,
    "gvpo": GVPO,
    "gfpo": GFPO,
})  # fmt: skip


__all__ = [
    "DAPO", "GFPO", "GFPOState", "GPG", "GRPO", "GSPO", "GVPO", "OBJECTIVES", "PG", "RLOO", "Advantages", "DrGRPO",
    "GSPOToken", "Objective", "PolicyBatch", "RewardTable", "Selection", "StepTotals", "UnknownObjectiveError",
    "aggregate", "broadcast_to_tokens", "discounted_returns", "dynamic_sampling_keep", "gfpo_select", "gpg_alpha",
    "group_advantage", "gvpo_loss", "kl_token", "overlong_penalty", "ppo_clip_token_loss", "ratio",
    "reinforce_token_loss", "rloo_advantage",
]  # fmt: skip
