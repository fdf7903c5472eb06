"""Named objectives: hand-computed values and gradients, invariances, edge cases, multi-reward, credit."""

from __future__ import annotations

import math

import pytest
import torch

from turngym.agent.records import Trajectory, TrajectoryGroup, TurnRecord
from turngym.algos import (
    DAPO,
    GFPO,
    GPG,
    GRPO,
    GSPO,
    GVPO,
    OBJECTIVES,
    PG,
    RLOO,
    DrGRPO,
    GSPOToken,
    Objective,
    PolicyBatch,
    StepTotals,
    aggregate,
    broadcast_to_tokens,
    reinforce_token_loss,
)

D = torch.float64


def trajectory(turn_rewards, length=3, components=None, truncated=False, states=None) -> Trajectory:
    """A synthetic episode: `turn_rewards` per turn, `length` sampled tokens, optional components and state keys."""
    components = components or [{"r": r} for r in turn_rewards]
    states = states or [""] * len(turn_rewards)
    turns = [
        TurnRecord(
            action="a", feedback="f", rewards=dict(c), reward=float(r), metrics={}, start=0, end=0,
            finish_reason="stop", state=state,
        )
        for r, c, state in zip(turn_rewards, components, states, strict=True)
    ]  # fmt: skip
    totals: dict[str, float] = {}
    for c in components:
        for name, value in c.items():
            totals[name] = totals.get(name, 0.0) + value
    return Trajectory(
        token_ids=[0] * (length + 2), loss_mask=[0, 0] + [1] * length, sampling_logps=[0.0] * (length + 2), turns=turns,
        prompt_length=2, reward=float(sum(turn_rewards)), rewards=totals, terminated=not truncated, truncated=truncated,
        stop_reason="truncated" if truncated else "terminated",
    )  # fmt: skip


def groups_of(*rows_per_group) -> list[TrajectoryGroup]:
    return [TrajectoryGroup("env", seed, list(rows)) for seed, rows in enumerate(rows_per_group)]


def random_batch(objective: Objective, seed: int = 0, groups: int = 4, group_size: int = 4, width: int = 6):
    """A random off-policy micro-batch whose advantages come from the objective's own estimator."""
    gen = torch.Generator().manual_seed(seed)
    n = groups * group_size
    group_ids = torch.arange(groups).repeat_interleave(group_size)  # (N,)
    lengths = torch.randint(1, width + 1, (n,), generator=gen)  # (N,) at least one token each
    mask = (torch.arange(width)[None, :] < lengths[:, None]).to(D)  # (N, T)
    rewards = torch.randint(0, 3, (n,), generator=gen).to(D)  # (N,)
    advantages = broadcast_to_tokens(objective.advantage_fn(rewards, group_ids), torch.where(mask.bool(), 0, -1))
    logps = (-torch.rand(n, width, generator=gen, dtype=D) * 2).requires_grad_()  # (N, T)
    old = logps.detach() + 0.05 * torch.randn(n, width, generator=gen, dtype=D)  # (N, T)
    ref = logps.detach() + 0.1 * torch.randn(n, width, generator=gen, dtype=D)  # (N, T)
    batch = PolicyBatch(mask, advantages, group_ids, old_logps=old, ref_logps=ref)
    return logps, batch


def loss_and_grad(objective, logps, batch, totals=None):
    totals = totals or StepTotals.of(batch.loss_mask, batch.group_ids)
    leaf = logps.detach().clone().requires_grad_()
    loss, metrics = objective.loss(leaf, batch, totals)
    loss.backward()
    return loss.detach(), leaf.grad, metrics


ALL = [PG(), RLOO(), GRPO(), DrGRPO(generation_budget=8), DAPO(), GSPO(), GSPOToken(), GPG(), GVPO(), GRPO(kl_coef=0.1)]
IDS = [f"{type(o).__name__}{'+kl' if o.kl_coef else ''}" for o in ALL]


def test_objectives_table_has_every_named_objective() -> None:
    assert set(OBJECTIVES) == {"pg", "rloo", "grpo", "dr_grpo", "dapo", "gspo", "gspo_token", "gpg", "gvpo", "gfpo"}
    assert all(isinstance(cls(), Objective) for cls in OBJECTIVES.values())


# --- hand-computed cases ------------------------------------------------------------------------


def two_rows(logps, old, mask, advantages):
    return PolicyBatch(t2(mask), t2(advantages), torch.tensor([0, 0]), old_logps=t2(old)), t2(logps).requires_grad_()


def t2(rows):
    return torch.tensor(rows, dtype=D)


def test_grpo_value_by_hand() -> None:
    batch, logps = two_rows([[0.1, 0.0], [-0.1, 0.2]], [[0, 0], [0, 0]], [[1, 1], [1, 0]], [[1, 1], [-1, 0]])
    loss, _ = GRPO().loss(logps, batch, StepTotals.of(batch.loss_mask, batch.group_ids))
    # row 0: -(e^0.1) and -(e^0) (inside the clip); row 1, A = -1: e^-0.1 (inside); seq-mean-token-mean
    expected = ((-math.exp(0.1) - 1.0) / 2 + math.exp(-0.1)) / 2
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    # unclipped tokens: d/dlp of -A e^lp / (L_i N) = -A e^lp / (L_i N)
    torch.testing.assert_close(logps.grad, t2([[-math.exp(0.1) / 4, -1 / 4], [math.exp(-0.1) / 2, 0.0]]))


def test_clip_higher_of_dapo_against_grpo() -> None:
    log_rho = math.log(1.25)
    batch, logps = two_rows([[log_rho], [0.0]], [[0.0], [0.0]], [[1], [0]], [[1.0], [0.0]])
    totals = StepTotals.of(batch.loss_mask, batch.group_ids)
    loss, _ = DAPO().loss(logps, batch, totals)
    assert loss.item() == pytest.approx(-1.25)  # 1.25 < 1 + 0.28: not clipped
    loss.backward()
    torch.testing.assert_close(logps.grad, t2([[-1.25], [0.0]]))  # d(-A e^lp)/dlp = -1.25
    logps.grad = None
    loss, _ = GRPO().loss(logps, batch, totals)
    assert loss.item() == pytest.approx(-1.2)  # clipped at 1 + 0.2 ...
    loss.backward()
    assert logps.grad.tolist() == [[0.0], [0.0]]  # ... so no gradient


def test_dr_grpo_divides_by_the_constant_budget() -> None:
    batch, logps = two_rows([[0.0, 0.0], [0.0, 0.0]], [[0, 0], [0, 0]], [[1, 1], [1, 0]], [[2, 2], [-1, 0]])
    loss, _ = DrGRPO(generation_budget=10).loss(logps, batch, StepTotals.of(batch.loss_mask, batch.group_ids))
    assert loss.item() == pytest.approx((-2 - 2 + 1) / (2 * 10))  # ratios are 1
    loss.backward()
    torch.testing.assert_close(logps.grad, t2([[-2 / 20, -2 / 20], [1 / 20, 0.0]]))  # -A / (N L_max)


def test_pg_rloo_and_gpg_values_and_gradients_by_hand() -> None:
    batch, logps = two_rows([[-1.0, -2.0], [-0.5, 0.0]], [[0, 0], [0, 0]], [[1, 1], [1, 0]], [[1, 1], [-2, 0]])
    totals = StepTotals.of(batch.loss_mask, batch.group_ids)
    for objective, denominator in [(PG(), 3), (RLOO(), 2), (GPG(), 3)]:  # token-mean / per sequence then mean
        logps.grad = None
        loss, _ = objective.loss(logps, batch, totals)
        assert loss.item() == pytest.approx((1 + 2 - 1) / denominator)  # -A lp summed
        loss.backward()
        torch.testing.assert_close(logps.grad, t2([[-1, -1], [2, 0]]) / denominator)


def test_advantages_of_each_estimator_from_records() -> None:
    groups = groups_of([trajectory([1]), trajectory([0]), trajectory([0]), trajectory([1])])
    assert GRPO().advantages(groups).values.tolist() == pytest.approx([0.8660239, -0.8660239, -0.8660239, 0.8660239])
    assert PG().advantages(groups).values.tolist() == [0.5, -0.5, -0.5, 0.5]
    assert RLOO().advantages(groups).values.tolist() == pytest.approx([2 / 3, -2 / 3, -2 / 3, 2 / 3])
    assert DrGRPO().advantages(groups).values.tolist() == [0.5, -0.5, -0.5, 0.5]


def test_gpg_scales_advantages_by_alpha() -> None:
    varied = [trajectory([1]), trajectory([0]), trajectory([0]), trajectory([1])]
    uniform = [trajectory([1]) for _ in range(4)]
    result = GPG().advantages(groups_of(varied, uniform))
    assert result.metrics["alpha"] == 2.0  # B = 8 rows, M = 4 in the uniform group
    assert result.values.tolist() == [1.0, -1.0, -1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert GPG(alpha_mode="verl").advantages(groups_of(varied, uniform)).metrics["alpha"] == 8 / 6


def test_gvpo_on_policy_gradient_is_a_scaled_reinforce() -> None:
    objective = GVPO(beta=0.1, group_norm="reference")
    logps, batch = random_batch(objective, groups=2, group_size=4)
    batch.old_logps = logps.detach()
    a = (batch.advantages * batch.loss_mask).sum(-1) / batch.loss_mask.sum(-1)  # (N,) read-back
    loss, grad, _ = loss_and_grad(objective, logps, batch)
    assert loss.item() == pytest.approx(float(0.5 * (a**2).sum() / 3))  # 1/(k-1) sum 1/2 a^2, k = 4
    torch.testing.assert_close(grad, -(0.1 / 3) * a[:, None] * batch.loss_mask)


def test_kl_term_is_added_with_the_same_aggregation() -> None:
    logps, batch = random_batch(GRPO(), seed=3)
    totals = StepTotals.of(batch.loss_mask, batch.group_ids)
    plain, _ = GRPO().loss(logps, batch, totals)
    with_kl, metrics = GRPO(kl_coef=0.1).loss(logps, batch, totals)
    d = logps.detach() - batch.ref_logps
    k3 = torch.exp(-d) + d - 1
    expected = plain + 0.1 * aggregate(k3, batch.loss_mask, "seq-mean-token-mean")
    assert with_kl.item() == pytest.approx(expected.item()) and metrics["kl"] > 0
    batch.ref_logps = None
    with pytest.raises(ValueError, match="needs ref_logps"):
        GRPO(kl_coef=0.1).loss(logps, batch, totals)


# --- filters --------------------------------------------------------------------------------------


def test_dapo_dynamic_sampling_drops_uniform_groups_and_asks_for_more() -> None:
    varied = [trajectory([1]), trajectory([0])]
    uniform = [trajectory([1]), trajectory([1])]
    selection = DAPO().filter(groups_of(varied, uniform, varied), num_groups=2)
    assert [g.seed for g in selection.groups] == [0, 2] and selection.complete
    assert selection.metrics["kept_group_fraction"] == pytest.approx(2 / 3)
    short = DAPO().filter(groups_of(varied, uniform), num_groups=2)
    assert [g.seed for g in short.groups] == [0] and not short.complete
    singleton = DAPO().filter(groups_of([trajectory([1])]))
    assert len(singleton.groups) == 1  # groups of one are kept


def test_dapo_overlong_shaping_and_filtering() -> None:
    objective = DAPO(overlong_max=10, overlong_cache=4, mask_truncated=True)
    group = groups_of(
        [trajectory([1], length=6), trajectory([1], length=8), trajectory([1], length=12, truncated=True)]
    )
    result = objective.advantages(group)
    # shaped rewards: 1 + 0, 1 - (8 - 6)/4 = 0.5, 1 - 1 = 0  -> mean 0.5, unbiased std 0.5
    assert result.values.tolist() == pytest.approx([1.0, 0.0, -1.0], abs=1e-5)
    assert result.trainable.tolist() == [True, True, False]


def test_gpg_threshold_puts_informative_groups_first() -> None:
    varied = [trajectory([1]), trajectory([0])]
    uniform = [trajectory([0]), trajectory([0])]
    groups = groups_of(uniform, varied, uniform, uniform)
    selection = GPG(min_valid_fraction=0.5).filter(groups, num_groups=4)
    assert [g.seed for g in selection.groups] == [1, 0, 2, 3] and not selection.complete  # 1 of 4 < 0.5
    assert GPG(min_valid_fraction=0.25).filter(groups, num_groups=4).complete


def test_gfpo_keeps_the_shortest_and_normalises_over_the_kept() -> None:
    rows = [
        trajectory([1], length=10),
        trajectory([0], length=5),
        trajectory([1], length=20),
        trajectory([1], length=8),
    ]
    selection = GFPO(k=2).filter(groups_of(rows))
    kept = selection.groups[0].trajectories
    assert [t.num_sampled_tokens for t in kept] == [5, 8] and selection.metrics["retained_fraction"] == 0.5
    values = GFPO(k=2).advantages(selection.groups).values
    assert values.tolist() == pytest.approx([-0.7071057, 0.7071057])  # rewards 0, 1 over S only


def test_gfpo_filters_on_one_component_while_advantages_use_the_weighted_total() -> None:
    def row(won, fmt, length):
        return trajectory([won + 0.1 * fmt], length, components=[{"won": won, "format": fmt}])

    rows = [row(1, 0.5, 10), row(0, 1, 5), row(1, 0, 20), row(1, 1, 8)]  # totals 1.05, 0.1, 1.0, 1.1
    gfpo = GFPO(base=GRPO(reward_weights={"won": 1.0, "format": 0.1}), k=2, metric="won")
    kept = gfpo.filter(groups_of(rows)).groups  # the shortest two winners: lengths 10 and 8
    assert [t.num_sampled_tokens for t in kept[0].trajectories] == [10, 8]
    a = 0.025 / (0.05 / math.sqrt(2) + 1e-6)  # totals 1.05 and 1.1: +-0.025 around the mean, std 0.05/sqrt(2)
    assert gfpo.advantages(kept).values.tolist() == pytest.approx([-a, a])


def test_gfpo_adaptive_k_keeps_more_for_harder_groups() -> None:
    easy = [trajectory([1], length=n) for n in range(1, 9)]
    hard = [trajectory([0], length=n) for n in range(1, 9)]
    medium = [trajectory([i % 2], length=n) for i, n in enumerate(range(1, 9))]
    gfpo = GFPO(adaptive_k=(2, 4, 6, 6))
    kept = gfpo.filter(groups_of(easy, medium, hard, medium)).groups
    assert [len(g.trajectories) for g in kept] == [2, 4, 6, 4]


def test_gfpo_settings_belong_to_the_base() -> None:
    with pytest.raises(ValueError, match="base objective"):
        GFPO(kl_coef=0.1)
    with pytest.raises(ValueError, match="at least 2"):
        GFPO(k=1)
    assert GFPO(base=GVPO()).uses_ratio and not GFPO(base=PG()).uses_ratio


# --- multi-reward and credit assignment ------------------------------------------------------------


def multi_reward_group():
    rows = [
        trajectory([1], components=[{"a": 1.0, "b": 0.0}]),
        trajectory([0], components=[{"a": 0.0, "b": 0.0}]),
        trajectory([1], components=[{"a": 1.0, "b": 0.0}]),
        trajectory([2], components=[{"a": 0.0, "b": 1.0}]),
    ]
    return groups_of(rows)


def test_sum_then_normalize() -> None:
    values = GRPO(reward_weights={"a": 1.0, "b": 2.0}).advantages(multi_reward_group()).values
    # r = a + 2b = [1, 0, 1, 2]: mean 1, unbiased std sqrt(2/3), plus GRPO's eps 1e-6
    a = 1 / (math.sqrt(2 / 3) + 1e-6)
    assert values.tolist() == pytest.approx([0.0, -a, 0.0, a])


def test_normalize_then_sum() -> None:
    objective = GRPO(reward_weights={"a": 1.0, "b": 2.0}, reward_aggregation="normalize_then_sum")
    values = objective.advantages(multi_reward_group()).values
    # z(a) = [1, -1, 1, -1] * 0.5/sqrt(1/3); z(b) = [-0.5, -0.5, -0.5, 1.5]; A = z(a) + 2 z(b)
    za, zb = 0.5 / math.sqrt(1 / 3), [-0.5, -0.5, -0.5, 1.5]
    assert values.tolist() == pytest.approx(
        [za + 2 * zb[0], -za + 2 * zb[1], za + 2 * zb[2], -za + 2 * zb[3]], abs=1e-5
    )


def test_reward_weights_must_name_real_components() -> None:
    with pytest.raises(ValueError, match=r"unknown component\(s\) \['c'\]"):
        GRPO(reward_weights={"c": 1.0}).advantages(multi_reward_group())
    with pytest.raises(ValueError, match="needs reward_weights"):
        GRPO(reward_aggregation="normalize_then_sum")


def test_turn_credit_normalises_discounted_returns_per_turn_index() -> None:
    groups = groups_of([trajectory([0, 1]), trajectory([0, 0])])
    values = PG(credit="turn", gamma=0.5).advantages(groups).values  # PG: mean baseline only
    # returns: row 0 [0 + 0.5*1, 1] = [0.5, 1]; row 1 [0, 0]. Centred per turn index.
    assert values.tolist() == [[0.25, 0.5], [-0.25, -0.5]]
    # gamma 1: returns [2, 1] and [0]; a turn only one trajectory reached is a singleton there: 0
    values = PG(credit="turn").advantages(groups_of([trajectory([1, 1]), trajectory([0])])).values
    assert values.tolist() == [[1.0, 0.0], [-1.0, 0.0]]


def worked_example() -> list[TrajectoryGroup]:
    """ALGORITHMS.md 4.2b: t1 visits s0, s1 with rewards [0, 1]; t2 s0, s1 with [0, 0]; t3 s0, s2 with [0, 1]."""
    return groups_of(
        [
            trajectory([0, 1], states=["s0", "s1"]),
            trajectory([0, 0], states=["s0", "s1"]),
            trajectory([0, 1], states=["s0", "s2"]),
        ]
    )


def test_step_credit_reproduces_the_worked_example() -> None:
    # Dr. GRPO's episode advantage is r - mean (the example's mean_norm): totals 1, 0, 1 -> 1/3, -2/3, 1/3
    result = DrGRPO(credit="step", gamma=0.95).advantages(worked_example())
    expected = torch.tensor([[0.65, 1 / 3 + 0.5], [-1.3, -2 / 3 - 0.5], [0.65, 1 / 3]], dtype=D)
    torch.testing.assert_close(result.values, expected)
    # anchors {s0: 3 turns, s1: 2, s2: 1}; step advantages [0.31667, 0.5], [-0.63333, -0.5], [0.31667, 0]
    assert result.metrics["anchor_coverage"] == pytest.approx(5 / 6)
    assert result.metrics["anchor_size_mean"] == pytest.approx(2.0)
    step = torch.tensor([0.95 - 1.9 / 3, 0.5, -1.9 / 3, -0.5, 0.95 - 1.9 / 3, 0.0], dtype=D)
    assert result.metrics["step_advantage_std"] == pytest.approx(float(step.std()))
    # GRPO divides the episode part by the group's std (unbiased: sqrt(1/3)); the step part is unscaled
    grpo = GRPO(credit="step", gamma=0.95, step_weight=0.5).advantages(worked_example()).values
    episode = torch.tensor([1 / 3, -2 / 3, 1 / 3], dtype=D) / (3**-0.5 + 1e-6)
    steps = torch.tensor([[0.95 - 1.9 / 3, 0.5], [-1.9 / 3, -0.5], [0.95 - 1.9 / 3, 0.0]], dtype=D)
    torch.testing.assert_close(grpo, episode[:, None] + 0.5 * steps)


def test_step_credit_without_shared_states_is_the_episode_advantage() -> None:
    # every state a singleton (different keys, or none: episodes saved before keys existed)
    for states in (["a", "b"], ["c", "d"], ["e"]), (None, None, None):
        turn_rewards = ([0, 1], [1, 1], [0])
        rows = [trajectory(r, states=k) for r, k in zip(turn_rewards, states, strict=True)]
        step = GRPO(credit="step", gamma=0.9).advantages(groups_of(rows))
        episode = GRPO().advantages(groups_of(rows)).values  # (N,)
        mask = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]], dtype=D)
        torch.testing.assert_close(step.values, episode[:, None] * mask)
        assert step.metrics["anchor_coverage"] == 0.0 and step.metrics["step_advantage_std"] == 0.0
    # step_weight 0 is trajectory credit whatever the states
    rows = worked_example()
    torch.testing.assert_close(
        GRPO(credit="step", step_weight=0.0).advantages(rows).values,
        GRPO().advantages(rows).values[:, None] * torch.ones(3, 2, dtype=D),
    )


def test_step_credit_keeps_groups_apart_and_handles_lengths_truncation_and_mean_std() -> None:
    # two groups (seeds) with the same state names: anchors never cross groups. Group 1: a
    # truncated one-turn episode and a two-turn one that share their first state.
    groups = groups_of(
        [trajectory([0, 1], states=["s0", "s1"]), trajectory([0, 0], states=["s0", "s1"])],
        [trajectory([0.5], states=["s0"], truncated=True), trajectory([0, 1], states=["s0", "s1"])],
    )
    values = PG(credit="step", step_scale="mean_std").advantages(groups).values
    # PG: A^E = r - group mean. Group 0: totals 1, 0 -> +-0.5; returns [1, 1], [0, 0]: each anchor
    # {1, 0} has mean 0.5 and std sqrt(0.5) -> +-0.5 / sqrt(0.5). Group 1: totals 0.5, 1 -> -+0.25;
    # anchor s0 returns {0.5, 1}: mean 0.75, std sqrt(0.125) -> -+0.25 / sqrt(0.125); s1 alone: 0.
    a, b = 0.5 / 0.5**0.5, 0.25 / 0.125**0.5
    expected = torch.tensor([[0.5 + a, 0.5 + a], [-0.5 - a, -0.5 - a], [-0.25 - b, 0.0], [0.25 + b, 0.25]], dtype=D)
    torch.testing.assert_close(values, expected, atol=1e-5, rtol=1e-5)  # eps 1e-6 in the std


def test_step_credit_with_multiple_rewards_and_gfpo() -> None:
    # normalize_then_sum: each component's step credit, weighted and summed
    rows = [
        trajectory([0, 1], components=[{"a": 0, "b": 1}, {"a": 1, "b": 0}], states=["s0", "s1"]),
        trajectory([0, 0], components=[{"a": 0, "b": 0}, {"a": 0, "b": 0}], states=["s0", "s1"]),
    ]
    both = DrGRPO(credit="step", reward_weights={"a": 1.0, "b": 2.0}, reward_aggregation="normalize_then_sum")
    # a: totals 1, 0 -> +-0.5; returns [1, 1] vs [0, 0] -> step +-0.5 at both turns -> [[1, 1], [-1, -1]]
    # b: totals 1, 0 -> +-0.5; returns [1, 0] vs [0, 0] -> step [+-0.5, 0] -> [[1, 0.5], [-1, -0.5]]
    expected = torch.tensor([[1.0, 1.0], [-1.0, -1.0]], dtype=D) + 2 * torch.tensor([[1.0, 0.5], [-1.0, -0.5]], dtype=D)
    result = both.advantages(groups_of(rows))
    torch.testing.assert_close(result.values, expected)
    # the metric is on the weighted reward a + 2b: returns [3, 1] and [0, 0] -> steps +-1.5, +-0.5
    assert result.metrics["step_advantage_std"] == pytest.approx(float(torch.tensor([1.5, 0.5, -1.5, -0.5]).std()))
    # GFPO passes the retained responses to its base, which applies step credit among them
    gfpo = GFPO(base=DrGRPO(credit="step", gamma=0.95), k=3, metric="length")
    example = worked_example()
    example[0].trajectories.append(trajectory([0, 0], length=9, states=["s0", "s1"]))  # the longest: dropped
    kept = gfpo.filter(example).groups
    alone = DrGRPO(credit="step", gamma=0.95).advantages(worked_example()).values
    torch.testing.assert_close(gfpo.advantages(kept).values, alone)


def test_step_credit_is_refused_where_the_loss_reads_one_advantage_per_sequence() -> None:
    for objective in (GSPO, GVPO):
        with pytest.raises(ValueError, match="one advantage per sequence.*gspo_token"):
            objective(credit="step")
    assert GSPOToken(credit="step").advantages(worked_example()).values.shape == (3, 2)
    with pytest.raises(ValueError, match="step_weight must be >= 0"):
        GRPO(credit="step", step_weight=-1.0)
    with pytest.raises(ValueError, match="step_scale must be 'mean' or 'mean_std'"):
        GRPO(credit="step", step_scale="std")


# --- invariances ---------------------------------------------------------------------------------


def split_rows(n: int, parts: int, group_size: int, whole_groups: bool) -> list[torch.Tensor]:
    if whole_groups:
        groups = torch.arange(n // group_size).chunk(parts)
        return [torch.cat([torch.arange(g * group_size, (g + 1) * group_size) for g in chunk]) for chunk in groups]
    return list(torch.randperm(n, generator=torch.Generator().manual_seed(parts)).chunk(parts))


@pytest.mark.parametrize("objective", ALL, ids=IDS)
@pytest.mark.parametrize("parts", [2, 4])
def test_micro_batch_splitting_gives_the_same_gradient(objective, parts) -> None:
    logps, batch = random_batch(objective)
    totals = StepTotals.of(batch.loss_mask, batch.group_ids)  # counted once for the whole step
    full_loss, full_grad, _ = loss_and_grad(objective, logps, batch, totals)
    leaf = logps.detach().clone().requires_grad_()
    total_loss = 0.0
    for rows in split_rows(16, parts, 4, whole_groups=isinstance(objective, GVPO)):
        part = PolicyBatch(
            batch.loss_mask[rows],
            batch.advantages[rows],
            batch.group_ids[rows],
            batch.old_logps[rows],
            batch.ref_logps[rows],
        )
        loss, _ = objective.loss(leaf[rows], part, totals)
        loss.backward()
        total_loss += loss.item()
    assert total_loss == pytest.approx(full_loss.item(), abs=1e-12)
    torch.testing.assert_close(leaf.grad, full_grad, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("objective", ALL, ids=IDS)
def test_padding_does_not_change_the_loss(objective) -> None:
    logps, batch = random_batch(objective)
    loss, grad, _ = loss_and_grad(objective, logps, batch)
    pad = 5
    padded = PolicyBatch(
        torch.nn.functional.pad(batch.loss_mask, (0, pad)), torch.nn.functional.pad(batch.advantages, (0, pad)),
        batch.group_ids, torch.nn.functional.pad(batch.old_logps, (0, pad), value=-3.0),
        torch.nn.functional.pad(batch.ref_logps, (0, pad), value=-7.0),
    )  # fmt: skip
    padded_logps = torch.cat([logps.detach(), torch.full((16, pad), -1.5, dtype=D)], dim=1)
    padded_loss, padded_grad, _ = loss_and_grad(objective, padded_logps, padded)
    assert padded_loss.item() == pytest.approx(loss.item(), abs=1e-12)
    torch.testing.assert_close(padded_grad[:, :-pad], grad)
    assert bool((padded_grad[:, -pad:] == 0).all())


@pytest.mark.parametrize("objective", ALL, ids=IDS)
def test_permuting_rows_within_and_across_groups_does_not_change_the_loss(objective) -> None:
    logps, batch = random_batch(objective)
    loss, grad, _ = loss_and_grad(objective, logps, batch)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(7))
    shuffled = PolicyBatch(batch.loss_mask[perm], batch.advantages[perm], batch.group_ids[perm],
                           batch.old_logps[perm], batch.ref_logps[perm])  # fmt: skip
    shuffled_loss, shuffled_grad, _ = loss_and_grad(objective, logps.detach()[perm], shuffled)
    assert shuffled_loss.item() == pytest.approx(loss.item(), abs=1e-12)
    torch.testing.assert_close(shuffled_grad, grad[perm])


@pytest.mark.parametrize(
    "objective, aggregation",
    [
        (GRPO(), "seq-mean-token-mean"),
        (DAPO(), "token-mean"),
        (GSPO(), "seq-mean-token-mean"),
        (GSPOToken(), "seq-mean-token-mean"),
    ],
    ids=["GRPO", "DAPO", "GSPO", "GSPOToken"],
)
def test_on_policy_gradient_equals_reinforce(objective, aggregation) -> None:
    """With old = current (one update per rollout) the ratio is 1 in value and the loss reduces to REINFORCE."""
    logps, batch = random_batch(objective)
    batch.old_logps = logps.detach()
    _, grad, _ = loss_and_grad(objective, logps, batch)
    leaf = logps.detach().clone().requires_grad_()
    aggregate(reinforce_token_loss(leaf, batch.advantages), batch.loss_mask, aggregation).backward()
    torch.testing.assert_close(grad, leaf.grad)


def test_gspo_token_equals_gspo_when_advantages_are_constant_per_sequence() -> None:
    logps, batch = random_batch(GSPO(), seed=5)  # off-policy: ratios differ from 1
    gspo_loss, gspo_grad, _ = loss_and_grad(GSPO(eps_low=0.01, eps_high=0.01), logps, batch)
    token_loss, token_grad, _ = loss_and_grad(GSPOToken(eps_low=0.01, eps_high=0.01), logps, batch)
    assert token_loss.item() == pytest.approx(gspo_loss.item(), abs=1e-12)
    torch.testing.assert_close(token_grad, gspo_grad)


# --- edge cases ----------------------------------------------------------------------------------


EDGE_GROUPS = groups_of(
    [trajectory([1], length=3), trajectory([1], length=3)],  # all equal
    [trajectory([0.5], length=1)],  # singleton, length-1 response
    [trajectory([1], length=1), trajectory([0], length=0)],  # a row with no trained tokens
)


@pytest.mark.parametrize("objective", [*ALL, GFPO(k=2), GFPO(base=DAPO(), k=2)], ids=[*IDS, "GFPO", "GFPO(DAPO)"])
def test_no_nan_for_uniform_singleton_empty_and_length_one(objective) -> None:
    groups = objective.filter(EDGE_GROUPS).groups
    values = objective.advantages(groups).values
    assert bool(torch.isfinite(values).all())
    rows = [t for g in groups for t in g.trajectories]
    width = 4
    mask = torch.tensor([[1.0 if k < t.num_sampled_tokens else 0.0 for k in range(width)] for t in rows], dtype=D)
    group_ids = torch.tensor([g for g, group in enumerate(groups) for _ in group.trajectories])
    batch = PolicyBatch(mask, broadcast_to_tokens(values, torch.where(mask.bool(), 0, -1)), group_ids,
                        old_logps=torch.full_like(mask, -1.0), ref_logps=torch.full_like(mask, -1.2))  # fmt: skip
    if isinstance(objective, GVPO):  # needs whole groups of one size: use the first group alone
        batch = PolicyBatch(mask[:2], batch.advantages[:2], group_ids[:2], batch.old_logps[:2], batch.ref_logps[:2])
    loss, grad, _ = loss_and_grad(objective, torch.full_like(batch.loss_mask, -0.9), batch)
    assert math.isfinite(loss.item()) and bool(torch.isfinite(grad).all())
    assert bool((grad[batch.loss_mask == 0] == 0).all())  # exact zeros outside the mask


def test_gvpo_rejects_split_groups() -> None:
    logps, batch = random_batch(GVPO(), groups=2, group_size=4)
    sizes = torch.full((8,), 4)
    part = PolicyBatch(
        batch.loss_mask[:3], batch.advantages[:3], batch.group_ids[:3], batch.old_logps[:3], group_sizes=sizes[:3]
    )
    with pytest.raises(ValueError, match="whole groups"):
        GVPO().loss(logps[:3], part, StepTotals.of(part.loss_mask, part.group_ids))
    part = PolicyBatch(
        batch.loss_mask[:4], batch.advantages[:4], batch.group_ids[:4], batch.old_logps[:4], group_sizes=sizes[:4]
    )
    assert math.isfinite(GVPO().loss(logps[:4], part, StepTotals.of(part.loss_mask, part.group_ids))[0].item())


def test_gfpo_adaptive_k_state_is_passed_in_and_returned_not_kept() -> None:
    from turngym.algos import GFPOState

    easy = [trajectory([1], length=n) for n in range(1, 9)]
    hard = [trajectory([0], length=n) for n in range(1, 9)]
    gfpo = GFPO(adaptive_k=(2, 4, 6, 6))
    assert gfpo.initial_state() == GFPOState() and GFPO().initial_state() is None  # a fixed k keeps nothing
    first = gfpo.filter(groups_of(easy, hard), state=gfpo.initial_state())
    assert first.state == GFPOState([1.0, 0.0])  # the two groups' mean rewards
    # a hard group after many easy ones is in the lowest quartile: it keeps 6; alone, it would be the median
    history = GFPOState([1.0] * 9)
    assert [len(g.trajectories) for g in gfpo.filter(groups_of(hard), state=history).groups] == [6]
    assert history == GFPOState([1.0] * 9)  # the state passed in is not changed
    assert gfpo.filter(groups_of(hard), state=history).state == GFPOState([1.0] * 9 + [0.0])
    assert gfpo == GFPO(adaptive_k=(2, 4, 6, 6))  # filtering left no trace in the objective
    capped = GFPO(adaptive_k=(2, 4, 6, 6), history_size=3).filter(groups_of(easy, hard), state=GFPOState([5.0] * 3))
    assert capped.state == GFPOState([5.0, 1.0, 0.0])  # the newest history_size means


def test_an_unknown_objective_name_gets_the_closest_one() -> None:
    from turngym.algos import OBJECTIVES, UnknownObjectiveError

    with pytest.raises(KeyError) as caught:
        OBJECTIVES["grpoo"]
    assert isinstance(caught.value, UnknownObjectiveError)
    assert str(caught.value).startswith("unknown objective 'grpoo'. Did you mean 'grpo'? Choose one of: pg, rloo,")
    assert OBJECTIVES.get("grpoo") is None and "grpoo" not in OBJECTIVES  # the dict's other lookups are unchanged
