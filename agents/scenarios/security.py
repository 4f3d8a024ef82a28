"""``security``: an attacker perturbs the inputs of a defender MI that stabilises a state (spec §A.2, adversarial).

A population of states x (particles, mean m0, variance v0) follows dx/dt = a x + b u_D. The defender's policy
reads a corrupted observation x + δ, where δ is the attacker's action (its own policy of the true state), so
u_D = π_D(x + δ). The material costs are zero-sum: the defender pays
L_D = E∫(q x² + r u_D² − γ δ²) dt + q_T E x_T² (the attacker's spent energy γδ² is the defender's gain) and the
attacker pays L_A = −L_D. The saddle min_D max_A L_D is an H∞-type robust-control game (concept ``minimax``); with
Λ = zero_sum ([[1, −1], [−1, 1]]) the empathetic costs are ±2 L_D, the same saddle. No closed form for this
information structure (the defender's gain also scales the attack).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from control.errors import ValidationError

from ..dynamic import DifferentialGame
from ._common import DTYPE, make_agents, particles
from .base import Scenario, register


@register
class SecurityScenario(Scenario):
    """Zero-sum attacker/defender game on the defender's inputs."""

    name = "security"
    description = (
        "An attacker perturbs the observations of a defender MI that stabilises a state; zero-sum by "
        "default (Λ = zero_sum): the defender minimises state and control cost minus the attack energy, "
        "the attacker maximises it (robust / H∞-type control), solved as a minimax saddle."
    )
    n_agents = 2
    defaults: ClassVar[dict] = dict(
        a=0.5, b=1.0, q=1.0, r=0.5, qT=1.0, gamma=2.0, T=1.0, m0=1.0, v0=0.5, particles=4,
        n_steps=4, order=3,
    )  # fmt: skip
    lambda_meaning: ClassVar[dict] = {
        "zero_sum": "Λ = [[1, −1], [−1, 1]]: costs ±2 L_D, the same saddle (the game is already zero-sum)",
        "selfish": "Λ = I: the material game is zero-sum, the attacker gains what the defender loses",
        "team": "Λ = 11ᵀ: both minimise L_D + L_A = 0, no incentive at all (degenerate)",
    }
    default_concept = "minimax"
    default_policy = "linear"
    policies = ("linear", "mftt")
    default_steps = 30
    default_lr = 0.03

    def __init__(self, n_agents: int | None = None, **params):
        super().__init__(n_agents, **params)
        if self.n != 2:
            raise ValidationError("security.n_agents", "2 (defender, attacker)", self.n)

    def game(self, *, Lambda, law, policy, mftt=None, seed=0, device="cpu") -> DifferentialGame:
        p = self.params
        a, b, q, r = float(p["a"]), float(p["b"]), float(p["q"]), float(p["r"])
        qT, gamma = float(p["qT"]), float(p["gamma"])
        agents = make_agents(
            ["defender", "attacker"], ["defender", "attacker"], policy=policy, law=law, d_obs=1,
            d_act=1, T=float(p["T"]), seed=seed, mftt=mftt, law_options={"order": p["order"]},
            init=0.0, device=device,
        )  # fmt: skip
        if (
            policy == "linear"
        ):  # the defender starts from a stabilising gain, the attacker from no attack
            with torch.no_grad():
                agents[0].policy.gains.theta0.fill_(1.0)
        attacker = agents[1].policy

        def observe(t, x):  # the attacker sees x; the defender sees x + δ(x)
            delta = attacker(t, x)  # [P, 1]
            return torch.stack([x + delta, x])

        def dynamics(t, x, u):  # u [2, P, 1]: (defender control, attack δ)
            return a * x + b * u[0]

        sign = torch.tensor([1.0, -1.0], dtype=DTYPE, device=device)

        def running(t, x, u):
            uD, delta = u[0], u[1]
            return sign * (q * x.square() + r * uD.square() - gamma * delta.square()).mean()

        def terminal(x):
            return sign * qT * x.square().mean()

        x0 = particles(float(p["m0"]), float(p["v0"]), int(p["particles"]), device)
        return DifferentialGame(
            agents, x0, dynamics, running, terminal, T=float(p["T"]), n_steps=int(p["n_steps"]),
            observe=observe,
        )  # fmt: skip
