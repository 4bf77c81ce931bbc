"""The statistics of the leaderboard (prune_env.benchmark.statistics) on hand-built samples with known answers."""

import math

import numpy as np
import pytest
from scipy import stats

from prune_env.benchmark.statistics import compare_to, holm, mark, pairwise, welch_test


@pytest.mark.parametrize("a, b", [
    ([0.944, 0.936, 0.950, 0.947, 0.947], [0.908, 0.908, 0.915, 0.903, 0.911]),
    ([1.0, 2.0, 3.0], [2.0, 4.0, 6.0, 8.0, 10.0]),
    ([5.1, 4.9, 5.0, 5.2], [5.0, 5.05, 4.95]),
])
def test_welch_matches_scipy(a, b):
    diff, low, high, t, df, p = welch_test(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert t == pytest.approx(ref.statistic, rel=1e-10) and p == pytest.approx(ref.pvalue, rel=1e-10)
    assert diff == pytest.approx(np.mean(a) - np.mean(b))
    ci = ref.confidence_interval(0.95)
    assert (low, high) == (pytest.approx(ci.low, rel=1e-9), pytest.approx(ci.high, rel=1e-9))
    assert df == pytest.approx(ref.df, rel=1e-10)


def test_welch_by_hand():
    # a = (1, 2, 3): mean 2, var 1; b = (4, 6, 8): mean 6, var 4; se^2 = 1/3 + 4/3 = 5/3
    diff, _, _, t, df, p = welch_test([1, 2, 3], [4, 6, 8])
    assert diff == -4 and t == pytest.approx(-4 / math.sqrt(5 / 3))
    assert df == pytest.approx((5 / 3) ** 2 / ((1 / 3) ** 2 / 2 + (4 / 3) ** 2 / 2))  # 3.2352...
    assert p == pytest.approx(2 * stats.t.sf(4 / math.sqrt(5 / 3), df))


def test_welch_against_a_deterministic_baseline_is_a_one_sample_test():
    agent, uniform = [0.94, 0.95, 0.93, 0.96, 0.94], [0.9083] * 5
    diff, low, high, t, df, p = welch_test(agent, uniform)
    one = stats.ttest_1samp(agent, 0.9083)
    assert df == 4 and p == pytest.approx(one.pvalue, rel=1e-10) and t == pytest.approx(one.statistic)
    assert low < diff < high


def test_welch_between_constant_samples_is_exact():
    assert welch_test([0.9, 0.9, 0.9], [0.8, 0.8, 0.8])[-1] == 0.0
    diff, low, high, _, _, p = welch_test([0.9, 0.9, 0.9], [0.9, 0.9])
    assert p == 1.0 and diff == low == high == 0.0
    assert math.isnan(welch_test([0.9], [0.8, 0.7])[-1])  # one value: undefined


def test_holm_on_a_known_vector():
    # sorted 0.01, 0.02, 0.03, 0.04 (m = 4): 0.04, 0.06, 0.06 (monotone), 0.06
    assert holm([0.03, 0.01, 0.04, 0.02]).tolist() == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, 0.9]).tolist() == pytest.approx([1.0, 1.0])  # capped at 1
    adjusted = holm([0.01, float("nan"), 0.02])  # NaN is not a test: m = 2
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)
    assert holm([0.0, 1.0]).tolist() == [0.0, 1.0]


def test_compare_to_uniform_marks_only_what_survives_holm():
    rng = np.random.default_rng(0)
    samples = {
        "uniform": [0.908] * 5,
        "good": (0.944 + 0.005 * rng.standard_normal(5)).tolist(),   # +3.6 points, sd 0.5: clearly better
        "bad": (0.80 + 0.005 * rng.standard_normal(5)).tolist(),     # clearly worse
        "noisy": (0.92 + 0.05 * rng.standard_normal(5)).tolist(),    # within its noise
    }
    found = compare_to(samples, "uniform", "accuracy")
    assert set(found) == {"good", "bad", "noisy"}
    assert mark(found["good"]) == "▲" and mark(found["bad"]) == "▼" and mark(found["noisy"]) == ""
    assert mark(found["bad"], higher_is_better=False) == "▲"
    raw = [welch_test(samples[n], samples["uniform"])[-1] for n in ("good", "bad", "noisy")]
    assert [found[n].p_holm for n in ("good", "bad", "noisy")] == pytest.approx(holm(raw).tolist())
    assert compare_to({"a": [1.0, 2.0]}, "uniform") == {}


def test_pairwise_covers_every_pair_once():
    samples = {"a": [1.0, 1.1, 0.9], "b": [2.0, 2.1, 1.9], "c": [1.0, 1.2, 0.8]}
    found = pairwise(samples, "x")
    assert [(c.a, c.b) for c in found] == [("a", "b"), ("a", "c"), ("b", "c")]
    assert [c.p_holm for c in found] == pytest.approx(holm([c.p for c in found]).tolist())
    assert found[0].significant() and not found[1].significant()


def test_agreeing_seeds_are_not_exact_unless_both_rows_are_deterministic():
    samples = {"uniform": [0.9] * 3, "oracle": [1.0] * 3, "collapsed": [0.77] * 3}
    found = compare_to(samples, "uniform", deterministic={"uniform", "oracle"})
    assert found["oracle"].p == 0.0 and math.isnan(found["collapsed"].p) and mark(found["collapsed"]) == ""
    assert math.isnan(welch_test([0.77] * 3, [0.9] * 3, exact_if_constant=False)[-1])
    pairs = pairwise(samples, deterministic={"uniform", "oracle"})
    assert [math.isnan(c.p) for c in pairs] == [False, True, True]
