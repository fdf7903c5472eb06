"""Objectives on real episodes: vLLM rollouts in, transformers logprobs, a loss with a gradient out."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from turngym.agent import SamplingParams, collect_groups
from turngym.algos import DAPO, GRPO, GVPO, PolicyBatch, StepTotals, broadcast_to_tokens
from turngym.algos.rewards import RewardTable, discounted_returns
from turngym.envs import TextEnv, Turn, register, registry

D = torch.float64


class Vowels(TextEnv):
    """Two turns; each reply is rewarded by its share of vowels, so a random model's rewards vary."""

    default_reward_weights = {"vowels": 1.0}
    default_max_turns = 2

    def on_reset(self, options):
        return "Say something with many vowels."

    def on_step(self, action):
        share = sum(c in "aeiou" for c in action.lower()) / max(len(action), 1)
        return Turn(f"{share:.2f} of that was vowels. Again.", {"vowels": share})


@pytest.fixture(scope="module")
def vowels_env() -> str:
    """Registered when the test runs, not at import, so other modules' lists of ids do not see it."""
    if "tests/Vowels-v0" not in registry():
        register("tests/Vowels-v0", Vowels, "reward = share of vowels in the reply")
    return "tests/Vowels-v0"


def to_batch(groups, advantages, model):
    """Right-pad the trajectories; logps[:, t] is the model's logprob of token t (0 at t = 0)."""
    rows = [t for g in groups for t in g.trajectories]
    width = max(len(t.token_ids) for t in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)  # (N, T)
    mask = torch.zeros(len(rows), width)  # (N, T)
    old = torch.zeros(len(rows), width)  # (N, T)
    turn_index = torch.full((len(rows), width), -1)  # (N, T)
    for i, t in enumerate(rows):
        ids[i, : len(t.token_ids)] = torch.tensor(t.token_ids)
        mask[i, : len(t.loss_mask)] = torch.tensor(t.loss_mask, dtype=torch.float)
        old[i, : len(t.sampling_logps)] = torch.tensor(t.sampling_logps)
        for k, turn in enumerate(t.turns):
            turn_index[i, turn.start : turn.end] = k
    logits = model(ids).logits.float()  # (N, T, V)
    token_logps = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # (N, T-1)
    logps = torch.nn.functional.pad(token_logps, (1, 0))  # (N, T)
    group_ids = torch.tensor([g for g, group in enumerate(groups) for _ in group.trajectories])  # (N,)
    batch = PolicyBatch(mask, broadcast_to_tokens(advantages.float(), turn_index), group_ids, old_logps=old)
    return logps, batch


@pytest.mark.parametrize(
    "objective",
    [GRPO(), DAPO(dynamic_sampling=False), GVPO(), GRPO(credit="turn")],
    ids=["grpo", "dapo", "gvpo", "grpo-turn"],
)
def test_objective_on_real_episodes(objective, vowels_env, vllm_tiny, tiny_model_dir) -> None:
    sampling = SamplingParams(temperature=1.0, max_tokens=16, seed=0)
    groups = collect_groups(vowels_env, [0, 1], 3, vllm_tiny, sampling=sampling, progress=False)
    selection = objective.filter(groups)
    advantages = objective.advantages(selection.groups)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    logps, batch = to_batch(selection.groups, advantages.values, model)
    sampled = batch.loss_mask.bool()
    # the trainer's logprobs at sampled positions are the sampler's (bf16 tolerance): tokens line up
    assert (logps.detach()[sampled] - batch.old_logps[sampled]).abs().max() < 0.1
    loss, metrics = objective.loss(logps, batch, StepTotals.of(batch.loss_mask, batch.group_ids))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert math.isfinite(loss.item()) and grads and all(bool(torch.isfinite(g).all()) for g in grads)
    assert any(bool(g.abs().sum() > 0) for g in grads)  # rewards vary within groups: a gradient
    if "ratio_mean" in metrics:
        assert abs(metrics["ratio_mean"] - 1.0) < 0.05  # on-policy up to bf16 sampling


def test_step_credit_on_real_episodes(vowels_env, vllm_tiny) -> None:
    sampling = SamplingParams(temperature=1.0, max_tokens=8, seed=0)
    # GuessNumber keys a state by what is still possible: every episode of a group starts in one state
    [group] = collect_groups(
        "turngym/GuessNumber-v0", [0], 8, vllm_tiny, sampling=sampling, env_kwargs={"low": 1, "high": 4}, progress=False
    )
    assert {t.turns[0].state for t in group.trajectories} == {"1..4, 7 left"}
    assert GRPO(credit="step").advantages([group]).metrics["anchor_coverage"] > 0
    # Vowels has no key of its own: the first turns share the first observation, later ones differ.
    # Step credit moves each shared-state turn's advantage by (its return - the state's mean return).
    groups = collect_groups(vowels_env, [0, 1], 4, vllm_tiny, sampling=sampling, progress=False)
    table = RewardTable.from_groups(groups)
    step = GRPO(credit="step").advantages(groups).values  # (N, K)
    episode = GRPO().advantages(groups).values  # (N,)
    moved = step - episode[:, None] * table.turn_mask  # (N, K)
    returns = discounted_returns(table.turn_total, table.turn_mask, 1.0)  # (N, K)
    anchors: dict[tuple[int, str], list[tuple[int, int]]] = {}
    for i, (g, t) in enumerate((g, t) for g, group in enumerate(groups) for t in group.trajectories):
        for k, turn in enumerate(t.turns):
            anchors.setdefault((g, turn.state), []).append((i, k))
    assert len({state for g, state in anchors if g == 0}) > 1  # first turns share; later ones mostly not
    for members in anchors.values():
        index = tuple(torch.tensor(members).T)
        expected = returns[index] - returns[index].mean() if len(members) > 1 else torch.zeros(1, dtype=D)
        torch.testing.assert_close(moved[index], expected.expand(len(members)))
    first = next(members for members in anchors.values() if (0, 0) in members)
    assert len(first) == 4 and bool((moved[tuple(torch.tensor(first).T)] != 0).any())  # replies differ
