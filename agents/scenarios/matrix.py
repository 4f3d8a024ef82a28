"""``matrix``: finite games in mixed strategies — prisoner's dilemma, matching pennies, stag hunt, or any payoff tensor.

The empathetic prisoner's dilemma U_i = u_i + λu_j changes its pure-equilibrium set exactly at
λ_CC = (T−R)/(R−S) and λ_DD = (P−S)/(T−P) (docs/theory.md#static-games); matching pennies has the unique mixed NE (½, ½).
The reference is the exact equilibrium computed by ``agents.finite`` (support enumeration, Lemke–Howson).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from control.errors import ValidationError, choice, number

from ..finite import expected_payoffs, nash_equilibria
from ..game import MatrixGame
from .base import Scenario, register

GAMES = ("prisoners_dilemma", "matching_pennies", "stag_hunt", "custom")


def prisoners_dilemma(T: float = 5.0, R: float = 3.0, P: float = 1.0, S: float = 0.0) -> np.ndarray:
    """Payoffs [2, 2, 2] with actions (C, D): u(C,C)=R, u(C,D)=S, u(D,C)=T, u(D,D)=P (docs/theory.md#static-games)."""
    u = np.array([[R, S], [T, P]], dtype=float)
    return np.stack([u, u.T])


def matching_pennies() -> np.ndarray:
    """Payoffs [2, 2, 2]: A = [[1, −1], [−1, 1]] for the row player, B = −A (docs/theory.md#static-games)."""
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
        "any payoff tensor [n, m_1, ..., m_n]), solved exactly by default (support enumeration, Lemke–Howson; "
        "fictitious play and logit learning as options). Empathy λ changes the prisoner's dilemma's "
        "equilibria at λ = (T−R)/(R−S) and λ = (P−S)/(T−P)."
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
        """A ``MatrixGame``; the ``nash`` concept solves it exactly by default (``agents.finite``)."""
        if policy != "direct":
            raise ValidationError("policy", "direct (mixed strategies)", policy)
        return MatrixGame(
            self.payoffs(),
            init=self.params["init"],
            parametrisation=self.params["parametrisation"],
            agent_names=[f"player{j}" for j in range(self.n)],
            device=device,
        )

    def reference(self, Lambda: np.ndarray) -> np.ndarray | None:
        """Material costs −u at the exact Λ-equilibrium (docs/theory.md#static-games) that the default ``nash`` solver selects
        (``agents.finite.nash_equilibria``: the largest total material payoff when there are several)."""
        u = self.payoffs()
        eq = nash_equilibria(u, np.asarray(Lambda, dtype=float))
        return 0.0 - expected_payoffs(u, eq.profile)  # 0.0 − v: no negative zeros
