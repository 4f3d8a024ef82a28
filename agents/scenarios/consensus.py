"""``consensus``: agents agree on a point (or hold a formation) at least energy, coupled through their mean (docs/theory.md#patterns).

Agent j moves its own position, ẋ_j = u_j ∈ ℝ^d, and pays
L_j = ∫ (q |e_j|² + r |u_j|²) dt + q_T |e_j(T)|²,  e_j = (x_j − ξ_j) − mean_i (x_i − ξ_i),
the distance to the population mean (ξ = 0: agreement; ξ_j on a circle: formation). Each agent observes the
others' formation errors relative to its own, ``(x_i − ξ_i) − (x_j − ξ_j)``, as tokens.

Closed form (symmetric, Λ = I): with u_i = −k e_i, ė_j = (1 − 1/n) u_j − (k/n) e_j, so each agent solves a
scalar LQ problem with a = −k/n, b = 1 − 1/n: −Ṗ = q − (b² + 2b/n) P²/r, k = bP/r, P(T) = q_T, and
L_j = P(0) |e_j(0)|². Team (Λ = 11ᵀ): ū = 0 and ė_j = u_j, so −Ṗ = q − P²/r and L_j = P(0)|e_j(0)|².
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from scipy.integrate import solve_ivp

from ..differential import DifferentialGame
from ._common import DTYPE, ParticleScenario
from .base import register


@register
class ConsensusScenario(ParticleScenario):
    """Mean-field-coupled agreement / formation at least energy."""

    name = "consensus"
    description = (
        "Agents move in the plane to agree on a common point (or hold a formation around the mean) at least "
        "control energy; each cost is coupled to the population mean, and an MFTT policy reads the other "
        "agents' states as tokens (attention = the mean-field interaction)."
    )
    n_agents = 4
    defaults: ClassVar[dict] = dict(
        dim=2, q=1.0, r=1.0, qT=1.0, T=1.0, formation=0.0, spread=1.0, n_steps=4, order=3,
        x0_seed=7,
    )  # fmt: skip
    lambda_meaning: ClassVar[dict] = {
        "selfish": "each agent reaches the mean for itself; the others' motion is a free ride",
        "team": "Λ = 11ᵀ: the least-total-energy consensus (social optimum)",
        "altruistic": "agents also weigh the others' errors and energy",
        "spiteful": "agents want the others to stay far from the mean",
    }
    default_steps = 50
    default_lr = 0.05  # 0.1 lets the meanfield law diverge under the team Λ

    def initial(self, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(x0 [n, d], offsets ξ [n, d]): reproducible initial positions and the centred formation."""
        p, n = self.params, self.n
        d = int(p["dim"])
        g = torch.Generator().manual_seed(int(p["x0_seed"]) + n)
        x0 = float(p["spread"]) * torch.randn(n, d, generator=g, dtype=DTYPE)
        ang = torch.arange(n, dtype=DTYPE) * 2 * math.pi / n
        xi = torch.zeros(n, d, dtype=DTYPE)
        xi[:, 0], xi[:, min(1, d - 1)] = ang.cos(), ang.sin() if d > 1 else ang.cos()
        xi = float(p["formation"]) * (xi - xi.mean(0))
        return x0.to(device), xi.to(device)

    def _riccati(self, extra: float) -> float:
        """P(0) of −Ṗ = q − (b² + extra) P²/r, P(T) = q_T."""
        p, n = self.params, self.n
        b = 1.0 if extra == 0 else 1 - 1 / n
        s = (b * b + extra) / float(p["r"])
        sol = solve_ivp(
            lambda t, y: -(float(p["q"]) - s * y**2),
            (float(p["T"]), 0.0),
            [float(p["qT"])],
            rtol=1e-11,
            atol=1e-12,
        )
        return float(sol.y[0, -1])

    def reference(self, Lambda: np.ndarray) -> np.ndarray | None:
        """L_j = P(0)|e_j(0)|² for Λ = I (Nash) and Λ = 11ᵀ (team); None otherwise."""
        n = self.n
        x0, xi = self.initial()
        e0 = (x0 - xi) - (x0 - xi).mean(0)
        sq = e0.square().sum(-1).numpy()
        if np.allclose(Lambda, np.eye(n)):
            b = 1 - 1 / n
            return self._riccati(2 * b / n) * sq if n > 1 else None
        if np.allclose(Lambda, np.ones((n, n))):
            return self._riccati(0.0) * sq
        return None

    def game(self, *, Lambda, law, policy, mftt=None, seed=0, device="cpu") -> DifferentialGame:
        p, n = self.params, self.n
        d = int(p["dim"])
        q, r, qT = float(p["q"]), float(p["r"]), float(p["qT"])
        x0, xi = self.initial(device)
        eye = torch.eye(n, dtype=torch.bool, device=device)

        def err(x):  # formation error relative to the mean [n, d]
            y = x - xi
            return y - y.mean(0, keepdim=True)

        def observe(t, x):  # agent j sees (x_i − ξ_i) − (x_j − ξ_j) for every i: [n, n, d]
            y = x - xi
            return y.unsqueeze(0) - y.unsqueeze(1)

        def own(u):  # u [n, n, d] -> agent j's own action u[j, j] [n, d]
            return u[eye]

        def dynamics(t, x, u):
            return own(u)

        def running(t, x, u):
            return q * err(x).square().sum(-1) + r * own(u).square().sum(-1)

        def terminal(x):
            return qT * err(x).square().sum(-1)

        agents = self.agents("agent", "member", d, policy, law, mftt, seed, device)
        return self.differential_game(
            agents,
            x0,
            dynamics,
            running,
            terminal,
            observe=observe,
            summarize=lambda xs: xs.flatten(-2),
            convex_own_cost=True,
        )
