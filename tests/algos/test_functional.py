"""The pure functions against ALGORITHMS.md section 6 test vectors and hand computations (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from turngym.algos import functional as F
from turngym.algos.rewards import discounted_returns

D = torch.float64


def t(*values):
    return torch.tensor(values, dtype=D)


def test_group_advantage_test_vectors() -> None:
    r, one_group = t(1, 0, 0, 1), torch.zeros(4)
    torch.testing.assert_close(
        F.group_advantage(r, one_group, eps=1e-6), t(1, -1, -1, 1) * 0.8660239, atol=1e-7, rtol=0
    )
    torch.testing.assert_close(
        F.group_advantage(r, one_group, eps=1e-4), t(1, -1, -1, 1) * 0.8658754, atol=1e-7, rtol=0
    )
    torch.testing.assert_close(F.group_advantage(t(0, 1), torch.zeros(2)), t(-1, 1) * 0.7071058, atol=1e-7, rtol=0)
    assert F.group_advantage(t(1, 1, 1, 1), one_group).tolist() == [0, 0, 0, 0]
    assert F.group_advantage(t(0.7), torch.zeros(1), singleton="raw").item() == pytest.approx(0.7 / (1 + 1e-6))
    assert F.group_advantage(t(0.7), torch.zeros(1), singleton="zero").item() == 0.0


def test_group_advantage_by_group_batch_and_none() -> None:
    r, g = t(1, 3, 10, 10, 2), torch.tensor([7, 7, 3, 3, 9])  # arbitrary ids, a uniform group, a singleton
    # group 7: mean 2, unbiased std sqrt(2): (-1, 1)/sqrt(2)
    expected = t(-1 / math.sqrt(2), 1 / math.sqrt(2), 0, 0, 0)
    torch.testing.assert_close(F.group_advantage(r, g, eps=0.0), expected)
    assert F.group_advantage(r, g, scale="none").tolist() == [-1, 1, 0, 0, 0]
    batch_std = r.std().item()  # unbiased over all 5 rows
    torch.testing.assert_close(F.group_advantage(r, g, scale="batch", eps=0.0), t(-1, 1, 0, 0, 0) / batch_std)


def test_group_advantage_ignores_row_order() -> None:
    r, g = t(1, 0, 5, 2, 0, 1), torch.tensor([0, 1, 1, 0, 0, 1])
    perm = torch.tensor([3, 5, 0, 2, 4, 1])
    torch.testing.assert_close(F.group_advantage(r[perm], g[perm]), F.group_advantage(r, g)[perm])


def test_rloo_advantage() -> None:
    # r_i - mean of the others: 1 - 1/3, 0 - 2/3, 0 - 2/3, 1 - 1/3
    torch.testing.assert_close(F.rloo_advantage(t(1, 0, 0, 1), torch.zeros(4)), t(2, -2, -2, 2) / 3)
    assert F.rloo_advantage(t(5.0), torch.zeros(1)).tolist() == [0.0]


def test_gpg_alpha_test_vector() -> None:
    r = t(1, 0, 0, 1, 1, 1, 1, 1, 0.3, 0.7, 0.1, 0.9)
    g = torch.tensor([0] * 4 + [1] * 4 + [2] * 4)
    assert F.gpg_alpha(r, g, mode="paper") == pytest.approx(12 / 8)
    assert F.gpg_alpha(r, g, mode="verl") == pytest.approx(12 / 10)
    assert F.gpg_alpha(t(1, 1), torch.zeros(2)) == 1.0  # nothing informative: no scaling


def test_overlong_penalty_test_vector() -> None:
    lengths = torch.tensor([10000, 16384, 17408, 18432, 20480, 30000])
    assert F.overlong_penalty(lengths, 20480, 4096, 1.0).tolist() == [0, 0, -0.25, -0.5, -1.0, -1.0]
    with pytest.raises(ValueError, match="cache_length"):
        F.overlong_penalty(lengths, 100, 0)


def test_ppo_clip_test_vector() -> None:
    rho = torch.tensor([math.e**2], dtype=D)
    assert F.ppo_clip_token_loss(rho, t(-1), 0.2, 0.28, dual_clip_c=3.0).item() == pytest.approx(3.0)
    assert F.ppo_clip_token_loss(rho, t(-1), 0.2, 0.28).item() == pytest.approx(7.389056)
    assert F.ppo_clip_token_loss(rho, t(1), 0.2, 0.28).item() == pytest.approx(-1.28)
    assert F.ppo_clip_token_loss(rho, t(1), 0.2, 0.28, dual_clip_c=3.0).item() == pytest.approx(-1.28)


def test_gspo_test_vector_value_and_gradient() -> None:
    old = torch.zeros(1, 3, dtype=D)
    mask = t(1, 1, 0)[None]
    for advantage, expected, moves in [(1.0, -0.9990005, True), (-1.0, 0.9997, False)]:
        logps = t(0.001, -0.003, 5.0)[None].requires_grad_()
        s = F.ratio(logps, old, mask, "sequence")  # (1,)
        assert s.item() == pytest.approx(math.exp(-0.001))
        loss = F.ppo_clip_token_loss(s, t(advantage), 3e-4, 4e-4).sum()
        assert loss.item() == pytest.approx(expected, abs=1e-7)
        loss.backward()
        assert bool(logps.grad.abs().sum() > 0) is moves  # the clipped side has zero gradient
        assert logps.grad[0, 2] == 0  # the masked token never gets a gradient


def test_aggregation_test_vector() -> None:
    loss = t(1, 2, 3, 0, 4, 0, 0, 0).reshape(2, 4)
    mask = t(1, 1, 1, 0, 1, 0, 0, 0).reshape(2, 4)
    assert F.aggregate(loss, mask, "token-mean").item() == 2.5
    assert F.aggregate(loss, mask, "seq-mean-token-sum").item() == 5.0
    assert F.aggregate(loss, mask, "seq-mean-token-mean").item() == 3.0
    assert F.aggregate(loss, mask, "seq-mean-token-sum-norm", const_norm=4).item() == 1.25
    # step-global denominators replace the local counts
    assert F.aggregate(loss, mask, "token-mean", global_tokens=8).item() == 10 / 8
    assert F.aggregate(loss, mask, "seq-mean-token-mean", global_seqs=4).item() == 6 / 4


def test_aggregation_of_all_masked_rows_is_finite() -> None:
    loss = torch.ones(2, 3, dtype=D)
    mask = torch.zeros(2, 3, dtype=D)
    for mode in ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"]:
        assert F.aggregate(loss, mask, mode).item() == 0.0
    mask[1, 0] = 1  # one empty row next to a real one: the empty row does not count
    assert F.aggregate(loss, mask, "seq-mean-token-mean").item() == 1.0


def test_kl_estimators_values_and_gradients() -> None:
    d = t(-0.5, 0.0, 0.7)
    ref = torch.zeros(3, dtype=D)
    for kind, value, gradient in [
        ("k1", d, torch.ones(3, dtype=D)),
        ("k2", 0.5 * d**2, d),
        ("k3", torch.exp(-d) + d - 1, 1 - torch.exp(-d)),
    ]:
        logps = d.clone().requires_grad_()
        out = F.kl_token(logps, ref, kind)
        torch.testing.assert_close(out.detach(), value)
        out.sum().backward()
        torch.testing.assert_close(logps.grad, gradient)
    logps = d.clone().requires_grad_()
    out = F.kl_token(logps, ref, "k3", straight_through_k2=True)
    torch.testing.assert_close(out.detach(), torch.exp(-d) + d - 1)  # the value of k3 ...
    out.sum().backward()
    torch.testing.assert_close(logps.grad, d)  # ... the gradient of k2
    assert F.kl_token(d, ref, "k3").min() >= 0


def test_ratio_levels_and_masking() -> None:
    logps = t(0.1, -0.2, 0.3, 9.0).reshape(1, 4).requires_grad_()
    old = torch.zeros(1, 4, dtype=D)
    mask = t(1, 1, 1, 0)[None]
    token = F.ratio(logps, old, mask, "token")
    torch.testing.assert_close(token.detach(), t(math.exp(0.1), math.exp(-0.2), math.exp(0.3), 0.0)[None])
    seq = F.ratio(logps, old, mask, "sequence")
    assert seq.item() == pytest.approx(math.exp(0.2 / 3))
    seq_token = F.ratio(logps, old, mask, "sequence_token")
    torch.testing.assert_close(seq_token.detach(), t(1, 1, 1, 0)[None] * math.exp(0.2 / 3))
    seq_token[0, 1].backward()
    expected = torch.zeros(1, 4, dtype=D)
    expected[0, 1] = math.exp(0.2 / 3)  # gradient s_i * grad lp of its own token only
    torch.testing.assert_close(logps.grad, expected)
    big = F.ratio(t(50.0)[None].requires_grad_(), torch.zeros(1, 1, dtype=D), t(1.0)[None], "token")
    assert big.item() == pytest.approx(math.exp(20.0))  # clamped log ratio, finite


def test_gvpo_on_policy_value_and_gradient() -> None:
    torch.manual_seed(0)
    logps = torch.randn(4, 5, dtype=D).requires_grad_()
    mask = (torch.rand(4, 5) > 0.3).to(D)
    mask[:, 0] = 1
    groups = torch.tensor([0, 0, 1, 1])
    a = t(0.5, -0.5, 1.0, -1.0)  # centred within each group
    beta, k = 0.1, 2
    loss = F.gvpo_loss(logps, logps.detach(), a, mask, groups, beta, k, group_norm="reference")
    assert loss.item() == pytest.approx((1 / (k - 1)) * 0.5 * float((a**2).sum()))
    loss.backward()
    torch.testing.assert_close(logps.grad, -(beta / (k - 1)) * a[:, None] * mask)


def test_gvpo_mean_over_groups_and_group_size_check() -> None:
    logps = torch.zeros(4, 2, dtype=D)
    a = t(1, -1, 2, -2)
    groups = torch.tensor([0, 0, 1, 1])
    reference = F.gvpo_loss(logps, logps, a, torch.ones(4, 2), groups, 0.1, 2, group_norm="reference")
    assert F.gvpo_loss(logps, logps, a, torch.ones(4, 2), groups, 0.1, 2).item() == pytest.approx(reference.item() / 2)
    with pytest.raises(ValueError, match="at least 2"):
        F.gvpo_loss(logps, logps, a, torch.ones(4, 2), groups, 0.1, 1)


def test_gfpo_select_keeps_top_k_with_deterministic_ties() -> None:
    scores = t(-5, -3, -9, -1, -2, -2, -2, -2)  # -length: keep the shortest
    groups = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    assert F.gfpo_select(scores, groups, 2).tolist() == [False, True, False, True, True, True, False, False]
    per_row_k = torch.tensor([1, 1, 1, 1, 3, 3, 3, 3])
    assert F.gfpo_select(scores, groups, per_row_k).tolist() == [False, False, False, True, True, True, True, False]
    tie_break = t(0, 0, 0, 0, 0, 0, 5, 1)
    assert F.gfpo_select(scores, groups, 2, tie_break).tolist() == [False, True, False, True, False, False, True, True]


def test_dynamic_sampling_keeps_varied_and_singleton_groups() -> None:
    metric = t(1, 1, 0, 1, 0, 0, 1)
    groups = torch.tensor([0, 0, 1, 1, 2, 2, 3])
    assert F.dynamic_sampling_keep(metric, groups).tolist() == [False, False, True, True, False, False, True]


def test_broadcast_to_tokens() -> None:
    turn_index = torch.tensor([[-1, 0, 0, -1, 1], [-1, -1, 0, 0, -1]])
    assert F.broadcast_to_tokens(t(2, -1), turn_index).tolist() == [[0, 2, 2, 0, 2], [0, 0, -1, -1, 0]]
    per_turn = t(2, 3, -1, 0).reshape(2, 2)
    assert F.broadcast_to_tokens(per_turn, turn_index).tolist() == [[0, 2, 2, 0, 3], [0, 0, -1, -1, 0]]


def test_discounted_returns() -> None:
    rewards = t(1, 0, 2, 5, 0, 0).reshape(2, 3)
    mask = t(1, 1, 1, 1, 0, 0).reshape(2, 3)
    # row 0: G2 = 2, G1 = 0 + 0.5*2 = 1, G0 = 1 + 0.5*1 = 1.5; row 1 has one turn
    assert discounted_returns(rewards, mask, 0.5).tolist() == [[1.5, 1.0, 2.0], [5.0, 0.0, 0.0]]


def test_functions_do_not_modify_their_inputs() -> None:
    r, g = t(1, 0, 3), torch.tensor([0, 0, 1])
    logps, old, mask = t(0.1, 0.2)[None], t(0.0, 0.0)[None], t(1, 1)[None]
    copies = [x.clone() for x in (r, g, logps, old, mask)]
    F.group_advantage(r, g)
    F.rloo_advantage(r, g)
    F.ratio(logps, old, mask, "sequence_token")
    F.aggregate(logps, mask, "token-mean")
    for before, after in zip(copies, (r, g, logps, old, mask), strict=True):
        assert torch.equal(before, after)


def test_anchor_step_advantage_reproduces_the_worked_example() -> None:
    # ALGORITHMS.md 4.2b: gamma 0.95, one group of 3 two-turn trajectories; t1 visits s0, s1 with
    # rewards [0, 1], t2 visits s0, s1 with [0, 0], t3 visits s0, s2 with [0, 1].
    rewards = torch.tensor([[0.0, 1.0], [0.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    mask = torch.ones(3, 2, dtype=torch.float64)
    returns = discounted_returns(rewards, mask, 0.95)  # [[0.95, 1], [0, 0], [0.95, 1]]
    states = torch.tensor([[0, 1], [0, 1], [0, 2]])
    groups = torch.zeros(3, dtype=torch.long)
    step = F.anchor_step_advantage(returns, mask, groups, states)
    # turn 1, anchor {s0: all}: mean 1.9 / 3; turn 2, anchor {s1: t1, t2}: mean 0.5; {s2: t3} alone: 0
    expected_step = torch.tensor([[0.95 - 1.9 / 3, 0.5], [-1.9 / 3, -0.5], [0.95 - 1.9 / 3, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(step, expected_step)
    episode = F.group_advantage(rewards.sum(1), groups, scale="none")  # totals 1, 0, 1 -> 1/3, -2/3, 1/3
    combined = F.combine_episode_and_step(episode, step, mask, step_weight=1.0)
    expected = torch.tensor([[0.65, 1 / 3 + 0.5], [-1.3, -2 / 3 - 0.5], [0.65, 1 / 3]], dtype=torch.float64)
    torch.testing.assert_close(combined, expected)


def test_anchor_step_advantage_singletons_groups_and_padding() -> None:
    # every state a singleton: step credit is 0 and the combination is the episode advantage alone
    returns = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    mask = torch.ones(2, 2)
    step = F.anchor_step_advantage(returns, mask, torch.tensor([0, 0]), torch.tensor([[0, 1], [2, 3]]))
    assert torch.equal(step, torch.zeros(2, 2))
    episode = torch.tensor([0.5, -0.5])
    assert torch.equal(F.combine_episode_and_step(episode, step, mask, 1.0), torch.tensor([[0.5, 0.5], [-0.5, -0.5]]))
    # the same state id in two groups (different seeds) is not the same state
    apart = F.anchor_step_advantage(returns, mask, torch.tensor([0, 1]), torch.tensor([[7, 8], [7, 8]]))
    assert torch.equal(apart, torch.zeros(2, 2))
    # a padding turn is neither an anchor member nor given credit; mean_std divides by the unbiased std
    returns = torch.tensor([[2.0, 1.0], [0.0, 9.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]], dtype=torch.float64)  # row 1 ended after one turn
    states = torch.tensor([[0, 5], [0, 5]])
    step = F.anchor_step_advantage(returns, mask, torch.tensor([0, 0]), states, scale="mean_std", eps=0.0)
    # anchor s0: returns 2 and 0, mean 1, unbiased std sqrt(2); anchor s5: row 0's turn 2 alone
    torch.testing.assert_close(step, torch.tensor([[2**-0.5, 0.0], [-(2**-0.5), 0.0]], dtype=torch.float64))


def test_anchor_metrics_count_turns_that_share_a_state() -> None:
    # the worked example's states: anchors {s0: 3 turns, s1: 2, s2: 1} -> 5 of 6 turns shared, 6 / 3 per anchor
    mask = torch.ones(3, 2)
    states = torch.tensor([[0, 1], [0, 1], [0, 2]])
    metrics = F.anchor_metrics(mask, torch.zeros(3, dtype=torch.long), states)
    assert metrics == {"anchor_coverage": 5 / 6, "anchor_size_mean": 2.0}
    # two groups: nothing shared across them; a padding turn is not a turn
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    metrics = F.anchor_metrics(mask, torch.tensor([0, 1]), torch.tensor([[0, 1], [0, 1]]))
    assert metrics == {"anchor_coverage": 0.0, "anchor_size_mean": 1.0}
    assert F.anchor_metrics(torch.zeros(2, 1), torch.tensor([0, 0]), torch.zeros(2, 1, dtype=torch.long)) == {
        "anchor_coverage": 0.0,
        "anchor_size_mean": 0.0,
    }
