"""Intervals over seeds and which differences between benchmark methods are significant: the Student-t
interval of a mean, Welch's t-test, Holm's correction.

The leaderboard (:mod:`prune_env.benchmark.leaderboard`) reports per method the mean over seeds with its 95%
Student-t interval and the learning curves (:mod:`prune_env.benchmark.curves`) shade the same interval per
bin, both from :func:`t_interval`; the rest of this module says which of those means differ by more than
seed noise.

* :func:`t_interval`: the mean of a sample and its Student-t interval (the one t-interval of the package);
* :func:`welch_test`: Welch's unequal-variance t-test of two samples (the per-seed values of two
  methods), two-sided, with the Welch-Satterthwaite degrees of freedom and the 95% interval of the
  difference of the means. The p-value is the one ``scipy.stats.ttest_ind(a, b, equal_var=False)``
  gives; unlike scipy it also answers when both samples are constant (deterministic baselines and
  references evaluated once per seed): the difference is then exact, p = 0 if the means differ and
  1 if they do not.
* :func:`holm`: Holm's step-down adjustment of a family of p-values (controls the family-wise error
  rate at any dependence between the tests).
* :func:`compare_to` / :func:`pairwise`: every method against one reference (the leaderboard's
  marks against ``uniform``) or every pair, Holm-adjusted within the family.

What the tests measure: training noise over seeds on a fixed test split. They do not cover the
sampling of the test split itself (on the embedded default one test image is 0.28 points of top-1).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from itertools import combinations
from typing import Collection, Mapping, Sequence

import numpy as np
from scipy import stats

#: the family-wise error rate of the marks
ALPHA = 0.05


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b`` on one metric (``diff = mean(a) - mean(b)``)."""

    a: str
    b: str
    metric: str
    diff: float
    low: float
    high: float
    t: float
    df: float
    p: float
    p_holm: float = float("nan")

    def significant(self, alpha: float = ALPHA) -> bool:
        return math.isfinite(self.p_holm) and self.p_holm < alpha

    def as_dict(self) -> dict:
        return asdict(self)


def _clean(values: Sequence[float]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of the finite ``values`` and its Student-t interval at ``confidence``
    (``t(0.5 + confidence / 2, n - 1) * s / sqrt(n)`` either side; NaN bounds below 2 values, all NaN for none)."""
    a = _clean(values)
    if a.size == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(a.mean())
    if a.size < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, a.size - 1) * a.std(ddof=1) / math.sqrt(a.size))
    return mean, mean - half, mean + half


Welch = tuple[float, float, float, float, float, float]


def welch_test(a: Sequence[float], b: Sequence[float], confidence: float = 0.95, *, exact_if_constant: bool = True) -> Welch:
    """``(diff, low, high, t, df, p)``: Welch's two-sided t-test of ``mean(a) = mean(b)``.

    ``diff = mean(a) - mean(b)``, ``[low, high]`` its ``confidence`` interval, ``t`` the statistic,
    ``df`` the Welch-Satterthwaite degrees of freedom and ``p`` the two-sided p-value. With fewer than
    2 values on a side the test is undefined (NaN, except as below). When the standard error is 0
    (both samples constant) and ``exact_if_constant`` (both sides are deterministic evaluations, not
    seeds that happened to agree) the difference is exact: ``p = 0`` if the means differ, 1 if not;
    without ``exact_if_constant`` the test is undefined there (NaN).
    """
    x, y = _clean(a), _clean(b)
    if x.size == 0 or y.size == 0:
        return (float("nan"),) * 6
    diff = float(x.mean() - y.mean())
    vx = float(x.var(ddof=1)) / x.size if x.size > 1 else float("nan")
    vy = float(y.var(ddof=1)) / y.size if y.size > 1 else float("nan")
    if x.size > 1 and y.size > 1 and np.ptp(x) == 0 and np.ptp(y) == 0:
        if not exact_if_constant:
            return diff, float("nan"), float("nan"), float("nan"), float("nan"), float("nan")
        exact = 0.0 if abs(diff) > 1e-12 * max(1.0, abs(float(x.mean()))) else 1.0
        return diff, diff, diff, math.copysign(math.inf, diff) if exact == 0.0 else 0.0, math.inf, exact
    if not (math.isfinite(vx) and math.isfinite(vy)):
        return diff, float("nan"), float("nan"), float("nan"), float("nan"), float("nan")
    se = math.sqrt(vx + vy)
    # Welch-Satterthwaite; a constant side contributes nothing to the variance or the degrees of freedom
    df = (vx + vy) ** 2 / sum(v * v / (n - 1) for v, n in ((vx, x.size), (vy, y.size)) if v > 0)
    t = diff / se
    p = float(2.0 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(0.5 + confidence / 2, df) * se)
    return diff, diff - half, diff + half, float(t), float(df), p


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order (NaN stays NaN and is not counted).

    Sorted ascending, ``p_(i)`` becomes ``max_{j <= i} min(1, (m - j + 1) p_(j))`` with ``m`` the
    number of finite p-values: reject ``H_(i)`` at family-wise level ``alpha`` iff its adjusted
    value is below ``alpha``.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    running = 0.0
    for rank, i in enumerate(finite[np.argsort(p[finite], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def _adjusted(comparisons: list[Comparison]) -> list[Comparison]:
    adjusted = holm([c.p for c in comparisons])
    return [Comparison(**{**c.as_dict(), "p_holm": float(q)}) for c, q in zip(comparisons, adjusted)]


def _exact(a: str, b: str, deterministic: Collection[str] | None) -> bool:
    return deterministic is None or (a in deterministic and b in deterministic)


def compare_to(samples: Mapping[str, Sequence[float]], reference: str, metric: str = "", *,
               deterministic: Collection[str] | None = None) -> dict[str, Comparison]:
    """Every method of ``samples`` (name -> per-seed values) against ``reference``, Holm-adjusted over
    the family of those comparisons; ``{}`` when the reference is missing. ``deterministic`` names the
    rows evaluated without randomness (None: all): only between two of them is a difference of
    constant samples exact (:func:`welch_test`)."""
    if reference not in samples:
        return {}
    names = [n for n in samples if n != reference]
    found = [Comparison(n, reference, metric, *welch_test(samples[n], samples[reference],
                                                          exact_if_constant=_exact(n, reference, deterministic)))
             for n in names]
    return {c.a: c for c in _adjusted(found)}


def pairwise(samples: Mapping[str, Sequence[float]], metric: str = "", *,
             deterministic: Collection[str] | None = None) -> list[Comparison]:
    """Every unordered pair of methods (``a`` before ``b`` in ``samples``' order), Holm-adjusted over all pairs."""
    found = [Comparison(a, b, metric, *welch_test(samples[a], samples[b], exact_if_constant=_exact(a, b, deterministic)))
             for a, b in combinations(list(samples), 2)]
    return _adjusted(found)


def mark(comparison: Comparison | None, higher_is_better: bool = True, alpha: float = ALPHA) -> str:
    """``"▲"`` significantly better than the reference, ``"▼"`` significantly worse, ``""`` otherwise."""
    if comparison is None or not comparison.significant(alpha):
        return ""
    return "▲" if (comparison.diff > 0) == higher_is_better else "▼"
