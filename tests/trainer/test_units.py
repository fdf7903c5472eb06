"""Trainer building blocks without a model: seeds, micro-batches, importance weights, schedule, metrics, plots."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from turngym.agent.records import Trajectory, TrajectoryGroup, TurnRecord
from turngym.algos import GRPO, Advantages, PolicyBatch, StepTotals
from turngym.trainer.collate import StepRows, collate, deal, padding_fraction, plan_micro_batches
from turngym.trainer.config import OptimizerConfig
from turngym.trainer.correction import importance_weights, mismatch_sums
from turngym.trainer.display import step_line
from turngym.trainer.metrics import Sums
from turngym.trainer.seeds import EVAL_SEED_BASE, SeedCursor, eval_seeds, mixture_counts
from turngym.trainer.stats import wilson_interval
from turngym.trainer.update import lr_factor


def test_seed_cursor_never_repeats_and_stays_below_the_eval_range() -> None:
    cursor = SeedCursor(next_seed=5)
    taken = cursor.take(3) + cursor.take(4)
    assert taken == list(range(5, 12)) and cursor.next_seed == 12
    assert min(eval_seeds(8)) == EVAL_SEED_BASE > max(taken)
    with pytest.raises(RuntimeError, match="evaluation range"):
        SeedCursor(next_seed=EVAL_SEED_BASE - 2).take(3)


def test_mixture_counts_add_up_and_follow_the_weights_on_average() -> None:
    rng = np.random.default_rng(0)
    assert mixture_counts([3.0, 1.0], 8, rng) == [6, 2]  # exact shares need no draw
    draws = np.array([mixture_counts([1.0, 1.0, 1.0], 8, rng) for _ in range(3000)])
    assert (draws.sum(1) == 8).all() and set(draws.ravel()) <= {2, 3}
    assert np.allclose(draws.mean(0), 8 / 3, atol=0.05)  # no env is always shortchanged


def test_plan_micro_batches_respects_the_token_budget_and_sorts_by_length() -> None:
    lengths = [10, 50, 20, 40, 30, 60]
    batches = plan_micro_batches(lengths, [0, 0, 1, 1, 2, 2], token_budget=100)
    assert sorted(r for b in batches for r in b) == list(range(6))
    for batch in batches:
        assert len(batch) * max(lengths[r] for r in batch) <= 100
    assert batches == [[5], [1, 3], [4, 2, 0]]  # 60 | 50+40 (2x50) | 30+20+10 (3x30)
    # padding: batch 2 pads 10, batch 3 pads 10 + 20, of 60 + 100 + 90 positions
    assert padding_fraction(batches, lengths) == pytest.approx(40 / 250)
    # computed group by group, each group padded to its own longest row: here every block is one row
    assert padding_fraction(batches, lengths, [0, 0, 1, 1, 2, 2]) == 0.0
    assert padding_fraction([[1, 0, 5]], lengths, [0, 0, 1, 1, 2, 2]) == pytest.approx(40 / 160)  # 50+50 | 60


def test_plan_micro_batches_keeps_groups_whole_when_asked() -> None:
    lengths = [10, 50, 20, 40]
    batches = plan_micro_batches(lengths, [0, 0, 1, 1], token_budget=60, whole_groups=True)
    assert sorted(map(sorted, batches)) == [[0, 1], [2, 3]]  # a group larger than the budget stays whole


def test_plan_micro_batches_by_group_keeps_groups_together_and_splits_only_oversize_ones() -> None:
    lengths = [10, 50, 20, 40, 30, 30, 30]
    groups = [0, 0, 1, 1, 2, 2, 2]
    batches = plan_micro_batches(lengths, groups, token_budget=100, by_group=True)
    for batch in batches:
        assert len(batch) * max(lengths[r] for r in batch) <= 100
    # group 0 (2 x 50 = 100) and group 1 (2 x 40 = 80) fit whole; group 2 (3 x 30 = 90) fits whole;
    # packing by longest unit: [1, 0] | [3, 2] | [4, 5, 6]
    assert batches == [[1, 0], [3, 2], [4, 5, 6]]
    # a budget below a group's size splits it, longest rows first: at 60, group 0 -> [1] [0], group 1
    # (2 x 40 = 80) -> [3] [2], group 2 -> [4, 5] [6]; then the parts are packed longest first:
    # [1] | [3] | [4, 5] | [6] + [2] (2 x 30 = 60) | [0]
    split = plan_micro_batches(lengths, groups, token_budget=60, by_group=True)
    assert split == [[1], [3], [4, 5], [6, 2], [0]]
    # a group of 8 x 10 tokens over a budget of 70 goes as 4 + 4 (the largest part sets the memory
    # peak), not as greedy packing's 7 + 1
    assert plan_micro_batches([10] * 8, [0] * 8, token_budget=70, by_group=True) == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_deal_gives_every_process_the_same_number_of_micro_batches() -> None:
    batches = [[0], [1, 2], [3]]
    lengths = [5, 5, 5, 5]
    shares = [deal(batches, lengths, 2, rank) for rank in range(2)]
    assert [len(s) for s in shares] == [2, 2]
    assert sorted(r for s in shares for b in s for r in b) == [0, 1, 2, 3]
    assert [] in shares[1]  # padded with an empty micro-batch


def _trajectory(sampled: list[int], prompt: int = 3) -> Trajectory:
    """Prompt tokens, then one turn of `len(sampled)` sampled tokens and two feedback tokens."""
    ids = list(range(prompt)) + sampled + [7, 7]
    mask = [0] * prompt + [1] * len(sampled) + [0, 0]
    turn = TurnRecord("a", "f", {"r": 0.0}, 0.0, {}, prompt, prompt + len(sampled), "stop")
    return Trajectory(ids, mask, [-0.5 * m for m in mask], [turn], prompt, 0.0, {"r": 0.0}, True, False, "terminated")


def test_collate_pads_masks_and_broadcasts_advantages() -> None:
    groups = [TrajectoryGroup("e", 0, [_trajectory([4, 5]), _trajectory([6])])]
    advantages = Advantages(torch.tensor([1.5, -2.0]), torch.tensor([True, False]))
    rows = StepRows.of(groups, advantages)
    batch = collate(rows, [0, 1])
    assert batch.input_ids.tolist() == [[0, 1, 2, 4, 5, 7, 7], [0, 1, 2, 6, 7, 7, 0]]
    assert batch.policy.loss_mask.tolist() == [[0, 0, 0, 1, 1, 0, 0], [0] * 7]  # row 1 is not trainable
    assert batch.policy.advantages.tolist() == [[0, 0, 0, 1.5, 1.5, 0, 0], [0] * 7]
    assert batch.sampling_logps[0].tolist() == [0, 0, 0, -0.5, -0.5, 0, 0]
    assert rows.totals([0, 1]) == StepTotals(num_tokens=2.0, num_sequences=1.0, num_groups=1.0)


def test_importance_weights_by_hand() -> None:
    old = torch.log(torch.tensor([[3.0, 0.5, 1.0, 9.0]]))  # (1, 4) the last token is not trained
    sampling = torch.zeros(1, 4)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    token = importance_weights(old, sampling, mask, "token_truncate", clip=2.0)
    assert token[0].tolist() == pytest.approx([2.0, 0.5, 1.0, 0.0])  # min(ratio, 2)
    sequence = importance_weights(old, sampling, mask, "sequence_truncate", clip=2.0)
    assert sequence[0].tolist() == pytest.approx([1.5, 1.5, 1.5, 0.0])  # 3 x 0.5 x 1
    masked = importance_weights(old, sampling, mask, "token_mask", band=(0.5, 2.0))
    assert masked.tolist() == [[0.0, 1.0, 1.0, 0.0]]  # 3 is outside [0.5, 2]; 0.5 is inside
    assert importance_weights(old, sampling, mask, "sequence_mask", band=(0.5, 2.0)).tolist() == [[1, 1, 1, 0]]
    assert importance_weights(old, sampling, mask, "none").tolist() == mask.tolist()
    sums = mismatch_sums(old, sampling, mask, token)
    assert sums["tokens"] == 3
    assert sums["mismatch_abs_logp"] == pytest.approx(math.log(3) + math.log(2))
    # k3 = r - 1 - log r: (3 - 1 - ln 3) + (0.5 - 1 + ln 2) + 0
    assert sums["mismatch_kl"] == pytest.approx(2 - math.log(3) - 0.5 + math.log(2))


def test_weights_folded_into_advantages_weight_each_tokens_loss() -> None:
    """GRPO's loss with advantages x w has the gradient of sum_t w_t x (per-token loss)."""
    torch.manual_seed(0)
    logps = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)  # (N, T)
    old = logps.detach() + 0.1 * torch.randn(3, 5, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 1, 1, 0, 0]], dtype=torch.float64)
    adv = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)[:, None] * mask
    w = torch.rand(3, 5, dtype=torch.float64) * 2 * mask
    totals = StepTotals.of(mask, torch.arange(3))
    folded, _ = GRPO().loss(logps, PolicyBatch(mask, adv * w, torch.arange(3), old_logps=old), totals)
    (g_folded,) = torch.autograd.grad(folded, logps)
    rho = torch.exp(logps - old) * mask
    per_token = torch.maximum(-adv * rho, -adv * rho.clamp(0.8, 1.2)) * w  # (N, T) weighted per-token loss
    weighted = ((per_token * mask).sum(-1) / mask.sum(-1)).sum() / 3
    (g_weighted,) = torch.autograd.grad(weighted, logps)
    assert torch.allclose(g_folded, g_weighted)


def test_learning_rate_schedule_by_hand() -> None:
    cosine = OptimizerConfig(schedule="cosine", warmup_steps=2, min_lr_ratio=0.1)
    factors = [lr_factor(s, cosine, 7) for s in range(7)]
    # warm-up (s + 1) / 3, then cosine over the 4 remaining steps from 1 down to 0.1
    expected = [1 / 3, 2 / 3] + [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(5)]
    assert factors == pytest.approx(expected)
    assert [lr_factor(s, OptimizerConfig(), 5) for s in range(5)] == [1.0] * 5
    linear = OptimizerConfig(schedule="linear")
    assert [lr_factor(s, linear, 3) for s in range(3)] == pytest.approx([1.0, 0.5, 0.0])


def test_sums_follow_the_objective_metric_names() -> None:
    sums = Sums()
    sums.add_objective_metric("pg_loss", 0.25, tokens=10)
    sums.add_objective_metric("pg_loss", 0.5, tokens=30)
    sums.add_objective_metric("ratio_mean", 1.0, tokens=10)
    sums.add_objective_metric("ratio_mean", 2.0, tokens=30)
    sums.add_objective_metric("ratio_max", 1.5, tokens=10)
    sums.add_objective_metric("ratio_max", 1.2, tokens=30)
    out = sums.result()
    assert out["pg_loss"] == 0.75  # shares of the step's loss add up
    assert out["ratio_mean"] == pytest.approx((10 + 60) / 40)  # token-weighted
    assert out["ratio_max"] == 1.5


def test_wilson_interval_against_published_values() -> None:
    # Newcombe (1998), Statistics in Medicine 17:857, Table I, method 3 (score interval without correction)
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson_interval(15, 148) == pytest.approx((0.0624, 0.1605), abs=1e-4)
    assert wilson_interval(0, 20) == pytest.approx((0.0, 0.1611), abs=1e-4)
    assert wilson_interval(1, 29) == pytest.approx((0.0061, 0.1718), abs=1e-4)


def test_an_objective_state_survives_a_checkpoint_round_trip() -> None:
    import pytest

    from turngym.algos import GFPO, GRPO, GFPOState
    from turngym.trainer.checkpoint import load_objective_state, save_objective_state

    gfpo = GFPO(adaptive_k=(2, 4, 6, 6))
    saved = save_objective_state(GFPOState([0.5, 1.0]))
    assert saved == {"group_means": [0.5, 1.0]}  # plain data, loadable with torch.load(weights_only=True)
    assert load_objective_state(gfpo, saved) == GFPOState([0.5, 1.0])
    assert load_objective_state(gfpo, None) == GFPOState()  # a checkpoint of a stateless step
    assert save_objective_state(None) is None and load_objective_state(GRPO(), None) is None
    assert load_objective_state(gfpo, {"_history": [0.5]}) == GFPOState([0.5])  # a checkpoint of an older version
    with pytest.raises(ValueError, match="does not fit GFPOState"):
        load_objective_state(gfpo, {"means": [0.5]})


def test_eval_episodes_is_a_built_in_suite_of_the_recipe_envs() -> None:
    from turngym.trainer import load_recipe
    from turngym.trainer.heldout import training_suite
    from turngym.trainer.seeds import eval_seeds

    envs = [
        {"id": "turngym/GuessNumber-v0", "kwargs": {"high": 4}, "max_turns": 3},
        {"id": "turngym/GuessNumber-v0", "kwargs": {"high": 8}, "system_prompt": "Guess."},
        {"id": "turngym/Mastermind-v0"},
    ]
    recipe = {
        "envs": envs,
        "rollout": {"temperature": 0.9, "top_p": 0.95, "max_tokens": 20, "max_context_tokens": 500},
        "run": {"seed": 7},
        "eval": {"episodes": 5, "temperature": 0.5},
    }
    suite = training_suite(load_recipe(recipe))
    assert [e.label for e in suite.envs] == [
        "turngym/GuessNumber-v0#0",
        "turngym/GuessNumber-v0#1",
        "turngym/Mastermind-v0",
    ]
    assert [(e.kwargs, e.max_turns, e.system_prompt) for e in suite.envs] == [
        ({"high": 4}, 3, None), ({"high": 8}, None, "Guess."), ({}, None, None)
    ]  # fmt: skip
    assert all(
        suite.seeds_of(e) == eval_seeds(5) and suite.episodes_of(e) == 1 and suite.ks_of(e) == [] for e in suite.envs
    )
    s = suite.sampling
    assert (s.temperature, s.top_p, s.max_tokens, s.seed, suite.max_context_tokens) == (0.5, 0.95, 20, 7, 500)
    assert training_suite(load_recipe({**recipe, "eval": {"episodes": 5}})).sampling.temperature == 0.9


def test_an_older_runs_evaluation_record_reads_as_env_stats() -> None:
    """eval.jsonl lines written before evaluations became suites still resume (the summary compares them)."""
    import math

    from turngym.trainer.report import EnvStats

    old = {
        "env_id": "turngym/GuessNumber-v0", "episodes": 4, "successes": 1, "success": 0.25, "low": 0.05,
        "high": 0.7, "reward": 0.1, "invalid_rate": 0.5, "turns": 2.5, "failed": 1, "pass_at": {},
    }  # fmt: skip
    stats = EnvStats.from_dict(old)
    assert (stats.env, stats.episodes, stats.successes, stats.seeds, stats.failed) == (
        "turngym/GuessNumber-v0",
        4,
        1,
        5,
        1,
    )
    assert stats.summary() == "25.0% (1/4, 95% CI 5.0%-70.0%)" and math.isnan(stats.reward_se)
    assert EnvStats.from_dict(stats.to_dict()) == stats  # the current format round-trips


def test_a_record_from_before_returns_were_paired_reads_and_compares_success_only() -> None:
    """An eval.jsonl line or report.json result written before per-seed returns and invalid rates were kept."""
    from turngym.trainer.report import EnvStats, compare

    fields = {
        "model": "policy", "env": "e", "seeds": 2, "episodes": 2, "successes": 1, "success": 0.5, "low": 0.1,
        "high": 0.9, "pass_at": {"1": 0.5}, "reward": 0.5, "reward_se": 0.5, "components": {"won": [0.5, 0.5]},
        "turns": 2.0, "sampled_tokens": None, "invalid_rate": 0.25, "truncation_rate": 0.5,
        "stop_reasons": {"terminated": 1.0}, "failed": 0,
    }  # fmt: skip
    a = EnvStats.from_dict({**fields, "per_seed_success": {"1": 1.0, "2": 0.0}})
    b = EnvStats.from_dict({**fields, "per_seed_success": {"1": 0.0, "2": 0.0}})
    assert (a.per_seed_success, a.per_seed_reward, a.per_seed_invalid_rate) == ({1: 1.0, 2: 0.0}, {}, {})
    differences = compare(a, b)
    assert list(differences) == ["success"] and differences["success"].difference == 0.5  # (1 + 0) / 2


def test_reward_component_metrics_are_unweighted_sums_over_the_episode(tiny_model_dir) -> None:
    """What the plots' `reward/<name>` panels say: `reward/invalid` counts invalid turns; weights apply to `reward`."""
    from transformers import AutoTokenizer

    from turngym.agent import ScriptedGenerator, collect_groups
    from turngym.envs.guess_number import INVALID_WEIGHT
    from turngym.trainer.metrics import rollout_metrics

    generator = ScriptedGenerator(AutoTokenizer.from_pretrained(tiny_model_dir), lambda prompt: "no idea")
    groups = collect_groups("turngym/GuessNumber-v0", [0, 1], 2, generator, max_turns=3, progress=False)
    metrics = rollout_metrics(groups)  # every one of the 3 turns of every episode is invalid
    assert metrics["reward/invalid"] == 3.0 and metrics["invalid_rate"] == 1.0
    assert metrics["reward"] == pytest.approx(3 * INVALID_WEIGHT)


def fake_run(path: Path, steps: int) -> Path:
    """A run directory whose metrics.jsonl has `steps` steps of a reward, its components and the time split."""
    path.mkdir(parents=True)
    records = [
        {"step": s, "reward": 0.1 * s, "reward_std": 0.05, "reward/won": 0.1 * s, "reward/invalid": 2.0,
         "invalid_rate": 0.5, "time/rollout": 30.0, "time/update": 60.0, "time/sync": 0.5}
        for s in range(1, steps + 1)
    ]  # fmt: skip
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_an_overlay_goes_to_its_own_folder_and_leaves_each_runs_plots_alone(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from turngym.cli import app
    from turngym.trainer.plot import plot_runs

    monkeypatch.chdir(tmp_path)
    fake_run(tmp_path / "runs" / "a", 3)
    fake_run(tmp_path / "runs" / "b", 5)
    own = plot_runs(["runs/a"])
    assert [str(p) for p in own] == ["runs/a/plots/reward.png", "runs/a/plots/success.png", "runs/a/plots/time.png"]
    before = {p: p.read_bytes() for p in own}
    result = CliRunner().invoke(app, ["plot", "runs/a", "runs/b"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [f"plots/compare-a-b/{n}.png" for n in ("reward", "success", "time")]
    assert all(p.read_bytes() == data for p, data in before.items())  # run a's own plots are untouched
    assert sorted((tmp_path / "runs" / "a" / "plots").iterdir()) == sorted(tmp_path / p for p in own)
    for name in ("c", "d"):
        fake_run(tmp_path / "runs" / name, 2)
    four = plot_runs(["runs/a", "runs/b", "runs/c", "runs/d"])
    assert four[0] == Path("plots/compare-a-b-c-and-1-more/reward.png")


def drawn_pixels(run_dir: Path, color: str = "C0") -> dict[str, int]:
    """Panel title -> pixels of `color` in that panel alone, for a one-run plot (legends removed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb

    from turngym.trainer.metrics import read_metrics
    from turngym.trainer.plot import _draw, _figures, _series

    runs = {"run": _series(read_metrics(run_dir))}
    counts = {}
    for panels in _figures(runs).values():
        for panel in (p for p in panels if any(key in runs["run"] for key in p["keys"])):
            fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
            _draw(ax, panel, runs)
            if ax.get_legend() is not None:
                ax.get_legend().remove()  # its samples are drawn even where the data are not
            fig.canvas.draw()
            pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
            counts[panel["title"]] = int((np.abs(pixels - np.array(to_rgb(color)) * 255).max(axis=-1) <= 8).sum())
            plt.close(fig)
    return counts


def test_a_one_step_run_draws_every_series_it_has(tmp_path) -> None:
    """A line through one point is invisible, and so are a band and a stack over one step: markers show them."""
    counts = drawn_pixels(fake_run(tmp_path / "run", 1))
    assert set(counts) >= {"reward per episode", "seconds per step", "invalid actions"}
    assert all(n > 0 for n in counts.values()), counts


def test_a_one_step_panel_has_whole_step_ticks() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from turngym.trainer.plot import _draw

    fig, ax = plt.subplots()
    _draw(ax, {"title": "reward", "keys": ["reward"], "ylabel": "reward"}, {"run": {"reward": ([1], [0.5])}})
    assert ax.get_xlim() == (0, 2) and list(ax.get_xticks()) == [0, 1, 2]  # not 0.95, 0.975, ...
    plt.close(fig)


def test_reward_component_panels_say_they_are_unweighted_sums() -> None:
    from turngym.trainer.plot import _figures

    runs = {"run": {"reward/invalid": ([1], [2.0]), "reward": ([1], [0.0])}}
    [panel] = [p for p in _figures(runs)["reward"] if p["keys"] == ["reward/invalid"]]
    assert panel["title"] == "reward/invalid: unweighted sum per episode"


def test_the_step_line_shows_memory_when_the_step_measured_it() -> None:
    timing = {"time/rollout": 12.0, "time/update": 30.4, "time/sync": 0.42}
    assert "memory" not in step_line(3, 24, timing)
    line = step_line(3, 24, timing | {"memory/resident_gib": 3.44, "memory/peak_gib": 5.06})
    assert "rollout 12s  update 30s  sync 0.4s  memory 3.4 GiB (peak 5.1)" in line


def test_the_step_line_of_a_run_on_recorded_episodes_alone_shows_what_it_trained_on() -> None:
    line = step_line(2, 24, {"recorded/reward": -0.128, "recorded/success": 0.114, "recorded/invalid_rate": 0.83})
    assert line.startswith("step 2/24  |  recorded: reward -0.128  success 11%  invalid 83%  |")
    assert "recorded" not in step_line(2, 24, {"reward": 0.5, "recorded/reward": -0.1})  # live ones come first
