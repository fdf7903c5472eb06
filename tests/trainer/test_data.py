"""Training from recorded episodes (`data.episodes`): reading, checks, text-only tokenization, order, real runs."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from tests.agent.test_rollout import binary_search_policy
from tests.trainer.support import tiny_recipe
from turngym.agent import ScriptedGenerator, collect_groups, load_episodes, save_episodes
from turngym.agent.records import TrajectoryGroup
from turngym.trainer.config import load_recipe
from turngym.trainer.data import RecordedData, load_recorded
from turngym.trainer.metrics import read_metrics
from turngym.trainer.schema import RecipeError

GUESS = "turngym/GuessNumber-v0"
TO_TEXT = Path(__file__).parents[2] / "examples" / "offpolicy" / "to_text.py"
to_text = runpy.run_path(str(TO_TEXT))["to_text"]  # the script users run, loaded once


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def recipe(paths, objective="gvpo", group_size=2, **env) -> dict:
    return {
        "envs": [{"id": GUESS, **env}],
        "rollout": {"group_size": group_size, "groups_per_step": 1},
        "objective": objective,
        "data": {"episodes": [str(p) for p in paths]},
    }


def text_only(group: TrajectoryGroup) -> dict:
    """A group as a transcript would hold it (texts, rewards and stop reasons, no ids, no positions),
    made by examples/offpolicy/to_text.py, the script users run for the same purpose."""
    return to_text(group.to_dict())


def write(path, lines) -> str:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return str(path)


@pytest.mark.parametrize(("system_prompt", "max_turns", "max_tokens"), [(None, None, 64), ("Be brief.", 2, 3)])
def test_a_text_only_episode_tokenizes_to_the_ids_of_the_live_episode_it_was_made_from(
    tokenizer, tmp_path, system_prompt, max_turns, max_tokens
) -> None:
    """Won games, games cut by the turn limit, and replies cut by the token limit (no end-of-turn token)."""
    from turngym.agent import SamplingParams

    generator = ScriptedGenerator(tokenizer, binary_search_policy)
    live = collect_groups(
        GUESS,
        [0, 1],
        2,
        generator,
        max_turns=max_turns,
        system_prompt=system_prompt,
        sampling=SamplingParams(max_tokens=max_tokens),
        progress=False,
    )
    path = write(tmp_path / "text.jsonl", [text_only(g) for g in live])
    config = load_recipe(recipe([path], system_prompt=system_prompt, max_turns=max_turns))
    data = load_recorded(config, tokenizer)
    assert data.from_text == 2 and [g.seed for g in data.groups] == [0, 1]
    for played, rebuilt in zip(live, data.groups, strict=True):
        for a, b in zip(played.trajectories, rebuilt.trajectories, strict=True):
            assert b.token_ids == a.token_ids and b.loss_mask == a.loss_mask and b.prompt_length == a.prompt_length
            assert [(t.start, t.end) for t in b.turns] == [(t.start, t.end) for t in a.turns]
            assert (b.reward, b.rewards, b.stop_reason) == (a.reward, a.rewards, a.stop_reason)
            assert not b.has_sampling_logps and set(b.sampling_logps) == {0.0}
    if max_tokens == 3:  # every reply was cut, so the check above covered replies without an end-of-turn token
        assert {t.finish_reason for g in live for e in g.trajectories for t in e.turns} == {"length"}


def test_recorded_groups_keep_ids_and_logprobs_and_files_may_be_gzipped(tokenizer, tmp_path) -> None:
    generator = ScriptedGenerator(tokenizer, binary_search_policy)
    live = collect_groups(GUESS, [3, 4, 5], 2, generator, progress=False)
    save_episodes(tmp_path / "a.jsonl.gz", live[:2])
    save_episodes(tmp_path / "b.jsonl", live[2:])
    assert [g.seed for g in load_episodes(tmp_path / "a.jsonl.gz")] == [3, 4]
    config = load_recipe(recipe([tmp_path / "*.jsonl*"], objective="grpo"))
    data = load_recorded(config)  # no tokenizer needed: every episode has its ids
    assert [g.to_dict() for g in data.groups] == [g.to_dict() for g in live]
    assert data.summary() == "recorded episodes: 3 groups (6 episodes) from 2 files"


def test_turngym_eval_episode_files_load_with_every_models_groups(tokenizer, tmp_path) -> None:
    """`turngym eval` wraps each group as {model, env, seed, group}: written here by its own writer."""
    from turngym.trainer.eval_run import _append

    generator = ScriptedGenerator(tokenizer, binary_search_policy)
    groups = collect_groups(GUESS, [0, 1], 2, generator, progress=False)
    path = tmp_path / "episodes.jsonl"
    _append(path, "smollm2-135m", "guess 1..100", groups[:1])
    _append(path, "runs/demo", "guess 1..100", groups[1:])
    named = load_recorded(load_recipe(recipe([path], name="guess 1..100")))
    assert [(g.env_id, g.seed) for g in named.groups] == [("guess 1..100", 0), ("guess 1..100", 1)]
    by_id = load_recorded(load_recipe(recipe([path])))  # the label is not an entry: the group's env id is
    assert [(g.env_id, g.seed) for g in by_id.groups] == [(GUESS, 0), (GUESS, 1)]


def test_take_walks_seeded_passes_and_continues_from_any_position(tokenizer, tmp_path) -> None:
    groups = [TrajectoryGroup(GUESS, seed, []) for seed in range(5)]
    data = RecordedData(groups, [], seed=7)
    stream = [g.seed for g in data.take(15, 0)]
    assert [sorted(stream[i : i + 5]) for i in (0, 5, 10)] == [[0, 1, 2, 3, 4]] * 3  # each pass takes every group once
    assert stream[:5] != stream[5:10] or stream[5:10] != stream[10:]  # passes are reordered
    assert [g.seed for g in data.take(4, 3) + data.take(8, 7)] == stream[3:]  # any position continues the same stream
    assert [g.seed for g in RecordedData(groups, [], seed=7).take(15, 0)] == stream  # seeded
    assert [g.seed for g in RecordedData(groups, [], shuffle=False).take(7, 0)] == [0, 1, 2, 3, 4, 0, 1]


def test_bad_recorded_data_is_an_error_naming_the_file_and_line(tokenizer, tmp_path) -> None:
    generator = ScriptedGenerator(tokenizer, binary_search_policy)
    [group] = collect_groups(GUESS, [0], 2, generator, progress=False)
    good = group.to_dict()
    cases = [
        ([good, "{not json"], "grpo", ":2: not an episode group ({env_id, seed, trajectories})"),
        ([{**good, "env_id": "turngym/GuessNumbr-v0"}], "grpo", "closest: 'turngym/GuessNumber-v0'"),
        ([{**good, "trajectories": good["trajectories"][:1]}], "grpo", ":1: a group of 1 episode(s)"),
        ([text_only(group)], "grpo", "train on them with gvpo (objective.name=gvpo)"),
        ([good, {**good, "trajectories": good["trajectories"] * 2}], "gvpo", ":2: a group of 4 episodes; gvpo needs"),
        ([{**good, "trajectories": [{"turns": []}, {"turns": []}]}], "gvpo", ":1: an episode that cannot be used"),
    ]
    rebuilt = {**good, "trajectories": [{**t, "has_sampling_logps": False} for t in good["trajectories"]]}
    text = text_only(group)
    episode = good["trajectories"][0]
    cases += [
        ([rebuilt], "grpo", ":1: episodes without behaviour logprobs (no token ids, or has_sampling_logps false)"),
        ([{**good, "trajectories": [{**episode, "loss_mask": [0]}] * 2}], "grpo", "and sampling_logps have "),
        ([{**good, "trajectories": [{**episode, "token_ids": [10**7] * len(episode["token_ids"])}] * 2}], "grpo",
         "outside the policy's"),
        ([{**good, "trajectories": "x"}], "grpo", ":1: not an episode group"),
        ([{**text, "trajectories": [{**t, "stop_reason": "won"} for t in text["trajectories"]]}], "gvpo",
         "stop_reason 'won' is not one of"),
    ]  # fmt: skip
    for lines, objective, expected in cases:
        path = write(tmp_path / "bad.jsonl", lines)
        with pytest.raises(RecipeError, match="data.episodes") as err:
            load_recorded(load_recipe(recipe([path], objective=objective)), tokenizer)
        assert expected in str(err.value) and f"{path}:" in str(err.value)
    path = write(tmp_path / "other.jsonl", [good])  # recorded with a system prompt this recipe does not give
    with pytest.raises(RecipeError, match="its prompt is not what this recipe's model, chat template and system"):
        load_recorded(load_recipe(recipe([path], objective="grpo", system_prompt="Be brief.")), tokenizer)
    two = {**recipe([path], objective="grpo"), "envs": [GUESS, {"id": GUESS, "kwargs": {"high": 8}}]}
    with pytest.raises(RecipeError, match="is the id of several entries of envs; give them `name:`s"):
        load_recorded(load_recipe(two), tokenizer)
    few = {**recipe([path], objective="grpo"), "rollout": {"group_size": 2, "groups_per_step": 2}}
    with pytest.raises(RecipeError, match="1 usable group.*fewer than the 2 recorded groups each step takes"):
        load_recorded(load_recipe(few), tokenizer)
    cut = tmp_path / "cut.jsonl.gz"
    save_episodes(cut, [group] * 50)
    cut.write_bytes(cut.read_bytes()[:-40])
    with pytest.raises(RecipeError, match=r"cut.jsonl.gz:\d+: cannot be read: EOFError"):
        load_recorded(load_recipe(recipe([cut], objective="grpo")), tokenizer)
    with pytest.raises(RecipeError, match=r"data.episodes.0: '.*nothing\*.jsonl' matches no file"):
        load_recorded(load_recipe(recipe([tmp_path / "nothing*.jsonl"])))


def test_text_only_turns_get_the_default_state_keys_of_the_live_episode(tokenizer, tmp_path) -> None:
    """Mastermind has no `state_key`: the rollout's digest of the observations, rebuilt from the texts."""
    mastermind = "turngym/Mastermind-v0"
    generator = ScriptedGenerator(tokenizer, lambda prompt: "[1 2 3 4]")
    live = collect_groups(mastermind, [0], 2, generator, max_turns=3, progress=False)
    data = text_only(live[0])
    for trajectory in data["trajectories"]:
        for turn in trajectory["turns"]:
            turn.pop("state")
    without_keys = write(tmp_path / "bare.jsonl", [data])
    spec = {"envs": [{"id": mastermind, "max_turns": 3}], "rollout": {"group_size": 2, "groups_per_step": 1}}
    spec["objective"] = "gvpo"
    [rebuilt] = load_recorded(load_recipe({**spec, "data": {"episodes": [without_keys]}}), tokenizer).groups
    states = [[t.state for t in e.turns] for e in live[0].trajectories]
    assert [[t.state for t in e.turns] for e in rebuilt.trajectories] == states
    assert all(key.startswith("obs:") for keys in states for key in keys) and len(states[0]) == 3


def test_groups_with_a_failed_episode_are_left_out_and_counted(tokenizer, tmp_path) -> None:
    generator = ScriptedGenerator(tokenizer, binary_search_policy)
    groups = collect_groups(GUESS, [0, 1], 2, generator, progress=False)
    broken = groups[1].to_dict()
    broken["trajectories"][0]["stop_reason"] = "error"
    path = write(tmp_path / "some.jsonl", [groups[0].to_dict(), broken])
    data = load_recorded(load_recipe(recipe([path])), tokenizer)
    assert [g.seed for g in data.groups] == [0] and data.failed == 1
    assert data.summary().endswith("; 1 group(s) with a failed episode left out")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"live_fraction": 0.05, "episodes": ["x"]}, "0.05 of rollout.groups_per_step (8) rounds to 0 live groups"),
        ({"live_fraction": 0.5}, "data.live_fraction: 0.5 leaves part of each step to recorded episodes"),
        ({"live_fraction": 1.5, "episodes": ["x"]}, "data.live_fraction: must be in [0, 1], got 1.5"),
        ({"episodes": ["x"], "mode": "none"}, "correction.mode: recorded episodes come from another policy, and grpo"),
    ],
)
def test_recipe_checks_of_the_data_section(data, expected) -> None:
    correction = {"mode": data.pop("mode")} if "mode" in data else {}
    with pytest.raises(RecipeError) as err:
        load_recipe({"envs": [GUESS], "data": data, "correction": correction})
    assert expected in str(err.value)
    if correction:  # the same data with GVPO, which needs no correction, is fine
        load_recipe({"envs": [GUESS], "data": data, "objective": "gvpo", "correction": correction})


def test_live_fraction_defaults_to_zero_with_recorded_episodes() -> None:
    assert load_recipe({"envs": [GUESS]}).live_fraction == 1.0
    assert load_recipe({"envs": [GUESS], "data": {"episodes": ["a.jsonl"]}}).live_fraction == 0.0


# --- real training runs -------------------------------------------------------------------------


def test_a_run_saves_its_episodes_and_another_trains_on_them_with_no_engine(
    engine, tiny_model_dir, tmp_path, monkeypatch
) -> None:
    """Real path: a live run records; a GVPO run on the records alone starts no vLLM engine and learns from them."""
    import turngym.trainer.loop as loop
    from turngym.trainer import train

    first = tmp_path / "live"
    train(load_recipe(tiny_recipe(tiny_model_dir, first, run={"steps": 2, "save_episodes": True})), generator=engine)
    files = sorted((first / "episodes").iterdir())
    assert [f.name for f in files] == ["step-000001.jsonl.gz", "step-000002.jsonl.gz"]
    assert [len(load_episodes(f)) for f in files] == [3, 3]

    def no_engine(*args, **kwargs):
        raise AssertionError("a run on recorded episodes alone started a vLLM engine")

    monkeypatch.setattr(loop, "_build_generator", no_engine)
    second = tmp_path / "recorded"
    spec = tiny_recipe(
        tiny_model_dir, second, run={"steps": 3}, objective="gvpo", data={"episodes": [f"{first}/episodes/*"]}
    )
    result = train(load_recipe(spec))
    assert result.step == 3
    records = read_metrics(second)
    assert [r["groups_recorded"] for r in records] == [3.0, 3.0, 3.0]
    assert all(r["tokens_trained"] > 0 and r["skipped_update"] == 0 for r in records)
    assert "recorded episodes: 6 groups (24 episodes) from 2 files" in (second / "train.log").read_text()


def test_recorded_and_live_groups_mix_to_the_steps_group_count_and_resume_where_they_were(
    engine, tiny_model_dir, tmp_path
) -> None:
    """Half of each step's 4 groups recorded, half live; a resumed run takes the recorded groups it would have."""
    from turngym.trainer import train

    source = tmp_path / "source"
    train(load_recipe(tiny_recipe(tiny_model_dir, source, run={"steps": 2, "save_episodes": True})), generator=engine)
    recorded = {"episodes": [f"{source}/episodes/*.jsonl.gz"], "live_fraction": 0.5}
    settings = {"checkpoint_every": 1, "save_episodes": True, "seed_start": LIVE_START}

    def run(name, steps, *extra):
        spec = tiny_recipe(tiny_model_dir, tmp_path / name, run={"steps": steps, **settings}, data=recorded)
        spec["rollout"] |= {"groups_per_step": 4}
        return train(load_recipe(spec, extra), generator=engine)

    run("whole", 4)
    whole = read_metrics(tmp_path / "whole")
    assert [(r["groups_collected"], r["groups_recorded"]) for r in whole] == [(4.0, 2.0)] * 4
    run("cut", 2)
    run("cut", 4, "run.resume=auto")
    cut = read_metrics(tmp_path / "cut")
    assert [r["step"] for r in cut] == [1, 2, 3, 4]
    from turngym.trainer.checkpoint import load_trainer_state

    assert load_trainer_state(tmp_path / "cut" / "checkpoints" / "step-000004")["data_position"] == 8
    # each step's recorded groups (their mean reward tells them apart) are the same, resumed or not
    assert [r["recorded/reward"] for r in cut] == [r["recorded/reward"] for r in whole]
    assert len({r["recorded/reward"] for r in whole[:3]}) == 3  # three different pairs of the 6 groups
    saved = sorted((tmp_path / "cut" / "episodes").iterdir())  # the played groups only, one file per step
    assert [len(load_episodes(f)) for f in saved] == [2, 2, 2, 2]
    assert all(g.seed >= LIVE_START for f in saved for g in load_episodes(f))


LIVE_START = 1000  # live seeds of the mixing runs start here; the recorded groups' seeds are 0..5


def test_the_offpolicy_example_records_what_its_recipes_read(examples_dir) -> None:
    """examples/offpolicy: the recording suite's env label is the recipes' env name, its game theirs."""
    from turngym.trainer.suite import load_suite

    suite = load_suite(examples_dir / "offpolicy" / "record.yaml")
    [recorded] = suite.envs
    assert suite.episodes_per_seed == 8 and len(suite.seeds_of(recorded)) == 192
    for name in ("gvpo", "grpo"):
        config = load_recipe(examples_dir / "offpolicy" / f"{name}.yaml")
        assert config.env_names == [recorded.name] and config.envs[0].kwargs == recorded.kwargs
        assert config.live_fraction == 0.0 and config.rollout.group_size == suite.episodes_per_seed
        assert config.rollout.groups_per_step * config.run.steps == len(suite.seeds_of(recorded))


def test_to_text_script_turns_an_eval_file_into_a_transcript_that_trains_from_text(tokenizer, tmp_path) -> None:
    generator = ScriptedGenerator(tokenizer, binary_search_policy)
    live = collect_groups(GUESS, [0, 1], 2, generator, progress=False)
    lines = [{"model": "m", "env": GUESS, "seed": g.seed, "group": g.to_dict()} for g in live]  # turngym eval's shape
    source, out = write(tmp_path / "episodes.jsonl", lines), tmp_path / "text.jsonl"
    done = subprocess.run([sys.executable, str(TO_TEXT), source, str(out)], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == f"2 groups, text only, in {out}"
    for line in out.read_text().splitlines():
        for trajectory in json.loads(line)["group"]["trajectories"]:
            assert not {"token_ids", "loss_mask", "sampling_logps", "prompt_length"} & set(trajectory)
            assert trajectory["first_observation"] and all("start" not in t for t in trajectory["turns"])
    data = load_recorded(load_recipe(recipe([str(out)])), tokenizer)
    assert data.from_text == 2
    rebuilt = [t.token_ids for g in data.groups for t in g.trajectories]
    assert rebuilt == [t.token_ids for g in live for t in g.trajectories]
