"""Exact LQ references: mean-field-type control (docs/theory.md#lq-control) and N-player LQ games with an empathy Λ (docs/theory.md#lq-game).

Riccati equations are integrated backward with scipy ``solve_ivp`` (DOP853, rtol = atol = 1e-11) and exposed
as callables of t (a float or an array). A finite-time blow-up raises ``DivergenceError`` naming the time.

* ``LQProblem(A, Abar, B, Sigma, Q, Qbar, R, QT, QTbar, T, Bbar=0, Rbar=0).solve()`` → ``LQSolution`` with
  ``P, Pi, K, Kbar`` and ``cost(m0, cov0)``; u* = −K(t)(x − Ex) − K̄(t) Ex.
* ``LQProblem.solve_discrete(n_steps)``: exact optimum of the Euler-discretised (layer-indexed) problem.
* ``LQGame(a, abar, sigma, b, q, qbar, r, qT, qTbar, T, Lambda=None)``: ``solve_nash()`` (coupled Riccati of the
  Λ-game) and ``solve_social(weights)``, both → ``GameSolution``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.integrate import solve_ivp

from .errors import DivergenceError, ValidationError, number

RTOL = ATOL = 1e-11
BLOWUP = 1e10  # |Riccati state| beyond this counts as a finite-time blow-up


# ----------------------------------------------------------------------------------------- helpers
def _mat(name: str, v, rows: int | None, cols: int | None) -> np.ndarray:
    """A finite real matrix of the given shape; a scalar becomes a 1×1 (or is broadcast as s·I if square)."""
    try:
        a = (
            np.asarray(v, dtype=float)
            if not _is_tensor(v)
            else v.detach().cpu().numpy().astype(float)
        )
    except (TypeError, ValueError):
        raise ValidationError(name, "a real matrix", v) from None
    if a.ndim == 0:
        if rows is None or cols is None or rows == cols:
            n = rows or cols or 1
            a = a * np.eye(n)
        elif float(a) == 0.0:
            a = np.zeros((rows, cols))
        else:
            raise ValidationError(name, f"a {rows}x{cols} matrix", float(a))
    elif a.ndim == 1 and rows is not None and cols == 1 and a.shape[0] == rows:
        a = a[:, None]
    if (
        a.ndim != 2
        or (rows is not None and a.shape[0] != rows)
        or (cols is not None and a.shape[1] != cols)
    ):
        raise ValidationError(name, f"a {rows or 'n'}x{cols or 'm'} matrix", tuple(a.shape))
    if not np.all(np.isfinite(a)):
        raise ValidationError(name, "finite entries", a.tolist())
    return a


def _is_tensor(v) -> bool:
    return type(v).__module__.startswith("torch")


def _spd(name: str, a: np.ndarray) -> None:
    if not np.allclose(a, a.T, atol=1e-12 * (1 + np.abs(a).max())):
        raise ValidationError(name, "a symmetric matrix", a.tolist())
    ev = np.linalg.eigvalsh(a)
    if ev.min() <= 0:
        raise ValidationError(
            name,
            "a positive definite matrix (> 0)",
            a.tolist() if a.size > 1 else float(a.ravel()[0]),
        )


def _sym(name: str, a: np.ndarray) -> np.ndarray:
    if not np.allclose(a, a.T, atol=1e-12 * (1 + np.abs(a).max())):
        raise ValidationError(name, "a symmetric matrix", a.tolist())
    return 0.5 * (a + a.T)


def _integrate_backward(rhs, yT: np.ndarray, T: float, what: str):
    """Integrate y' = rhs(t, y) from T down to 0; raise ``DivergenceError`` at a blow-up (docs/theory.md#lq-game)."""

    def blow(t, y):
        return BLOWUP - np.max(np.abs(y))

    blow.terminal = True  # type: ignore[attr-defined]  # solve_ivp reads the event's attribute

    sol = solve_ivp(
        rhs, (T, 0.0), yT, method="DOP853", rtol=RTOL, atol=ATOL, dense_output=True, events=blow
    )
    if sol.status == 1 or sol.status == -1 or not np.all(np.isfinite(sol.y)):
        t_bad = float(sol.t[-1]) if sol.t.size else T
        if sol.t_events and sol.t_events[0].size:
            t_bad = float(sol.t_events[0][0])
        raise DivergenceError(t_bad, f"{what} (finite-time Riccati blow-up: no solution on [0, T])")
    return sol.sol


def _times(t) -> tuple[np.ndarray, bool]:
    ta = np.asarray(t, dtype=float)
    return ta, ta.ndim == 0


# ------------------------------------------------------------------------------ single controller
@dataclass(frozen=True)
class LQSolution:
    """P, Π, gains and optimal cost of an LQ mean-field-type problem (docs/theory.md#lq-control).

    ``P(t)``, ``Pi(t)``: ``[*t.shape, d, d]``; ``K(t)``, ``Kbar(t)``: ``[*t.shape, m, d]`` (plain floats/arrays of
    t's shape when the problem was given as scalars). u* = −K(t)(x − Ex) − K̄(t) Ex.
    """

    problem: LQProblem
    _P: Callable[[np.ndarray], np.ndarray]
    _Pi: Callable[[np.ndarray], np.ndarray]
    _K: Callable[[np.ndarray], np.ndarray]
    _Kbar: Callable[[np.ndarray], np.ndarray]
    noise_integral: float  # ∫_0^T tr(Σᵀ P Σ) dt  (or Σ_l tr(P_{l+1} W) for the discrete problem)
    discrete: bool = False
    n_steps: int | None = None
    arrays: dict = field(default_factory=dict)

    def _out(self, fn, t):
        ta, scalar_t = _times(t)
        v = fn(ta.reshape(-1)).reshape(ta.shape + fn(np.zeros(1)).shape[1:])
        if self.problem.scalar:
            v = v[..., 0, 0]
            return float(v) if scalar_t else v
        return v

    def P(self, t):
        """Fluctuation Riccati solution P(t)."""
        return self._out(self._P, t)

    def Pi(self, t):
        """Mean Riccati solution Π(t)."""
        return self._out(self._Pi, t)

    def K(self, t):
        """Fluctuation gain K(t) = R⁻¹BᵀP(t) (discrete: (R + BᵀP B)⁻¹BᵀP A)."""
        return self._out(self._K, t)

    def Kbar(self, t):
        """Mean gain K̄(t) = (R+R̄)⁻¹(B+B̄)ᵀΠ(t)."""
        return self._out(self._Kbar, t)

    def cost(self, m0, cov0) -> float:
        """J* = tr(P(0) Cov x0) + m0ᵀ Π(0) m0 + ∫ tr(Σᵀ P Σ) dt (docs/theory.md#lq-control)."""
        d = self.problem.d
        m0 = _mat("m0", m0, d, 1)[:, 0]
        cov0 = _sym("cov0", _mat("cov0", cov0, d, d))
        P0, Pi0 = self._P(np.zeros(1))[0], self._Pi(np.zeros(1))[0]
        return float(np.trace(P0 @ cov0) + m0 @ Pi0 @ m0 + self.noise_integral)


class LQProblem:
    """dx = (Ax + ĀEx + Bu + B̄Eu)dt + ΣdW; cost E∫(xᵀQx + ExᵀQ̄Ex + uᵀRu + EuᵀR̄Eu) + terminal (docs/theory.md#lq-control)."""

    def __init__(self, A, Abar, B, Sigma, Q, Qbar, R, QT, QTbar, T, Bbar=0.0, Rbar=0.0):
        self.scalar = bool(np.ndim(A) == 0 and np.ndim(B) == 0)
        self.A = _mat("A", A, None, None)
        d = self.A.shape[0]
        if self.A.shape != (d, d):
            raise ValidationError("A", "a square matrix", tuple(self.A.shape))
        self.B = _mat("B", B, d, None) if np.ndim(B) else _mat("B", B, d, d if d > 1 else 1)
        m = self.B.shape[1]
        self.d, self.m = d, m
        self.Abar = _mat("Abar", Abar, d, d)
        self.Bbar = _mat("Bbar", Bbar, d, m)
        self.Sigma = _mat("Sigma", Sigma, d, None)
        self.Q = _sym("Q", _mat("Q", Q, d, d))
        self.Qbar = _sym("Qbar", _mat("Qbar", Qbar, d, d))
        self.QT = _sym("QT", _mat("QT", QT, d, d))
        self.QTbar = _sym("QTbar", _mat("QTbar", QTbar, d, d))
        self.R = _mat("R", R, m, m)
        _spd("R", self.R)
        self.Rbar = _sym("Rbar", _mat("Rbar", Rbar, m, m))
        _spd("R+Rbar", self.R + self.Rbar)
        self.T = float(number("T", T, low=0.0, strict_low=True))

    # hatted (mean) coefficients
    @property
    def Ahat(self) -> np.ndarray:
        return self.A + self.Abar

    @property
    def Bhat(self) -> np.ndarray:
        return self.B + self.Bbar

    @property
    def Rhat(self) -> np.ndarray:
        return self.R + self.Rbar

    @property
    def Qhat(self) -> np.ndarray:
        return self.Q + self.Qbar

    def __repr__(self) -> str:
        return f"LQProblem(d={self.d}, m={self.m}, T={self.T})"

    def solve(self) -> LQSolution:
        """Solve both Riccati ODEs (docs/theory.md#lq-control) backward from T (plus ∫tr(ΣᵀPΣ) as an extra state)."""
        d = self.d
        A, B, Ah, Bh = self.A, self.B, self.Ahat, self.Bhat
        S = B @ np.linalg.solve(self.R, B.T)
        Sh = Bh @ np.linalg.solve(self.Rhat, Bh.T)
        SS = self.Sigma @ self.Sigma.T
        Q, Qh = self.Q, self.Qhat
        n2 = d * d

        def rhs(t, y):
            P = y[:n2].reshape(d, d)
            Pi = y[n2 : 2 * n2].reshape(d, d)
            dP = -(A.T @ P + P @ A - P @ S @ P + Q)
            dPi = -(Ah.T @ Pi + Pi @ Ah - Pi @ Sh @ Pi + Qh)
            # z(t) = ∫_t^T tr(ΣᵀPΣ): dz/dt = -tr(ΣΣᵀP)
            return np.concatenate([dP.ravel(), dPi.ravel(), [-np.sum(SS * P)]])

        yT = np.concatenate([self.QT.ravel(), (self.QT + self.QTbar).ravel(), [0.0]])
        dense = _integrate_backward(rhs, yT, self.T, "Riccati solution")
        z0 = float(dense(0.0)[-1])
        RinvBT = np.linalg.solve(self.R, B.T)
        RhinvBhT = np.linalg.solve(self.Rhat, Bh.T)

        def Pf(t):
            return np.moveaxis(dense(t)[:n2], -1, 0).reshape(-1, d, d)

        def Pif(t):
            return np.moveaxis(dense(t)[n2 : 2 * n2], -1, 0).reshape(-1, d, d)

        return LQSolution(
            problem=self,
            _P=Pf,
            _Pi=Pif,
            _K=lambda t: RinvBT @ Pf(t),
            _Kbar=lambda t: RhinvBhT @ Pif(t),
            noise_integral=z0,
        )

    def discretise(self, n_steps: int) -> dict[str, Any]:
        """Euler coefficients with h = T/n (docs/theory.md#lq-discrete): A_d = I + hA, B_d = hB, Q_d = hQ, R_d = hR, W = hΣΣᵀ."""
        n = int(number("n_steps", n_steps, low=1, integer=True))
        h = self.T / n
        eye = np.eye(self.d)
        return dict(
            h=h,
            n=n,
            A=eye + h * self.A,
            Abar=h * self.Abar,
            B=h * self.B,
            Bbar=h * self.Bbar,
            Q=h * self.Q,
            Qbar=h * self.Qbar,
            R=h * self.R,
            Rbar=h * self.Rbar,
            W=h * self.Sigma @ self.Sigma.T,
        )

    def solve_discrete(self, n_steps: int) -> LQSolution:
        """Exact optimum of the Euler-discretised problem by the layer-indexed recursion (docs/theory.md#lq-discrete).

        P(t), K(t) are piecewise constant: layer l = ⌊t/h⌋ on [lh, (l+1)h); P(T) = P_L.
        """
        c = self.discretise(n_steps)
        n, h = c["n"], c["h"]
        Ad, Bd, Rd, Qd, W = c["A"], c["B"], c["R"], c["Q"], c["W"]
        Ahd, Bhd = Ad + c["Abar"], Bd + c["Bbar"]
        Rhd, Qhd = Rd + c["Rbar"], Qd + c["Qbar"]
        d, m = self.d, self.m
        Ps = np.empty((n + 1, d, d))
        Pis = np.empty((n + 1, d, d))
        Ks = np.empty((n, m, d))
        Kbars = np.empty((n, m, d))
        Ps[n], Pis[n] = self.QT, self.QT + self.QTbar
        noise = 0.0
        for l in range(n - 1, -1, -1):
            P1, Pi1 = Ps[l + 1], Pis[l + 1]
            Ks[l] = np.linalg.solve(Rd + Bd.T @ P1 @ Bd, Bd.T @ P1 @ Ad)
            Kbars[l] = np.linalg.solve(Rhd + Bhd.T @ Pi1 @ Bhd, Bhd.T @ Pi1 @ Ahd)
            P = Qd + Ad.T @ P1 @ Ad - Ad.T @ P1 @ Bd @ Ks[l]
            Pi = Qhd + Ahd.T @ Pi1 @ Ahd - Ahd.T @ Pi1 @ Bhd @ Kbars[l]
            Ps[l], Pis[l] = 0.5 * (P + P.T), 0.5 * (Pi + Pi.T)
            noise += float(np.sum(P1 * W))
            if not (np.all(np.isfinite(Ps[l])) and np.abs(Ps[l]).max() < BLOWUP):
                raise DivergenceError(l * h, "discrete Riccati solution (blow-up)")

        def idx(t, top):
            return np.clip(np.floor(np.asarray(t) / h + 1e-9).astype(int), 0, top)

        return LQSolution(
            problem=self,
            _P=lambda t: Ps[idx(t, n)],
            _Pi=lambda t: Pis[idx(t, n)],
            _K=lambda t: Ks[idx(t, n - 1)],
            _Kbar=lambda t: Kbars[idx(t, n - 1)],
            noise_integral=noise,
            discrete=True,
            n_steps=n,
            arrays=dict(P=Ps, Pi=Pis, K=Ks, Kbar=Kbars, h=h),
        )

    def policy_cost(self, K: Callable, Kbar: Callable, m0, cov0) -> float:
        """Exact cost of the linear policy u = −K(t)(x − Ex) − K̄(t)Ex by the Lyapunov ODEs (docs/theory.md#lq-policy-cost).

        dS/dt = (A−BK)S + S(A−BK)ᵀ + ΣΣᵀ, dm/dt = (Â − B̂K̄)m; J = ∫ tr((Q+KᵀRK)S) + mᵀ(Q̂+K̄ᵀR̂K̄)m + terminal.
        ``K``, ``Kbar``: callables t ↦ ``[m, d]`` (or scalars).
        """
        d, m = self.d, self.m
        m0 = _mat("m0", m0, d, 1)[:, 0]
        cov0 = _sym("cov0", _mat("cov0", cov0, d, d))
        SS = self.Sigma @ self.Sigma.T

        def gains(t):
            return (
                np.asarray(K(t), dtype=float).reshape(m, d),
                np.asarray(Kbar(t), dtype=float).reshape(m, d),
            )

        def rhs(t, y):
            S = y[: d * d].reshape(d, d)
            mu = y[d * d : d * d + d]
            k, kb = gains(t)
            F = self.A - self.B @ k
            Fh = self.Ahat - self.Bhat @ kb
            dS = F @ S + S @ F.T + SS
            dm = Fh @ mu
            run = (
                np.sum((self.Q + k.T @ self.R @ k) * S)
                + mu @ (self.Qhat + kb.T @ self.Rhat @ kb) @ mu
            )
            return np.concatenate([dS.ravel(), dm, [run]])

        y0 = np.concatenate([cov0.ravel(), m0, [0.0]])
        sol = solve_ivp(rhs, (0.0, self.T), y0, method="DOP853", rtol=1e-10, atol=1e-12)
        if sol.status != 0 or not np.all(np.isfinite(sol.y)):
            raise DivergenceError(float(sol.t[-1]), "closed-loop moments")
        yT = sol.y[:, -1]
        S, mu = yT[: d * d].reshape(d, d), yT[d * d : d * d + d]
        return float(yT[-1] + np.sum(self.QT * S) + mu @ (self.QT + self.QTbar) @ mu)


def riccati_closed_form(a: float, s: float, q: float, qT: float, T: float, t):
    """Scalar closed form of −Ṗ = 2aP − sP² + q, P(T) = qT (docs/theory.md#riccati-closed-form): P = (P₊ − zP₋)/(1 − z).

    κ = √(a² + sq), P± = (a ± κ)/s, z = (qT − P₊)/(qT − P₋)·e^{−2κ(T−t)}. Needs s > 0 and a² + sq > 0.
    """
    kappa = np.sqrt(a * a + s * q)
    Pp, Pm = (a + kappa) / s, (a - kappa) / s
    z = (qT - Pp) / (qT - Pm) * np.exp(-2 * kappa * (T - np.asarray(t, dtype=float)))
    return (Pp - z * Pm) / (1 - z)


# ------------------------------------------------------------------------------------------ games
@dataclass(frozen=True)
class GameSolution:
    """Feedback profile u_j = −k_j(t)(x − Ex) − l_j(t)Ex of an LQ game and its costs (docs/theory.md#lq-game).

    ``k(t)``, ``l(t)``, ``P(t)``, ``Pi(t)``: ``[n]`` (or ``[*t.shape, n]``). For Nash, P_j/Π_j are player j's
    empathetic value coefficients; for the social optimum every entry is the team's P/Π.
    """

    game: LQGame
    concept: str
    _dense: Callable
    n: int
    weights: np.ndarray | None = None

    def _block(self, t, i):
        ta, _ = _times(t)
        y = self._dense(ta.reshape(-1))  # [6n or ..., len]
        blk = np.moveaxis(y[i * self.n : (i + 1) * self.n], -1, 0)
        return blk.reshape(ta.shape + (self.n,))

    def P(self, t):
        return self._block(t, 0)

    def Pi(self, t):
        return self._block(t, 1)

    def k(self, t):
        """Fluctuation gains [n]."""
        return self.game._gains(self.P(t), self.concept, self.weights)

    def l(self, t):  # noqa: E743 (the symbol l_j of docs/theory.md#lq-game)
        """Mean gains [n]."""
        return self.game._gains(self.Pi(t), self.concept, self.weights)

    def costs(self, m0: float, v0: float) -> np.ndarray:
        """Material costs J_i = M_i(0)v0 + M̃_i(0)m0² + σ²∫M_i (Lyapunov ODEs, docs/theory.md#lq-game): ``[n]``."""
        m0, v0 = float(m0), float(number("v0", v0, low=0.0))
        M, Mt = self._block(0.0, 2), self._block(0.0, 3)
        intM = self._block(0.0, 5)
        return M * v0 + Mt * m0**2 + self.game.sigma**2 * intM

    def empathetic_costs(self, m0: float, v0: float) -> np.ndarray:
        """J^Λ_j = Σ_i λ_ji J_i: for Nash from the value functions P_j(0)v0 + Π_j(0)m0² + σ²∫P_j (docs/theory.md#lq-game)."""
        if self.concept == "nash":
            m0, v0 = float(m0), float(number("v0", v0, low=0.0))
            P, Pi, intP = self._block(0.0, 0), self._block(0.0, 1), self._block(0.0, 4)
            return P * v0 + Pi * m0**2 + self.game.sigma**2 * intP
        return self.game.Lambda @ self.costs(m0, v0)

    def value(self, m0: float, v0: float) -> float:
        """Social: Σ α_i J_i; Nash: Σ_i J_i."""
        w = self.weights if self.weights is not None else np.ones(self.n)
        return float(w @ self.costs(m0, v0))


def _vec(name: str, v, n: int | None) -> np.ndarray:
    try:
        a = np.atleast_1d(np.asarray(v, dtype=float))
    except (TypeError, ValueError):
        raise ValidationError(name, f"one real entry per player ({n or 'n'})", v) from None
    if a.ndim != 1 or (n is not None and a.shape[0] != n):
        raise ValidationError(name, f"one entry per player ({n or 'n'})", tuple(a.shape))
    if not np.all(np.isfinite(a)):
        raise ValidationError(name, "finite entries", a.tolist())
    return a


class LQGame:
    """n players, common scalar state dx = (ax + āEx + Σ b_i u_i)dt + σdW; player j minimises Σ_i λ_ji J_i (docs/theory.md#lq-game)."""

    def __init__(self, a, abar, sigma, b, q, qbar, r, qT, qTbar, T, Lambda=None):
        self.a = float(number("a", a))
        self.abar = float(number("abar", abar))
        self.sigma = float(number("sigma", sigma))
        self.b = _vec("b", b, None)
        n = self.n = self.b.shape[0]
        self.q, self.qbar = _vec("q", q, n), _vec("qbar", qbar, n)
        self.r = _vec("r", r, n)
        if np.any(self.r <= 0):
            raise ValidationError("r", "r_i > 0 for every player", self.r.tolist())
        self.qT, self.qTbar = _vec("qT", qT, n), _vec("qTbar", qTbar, n)
        self.T = float(number("T", T, low=0.0, strict_low=True))
        self.Lambda = self._check_lambda(Lambda)

    def _check_lambda(self, Lambda) -> np.ndarray:
        n = self.n
        if Lambda is None:
            return np.eye(n)
        try:
            L = np.asarray(Lambda, dtype=float)
        except (TypeError, ValueError):
            raise ValidationError("Lambda", "a real n x n matrix", Lambda) from None
        if L.ndim != 2 or L.shape[0] != L.shape[1]:
            raise ValidationError("Lambda", "a square n x n matrix", tuple(L.shape))
        if L.shape[0] != n:
            raise ValidationError(
                "Lambda", f"a {n}x{n} matrix (one row per player)", tuple(L.shape)
            )
        if not np.all(np.isfinite(L)):
            raise ValidationError("Lambda", "finite entries", L.tolist())
        diag = np.diag(L)
        if np.any(diag <= 0):
            raise ValidationError(
                "Lambda",
                "lambda_jj > 0 on the diagonal",
                diag.tolist(),
                reason="docs/theory.md#self-regard: with lambda_jj <= 0 the LQ best response is unbounded or degenerate",
            )
        return L

    def __repr__(self) -> str:
        return f"LQGame(n={self.n}, T={self.T})"

    def _gains(self, P, concept, weights):
        if concept == "nash":
            return self.b * P / (np.diag(self.Lambda) * self.r)
        return self.b * P / (weights * self.r)

    def _solve(self, concept: str, weights: np.ndarray | None) -> GameSolution:
        n, a, ah, L = self.n, self.a, self.a + self.abar, self.Lambda
        b, q, qb, r = self.b, self.q, self.qbar, self.r
        if concept == "nash":
            s = b**2 / (np.diag(L) * r)
            qeff, qheff = L @ q, L @ (q + qb)
            PT, PiT = L @ self.qT, L @ (self.qT + self.qTbar)
            off = L - np.diag(np.diag(L))
        else:
            s_team = np.sum(b**2 / (weights * r))
            PT = np.full(n, weights @ self.qT)
            PiT = np.full(n, weights @ (self.qT + self.qTbar))
            qeff, qheff = np.full(n, weights @ q), np.full(n, weights @ (q + qb))

        def rhs(t, y):
            P, Pi, M, Mt = y[:n], y[n : 2 * n], y[2 * n : 3 * n], y[3 * n : 4 * n]
            k = self._gains(P, concept, weights)
            l = self._gains(Pi, concept, weights)
            bk, bl = b @ k, b @ l
            if concept == "nash":
                drift, drift_m = a - (bk - b * k), ah - (bl - b * l)  # others' feedback frozen
                dP = -(2 * drift * P - s * P**2 + qeff + off @ (r * k**2))
                dPi = -(2 * drift_m * Pi - s * Pi**2 + qheff + off @ (r * l**2))
            else:
                dP = -(2 * a * P - s_team * P**2 + qeff)
                dPi = -(2 * ah * Pi - s_team * Pi**2 + qheff)
            dM = -(q + r * k**2 + 2 * (a - bk) * M)
            dMt = -(q + qb + r * l**2 + 2 * (ah - bl) * Mt)
            return np.concatenate([dP, dPi, dM, dMt, -P, -M])

        yT = np.concatenate([PT, PiT, self.qT, self.qT + self.qTbar, np.zeros(2 * n)])
        dense = _integrate_backward(rhs, yT, self.T, f"{concept} Riccati solution")
        return GameSolution(game=self, concept=concept, _dense=dense, n=n, weights=weights)

    def solve_nash(self) -> GameSolution:
        """Feedback Nash equilibrium of the Λ-game: coupled Riccati ODEs (docs/theory.md#lq-game)."""
        return self._solve("nash", None)

    def solve_social(self, weights=None) -> GameSolution:
        """Team / Pareto optimum of Σ α_i J_i (docs/theory.md#lq-game); ``weights`` α_i > 0, default all ones."""
        w = np.ones(self.n) if weights is None else _vec("weights", weights, self.n)
        if np.any(w <= 0):
            raise ValidationError("weights", "alpha_i > 0 for every player", w.tolist())
        return self._solve("social", w)
