"""The statistics behind evaluation reports: intervals, standard errors, pass@k, paired comparisons.

Pure functions of counts and lists of numbers, each tested against published values or a brute-force
computation (`tests/trainer/test_stats.py`). No SciPy: the few distribution functions needed
(Student's t quantile, the binomial tail) are computed here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (Wilson 1927).

    `(p + z^2/2n -/+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)` with `p = successes / n`; it stays
    inside [0, 1] and is not degenerate at 0 or n successes, unlike the normal approximation.

    Example:
        >>> [round(x, 4) for x in wilson_interval(0, 10)]
        [0.0, 0.2775]
    """
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


def mean_and_se(values: Sequence[float]) -> tuple[float, float]:
    """The mean and its standard error `s / sqrt(n)` (sample standard deviation, n - 1); SE is nan for n < 2."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = math.fsum(values) / n
    if n < 2:
        return mean, math.nan
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(variance / n)


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimator `1 - C(n-c, k) / C(n, k)` (Chen et al. 2021, arXiv 2107.03374).

    The probability that at least one of k samples drawn without replacement from n samples, c of
    them correct, is correct. Computed as `1 - prod_{i=n-c+1}^{n} (1 - k/i)`, stable for large n.

    Example:
        >>> pass_at_k(4, 1, 2)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
        0.5
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def binomial_two_sided_p(successes: int, trials: int) -> float:
    """Exact two-sided p-value of `successes` in `trials` under p = 1/2 (the sign test; McNemar's exact test).

    `min(1, 2 * P(X <= min(s, t - s)))` for X ~ Binomial(t, 1/2); 1.0 when there are no trials.

    Example:
        >>> binomial_two_sided_p(8, 8)  # 2 * 0.5**8
        0.0078125
    """
    if trials == 0:
        return 1.0
    tail = min(successes, trials - successes)
    return min(1.0, 2 * math.fsum(math.comb(trials, i) for i in range(tail + 1)) / 2**trials)


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t distribution with `df` degrees of freedom (bisection on the CDF).

    Example:
        >>> round(t_quantile(0.975, 9), 3)  # the familiar table value
        2.262
    """
    if not 0 < p < 1 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < p:
        high *= 2
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if _t_cdf(middle, df) < p else (low, middle)
    return (low + high) / 2


def _t_cdf(t: float, df: float) -> float:
    """P(T <= t) for t >= 0: `1 - I_x(df/2, 1/2) / 2` with `x = df / (df + t^2)`."""
    return 1.0 - 0.5 * _regularized_beta(df / (df + t * t), df / 2, 0.5)


def _regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b) by the continued fraction of Numerical Recipes (betacf), for 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _regularized_beta(1.0 - x, b, a)
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 300):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * fraction / a


@dataclass
class PairedDifference:
    """Model A minus model B on the same seeds, for one per-seed number (success rate, return, ...).

    Attributes:
        seeds: seeds both models played.
        difference: mean over seeds of (A's value - B's) on that seed.
        low, high: its 95% interval (Student's t over the per-seed differences; for rates, cut to [-1, 1]).
        a_better, b_better: seeds where A's value is higher / lower than B's (for a rate of invalid
            turns, higher is worse: the names follow success).
        p_value: exact two-sided sign test on those seeds (McNemar's exact test for success with one
            episode per seed): how surprising the split is if neither model is higher.
    """

    seeds: int
    difference: float
    low: float
    high: float
    a_better: int
    b_better: int
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def paired_difference(
    a: Sequence[float], b: Sequence[float], limits: tuple[float, float] | None = (-1.0, 1.0)
) -> PairedDifference:
    """Compare two models' per-seed values (`a[i]` and `b[i]` on the same seed i).

    `limits` cuts the interval to the range the difference can take: (-1, 1) for rates (the
    default), None for unbounded numbers such as returns.

    Example:
        >>> d = paired_difference([1, 1, 1, 0], [0, 0, 1, 0])
        >>> d.difference, d.a_better, d.b_better, d.p_value
        (0.5, 2, 0, 0.5)
    """
    if len(a) != len(b):
        raise ValueError(f"paired seeds: {len(a)} values for A, {len(b)} for B")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean, se = mean_and_se(diffs)
    if len(diffs) >= 2 and se > 0:
        half = t_quantile(0.975, len(diffs) - 1) * se
    else:
        half = 0.0 if len(diffs) >= 2 else math.nan  # all differences equal: no spread to estimate
    a_better, b_better = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    return PairedDifference(
        seeds=len(diffs),
        difference=mean,
        low=mean - half if limits is None else max(limits[0], mean - half),
        high=mean + half if limits is None else min(limits[1], mean + half),
        a_better=a_better,
        b_better=b_better,
        p_value=binomial_two_sided_p(a_better, a_better + b_better),
    )
