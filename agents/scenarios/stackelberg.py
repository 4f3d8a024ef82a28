"""``stackelberg``: a leader commits first, followers best-respond (docs/theory.md#patterns, docs/theory.md#static-games).

``leader="firm"``: Stackelberg quantity leadership; the duopoly closed form is q_1 = (α−2c_1+c_2)/(2β),
q_2 = (α+2c_1−3c_2)/(4β). ``leader="regulator"``: a regulator sets a per-unit tax τ (a subsidy if τ < 0)
to maximise welfare (consumer surplus + profits + tax revenue); the firms then play Cournot at cost c + τ.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from control.errors import ValidationError, choice, number

from ._static import QuadraticGame, stackelberg_reference
from .base import Scenario, register
from .cournot import cournot_quadratic


@register
class Stackelberg(Scenario):
    """Hierarchical play: agent 0 leads (a firm or a regulator), the others follow; quadratic, exact reference."""

    name = "stackelberg"
    description = (
        "Agent 0 leads and the others follow. leader='firm': Stackelberg quantity competition under "
        "p = α − βΣq (duopoly closed form). leader='regulator': a regulator taxes/subsidises output to "
        "maximise welfare, anticipating the firms' Cournot response."
    )
    n_agents = 2
    defaults: ClassVar[dict] = dict(alpha=10.0, beta=1.0, c=1.0, leader="firm")
    lambda_meaning: ClassVar[dict] = {
        "selfish": "leader and followers maximise their own payoff (classic Stackelberg)",
        "altruistic": "agents also weigh the others' payoffs (softer leadership)",
        "team": "everyone maximises the joint payoff",
        "spiteful": "agents gain from the others' losses (aggressive leadership)",
        "zero_sum": "pure rivalry",
        "berge": "refused: followers need λ_jj > 0 for a well-defined best response",
        "selfless": "refused: followers need λ_jj > 0",
        "self_abnegating": "refused: followers need λ_jj > 0",
        "coopetitive": "help your group, hurt the other group",
    }
    default_concept = "stackelberg"
    default_policy = "direct"
    policies = ("direct",)
    default_steps = 300
    default_lr = 0.3

    def _coef(self):
        p = self.params
        alpha = number("stackelberg.alpha", p["alpha"], low=0, strict_low=True)
        beta = number("stackelberg.beta", p["beta"], low=0, strict_low=True)
        kind = choice("stackelberg.leader", p["leader"], ["firm", "regulator"])
        m = self.n if kind == "firm" else self.n - 1
        if m < 1 or self.n < 2:
            raise ValidationError(
                "stackelberg.n_agents", "at least 2 agents (leader + followers)", self.n
            )
        c = np.atleast_1d(np.asarray(p["c"], dtype=float))
        if c.ndim != 1 or c.shape[0] not in (1, m) or not np.isfinite(c).all():
            raise ValidationError("stackelberg.c", f"a number or {m} finite costs", p["c"])
        return alpha, beta, np.broadcast_to(c, (m,)).copy(), kind

    def quadratic(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(A, b, low, high) of the quadratic game; regulator variant: u = (τ, q_1, …, q_m)."""
        alpha, beta, c, kind = self._coef()
        if kind == "firm":
            A, b = cournot_quadratic(alpha, beta, c)
            return A, b, np.zeros(self.n), np.full(self.n, alpha / beta)
        m, n = c.shape[0], self.n
        A, b = np.zeros((n, n, n)), np.zeros((n, n))
        Af, bf = cournot_quadratic(alpha, beta, c)
        A[1:, 1:, 1:], b[1:, 1:] = Af, bf
        for k in range(1, n):  # firm k pays τ q_k
            A[k, 0, k] = A[k, k, 0] = 1.0
        # regulator: −welfare = βQ²/2 − αQ + Σ c_k q_k  (τ cancels: transfers)
        A[0, 1:, 1:] = beta * np.ones((m, m))
        b[0, 1:] = -(alpha - c)
        low = np.concatenate([[-alpha], np.zeros(m)])
        high = np.concatenate([[alpha], np.full(m, alpha / beta)])
        return A, b, low, high

    def equilibrium_actions(self, Lambda: np.ndarray) -> np.ndarray | None:
        """Closed-form Stackelberg profile (leader = agent 0) of the Λ-game, None if not interior."""
        A, b, low, high = self.quadratic()
        return stackelberg_reference(A, b, Lambda, leader=0, low=low, high=high)

    def reference(self, Lambda: np.ndarray) -> np.ndarray | None:
        """Material costs at the closed-form Stackelberg profile."""
        u = self.equilibrium_actions(Lambda)
        if u is None:
            return None
        A, b, _, _ = self.quadratic()
        return 0.5 * np.einsum("ijk,j,k->i", A, u, u) + b @ u

    def game(
        self, *, Lambda=None, law="constant", policy="direct", mftt=None, seed=0, device="cpu"
    ):
        """A ``QuadraticGame`` on the box; agent 0 is the leader."""
        if policy != "direct":
            raise ValidationError("policy", "direct", policy)
        A, b, low, high = self.quadratic()
        alpha, beta, c, kind = self._coef()
        q0 = (alpha - float(c.mean())) / (beta * (len(c) + 1)) * 0.5
        init = np.full(self.n, q0)
        names = [f"firm{j}" for j in range(self.n)]
        if kind == "regulator":
            init[0] = 0.0
            names = ["regulator"] + [f"firm{j}" for j in range(1, self.n)]
        names[0] += " (leader)"
        return QuadraticGame(A, b, init=init, low=low, high=high, agent_names=names, device=device)
