"""Quadratic static games L_i(u) = ½ uᵀA_i u + b_iᵀu + c_i with exact Λ-Nash and Stackelberg references (docs/theory.md#static-games).

Cournot (linear demand), Stackelberg duopoly and the Berge mutual-support game are all of this form, so
one linear solve gives every closed form: agent j's first-order condition for min_{u_j} Σ_i λ_ji L_i is
Σ_i λ_ji (A_i u + b_i)_j = 0, i.e. M u = −r with M_jk = Σ_i λ_ji A_i[j, k] and r_j = Σ_i λ_ji b_i[j].
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..game import StaticGame

DTYPE = torch.float64


class QuadraticGame(StaticGame):
    """A ``StaticGame`` with scalar actions and quadratic costs (vectorised over agents, no loops)."""

    quadratic_costs = True

    def __init__(
        self,
        A: np.ndarray,
        b: np.ndarray,
        c: np.ndarray | None = None,
        *,
        init: float | Sequence = 0.0,
        low: float | Sequence | None = None,
        high: float | Sequence | None = None,
        agent_names: Sequence[str] | None = None,
        convex_own_cost: bool = False,
        device: str | torch.device | None = None,
    ):
        self.A_np, self.b_np = np.asarray(A, dtype=float), np.asarray(b, dtype=float)
        n = self.b_np.shape[0]
        self.c_np = np.zeros(n) if c is None else np.asarray(c, dtype=float)
        dev = torch.device(device) if device is not None else torch.device("cpu")
        A_t = torch.as_tensor(self.A_np, dtype=DTYPE, device=dev)
        b_t = torch.as_tensor(self.b_np, dtype=DTYPE, device=dev)
        c_t = torch.as_tensor(self.c_np, dtype=DTYPE, device=dev)

        def cost(u: torch.Tensor) -> torch.Tensor:  # u [n, 1] -> [n]
            x = u[:, 0]
            return 0.5 * torch.einsum("ijk,j,k->i", A_t, x, x) + b_t @ x + c_t

        super().__init__(
            cost,
            n,
            1,
            init=init,
            low=low,
            high=high,
            agent_names=agent_names,
            convex_own_cost=convex_own_cost,
            device=dev,
        )

    def material_costs(self, u: np.ndarray) -> np.ndarray:
        """L(u) [n] in numpy (for references)."""
        u = np.asarray(u, dtype=float)
        return 0.5 * np.einsum("ijk,j,k->i", self.A_np, u, u) + self.b_np @ u + self.c_np


def foc_system(A: np.ndarray, b: np.ndarray, Lambda: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, r) with the Λ-game's first-order conditions M u + r = 0 (row j: agent j's FOC)."""
    M = np.einsum("ji,ijk->jk", Lambda, A)
    r = np.einsum("ji,ij->j", Lambda, b)
    return M, r


def nash_reference(A, b, Lambda, low=None, high=None) -> np.ndarray | None:
    """The Λ-Nash profile u* (None if singular-inconsistent, not concave for some agent, or off the box)."""
    M, r = foc_system(np.asarray(A, float), np.asarray(b, float), np.asarray(Lambda, float))
    if np.any(np.diag(M) <= 0):
        return None
    u, *_ = np.linalg.lstsq(M, -r, rcond=None)
    if not np.allclose(M @ u, -r, atol=1e-9 * (1 + np.abs(r).max())):
        return None
    return u if _inside(u, low, high) else None


def stackelberg_reference(A, b, Lambda, leader=0, low=None, high=None) -> np.ndarray | None:
    """Leader-first profile: followers' Λ-Nash is affine in u_l; the leader minimises its quadratic Λ-cost."""
    A, b, Lambda = np.asarray(A, float), np.asarray(b, float), np.asarray(Lambda, float)
    n = b.shape[0]
    M, r = foc_system(A, b, Lambda)
    F = [j for j in range(n) if j != leader]
    if np.any(np.diag(M)[F] <= 0):
        return None
    try:
        a0 = np.linalg.solve(M[np.ix_(F, F)], -r[F])
        a1 = np.linalg.solve(M[np.ix_(F, F)], -M[F, leader])
    except np.linalg.LinAlgError:
        return None

    def profile(ul: float) -> np.ndarray:
        u = np.empty(n)
        u[leader], u[F] = ul, a0 + a1 * ul
        return u

    def W(ul: float) -> float:
        u = profile(ul)
        L = 0.5 * np.einsum("ijk,j,k->i", A, u, u) + b @ u
        return float(Lambda[leader] @ L)

    w0, w1, w2 = W(0.0), W(1.0), W(2.0)  # exact parabola through three points
    curv = (w2 - 2 * w1 + w0) / 2
    if curv <= 0:
        return None
    slope = w1 - w0 - curv
    u = profile(-slope / (2 * curv))
    return u if _inside(u, low, high) else None


def _inside(u: np.ndarray, low, high) -> bool:
    lo = -np.inf if low is None else np.asarray(low, float)
    hi = np.inf if high is None else np.asarray(high, float)
    return bool(np.all(u >= lo - 1e-12) and np.all(u <= hi + 1e-12))
