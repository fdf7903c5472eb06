"""Evaluation statistics against brute force, published tables and hand computations."""

from __future__ import annotations

import itertools
import math

import pytest

from turngym.trainer.stats import (
    binomial_two_sided_p,
    mean_and_se,
    paired_difference,
    pass_at_k,
    t_quantile,
    wilson_interval,
)


@pytest.mark.parametrize("n", range(1, 7))
def test_pass_at_k_equals_the_share_of_k_subsets_with_a_success(n) -> None:
    for c in range(n + 1):
        outcomes = [1] * c + [0] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(range(n), k))
            brute = sum(any(outcomes[i] for i in subset) for subset in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12), (n, c, k)


def test_pass_at_k_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(4, 1, 5)
    with pytest.raises(ValueError, match="0 <= c <= n"):
        pass_at_k(4, 5, 1)


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    # Newcombe (1998), Statistics in Medicine 17:857-872, Table II, method 3 (score interval, no continuity correction)
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_interval_matches_newcombes_table(successes, n, low, high) -> None:
    assert wilson_interval(successes, n) == pytest.approx((low, high), abs=5e-5)


@pytest.mark.parametrize(
    ("p", "df", "table"),
    [(0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 5, 2.571), (0.975, 9, 2.262), (0.975, 29, 2.045),
     (0.95, 10, 1.812), (0.995, 4, 4.604), (0.025, 9, -2.262)],
)  # fmt: skip
def test_t_quantile_matches_the_t_table(p, df, table) -> None:
    assert t_quantile(p, df) == pytest.approx(table, abs=5e-4)


def test_mean_and_standard_error_by_hand() -> None:
    mean, se = mean_and_se([1.0, 2.0, 3.0, 4.0])  # s^2 = (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3
    assert mean == 2.5 and se == pytest.approx(math.sqrt(5 / 3 / 4))
    assert math.isnan(mean_and_se([1.0])[1]) and math.isnan(mean_and_se([])[0])


def test_the_sign_test_is_the_exact_binomial_tail() -> None:
    assert binomial_two_sided_p(8, 8) == 2 * 0.5**8
    assert binomial_two_sided_p(2, 10) == pytest.approx(2 * (1 + 10 + 45) / 1024)  # P(X <= 2), X ~ Bin(10, 1/2)
    assert binomial_two_sided_p(5, 10) == 1.0 and binomial_two_sided_p(0, 0) == 1.0


def test_paired_difference_on_a_constructed_example() -> None:
    # 10 seeds, one episode each: A wins 6 seeds B loses, B wins 1 seed A loses, 3 ties (2 both won, 1 both lost)
    a = [1, 1, 1, 1, 1, 1, 0, 1, 1, 0]
    b = [0, 0, 0, 0, 0, 0, 1, 1, 1, 0]
    d = paired_difference(a, b)
    diffs = [1, 1, 1, 1, 1, 1, -1, 0, 0, 0]  # mean 0.5; s^2 = (6 * 0.25 + 2.25 + 3 * 0.25) / 9 = 0.5
    half = 2.262157 * math.sqrt(0.5 / 10)  # t(0.975, 9) * s / sqrt(n)
    assert (d.seeds, d.difference, d.a_better, d.b_better) == (10, sum(diffs) / 10, 6, 1)
    assert (d.low, d.high) == pytest.approx((0.5 - half, 1.0), abs=1e-6)  # 0.5 + half = 1.006, cut to 1
    assert d.p_value == pytest.approx(2 * (1 + 7) / 2**7)  # McNemar exact: 1 of 7 discordant seeds
    with pytest.raises(ValueError, match="paired seeds"):
        paired_difference([1, 0], [1])


def test_paired_difference_of_returns_is_not_cut_to_the_range_of_rates() -> None:
    # per-seed returns: A - B = 2, 2, 3, 1 (a return difference can exceed 1)
    d = paired_difference([-3, -3, -2, -4], [-5, -5, -5, -5], limits=None)
    half = 3.182446 * math.sqrt((0 + 0 + 1 + 1) / 3 / 4)  # t(0.975, 3) * s / sqrt(n), s^2 = 2/3
    assert (d.difference, d.a_better, d.b_better, d.p_value) == (2.0, 4, 0, 2 * 0.5**4)
    assert (d.low, d.high) == pytest.approx((2 - half, 2 + half), abs=1e-5)  # 0.70 to 3.30
    assert paired_difference([-3, -3, -2, -4], [-5, -5, -5, -5]).high == 1.0  # rates (the default) are cut
