"""``commons``: harvesters share a renewable resource whose growth depends on the mean stock (docs/theory.md#patterns).

The stock is a population of particles s (patches, or the uncertain stock) with mean-field logistic growth
ds/dt = g s (1 − E s / K) − (Σ_j e_j) s, where e_j ∈ [0, e_max] is harvester j's effort. Harvester j earns
the price p on its catch e_j s and pays a convex effort cost, and everyone values the stock left at T:
L_j = E ∫ (c e_j² − p e_j s) dt − w E s_T.
Selfish harvesters over-harvest (tragedy of the commons); Λ moves them to partial altruism or to
self-abnegation (λ_jj < 0 is well posed here because efforts are bounded). No closed form.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ..differential import DifferentialGame
from ._common import DTYPE, ParticleScenario, particles
from .base import register


@register
class CommonsScenario(ParticleScenario):
    """Renewable resource with mean-field stock dynamics and harvesting agents."""

    name = "commons"
    description = (
        "Harvesters exploit a renewable resource whose logistic growth depends on the mean stock; selfish "
        "harvesting depletes it (tragedy of the commons), empathy Λ restores sustainability, and "
        "self-abnegating agents (λ_jj < 0, bounded efforts) sacrifice their own catch."
    )
    n_agents = 3
    defaults: ClassVar[dict] = dict(
        growth=1.0, K=1.0, price=1.0, effort_cost=0.5, stock_value=1.0, e_max=1.0, s0=0.8,
        v0=0.02, T=2.0, particles=4, n_steps=4, order=3,
    )  # fmt: skip
    lambda_meaning: ClassVar[dict] = {
        "selfish": "each harvester maximises its own catch: the stock is over-harvested",
        "team": "Λ = 11ᵀ: the sustainable (social) harvest",
        "altruistic": "partial altruism: harvesters weigh the others' profits",
        "self_abnegating": "λ_jj < 0: a harvester works against its own profit (bounded effort)",
        "spiteful": "harvesters gain when the others lose: a race to deplete",
    }
    default_steps = 50
    default_lr = 0.05

    def game(self, *, Lambda, law, policy, mftt=None, seed=0, device="cpu") -> DifferentialGame:
        p, n = self.params, self.n
        g, K, price = float(p["growth"]), float(p["K"]), float(p["price"])
        c, w = float(p["effort_cost"]), float(p["stock_value"])

        def dynamics(t, s, e):  # s [P, 1], e [n, P, 1] efforts
            return g * s * (1 - s.mean() / K) - e.sum(0) * s

        def running(t, s, e):
            return (c * e.square() - price * e * s).mean((1, 2))

        def terminal(s):
            return (-w * s.mean()).expand(n)

        # linear policies start at effort e = 0.3 E s/E s
        init = torch.tensor([[[0.0]], [[-0.3]]], dtype=DTYPE) if policy == "linear" else 0.0
        agents = self.agents("harvester", "harvester", 1, policy, law, mftt, seed, device, init)
        x0 = particles(float(p["s0"]), float(p["v0"]), int(p["particles"]), device)
        bounds = (0.0, float(p["e_max"]))
        return self.differential_game(agents, x0, dynamics, running, terminal, bounds=bounds)
