"""collect_groups: token-exact multi-turn episodes, grouping, lock-step batching, budgets, records."""

from __future__ import annotations

import math
import re

import pytest
from transformers import AutoTokenizer

from turngym.agent import (
    ChatFormat,
    SamplingParams,
    ScriptedGenerator,
    TrajectoryGroup,
    collect_groups,
    load_episodes,
    save_episodes,
)
from turngym.envs import registry

BUILT_IN = [i for i in registry() if i.startswith("turngym/")]  # not ids tests register


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def binary_search_policy(prompt: str) -> str:
    """Reads the whole conversation text, like a model would, and halves the range."""
    low, high = 1, 100
    for guess, direction in re.findall(r"(\d+) is wrong: the number is (higher|lower)", prompt):
        low, high = (int(guess) + 1, high) if direction == "higher" else (low, int(guess) - 1)
    return f"Let me think. [{(low + high) // 2}]"


def check_token_layout(trajectory, tokenizer) -> None:
    """Mask-1 tokens are exactly each turn's action; mask-0 tokens are the prompt and feedback."""
    ids, mask, logps = trajectory.token_ids, trajectory.loss_mask, trajectory.sampling_logps
    assert len(ids) == len(mask) == len(logps)
    assert trajectory.prompt_length > 0 and not any(mask[: trajectory.prompt_length])
    sampled_positions = set()
    for turn in trajectory.turns:
        assert all(mask[turn.start : turn.end]) and turn.end > turn.start
        assert tokenizer.decode(ids[turn.start : turn.end], skip_special_tokens=True) == turn.action
        sampled_positions |= set(range(turn.start, turn.end))
    assert {i for i, m in enumerate(mask) if m} == sampled_positions
    assert all(logps[i] == 0.0 for i in range(len(ids)) if not mask[i])
    assert all(math.isfinite(logps[i]) and logps[i] <= 0.0 for i in sampled_positions)
    assert trajectory.first_observation in tokenizer.decode(ids[: trajectory.prompt_length])
    for before, after in zip(trajectory.turns, trajectory.turns[1:], strict=False):
        between = tokenizer.decode(ids[before.end : after.start])
        assert before.feedback.strip() in between and not any(mask[before.end : after.start])


def test_scripted_binary_search_wins_with_one_batched_call_per_turn(tokenizer) -> None:
    generator = ScriptedGenerator(tokenizer, binary_search_policy)
    groups = collect_groups("turngym/GuessNumber-v0", [0, 1, 2], 4, generator, progress=False)
    assert [g.seed for g in groups] == [0, 1, 2] and all(len(g.trajectories) == 4 for g in groups)
    for group in groups:
        for trajectory in group.trajectories:
            assert trajectory.metrics["won"] and trajectory.stop_reason == "terminated" and trajectory.terminated
            assert trajectory.reward == 1.0 and trajectory.rewards == {
                "won": 1.0,
                "invalid": 0.0,
                "ruled_out": 0.0,
                "several_guesses": 0.0,
            }
            check_token_layout(trajectory, tokenizer)
    # lock-step: one generate call per turn over all live episodes; the batch shrinks as games end
    turns = max(t.num_turns for g in groups for t in g.trajectories)
    assert len(generator.calls) == turns and generator.calls[0] == 12
    assert generator.calls == sorted(generator.calls, reverse=True)


def test_rollout_turn_limit_and_context_budget_end_episodes_without_crashing(tokenizer) -> None:
    generator = ScriptedGenerator(tokenizer, lambda prompt: "no idea")
    [group] = collect_groups("turngym/GuessNumber-v0", [0], 2, generator, max_turns=3, progress=False)
    assert {(t.num_turns, t.stop_reason, t.truncated) for t in group.trajectories} == {(3, "max_turns", True)}

    [group] = collect_groups("turngym/GuessNumber-v0", [0], 2, generator, max_context_tokens=150, progress=False)
    for trajectory in group.trajectories:
        assert trajectory.stop_reason == "context" and trajectory.truncated and len(trajectory.token_ids) <= 150
        check_token_layout(trajectory, tokenizer)

    no_room = r"max_context_tokens=10 leaves no room to play turngym/GuessNumber-v0: .* shortest has \d+ tokens"
    with pytest.raises(ValueError, match=no_room):
        collect_groups("turngym/GuessNumber-v0", [0], 1, generator, max_context_tokens=10, progress=False)


def test_a_long_reply_is_cut_to_the_budget(tokenizer) -> None:
    generator = ScriptedGenerator(tokenizer, lambda prompt: "blah " * 400)
    [group] = collect_groups("turngym/GuessNumber-v0", [0], 1, generator, max_context_tokens=200, progress=False)
    [trajectory] = group.trajectories
    assert len(trajectory.token_ids) == 200 and trajectory.stop_reason == "context"
    assert trajectory.turns[-1].finish_reason == "length"
    check_token_layout(trajectory, tokenizer)


def test_episodes_round_trip_through_jsonl(tokenizer, tmp_path) -> None:
    generator = ScriptedGenerator(tokenizer, binary_search_policy)
    groups = collect_groups("turngym/GuessNumber-v0", [5, 6], 2, generator, progress=False)
    path = tmp_path / "episodes.jsonl"
    save_episodes(path, groups)
    assert load_episodes(path) == groups
    assert isinstance(load_episodes(path)[0], TrajectoryGroup)


def test_turns_carry_state_keys_that_round_trip_and_load_empty_from_old_files(tokenizer, tmp_path) -> None:
    generator = ScriptedGenerator(tokenizer, binary_search_policy)
    [group] = collect_groups("turngym/GuessNumber-v0", [5], 2, generator, progress=False)
    first = group.trajectories[0].turns
    # GuessNumber's own key: the numbers still possible and the guesses left, before each guess
    assert first[0].state == "1..100, 7 left"
    assert first[1].state in ("1..49, 6 left, 50 tried", "51..100, 6 left, 50 tried")
    assert [t.state for t in group.trajectories[1].turns] == [t.state for t in first]  # same seed, same play
    path = tmp_path / "episodes.jsonl"
    save_episodes(path, [group])
    assert load_episodes(path)[0].trajectories[0].turns[0].state == "1..100, 7 left"
    old = group.to_dict()
    for trajectory in old["trajectories"]:
        for turn in trajectory["turns"]:
            del turn["state"]  # a file written before state keys existed
    assert TrajectoryGroup.from_dict(old).trajectories[0].turns[0].state == ""


def test_default_state_key_is_the_observation_history(tokenizer) -> None:
    # Mastermind has no key of its own: the rollout keys each turn by the observations so far
    answers = iter(["[1 2 3 4]", "[1 2 3 4]", "[4 3 2 1]"] + ["[1 1 1 1]"] * 3)  # turn 1, then turn 2
    generator = ScriptedGenerator(tokenizer, lambda prompt: next(answers))
    [group] = collect_groups("turngym/Mastermind-v0", [3], 3, generator, max_turns=2, progress=False)
    keys = [[t.state for t in trajectory.turns] for trajectory in group.trajectories]
    assert [len(row) for row in keys] == [2, 2, 2]
    assert all(k.startswith("obs:") for row in keys for k in row)
    assert keys[0][0] == keys[1][0] == keys[2][0]  # the same first observation
    # turn 2: the same guess gave the same feedback (rows 0 and 1); row 2 guessed differently
    assert keys[0][1] == keys[1][1] != keys[2][1] and keys[0][1] != keys[0][0]


def test_unusable_generators_and_budgets_are_clear_errors(tokenizer, vllm_tiny) -> None:
    with pytest.raises(TypeError, match="neither a Generator"):
        collect_groups("turngym/GuessNumber-v0", [0], 1, object(), progress=False)
    with pytest.raises(ValueError, match="exceeds the generator's max_model_len=1024"):
        collect_groups("turngym/GuessNumber-v0", [0], 1, vllm_tiny, max_context_tokens=4096, progress=False)
    for seeds, group_size, kwargs, message in [
        ([0], 0, {}, "group_size must be an int >= 1, got 0"),
        ([0], 2.5, {}, "group_size must be an int >= 1, got 2.5"),
        ([], 2, {}, "seeds is empty"),
        ([0, -1], 2, {}, "seeds must be ints >= 0, got [-1]"),
        ([0], 2, {"max_turns": 0}, "max_turns must be an int >= 1"),
        ([0], 2, {"max_context_tokens": 0}, "max_context_tokens must be an int >= 1"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            collect_groups("turngym/GuessNumber-v0", seeds, group_size, vllm_tiny, progress=False, **kwargs)


@pytest.mark.parametrize("env_id", BUILT_IN)
def test_real_vllm_episodes_are_token_exact_for_every_built_in_env(env_id, vllm_tiny) -> None:
    sampling = SamplingParams(temperature=1.0, max_tokens=24, seed=0)
    groups = collect_groups(env_id, [0, 1], 2, vllm_tiny, sampling=sampling, max_context_tokens=400, progress=False)
    for group in groups:
        firsts = {t.first_observation for t in group.trajectories}
        prompts = {tuple(t.token_ids[: t.prompt_length]) for t in group.trajectories}
        assert len(firsts) == 1 and len(prompts) == 1  # a group starts from one state
        for trajectory in group.trajectories:
            assert trajectory.num_turns >= 1
            check_token_layout(trajectory, vllm_tiny.tokenizer)


def test_sampling_logprobs_are_the_samplers(vllm_tiny) -> None:
    """The logprobs stored on mask-1 positions are those vLLM reported for these exact tokens."""
    import torch
    from transformers import AutoModelForCausalLM

    from tests.helpers import hf_token_logps  # a transformers forward pass as the reference

    model = AutoModelForCausalLM.from_pretrained(vllm_tiny.model_path, dtype=torch.float32).eval()
    [group] = collect_groups(
        "turngym/GuessNumber-v0", [3], 1, vllm_tiny, sampling=SamplingParams(max_tokens=16, seed=1), progress=False
    )
    [trajectory] = group.trajectories
    for turn in trajectory.turns[:3]:
        ref = hf_token_logps(model, trajectory.token_ids[: turn.start], trajectory.token_ids[turn.start : turn.end])
        got = torch.tensor(trajectory.sampling_logps[turn.start : turn.end])
        assert (ref - got).abs().max() <= 0.1  # the bf16 tolerance of test_vllm_generator


def test_greedy_group_on_a_deterministic_env_is_identical(vllm_tiny) -> None:
    greedy = SamplingParams(temperature=0.0, max_tokens=16)
    for env_id in ["turngym/GuessNumber-v0", "turngym/Mastermind-v0"]:
        [group] = collect_groups(env_id, [7], 4, vllm_tiny, sampling=greedy, max_context_tokens=300, progress=False)
        first = group.trajectories[0]
        assert all(t == first for t in group.trajectories[1:])


def test_chat_format_is_built_from_the_generators_tokenizer(vllm_tiny) -> None:
    assert ChatFormat(vllm_tiny.tokenizer).prefix_stable


def test_on_turn_reports_each_turn_as_it_is_played(tokenizer) -> None:
    generator = ScriptedGenerator(tokenizer, binary_search_policy)
    seen = []  # (group, episode, generate calls so far, action)

    def on_turn(group_index, episode_index, turn) -> None:
        seen.append((group_index, episode_index, len(generator.calls), turn.action))

    groups = collect_groups("turngym/GuessNumber-v0", [3, 4], 2, generator, progress=False, on_turn=on_turn)
    for g, group in enumerate(groups):
        for e, trajectory in enumerate(group.trajectories):
            mine = [(calls, action) for gi, ei, calls, action in seen if (gi, ei) == (g, e)]
            # turn k of an episode is reported right after the k-th batched generate call, not at the end
            assert mine == [(k, turn.action) for k, turn in enumerate(trajectory.turns, start=1)]
    assert len(seen) == sum(t.num_turns for g in groups for t in g.trajectories)
