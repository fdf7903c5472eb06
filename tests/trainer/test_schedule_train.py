"""`rollout.schedule: per_episode` in real training: with seeded sampling it learns exactly what lock-step learns."""

from __future__ import annotations

from tests.trainer.support import tiny_recipe
from turngym.trainer import load_recipe, train
from turngym.trainer.metrics import read_metrics


def test_per_episode_training_repeats_the_lock_step_run(engine, restore, tiny_model_dir, tmp_path, monkeypatch) -> None:
    """Two deterministic 2-step runs on the tiny model, one per schedule: the same rewards, losses and gradients."""
    import turngym.agent.rollout as rollout

    calls = []
    per_episode = rollout._per_episode
    monkeypatch.setattr(rollout, "_per_episode", lambda *args: calls.append(1) or per_episode(*args))
    records = {}
    for schedule in ("lock_step", "per_episode"):
        restore()  # both runs start from the tiny model's weights
        spec = tiny_recipe(tiny_model_dir, tmp_path / schedule, run={"steps": 2, "deterministic": True})
        spec["rollout"] |= {"schedule": schedule}
        train(load_recipe(spec), generator=engine)
        records[schedule] = read_metrics(tmp_path / schedule)
    keys = ("reward", "reward_std", "sampled_tokens", "loss", "grad_norm")
    lock, played = ([{k: r[k] for k in keys} for r in records[s]] for s in ("lock_step", "per_episode"))
    assert played == lock and len(lock) == 2
    assert len(calls) == 2  # the per-episode run took that path, once a step
