"""``lq_populations``: K populations of N agents each, coupled through their means, in a Λ-game between populations.

Agent i of population k: dx_i = (a_k x_i + Σ_l c_kl m_l + b_k u_i) dt + σ_k dW_i,
J_k = E[∫₀ᵀ (q_k x_i² + s_k (m_k − m̄)² + r_k u_i²) dt + qT_k x_i(T)²],  m_l the mean of population l, m̄ = Σ_l m_l / K.

Each population is one decision-maker that sets its agents' shared feedback (a mean-field-type game between
populations); population k minimises (Λ J)_k. Writing x = m_k + y, the problem splits: fluctuations y solve a
scalar Riccati equation per population (Λ scales them only by λ_kk > 0), and the means m ∈ R^K play a
deterministic LQ game whose feedback Nash equilibrium solves K coupled Riccati equations (docs/populations.md#lq-populations):

−Ṗ_k = A_clᵀ P_k + P_k A_cl + Σ_l λ_kl (Q_l + r_l G_lᵀ G_l),  P_k(T) = Σ_l λ_kl QT_l,
G_k = b_k e_kᵀ P_k / (λ_kk r_k),  A_cl = A − Σ_l b_l e_l G_l,  ū_k = −G_k m.

Λ = 11ᵀ gives the social optimum, also solved directly as one Riccati equation (``social``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from scipy.integrate import solve_ivp

from control.errors import ValidationError

from ..population import LinearPopulationPolicy, PopulationGame
from ._common import DTYPE, per_entity
from .base import Scenario, register

RTOL = ATOL = 1e-11


@dataclass(frozen=True)
class PopulationsLQ:
    """The coefficients as arrays: per population ``a, b, q, s, r, qT, m0, v0, sigma`` [K], ``c`` [K, K]."""

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    q: np.ndarray
    s: np.ndarray
    r: np.ndarray
    qT: np.ndarray
    m0: np.ndarray
    v0: np.ndarray
    sigma: np.ndarray
    T: float

    @property
    def K(self) -> int:
        return len(self.a)

    def A(self) -> np.ndarray:
        return np.diag(self.a) + self.c

    def Q(self, l: int) -> np.ndarray:  # noqa: E741 (population index)
        K = self.K
        e = np.eye(K)[l]
        d = e - np.full(K, 1.0 / K)
        return self.q[l] * np.outer(e, e) + self.s[l] * np.outer(d, d)

    def QT(self, l: int) -> np.ndarray:  # noqa: E741
        e = np.eye(self.K)[l]
        return self.qT[l] * np.outer(e, e)

    # ---- fluctuations: one scalar Riccati equation per population ---------------------------------
    def fluctuation(self) -> tuple[Callable[[float], np.ndarray], np.ndarray]:
        """(P(t) [K] of y = x − m_k, the fluctuation cost per agent [K]: v0 P(0) + σ² ∫ P dt)."""
        a, b, q, r = self.a, self.b, self.q, self.r

        def rhs(t, y):
            P = y[: self.K]
            return np.concatenate([-(2 * a * P - (b**2 / r) * P**2 + q), -(self.sigma**2) * P])

        sol = solve_ivp(
            rhs,
            [self.T, 0.0],
            np.concatenate([self.qT, np.zeros(self.K)]),
            rtol=RTOL,
            atol=ATOL,
            dense_output=True,
        )
        y0 = sol.y[:, -1]
        return (lambda t: sol.sol(t)[: self.K]), self.v0 * y0[: self.K] + y0[self.K :]

    # ---- means: the coupled Riccati equations of the Λ-game --------------------------------------
    def mean_game(self, Lambda: np.ndarray) -> tuple[Callable[[float], np.ndarray], np.ndarray]:
        """(G(t) [K, K] with ū = −G m, the mean part of each population's cost [K]) at the feedback Nash."""
        K, L = self.K, np.asarray(Lambda, dtype=float)
        if (np.diag(L) <= 0).any():
            raise ValidationError("Lambda", "λ_kk > 0 for every population", np.diag(L).tolist())
        A, E = self.A(), np.eye(K)
        Qs = [self.Q(l) for l in range(K)]

        def gains(P: np.ndarray) -> np.ndarray:  # G [K, K]: row k is G_k
            return np.stack([self.b[k] * P[k][k] / (L[k, k] * self.r[k]) for k in range(K)])

        def rhs(t, y):
            P = y.reshape(K, K, K)
            G = gains(P)
            Acl = A - (self.b[:, None] * E) @ G
            run = [Qs[l] + self.r[l] * np.outer(G[l], G[l]) for l in range(K)]
            dP = [
                -(Acl.T @ P[k] + P[k] @ Acl + sum(L[k, l] * run[l] for l in range(K)))
                for k in range(K)
            ]
            return np.stack(dP).reshape(-1)

        PT = np.stack([sum(L[k, l] * self.QT(l) for l in range(K)) for k in range(K)])
        sol = solve_ivp(rhs, [self.T, 0.0], PT.reshape(-1), rtol=RTOL, atol=ATOL, dense_output=True)
        if not sol.success or not np.isfinite(sol.y).all():
            raise ValidationError("Lambda", "a Λ whose Riccati equations stay finite", L.tolist())

        def G(t: float) -> np.ndarray:
            return gains(sol.sol(t).reshape(K, K, K))

        return G, self._mean_costs(G)

    def social(self) -> tuple[Callable[[float], np.ndarray], np.ndarray]:
        """The social optimum (min Σ_l J_l) by one Riccati equation: ū = −R⁻¹Bᵀ P m."""
        K = self.K
        A, B, Rinv = self.A(), np.diag(self.b), np.diag(1.0 / self.r)
        Q = sum((self.Q(l) for l in range(K)), np.zeros((K, K)))
        QT = sum((self.QT(l) for l in range(K)), np.zeros((K, K)))

        def rhs(t, y):
            P = y.reshape(K, K)
            return -(A.T @ P + P @ A - P @ B @ Rinv @ B.T @ P + Q).reshape(-1)

        sol = solve_ivp(rhs, [self.T, 0.0], QT.reshape(-1), rtol=RTOL, atol=ATOL, dense_output=True)

        def G(t: float) -> np.ndarray:
            return Rinv @ B.T @ sol.sol(t).reshape(K, K)

        return G, self._mean_costs(G)

    def _mean_costs(self, G) -> np.ndarray:
        """Each population's mean-part cost along ṁ = (A − B G) m from m0."""
        K, A, B = self.K, self.A(), np.diag(self.b)
        Qs = [self.Q(l) for l in range(K)]

        def rhs(t, y):
            m, g = y[:K], G(t)
            u = -g @ m
            run = [m @ Qs[l] @ m + self.r[l] * u[l] ** 2 for l in range(K)]
            return np.concatenate([A @ m + B @ u, run])

        sol = solve_ivp(
            rhs, [0.0, self.T], np.concatenate([self.m0, np.zeros(K)]), rtol=RTOL, atol=ATOL
        )
        mT = sol.y[:K, -1]
        return sol.y[K:, -1] + np.array([mT @ self.QT(l) @ mT for l in range(K)])

    def costs(self, Lambda: np.ndarray | None = None) -> np.ndarray:
        """Material costs J_k [K] at the Nash equilibrium of the Λ-game (None: the social optimum)."""
        _, fl = self.fluctuation()
        _, mean = self.social() if Lambda is None else self.mean_game(Lambda)
        return fl + mean


@register
class LQPopulations(Scenario):
    """K populations with their own states, coupled through their means; exact Riccati references for any Λ."""

    name = "lq_populations"
    description = (
        "K populations of N agents with own states, coupled through the populations' means; each population "
        "sets its agents' shared feedback in a Λ-game (Riccati reference for Nash and the social optimum)."
    )
    n_agents = 200
    population = True
    defaults: ClassVar[dict] = dict(
        populations=2, a=[0.5, -0.2], b=[1.0, 0.8], c=0.3, q=[1.0, 0.5], s=[0.5, 1.0], r=[1.0, 0.6],
        qT=1.0, m0=[1.0, -0.5], v0=[0.5, 0.3], sigma=0.0, T=1.0, n_steps=10, replicas=1, order=4,
    )  # fmt: skip
    lambda_meaning: ClassVar[dict] = {
        "selfish": "Nash between populations: each minimises its own agents' mean cost",
        "team": "Λ = 11ᵀ: the social optimum of all populations",
        "altruistic": "populations also weigh the others' costs",
        "spiteful": "populations gain when the others pay",
        "coopetitive": "help your group of populations, hurt the other group",
    }
    default_concept = "nash"
    default_policy = "linear"
    policies = ("linear",)
    default_steps = 200
    default_lr = 0.05

    @property
    def n_players(self) -> int:
        return int(self.params["populations"])

    def lq(self) -> PopulationsLQ:
        p, K = self.params, self.n_players
        if K < 1 or K > 16:
            raise ValidationError("lq_populations.populations", "an integer in 1..16", K)
        arr = {
            k: per_entity(f"lq_populations.{k}", p[k], K)
            for k in ("a", "b", "q", "s", "r", "qT", "m0", "v0", "sigma")
        }
        c = np.asarray(p["c"], dtype=float)
        if c.ndim == 0:
            c = float(c) * (np.ones((K, K)) - np.eye(K)) / max(1, K - 1)
        if c.shape != (K, K) or not np.isfinite(c).all():
            raise ValidationError("lq_populations.c", f"a number or a {K}×{K} matrix", p["c"])
        if (arr["r"] <= 0).any():
            raise ValidationError("lq_populations.r", "r_k > 0", arr["r"].tolist())
        if (arr["v0"] < 0).any() or (arr["sigma"] < 0).any():
            raise ValidationError("lq_populations.v0", "v0, sigma ≥ 0", arr["v0"].tolist())
        return PopulationsLQ(c=c, T=float(p["T"]), **arr)

    def reference(self, Lambda: np.ndarray) -> np.ndarray | None:
        try:
            return self.lq().costs(Lambda)
        except (ValidationError, ArithmeticError):
            return None

    def game(self, *, Lambda, law, policy, mftt=None, seed=0, device="cpu") -> PopulationGame:
        lq, p = self.lq(), self.params
        K, R, N = lq.K, int(p["replicas"]), self.n
        order = 0 if law == "constant" else int(p["order"])
        pol = LinearPopulationPolicy(
            K, 1, 1, T=lq.T, order=order, seed=seed, dtype=DTYPE, device=device
        )
        g = torch.Generator().manual_seed(int(seed))
        z = torch.randn(R, K, N, 1, generator=g, dtype=DTYPE)
        if N > 1:  # standardised: each population starts with its law's exact mean and variance
            z = (z - z.mean(2, keepdim=True)) / z.std(2, unbiased=False, keepdim=True)
        t = {
            k: torch.as_tensor(getattr(lq, k), dtype=DTYPE, device=device).view(1, K, 1)
            for k in ("a", "b", "q", "s", "r", "qT")
        }
        x0 = (
            torch.as_tensor(lq.m0, dtype=DTYPE).view(1, K, 1, 1)
            + torch.as_tensor(np.sqrt(lq.v0), dtype=DTYPE).view(1, K, 1, 1) * z
        ).to(device)
        C = torch.as_tensor(lq.c, dtype=DTYPE, device=device)

        def drift(t_, x, u, law):
            m = law.mean[..., 0]  # [R, K]
            coupling = (m @ C.T).unsqueeze(-1).unsqueeze(-1)  # Σ_l c_kl m_l
            return t["a"].unsqueeze(-1) * x + coupling + t["b"].unsqueeze(-1) * u

        def running(t_, x, u, law):
            m = law.mean[..., 0]
            spread = (m - m.mean(1, keepdim=True)).unsqueeze(-1) ** 2  # (m_k − m̄)²
            return t["q"] * x[..., 0] ** 2 + t["s"] * spread + t["r"] * u[..., 0] ** 2

        def terminal(x, law):
            return t["qT"] * x[..., 0] ** 2

        game = PopulationGame(
            [f"population{k}" for k in range(K)],
            pol,
            x0,
            drift,
            running,
            terminal,
            T=lq.T,
            n_steps=int(p["n_steps"]),
            sigma=lq.sigma,
            gradient="population",
            noise_seed=seed,
        )
        return game
