"""``matrix``: finite games in mixed strategies — prisoner's dilemma, matching pennies, stag hunt, or any payoff tensor.

The empathetic prisoner's dilemma U_i = u_i + λu_j changes its pure-equilibrium set exactly at
λ_CC = (T−R)/(R−S) and λ_DD = (P−S)/(T−P) (spec §C.4); matching pennies has the unique mixed NE (½, ½).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from control.errors import ValidationError, choice, number

from ..game import MatrixGame
from .base import Scenario, register

GAMES = ("prisoners_dilemma", "matching_pennies", "stag_hunt", "custom")


def prisoners_dilemma(T: float = 5.0, R: float = 3.0, P: float = 1.0, S: float = 0.0) -> np.ndarray:
    """Payoffs [2, 2, 2] with actions (C, D): u(C,C)=R, u(C,D)=S, u(D,C)=T, u(D,D)=P (spec §C.4)."""
    u = np.array([[R, S], [T, P]], dtype=float)
    return np.stack([u, u.T])


def matching_pennies() -> np.ndarray:
    """Payoffs [2, 2, 2]: A = [[1, −1], [−1, 1]] for the row player, B = −A (spec §C.4)."""
    A = np.array([[1.0, -1.0], [-1.0, 1.0]])
    return np.stack([A, -A])


def stag_hunt() -> np.ndarray:
    """Payoffs [2, 2, 2] with actions (stag, hare): u = [[4, 0], [3, 3]] for each player (symmetric)."""
    u = np.array([[4.0, 0.0], [3.0, 3.0]])
    return np.stack([u, u.T])


def pd_thresholds(T: float, R: float, P: float, S: float) -> tuple[float, float]:
    """(λ_CC, λ_DD) = ((T−R)/(R−S), (P−S)/(T−P)): C answers C iff λ ≥ λ_CC; D answers D iff λ ≤ λ_DD."""
    return (T - R) / (R - S), (P - S) / (T - P)


@register
class Matrix(Scenario):
    """Mixed-strategy play of a finite game; Λ turns u into the empathetic payoffs U = Λu."""

    name = "matrix"
    description = (
        "Finite game in mixed strategies (prisoner's dilemma by default; matching pennies, stag hunt, or "
        "any payoff tensor [n, m_1, ..., m_n]). Empathy λ changes the prisoner's dilemma's equilibria at "
        "λ = (T−R)/(R−S) and λ = (P−S)/(T−P)."
    )
    n_agents = 2
    defaults: ClassVar[dict] = dict(
        game="prisoners_dilemma", T=5.0, R=3.0, P=1.0, S=0.0, payoffs=None,
        parametrisation="simplex", init=None,
    )  # fmt: skip
    lambda_meaning: ClassVar[dict] = {
        "selfish": "the material game: (D, D) in the prisoner's dilemma, (½, ½) in matching pennies",
        "altruistic": "U_i = u_i + αu_j: cooperation once α passes (T−R)/(R−S) and (P−S)/(T−P)",
        "team": "both maximise u_1 + u_2: mutual cooperation (C, C)",
        "spiteful": "U_i = u_i − αu_j: defection is dominant",
        "zero_sum": "payoff differences: a zero-sum game (defection in the PD)",
        "berge": "each maximises the other's payoff: C dominant, (C, C)",
        "selfless": "like berge",
        "self_abnegating": "λ_jj < 0: C dominant, (C, C)",
        "coopetitive": "for two players: like altruistic",
    }
    default_concept = "nash"
    default_policy = "direct"
    policies = ("direct",)
    default_steps = 600
    default_lr = 0.25

    def payoffs(self) -> np.ndarray:
        """The payoff tensor [n, m_1, ..., m_n] of the configured game."""
        p = self.params
        kind = "custom" if p["payoffs"] is not None else p["game"]
        choice("matrix.game", kind, GAMES)
        if kind == "prisoners_dilemma":
            T, R, P, S = (number(f"matrix.{k}", p[k]) for k in "TRPS")
            if not T > R > P > S:
                raise ValidationError("matrix.T", "T > R > P > S", (T, R, P, S))
            U = prisoners_dilemma(T, R, P, S)
        elif kind == "matching_pennies":
            U = matching_pennies()
        elif kind == "stag_hunt":
            U = stag_hunt()
        else:
            if p["payoffs"] is None:
                raise ValidationError("matrix.payoffs", "a payoff tensor for game='custom'", None)
            U = np.asarray(p["payoffs"], dtype=float)
        if U.ndim < 2 or U.shape[0] != U.ndim - 1 or U.shape[0] != self.n:
            raise ValidationError(
                "matrix.payoffs", f"a tensor [n={self.n}, m_1, ..., m_n]", f"shape {U.shape}"
            )
        if not np.isfinite(U).all():
            raise ValidationError("matrix.payoffs", "finite numbers", "NaN or inf")
        return U

    def game(
        self, *, Lambda=None, law="constant", policy="direct", mftt=None, seed=0, device="cpu"
    ):
        """A ``MatrixGame``; matching pennies prefers extragradient (plain gradient play cycles)."""
        if policy != "direct":
            raise ValidationError("policy", "direct (mixed strategies)", policy)
        g = MatrixGame(
            self.payoffs(), init=self.params["init"], parametrisation=self.params["parametrisation"],
            agent_names=[f"player{j}" for j in range(self.n)], device=device,
        )  # fmt: skip
        if self.params["game"] == "matching_pennies" and self.params["payoffs"] is None:
            g.solve_defaults = {"method": "extragradient"}
        return g

    def reference(self, Lambda: np.ndarray) -> np.ndarray | None:
        """Material costs −u at the unique pure Λ-equilibrium of a 2×2 game (spec §C.4); matching
        pennies: 0 at (½, ½) while λ_ji < λ_jj; None when the equilibrium is not unique."""
        U = self.payoffs()
        kind = "custom" if self.params["payoffs"] is not None else self.params["game"]
        L = np.asarray(Lambda, dtype=float)
        if kind == "matching_pennies":
            ok = L[0, 0] > L[0, 1] and L[1, 1] > L[1, 0]
            return np.zeros(2) if ok else None
        if U.shape != (2, 2, 2):
            return None
        g = MatrixGame(U)
        eqs = g.pure_equilibria(L)
        if len(eqs) != 1:
            return None
        a = eqs[0]
        return -np.array([U[(0, *a)], U[(1, *a)]])
