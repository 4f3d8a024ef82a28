"""Statistics of a weight-law comparison over seeds (docs/theory.md#comparison): t-intervals, paired tests,
effect sizes, one conclusion.

Every law is run on the same seeds (common random numbers: the seed fixes initialisation, data and noise for
all laws alike), so the comparison with a baseline is *paired*: d_s = baseline_s − law_s per seed s (positive
when the law is better for a lower-is-better metric). The paired t-test and the Wilcoxon signed-rank test
are both computed; a difference is called significant only when both reject at ``alpha``: the t-test after
Holm's correction over the laws compared with one baseline (family-wise error ≤ ``alpha``), the Wilcoxon test
as a check on the t-test's normality assumption. Requiring both keeps the false-positive rate below ``alpha``. Ties are never ranked: a non-significant difference is
reported as "no significant difference", whatever the sign of the mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import stats as _st

from control.errors import ValidationError, number

# a Wilcoxon signed-rank test on n pairs cannot give p < 2/2ⁿ: below this many seeds it never rejects at 5 %
MIN_SEEDS_FOR_TEST = 6


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` values with a two-sided Student-t confidence interval at ``level``."""

    mean: float
    half: float  # half-width (nan with one value)
    n: int
    level: float = 0.95

    @property
    def lo(self) -> float:
        return self.mean - self.half

    @property
    def hi(self) -> float:
        return self.mean + self.half

    def to_dict(self) -> dict:
        return {**asdict(self), "lo": self.lo, "hi": self.hi}


def t_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Mean ± t_{(1+level)/2, n−1} · sd/√n of the finite values (half-width nan for n < 2)."""
    number("level", level, low=0.0, high=1.0, strict_low=True)
    x = np.asarray(values, dtype=float).ravel()
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return Interval(float("nan"), float("nan"), 0, level)
    if n == 1:
        return Interval(float(x[0]), float("nan"), 1, level)
    sd = float(x.std(ddof=1))
    half = float(_st.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return Interval(float(x.mean()), half, n, level)


@dataclass(frozen=True)
class Paired:
    """A law against a baseline on common seeds: d_s = baseline_s − law_s (or law − baseline when higher is better).

    ``diff`` > 0 means the law is better. ``p_t`` (paired t) and ``p_wilcoxon`` are two-sided; ``p_t_adj`` and
    ``p_wilcoxon_adj`` are Holm-adjusted over the comparisons of one task (equal to the raw ones for a single
    comparison). ``d_z`` is Cohen's effect size of paired data, mean(d)/sd(d).
    """

    law: str
    baseline: str
    n: int
    diff: Interval
    p_t: float
    p_wilcoxon: float
    d_z: float
    alpha: float = 0.05
    p_t_adj: float = float("nan")
    p_wilcoxon_adj: float = float("nan")

    @property
    def significant(self) -> bool:
        """Both tests reject at ``alpha``: the Holm-adjusted t-test and the Wilcoxon check."""
        return bool(self.p_t_adj < self.alpha and self.p_wilcoxon < self.alpha)

    @property
    def winner(self) -> str | None:
        """The better of the two when the difference is significant, else None (a tie is never ranked)."""
        if not self.significant:
            return None
        return self.law if self.diff.mean > 0 else self.baseline

    def to_dict(self) -> dict:
        out = asdict(self)
        out["diff"] = self.diff.to_dict()
        out["significant"] = self.significant
        out["winner"] = self.winner
        return out


def _p_t(d: np.ndarray) -> float:
    if d.size < 2:
        return float("nan")
    sd = float(d.std(ddof=1))
    if (
        sd == 0.0
    ):  # every seed gives the same difference: none at all (p = 1) or an exact one (p = 0)
        return 1.0 if float(np.abs(d).max()) == 0.0 else 0.0
    t = float(d.mean()) / (sd / math.sqrt(d.size))
    return float(2 * _st.t.sf(abs(t), d.size - 1))


def _p_wilcoxon(d: np.ndarray) -> float:
    if d.size < 1:
        return float("nan")
    if not np.any(d != 0):
        return 1.0
    return float(_st.wilcoxon(d[d != 0], zero_method="wilcox", alternative="two-sided").pvalue)


def effect_size(d: Sequence[float]) -> float:
    """Cohen's d_z = mean(d)/sd(d) of paired differences (±inf for an exact nonzero difference, 0 for none)."""
    x = np.asarray(d, dtype=float)
    if x.size < 2:
        return float("nan")
    sd, m = float(x.std(ddof=1)), float(x.mean())
    if sd == 0.0:
        return 0.0 if m == 0.0 else math.copysign(math.inf, m)
    return m / sd


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (nan stays nan and is not counted)."""
    p = np.asarray(pvalues, dtype=float)
    ok = np.flatnonzero(np.isfinite(p))
    out = np.full(p.shape, np.nan)
    order = ok[np.argsort(p[ok], kind="stable")]
    m, running = len(order), 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[i]))
        out[i] = running
    return out.tolist()


def paired(
    law_values: Sequence[float],
    baseline_values: Sequence[float],
    *,
    law: str = "law",
    baseline: str = "constant",
    lower_is_better: bool = True,
    alpha: float = 0.05,
    level: float = 0.95,
) -> Paired:
    """Paired comparison on common seeds (seeds where either value is non-finite are dropped)."""
    number("alpha", alpha, low=0.0, high=1.0, strict_low=True)
    a = np.asarray(law_values, dtype=float).ravel()
    b = np.asarray(baseline_values, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValidationError("values", "one value per common seed for both laws", (a.size, b.size))
    keep = np.isfinite(a) & np.isfinite(b)
    d = (b - a if lower_is_better else a - b)[keep]
    pt, pw = _p_t(d), _p_wilcoxon(d)
    return Paired(
        law=law,
        baseline=baseline,
        n=int(d.size),
        diff=t_interval(d, level),
        p_t=pt,
        p_wilcoxon=pw,
        d_z=effect_size(d),
        alpha=alpha,
        p_t_adj=pt,
        p_wilcoxon_adj=pw,
    )


def adjust(comparisons: Sequence[Paired]) -> list[Paired]:
    """The comparisons with Holm-adjusted p-values over the family (one baseline vs several laws)."""
    pt = holm([c.p_t for c in comparisons])
    pw = holm([c.p_wilcoxon for c in comparisons])
    return [
        replace(c, p_t_adj=a, p_wilcoxon_adj=b) for c, a, b in zip(comparisons, pt, pw, strict=True)
    ]


def format_p(p: float) -> str:
    """``p < 0.001`` / ``p = 0.012`` / ``p = n/a``."""
    if not math.isfinite(p):
        return "p = n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def _num(x: float, unit: str) -> str:
    if not math.isfinite(x):
        return "n/a"
    a = abs(x)
    s = f"{x:.3g}" if a >= 0.01 or a == 0 else f"{x:.2e}"
    return f"{s} {unit}".rstrip() if unit == "%" else f"{s}{(' ' + unit) if unit else ''}"


def conclusion(c: Paired, *, metric: str = "", unit: str = "") -> str:
    """One line: "feedback beats constant by 3.1 % ± 0.4 % on <metric> (p < 0.001, 10 paired seeds)" or
    "no significant difference between …" (never a ranking of ties)."""
    where = f" on {metric}" if metric else ""
    seeds = f"{c.n} paired seed{'s' if c.n != 1 else ''}"
    tests = f"{format_p(c.p_t_adj)}, Wilcoxon {format_p(c.p_wilcoxon)}, d_z = {_dz(c.d_z)}"
    if c.n < MIN_SEEDS_FOR_TEST:
        return (
            f"no conclusion between {c.law} and {c.baseline}{where}: {seeds} "
            f"(a paired test needs at least {MIN_SEEDS_FOR_TEST})"
        )
    if not c.significant:
        return (
            f"no significant difference between {c.law} and {c.baseline}{where} "
            f"(improvement of {c.law} on {c.baseline}: {_num(c.diff.mean, unit)} ± "
            f"{_num(c.diff.half, unit)}; "
            f"{tests}; {seeds})"
        )
    win, lose = (c.law, c.baseline) if c.diff.mean > 0 else (c.baseline, c.law)
    return (
        f"{win} beats {lose} by {_num(abs(c.diff.mean), unit)} ± {_num(c.diff.half, unit)}{where} "
        f"({tests}; {seeds})"
    )


def _dz(d: float) -> str:
    if math.isinf(d):
        return "∞" if d > 0 else "−∞"
    return "n/a" if not math.isfinite(d) else f"{d:.2g}"
