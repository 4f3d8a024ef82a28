"""H∞ disturbance attenuation as a zero-sum LQ differential game, with its exact best responses (docs/theory.md#hinf).

dx = (a x + ā Ex + b u + w) dt + σ dW; the defender picks u to minimise and the attacker picks w to maximise
J = E[∫ q x² + q̄ (Ex)² + r u² − γ² w² dt + q_T x_T² + q̄_T (Ex_T)²]. Split x = (x − Ex) + Ex as for LQ control (docs/theory.md#lq-control):
one game Riccati equation per part, −Ṗ = 2aP + q − s P², s = b²/r − 1/γ², P(T) = q_T (and Π with a + ā,
q + q̄, q_T + q̄_T). The saddle u* = −(b/r)[P(x − Ex) + Π Ex], w* = [P(x − Ex) + Π Ex]/γ² exists iff both stay
finite on [0, T], i.e. iff γ > γ*(T); the value is P(0)v0 + Π(0)m0² + σ²∫P dt.

* ``HInfGame(...)``: frozen, validated config; ``.solve()`` → ``HInfSolution``; ``.critical_gamma()``;
  ``.no_saddle_message()``.
* ``best_response_attacker(k, game)`` / ``best_response_defender(l, game)``: exact best-response values against
  a fixed linear opponent (single-agent LQ Riccati ODEs), ±inf when unbounded; ``profile_cost`` for a profile.
* ``game_riccati_closed_form``, ``escape_time``, ``scalar_riccati_ode``, ``game_riccati_matrix``: the pieces.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
from scipy.integrate import solve_ivp

from .errors import DivergenceError, ValidationError, number

RTOL, ATOL = 1e-11, 1e-12
BLOWUP = 1e10  # |P| beyond this counts as an escape (finite-time blow-up)
Gain = float | Callable[[float], float]


# --------------------------------------------------------------------------------- scalar Riccati
def _cs(k2: float, tau):
    """(cosh κτ, sinh(κτ)/κ) as analytic functions of κ² (cos/sin for κ² < 0, (1, τ) at κ² = 0)."""
    tau = np.asarray(tau, dtype=float)
    if k2 > 0:
        k = math.sqrt(k2)
        return np.cosh(k * tau), np.sinh(k * tau) / k
    if k2 < 0:
        w = math.sqrt(-k2)
        return np.cos(w * tau), np.sin(w * tau) / w
    return np.ones_like(tau), tau


def game_riccati_closed_form(a: float, s: float, q: float, qT: float, T: float, t):
    """P(t) solving −Ṗ = 2aP + q − sP², P(T) = qT, for constant coefficients and any sign of s (docs/theory.md#hinf).

    With τ = T − t, P = Y/X where (X, Y)' = [[−a, s], [q, a]](X, Y), (X, Y)(0) = (1, qT), i.e.
    X = C + S(s qT − a), Y = C qT + S(q + a qT), C = cosh κτ, S = sinh(κτ)/κ, κ² = a² + sq: the same solution as
    the closed form (P₊ − zP₋)/(1 − z) of docs/theory.md#riccati-closed-form where that applies (s ≠ 0, κ² > 0), and valid for κ² ≤ 0 too (cos/sin).
    Past the escape time (X ≤ 0) the value is +inf.
    """
    tau = T - np.asarray(t, dtype=float)
    C, S = _cs(a * a + s * q, tau)
    X = C + S * (s * qT - a)
    Y = C * qT + S * (q + a * qT)
    tstar = escape_time(a, s, q, qT)
    with np.errstate(divide="ignore", invalid="ignore"):
        P = np.where(tau < tstar, Y / X, np.inf)
    return float(P) if P.ndim == 0 else P


def escape_time(a: float, s: float, q: float, qT: float) -> float:
    """Time to go τ* = T − t at which P of −Ṗ = 2aP + q − sP², P(T) = qT blows up (inf if never; docs/theory.md#hinf).

    X(τ*) = 0 with c = s qT − a: κ² > 0: tanh κτ* = −κ/c (needs c < −κ); κ² = 0: τ* = −1/c (c < 0);
    κ² < 0 (ω = √−κ²): ωτ* = π/2 + atan(c/ω), always finite.
    """
    k2, c = a * a + s * q, s * qT - a
    if k2 > 0:
        k = math.sqrt(k2)
        return math.atanh(-k / c) / k if c < -k else math.inf
    if k2 < 0:
        w = math.sqrt(-k2)
        return (math.pi / 2 + math.atan(c / w)) / w
    return -1.0 / c if c < 0 else math.inf


def _fn(v: Gain) -> Callable[[float], float]:
    if callable(v):
        return v
    c = float(v)
    return lambda t: c


@dataclass(frozen=True)
class RiccatiPath:
    """A scalar Riccati solution on [0, T] by ODE: P(0), ∫P dt, and the escape time (None if none)."""

    P0: float
    integral: float
    escape: float | None
    dense: Callable | None

    @property
    def bounded(self) -> bool:
        return self.escape is None

    def P(self, t):
        """P(t) (array or float) on [0, T]; only when bounded."""
        v = self.dense(np.asarray(t, dtype=float))[0]
        return float(v) if np.ndim(v) == 0 else v


def scalar_riccati_ode(alpha: Gain, s: Gain, q: Gain, qT: float, T: float) -> RiccatiPath:
    """Integrate −Ṗ = 2α(t)P + q(t) − s(t)P², P(T) = qT backward (DOP853, rtol 1e-11) with ∫_t^T P (docs/theory.md#hinf).

    Coefficients are floats or callables of t. An escape (|P| > 1e10) stops the solve and is reported as the
    time t at which it happened (``escape``), with P0 = ±inf of the escape's sign.
    """
    fa, fs, fq = _fn(alpha), _fn(s), _fn(q)

    def rhs(t, y):
        P = y[0]
        return [-(2 * fa(t) * P + fq(t) - fs(t) * P * P), -P]

    def blow(t, y):
        return BLOWUP - abs(y[0])

    blow.terminal = True  # type: ignore[attr-defined]  # solve_ivp reads the event's attribute
    sol = solve_ivp(
        rhs,
        (T, 0.0),
        [float(qT), 0.0],
        method="DOP853",
        rtol=RTOL,
        atol=ATOL,
        events=blow,
        dense_output=True,
    )
    if sol.status == 1 or not np.all(np.isfinite(sol.y)):
        te = sol.t_events[0]
        t_bad = float(te[0]) if te.size else float(sol.t[-1])
        sign = math.copysign(1.0, float(sol.y[0, -1]))
        return RiccatiPath(sign * math.inf, sign * math.inf, t_bad, None)
    if sol.status != 0:
        raise DivergenceError(float(sol.t[-1]), f"Riccati solve ({sol.message})")
    return RiccatiPath(float(sol.y[0, -1]), float(sol.y[1, -1]), None, sol.sol)


# ------------------------------------------------------------------------------------------ game
@dataclass(frozen=True)
class HInfGame:
    """The scalar H∞ game (docs/theory.md#hinf) with a mean field (ā, q̄, q̄_T) and an initial law (m0, v0)."""

    a: float = 0.5
    b: float = 1.0
    q: float = 1.0
    r: float = 0.5
    qT: float = 1.0
    gamma: float = 2.0
    T: float = 1.0
    sigma: float = 0.0
    abar: float = 0.0
    qbar: float = 0.0
    qTbar: float = 0.0
    m0: float = 1.0
    v0: float = 0.5

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, float(number(f.name, getattr(self, f.name))))
        for name in ("r", "gamma", "T"):
            number(name, getattr(self, name), low=0.0, strict_low=True)
        for name in ("sigma", "q", "qT", "v0"):
            number(name, getattr(self, name), low=0.0)
        if self.q + self.qbar < 0:
            raise ValidationError("qbar", f"q + qbar >= 0 (q = {self.q:g})", self.qbar)
        if self.qT + self.qTbar < 0:
            raise ValidationError("qTbar", f"qT + qTbar >= 0 (qT = {self.qT:g})", self.qTbar)

    @property
    def s(self) -> float:
        """Net quadratic coefficient s = b²/r − 1/γ² of the game Riccati equation (docs/theory.md#hinf)."""
        return self.b**2 / self.r - 1.0 / self.gamma**2

    def parts(self, gamma: float | None = None) -> tuple[tuple[float, float, float, float], ...]:
        """(a, s, q, q_T) of the fluctuation and of the mean game Riccati equations (docs/theory.md#lq-control)."""
        g = self.gamma if gamma is None else gamma
        s = self.b**2 / self.r - 1.0 / g**2
        return (
            (self.a, s, self.q, self.qT),
            (self.a + self.abar, s, self.q + self.qbar, self.qT + self.qTbar),
        )

    def escape(self, gamma: float | None = None) -> float:
        """Earliest escape time-to-go of P or Π (inf: none); a saddle on [0, T] needs escape > T."""
        return min(escape_time(*p) for p in self.parts(gamma))

    def exists(self, gamma: float | None = None) -> bool:
        """Whether the saddle exists on [0, T] (both game Riccati solutions finite)."""
        return self.escape(gamma) > self.T

    def critical_gamma(self, rtol: float = 1e-12) -> float:
        """γ*(T) = inf{γ : saddle on [0, T]}, by bisection on the escape time (docs/theory.md#hinf); 0 if none escapes.

        s ≥ 0 (γ ≥ √r/|b|) never escapes, and the escape time-to-go decreases as γ decreases (comparison).
        """
        hi = math.sqrt(self.r) / abs(self.b) if self.b != 0 else 1.0
        while not self.exists(hi):
            hi *= 2.0
        lo = hi * 1e-6
        if self.exists(lo):
            return 0.0
        while hi - lo > rtol * hi:
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if self.exists(mid) else (mid, hi)
        return hi

    def no_saddle_message(self) -> str | None:
        """One line naming γ and γ* when γ ≤ γ* (no saddle on [0, T]), else None."""
        if self.exists():
            return None
        gs = self.critical_gamma()
        t = self.T - self.escape()
        return (
            f"gamma = {self.gamma:.6g} <= gamma* = {gs:.6g} (T = {self.T:g}): the game Riccati equation "
            f"escapes at t = {t:.4g}, no saddle; the attacker's best response is unbounded (docs/theory.md#hinf)"
        )

    def solve(self, method: str = "closed") -> HInfSolution:
        """P, Π and the saddle; ``method`` "closed" (closed form, docs/theory.md#hinf) or "ode" (solve_ivp).

        Raises ``DivergenceError`` (naming γ and γ*) when no saddle exists.
        """
        if method not in ("closed", "ode"):
            raise ValidationError("method", "one of closed, ode", method)
        msg = self.no_saddle_message()
        if msg is not None:
            raise DivergenceError(self.T - self.escape(), f"game Riccati solution ({msg})")
        (pa, ps, pq, pT), (ma, ms, mq, mT) = self.parts()
        if method == "ode":
            fl = scalar_riccati_ode(pa, ps, pq, pT, self.T)
            mn = scalar_riccati_ode(ma, ms, mq, mT, self.T)
            return HInfSolution(self, fl.P, mn.P, fl.integral)
        T = self.T

        def P(t):
            return game_riccati_closed_form(pa, ps, pq, pT, T, t)

        def Pi(t):
            return game_riccati_closed_form(ma, ms, mq, mT, T, t)

        x, w = np.polynomial.legendre.leggauss(64)  # ∫P dt, smooth integrand: Gauss–Legendre
        integral = float(0.5 * T * np.sum(w * P(0.5 * T * (x + 1))))
        return HInfSolution(self, P, Pi, integral)


@dataclass(frozen=True)
class HInfSolution:
    """Game Riccati solutions and the saddle of an ``HInfGame`` (docs/theory.md#hinf)."""

    game: HInfGame
    P: Callable  # fluctuation part, t ↦ P(t)
    Pi: Callable  # mean part, t ↦ Π(t)
    integral: float  # ∫_0^T P dt

    def k(self, t):
        """Defender's fluctuation gain (b/r)P(t): u* = −k(x − Ex) − k̄ Ex."""
        return self.game.b / self.game.r * self.P(t)

    def kbar(self, t):
        """Defender's mean gain (b/r)Π(t)."""
        return self.game.b / self.game.r * self.Pi(t)

    def ell(self, t):
        """Attacker's fluctuation gain P(t)/γ²: w* = l(x − Ex) + l̄ Ex."""
        return self.P(t) / self.game.gamma**2

    def ellbar(self, t):
        """Attacker's mean gain Π(t)/γ²."""
        return self.Pi(t) / self.game.gamma**2

    @property
    def value(self) -> float:
        """Saddle value P(0)v0 + Π(0)m0² + σ²∫P dt (docs/theory.md#hinf)."""
        g = self.game
        return float(self.P(0.0) * g.v0 + self.Pi(0.0) * g.m0**2 + g.sigma**2 * self.integral)


# ------------------------------------------------------------------------------- best responses
def _value(game: HInfGame, parts: list[tuple], sign: float) -> float:
    (fa, fs, fq, fT), (ma, ms, mq, mT) = parts
    """Σ over the parts that carry mass (v0 or σ > 0; m0 ≠ 0) of P(0)·mass (+ σ²∫P); sign·inf at an escape."""
    total = 0.0
    fluct = (fa, fs, fq, fT, game.v0, game.sigma**2)
    for a, s, q, qT, mass, noise in (fluct, (ma, ms, mq, mT, game.m0**2, 0.0)):
        if mass == 0.0 and noise == 0.0:
            continue
        path = scalar_riccati_ode(a, s, q, qT, game.T)
        if not path.bounded:
            return sign * math.inf
        total += path.P0 * mass + noise * path.integral
    return total


def best_response_attacker(k: Gain, game: HInfGame, kbar: Gain | None = None) -> float:
    """max_w J against the defender u = −k(t)(x − Ex) − k̄(t)Ex (k̄ = k if None); +inf when unbounded.

    A single-agent LQ maximisation (docs/theory.md#hinf): −Ṗ = 2(a − bk)P + q + rk² + P²/γ², P(T) = q_T (and the mean
    part with a + ā − bk̄, q + q̄ + rk̄², q_T + q̄_T); the best attack is w = P(x − Ex)/γ² + Π Ex/γ².
    """
    fk = _fn(k)
    fkb = fk if kbar is None else _fn(kbar)
    g = game
    s = -1.0 / g.gamma**2
    parts = [
        (lambda t: g.a - g.b * fk(t), s, lambda t: g.q + g.r * fk(t) ** 2, g.qT),
        (lambda t: g.a + g.abar - g.b * fkb(t), s, lambda t: g.q + g.qbar + g.r * fkb(t) ** 2,
         g.qT + g.qTbar),
    ]  # fmt: skip
    return _value(g, parts, +1.0)


def best_response_defender(l: Gain, game: HInfGame, lbar: Gain | None = None) -> float:
    """min_u J against the attack w = l(t)(x − Ex) + l̄(t)Ex (l̄ = l if None); −inf when unbounded below.

    A single-agent LQ minimisation (docs/theory.md#lq-control): −Ṗ = 2(a + l)P + q − γ²l² − (b²/r)P², P(T) = q_T (and the mean
    part with a + ā + l̄, q + q̄ − γ²l̄²); the best control is u = −(b/r)[P(x − Ex) + Π Ex].
    """
    fl = _fn(l)
    flb = fl if lbar is None else _fn(lbar)
    g = game
    s = g.b**2 / g.r
    g2 = g.gamma**2
    parts = [
        (lambda t: g.a + fl(t), s, lambda t: g.q - g2 * fl(t) ** 2, g.qT),
        (lambda t: g.a + g.abar + flb(t), s, lambda t: g.q + g.qbar - g2 * flb(t) ** 2,
         g.qT + g.qTbar),
    ]  # fmt: skip
    return _value(g, parts, -1.0)


def profile_cost(
    k: Gain, l: Gain, game: HInfGame, kbar: Gain | None = None, lbar: Gain | None = None
) -> float:
    """J of the linear profile u = −k(x − Ex) − k̄Ex, w = l(x − Ex) + l̄Ex: a Lyapunov (s = 0) ODE per part."""
    fk, fl = _fn(k), _fn(l)
    fkb = fk if kbar is None else _fn(kbar)
    flb = fl if lbar is None else _fn(lbar)
    g, g2 = game, game.gamma**2
    parts = [
        (lambda t: g.a - g.b * fk(t) + fl(t), 0.0,
         lambda t: g.q + g.r * fk(t) ** 2 - g2 * fl(t) ** 2, g.qT),
        (lambda t: g.a + g.abar - g.b * fkb(t) + flb(t), 0.0,
         lambda t: g.q + g.qbar + g.r * fkb(t) ** 2 - g2 * flb(t) ** 2, g.qT + g.qTbar),
    ]  # fmt: skip
    return _value(g, parts, math.nan)


def duality_gap(
    k: Gain, l: Gain, game: HInfGame, kbar: Gain | None = None, lbar: Gain | None = None
) -> float:
    """max_w J(k, w) − min_u J(u, l) ≥ 0: zero exactly at the saddle; inf when either side is unbounded."""
    up = best_response_attacker(k, game, kbar)
    down = best_response_defender(l, game, lbar)
    return up - down


# ---------------------------------------------------------------------------------------- matrix
def game_riccati_matrix(A, B, Q, R, QT, gamma: float, T: float, D=None) -> np.ndarray:
    """P(0) of −Ṗ = AᵀP + PA + Q − P(BR⁻¹Bᵀ − γ⁻²DDᵀ)P, P(T) = Q_T (matrix form, docs/theory.md#hinf; D = I if None).

    Raises ``DivergenceError`` at an escape (no saddle on [0, T]).
    """
    A, B, Q, R, QT = (np.atleast_2d(np.asarray(m, dtype=float)) for m in (A, B, Q, R, QT))
    d = A.shape[0]
    D = np.eye(d) if D is None else np.atleast_2d(np.asarray(D, dtype=float))
    number("gamma", gamma, low=0.0, strict_low=True)
    S = B @ np.linalg.solve(R, B.T) - D @ D.T / gamma**2

    def rhs(t, y):
        P = y.reshape(d, d)
        return -(A.T @ P + P @ A + Q - P @ S @ P).ravel()

    def blow(t, y):
        return BLOWUP - np.max(np.abs(y))

    blow.terminal = True  # type: ignore[attr-defined]  # solve_ivp reads the event's attribute
    sol = solve_ivp(rhs, (T, 0.0), QT.ravel(), method="DOP853", rtol=RTOL, atol=ATOL, events=blow)
    if sol.status != 0 or not np.all(np.isfinite(sol.y)):
        raise DivergenceError(float(sol.t[-1]), f"matrix game Riccati solution (gamma = {gamma:g})")
    P = sol.y[:, -1].reshape(d, d)
    return 0.5 * (P + P.T)
