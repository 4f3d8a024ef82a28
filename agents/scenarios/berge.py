"""``berge``: mutual support — each agent's effort meets the others' needs (docs/theory.md#patterns, docs/theory.md#empathy).

Agent i pays ½ r u_i² for its effort and ½ s_i² for its unmet need s_i = need − h·Σ_{j≠i} u_j/(n−1): only
the others can help i. Selfish agents do nothing (u = 0); Berge agents (λ_jj = 0, λ_ji = 1/(n−1)) meet the
others' needs exactly (u = need/h, symmetric); the team trades effort against need, u = h·need/(r + h²)
for two agents. The general Λ-equilibrium solves one linear system (quadratic game).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from control.errors import ValidationError, number

from ._static import QuadraticGame, nash_reference
from .base import Scenario, register


@register
class Berge(Scenario):
    """Mutual-support game whose interesting Λ is the Berge preset; exact reference for every Λ."""

    name = "berge"
    description = (
        "Each agent can only be helped by the others: i's unmet need is need − h·(mean effort of the "
        "others), effort costs ½ r u². Selfish agents free-ride to u = 0; Berge (λ_jj = 0) agents "
        "serve the others and meet every need; the team balances effort and need."
    )
    n_agents = 2
    defaults: ClassVar[dict] = dict(need=1.0, h=1.0, r=1.0, u_max=None)
    lambda_meaning: ClassVar[dict] = {
        "berge": "mutual support: serve the others only, every need is met (u = need/h)",
        "selfish": "nobody helps (u = 0): the needs stay unmet",
        "team": "social optimum: effort balanced against the others' needs",
        "altruistic": "partial help, growing with alpha",
        "selfless": "like berge (unnormalised weights)",
        "self_abnegating": "serve the others and dislike one's own comfort: more effort than berge",
        "spiteful": "nobody helps (corner u = 0)",
        "zero_sum": "nobody helps (corner u = 0)",
        "coopetitive": "help your group (corner u = 0 towards the other group)",
    }
    default_concept = "nash"
    default_policy = "direct"
    policies = ("direct",)
    default_steps = 400
    default_lr = 0.2

    def quadratic(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(A, b, c, u_max): L_i = ½uᵀA_i u + b_iᵀu + c_i with A_i = r e_ie_iᵀ + g_ig_iᵀ, b_i = −need·g_i."""
        p, n = self.params, self.n
        if n < 2:
            raise ValidationError("berge.n_agents", "at least 2 agents", n)
        need = number("berge.need", p["need"], low=0)
        h = number("berge.h", p["h"], low=0, strict_low=True)
        r = number("berge.r", p["r"], low=0)
        u_max = 2 * need / h if p["u_max"] is None else p["u_max"]
        u_max = number("berge.u_max", u_max, low=0, strict_low=True)
        G = h / (n - 1) * (np.ones((n, n)) - np.eye(n))  # s = need − G u
        A = r * np.einsum("ij,ik->ijk", np.eye(n), np.eye(n)) + np.einsum("ij,ik->ijk", G, G)
        b = -need * G
        c = np.full(n, 0.5 * need**2)
        return A, b, c, u_max

    def equilibrium_actions(self, Lambda: np.ndarray) -> np.ndarray | None:
        """Closed-form Λ-Nash efforts (None when off the box [0, u_max] or ill-posed)."""
        A, b, _, u_max = self.quadratic()
        return nash_reference(A, b, Lambda, low=0.0, high=u_max)

    def reference(self, Lambda: np.ndarray) -> np.ndarray | None:
        """Material costs at the closed-form Λ-Nash efforts."""
        u = self.equilibrium_actions(Lambda)
        if u is None:
            return None
        A, b, c, _ = self.quadratic()
        return 0.5 * np.einsum("ijk,j,k->i", A, u, u) + b @ u + c

    def game(
        self, *, Lambda=None, law="constant", policy="direct", mftt=None, seed=0, device="cpu"
    ):
        """A ``QuadraticGame`` of efforts on [0, u_max], starting from 0.3·u_max."""
        if policy != "direct":
            raise ValidationError("policy", "direct", policy)
        A, b, c, u_max = self.quadratic()
        return QuadraticGame(
            A,
            b,
            c,
            init=0.3 * u_max,
            low=0.0,
            high=u_max,
            agent_names=[f"agent{j}" for j in range(self.n)],
            device=device,
        )
