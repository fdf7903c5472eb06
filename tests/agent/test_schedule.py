"""Per-episode rollouts (`schedule="per_episode"`): the lock-step episodes, without waiting on slow envs."""

from __future__ import annotations

import threading
import time

import pytest
from transformers import AutoTokenizer

from turngym.agent import SamplingParams, ScriptedGenerator, collect_groups
from turngym.agent.generator import BatchStream
from turngym.envs import TextEnv, Turn


class Sleepy(TextEnv):
    """Two turns; the first step of seed 0's episodes sleeps 2 s and notes how far the sampler got meanwhile."""

    default_reward_weights = {"ok": 1.0}
    default_max_turns = 2
    steps_during_sleep: list[int] = []
    counter: list[int] = [0]  # stream steps so far (the test's counting stream updates it)

    def on_reset(self, options):
        self.slow = self.np_random_seed == 0
        return "Say anything."

    def on_step(self, action):
        if self.slow and self.turn == 1:
            before = Sleepy.counter[0]
            time.sleep(2.0)
            Sleepy.steps_during_sleep.append(Sleepy.counter[0] - before)
        return Turn("Again.", {"ok": 1.0})


class CountingStream(BatchStream):
    """A `BatchStream` that counts its steps into `Sleepy.counter`."""

    def step(self):
        done = super().step()
        Sleepy.counter[0] += 1
        return done


class Breaks(Sleepy):
    """Raises on the second step of seed 1's episodes."""

    def on_step(self, action):
        if self.np_random_seed == 1 and self.turn == 2:
            raise RuntimeError("broke")
        return Turn("Again.", {"ok": 1.0})


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def scripted(tokenizer) -> ScriptedGenerator:
    generator = ScriptedGenerator(tokenizer, lambda prompt: "fine")
    generator.stream = lambda: CountingStream(generator)  # the stream collect_groups takes (`stream_of`)
    return generator


def test_a_slow_env_does_not_hold_up_the_other_episodes(tokenizer) -> None:
    """Lock-step waits for the sleeping env before anyone's next turn; per episode, the others play on."""
    for schedule, expected in (("lock_step", 0), ("per_episode", 1)):
        Sleepy.steps_during_sleep.clear()
        groups = collect_groups(Sleepy, [0, 1], 2, scripted(tokenizer), schedule=schedule, progress=False)
        assert [t.num_turns for g in groups for t in g.trajectories] == [2, 2, 2, 2]
        assert len(Sleepy.steps_during_sleep) == 2  # seed 0's two episodes slept
        if expected == 0:
            assert Sleepy.steps_during_sleep == [0, 0]  # nothing was sampled while an env slept
        else:
            assert max(Sleepy.steps_during_sleep) >= expected  # seed 1's second turns were sampled meanwhile


def test_an_env_error_ends_only_its_episode(tokenizer) -> None:
    groups = collect_groups(
        Breaks, [0, 1], 2, scripted(tokenizer), schedule="per_episode", errors="record", progress=False
    )
    reasons = [[t.stop_reason for t in g.trajectories] for g in groups]
    assert reasons == [["truncated", "truncated"], ["error", "error"]]  # the env's own 2-turn limit, the error
    assert "broke" in groups[1].trajectories[0].error
    with pytest.raises(RuntimeError, match="broke"):
        collect_groups(Breaks, [1], 1, scripted(tokenizer), schedule="per_episode", progress=False)
    with pytest.raises(ValueError, match="schedule must be 'lock_step' or 'per_episode'"):
        collect_groups(Breaks, [1], 1, scripted(tokenizer), schedule="async", progress=False)


@pytest.mark.parametrize("env_id", ["turngym/GuessNumber-v0", "turngym/Mastermind-v0"])
def test_both_schedules_play_the_same_episodes_on_real_vllm(env_id, vllm_tiny) -> None:
    """Seeded per request from (episode, turn): the order in which turns run changes nothing."""
    sampling = SamplingParams(temperature=1.0, max_tokens=24, seed=5, stop=("e",))  # replies of uneven lengths
    runs = [
        collect_groups(env_id, [0, 1, 2], 3, vllm_tiny, sampling=sampling, max_context_tokens=400, schedule=s,
                       progress=False)
        for s in ("lock_step", "per_episode", "lock_step")
    ]  # fmt: skip
    lock, per_episode, again = ([t.to_dict() for g in groups for t in g.trajectories] for groups in runs)
    assert lock == again  # seeded: reproducible
    assert per_episode == lock
    lengths = {turn["end"] - turn["start"] for t in lock for turn in t["turns"]}
    assert len(lengths) > 3  # the turns did end at different engine steps


def test_per_episode_overlaps_turns_on_real_vllm(vllm_tiny, monkeypatch) -> None:
    """Episodes whose replies end early start their next turn while longer replies are still being sampled."""
    from turngym.agent.vllm_generator import VLLMStream

    starts: dict[int, list[int]] = {}
    steps = [0]
    lock = threading.Lock()

    class Watched(VLLMStream):
        def submit(self, key, prompt, sampling):
            with lock:
                starts.setdefault(key, []).append(steps[0])
            super().submit(key, prompt, sampling)

        def step(self):
            steps[0] += 1
            return super().step()

    monkeypatch.setattr(vllm_tiny, "stream", lambda: Watched(vllm_tiny))
    sampling = SamplingParams(temperature=1.0, max_tokens=32, seed=3, stop=("e",))
    collect_groups("turngym/GuessNumber-v0", [0, 1], 4, vllm_tiny, sampling=sampling, schedule="per_episode",
                   progress=False)  # fmt: skip
    second_turns = sorted(times[1] for times in starts.values() if len(times) > 1)
    assert second_turns and second_turns[0] < second_turns[-1]  # second turns began at different engine steps


@pytest.mark.parametrize("schedule", ["lock_step", "per_episode"])
def test_a_mixture_of_two_envs_plays_in_one_stream(tokenizer, schedule) -> None:
    """play_groups: GuessNumber and Sleepy groups in one rollout, each with its own kwargs, turn limit and name."""
    from turngym.agent import GroupSpec, play_groups

    generator = scripted(tokenizer)
    streams = []
    make = generator.stream
    generator.stream = lambda: streams.append(1) or make()
    specs = [
        GroupSpec("turngym/GuessNumber-v0", 3, {"high": 4}, max_turns=1, name="guess"),
        GroupSpec(Sleepy, 1, name="sleepy"),
        GroupSpec("turngym/GuessNumber-v0", 4, {"high": 4}, max_turns=1, name="guess"),
    ]
    groups = play_groups(specs, 2, generator, schedule=schedule)
    assert streams == [1]  # one stream for the whole mixture
    assert [(g.env_id, g.seed) for g in groups] == [("guess", 3), ("sleepy", 1), ("guess", 4)]
    assert [[t.num_turns for t in g.trajectories] for g in groups] == [[1, 1], [2, 2], [1, 1]]
    assert "between 1 and 4" in groups[0].trajectories[0].first_observation


@pytest.mark.parametrize("schedule", ["lock_step", "per_episode"])
def test_progress_lines_count_episodes_done_and_running(tokenizer, schedule) -> None:
    """`on_progress` (the trainer's live line): episodes done of all, then the turn or what is running."""
    import re

    from turngym.agent import GroupSpec, play_groups

    specs = [GroupSpec("turngym/GuessNumber-v0", 3, {"high": 4}, max_turns=1), GroupSpec(Sleepy, 1)]
    lines: list[str] = []
    play_groups(specs, 2, scripted(tokenizer), schedule=schedule, on_progress=lines.append)
    done = [int(re.match(r"(\d+)/4 episodes done, ", line).group(1)) for line in lines]
    assert done == sorted(done) and done[-1] == 4  # GuessNumber's 2 end after turn 1, Sleepy's 2 after turn 2
    if schedule == "lock_step":
        assert "0/4 episodes done, turn 1: 4 generating" in lines and "2/4 episodes done, turn 2: 2 generating" in lines
    else:
        assert lines[-1] == "4/4 episodes done, 0 generating, 0 in env"
        assert any(re.search(r", [1-4] in env$", line) for line in lines)  # replies waiting for their env


def test_a_rollout_cut_short_leaves_no_request_in_the_engine(vllm_tiny) -> None:
    """errors="raise" stops a per-episode rollout mid-way; its stream aborts what was still sampling."""
    sampling = SamplingParams(temperature=1.0, max_tokens=16, seed=0, stop=("e",))
    with pytest.raises(RuntimeError, match="broke"):
        collect_groups(Breaks, [0, 1, 2], 3, vllm_tiny, sampling=sampling, schedule="per_episode", progress=False)
    assert not vllm_tiny.llm.llm_engine.has_unfinished_requests()
    assert len(vllm_tiny.generate([[1, 2, 3], [4, 5]], SamplingParams(max_tokens=4))) == 2  # nothing left over


def test_play_groups_edges(tokenizer) -> None:
    from turngym.agent import GroupSpec, play_groups

    generator = scripted(tokenizer)
    assert play_groups([], 2, generator) == []  # a process whose share of the live groups is none
    too_long = [GroupSpec("turngym/GuessNumber-v0", 0, name="guess"), GroupSpec(Sleepy, 0, system_prompt="x " * 300)]
    with pytest.raises(ValueError, match="room to play tests.agent.test_schedule:Sleepy: every episode"):
        play_groups(too_long, 2, generator, max_context_tokens=200)
    with pytest.raises(TypeError, match="specs must be GroupSpecs"):
        play_groups([("turngym/GuessNumber-v0", 0)], 2, generator)
