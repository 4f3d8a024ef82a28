"""Statistics of the weight-law comparison (issue 14): t-intervals, paired tests, power and size checks."""

import math

import numpy as np
import pytest
from scipy import stats as st

from control.errors import ValidationError
from mftt.stats import adjust, conclusion, effect_size, holm, paired, t_interval


def test_t_interval_matches_scipy():
    x = np.array([1.0, 2.0, 4.0, 7.0])
    iv = t_interval(x)
    lo, hi = st.t.interval(0.95, 3, loc=x.mean(), scale=st.sem(x))
    assert iv.n == 4 and math.isclose(iv.lo, lo) and math.isclose(iv.hi, hi)
    assert math.isnan(t_interval([3.0]).half) and t_interval([3.0]).mean == 3.0
    assert t_interval([1.0, np.nan, 3.0]).n == 2  # non-finite values are dropped


def test_paired_matches_scipy_and_signs():
    rng = np.random.default_rng(0)
    base = rng.normal(10, 1, 10)
    law = base - 0.5 + rng.normal(0, 0.1, 10)  # the law is lower (better) by 0.5
    c = paired(law, base, law="feedback")
    assert math.isclose(c.p_t, st.ttest_rel(law, base).pvalue, rel_tol=1e-9)
    assert math.isclose(c.p_wilcoxon, st.wilcoxon(base - law).pvalue, rel_tol=1e-9)
    assert c.diff.mean > 0 and c.winner == "feedback" and c.d_z == effect_size(base - law)
    line = conclusion(c, metric="gap", unit="%")
    assert line.startswith("feedback beats constant by 0.") and "10 paired seeds" in line
    worse = paired(base, law, law="time")
    assert worse.winner == "constant" and conclusion(worse).startswith("constant beats time")
    higher = paired(law, base, law="x", lower_is_better=False)
    assert higher.diff.mean < 0 and higher.winner == "constant"
    with pytest.raises(ValidationError, match="values"):
        paired([1.0, 2.0], [1.0])


def test_exact_and_zero_differences():
    same = paired([1.0] * 8, [1.0] * 8)
    assert same.p_t == 1.0 and same.p_wilcoxon == 1.0 and same.d_z == 0.0 and not same.significant
    assert conclusion(same).startswith("no significant difference")
    exact = paired([1.0] * 8, [2.0] * 8)
    assert exact.p_t == 0.0 and exact.d_z == math.inf and exact.significant
    few = paired([1.0, 1.1, 0.9], [2.0, 2.1, 2.2])
    assert conclusion(few).startswith("no conclusion") and "at least 6" in conclusion(few)


def test_holm():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert math.isnan(holm([np.nan, 0.02])[0]) and holm([np.nan, 0.02])[1] == 0.02
    cs = adjust(
        [paired([1.0, 2, 3, 4, 5, 6], [1.1, 2.3, 3.2, 4.5, 5.1, 6.4]), paired([1.0] * 6, [1.0] * 6)]
    )
    assert cs[0].p_t_adj == pytest.approx(min(1.0, 2 * cs[0].p_t))


def test_power_detects_a_known_effect():
    """A synthetic law better by 0.5 sd of the seed noise (d_z = 1) on 10 paired seeds is found ≥ 70 % of the
    time (theoretical power of the t-test ≈ 0.80), and never reported the wrong way round."""
    rng = np.random.default_rng(1)
    hits = wrong = 0
    for _ in range(200):
        base = rng.normal(0, 1, 10)
        law = base - 1.0 + rng.normal(0, 1, 10)  # d = base − law ~ N(1, 1): d_z = 1
        c = paired(law, base, law="feedback")
        hits += c.winner == "feedback"
        wrong += c.winner == "constant"
    assert hits >= 140 and wrong == 0


def test_size_identical_laws_give_no_difference():
    """Two identical laws (the same distribution, independent seed noise): "no significant difference" in
    ≥ 95 % of 400 seeded repeats (both tests must reject, so the false-positive rate stays below 5 %)."""
    rng = np.random.default_rng(2)
    ties = 0
    for _ in range(400):
        base = rng.normal(0, 1, 10)
        law = base + rng.normal(0, 1, 10) * 0.3
        law2 = base + rng.normal(0, 1, 10) * 0.3
        ties += paired(law, law2, law="a", baseline="b").winner is None
    assert ties >= 0.95 * 400
