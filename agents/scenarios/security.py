"""``security``: an attacker disturbs a state that a defender MI stabilises: the H∞ game of docs/theory.md#hinf.

A population of states x (particles, mean m0, variance v0) follows dx/dt = a x + ā Ex + b u + w: the defender's
policy sets u, the attacker's policy injects the disturbance w, both from the state. Costs are zero-sum: the
defender pays L_D = E∫(q x² + q̄ (Ex)² + r u² − γ² w²) dt + q_T E x_T² + q̄_T (Ex_T)², the attacker L_A = −L_D.
The saddle (concept ``minimax``) is given by one game Riccati equation per part (fluctuation, mean) when γ > γ*(T)
and does not exist below: then the attacker's best response is unbounded (``no_equilibrium`` says so).

Variant ``attack = "observation"``: the attacker corrupts the defender's observation instead, the defender acts
on x + δ with δ = δ_max·tanh(π_A(x)/δ_max), so |δ| ≤ δ_max; the defender pays ... − γ² δ². The bound keeps the
attacker's best response finite (unbounded gains let it flip the loop's sign); no closed form, and no claim that a
saddle exists in the linear policy class (a per-particle attack may still gain: the cell reports it).

Defaults: γ = 1.5 against γ*(T = 1) = 0.6406; 4 RK4 steps put the exact saddle 2.4e-4 above the continuous value
(``reference_on_grid``) and keep the attacker's stage-wise open-loop problem on that grid concave (below γ ≈ 1 or
with few steps, RK4 stage controls admit a spurious ascent mode, so best responses that set each stage freely
find an unbounded attack that the continuous game does not have). Minimax (newton, linear policy, time law)
converges in ~20 iterations within 30 steps to 2.4e-4 of the closed form.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from control.errors import ValidationError, choice, number
from control.hinf import HInfGame

from ..agent import LinearPolicy
from ..differential import DifferentialGame
from ._common import DTYPE, make_agents, particles
from .base import Scenario, register

ATTACKS = ("dynamics", "observation")


@register
class SecurityScenario(Scenario):
    """Zero-sum defender/attacker game: H∞ disturbance attenuation (default) or bounded observation attack."""

    name = "security"
    description = (
        "An attacker injects a disturbance w into the state that a defender MI stabilises (H∞ disturbance "
        "attenuation, docs/theory.md#hinf): the defender minimises E∫(q x² + r u² − γ² w²) + q_T x_T², the attacker "
        "maximises it; the game-Riccati saddle is the exact reference when γ > γ*(T); for γ ≤ γ* no saddle "
        "exists (the attack pays without bound) and the cell says so. Variant attack='observation': a "
        "bounded (|δ| ≤ delta_max) corruption of the defender's observation, no closed form."
    )
    n_agents = 2
    defaults: ClassVar[dict] = dict(
        a=0.5, abar=0.0, b=1.0, q=1.0, qbar=0.0, r=0.5, qT=1.0, qTbar=0.0, gamma=1.5, T=1.0,
        m0=1.0, v0=0.5, particles=4, n_steps=4, order=3, attack="dynamics", delta_max=0.5,
    )  # fmt: skip
    lambda_meaning: ClassVar[dict] = {
        "zero_sum": "Λ = [[1, −1], [−1, 1]]: costs ±2 L_D, the same H∞ saddle (exists iff γ > γ*)",
        "selfish": "Λ = I: the material game is zero-sum, the H∞ saddle (exists iff γ > γ*; below, the "
        "attacker's best response is unbounded)",
        "team": "Λ = 11ᵀ: both minimise L_D + L_A = 0, no incentive at all (degenerate)",
    }
    default_concept = "minimax"
    default_policy = "linear"
    policies = ("linear", "mftt")
    default_steps = 30  # newton (linear policy, time/constant law) converges in ~10-25 iterations
    default_lr = 0.1  # extragradient's step (feedback/meanfield laws, mftt policy)

    def __init__(self, n_agents: int | None = None, **params):
        super().__init__(n_agents, **params)
        if self.n != 2:
            raise ValidationError("security.n_agents", "2 (defender, attacker)", self.n)
        choice("security.attack", self.params["attack"], ATTACKS)
        number("security.delta_max", self.params["delta_max"], low=0.0, strict_low=True)

    def hinf(self) -> HInfGame:
        """The matching ``control.hinf.HInfGame`` (σ = 0: the randomness is in x0)."""
        p = self.params
        keys = ("a", "abar", "b", "q", "qbar", "r", "qT", "qTbar", "gamma", "T", "m0", "v0")
        try:
            return HInfGame(**{k: float(p[k]) for k in keys})
        except ValidationError as e:
            raise e.under("security") from None

    @staticmethod
    def _saddle_scale(Lambda: np.ndarray) -> float | None:
        """c > 0 with Λ(1, −1) = c(1, −1): then the Λ-game is c times the H∞ game (selfish, zero_sum); else None."""
        L = np.asarray(Lambda, dtype=float)
        v = L @ np.array([1.0, -1.0])
        c = float(v[0])
        return c if c > 0 and np.allclose(v, [c, -c], rtol=1e-12, atol=1e-12) else None

    def reference(self, Lambda: np.ndarray) -> np.ndarray | None:
        """Material costs (V, −V) at the game-Riccati saddle (docs/theory.md#hinf), V = P(0)v0 + Π(0)m0²; None if no saddle,
        for the observation variant, or for a Λ that is not a positive multiple of the zero-sum game."""
        if self.params["attack"] != "dynamics" or self._saddle_scale(Lambda) is None:
            return None
        g = self.hinf()
        if not g.exists():
            return None
        v = g.solve().value
        return np.array([v, -v])

    def no_equilibrium(self, Lambda: np.ndarray) -> str | None:
        """One line naming γ and γ* when γ ≤ γ*(T) (no saddle: the attacker's best response is unbounded)."""
        if self.params["attack"] != "dynamics" or self._saddle_scale(Lambda) is None:
            return None
        return self.hinf().no_saddle_message()

    def reference_on_grid(self, Lambda: np.ndarray, game: DifferentialGame) -> np.ndarray | None:
        """Material costs of the game-Riccati saddle played on ``game``'s own time grid and particles.

        Its gap to ``reference`` is the discretisation error alone (RK4, n_steps = 4: about 1e-4 relative at
        the defaults); the learned profile's gap to it is the optimisation and policy-class error.
        """
        if self.reference(Lambda) is None:
            return None
        sol = self.hinf().solve()
        dt = game.x0.dtype

        def profile(t, obs, x):  # u = −k(x − Ex) − k̄Ex, w = l(x − Ex) + l̄Ex: [2, P, 1]
            tt = float(t)
            m = x.mean(0, keepdim=True)
            u = -(sol.k(tt) * (x - m) + sol.kbar(tt) * m)
            w = sol.ell(tt) * (x - m) + sol.ellbar(tt) * m
            return torch.stack([u, w]).to(dt)

        old, game.deviation = game.deviation, (None, profile)
        try:
            with torch.no_grad():
                return game.costs().detach().cpu().numpy().astype(float)
        finally:
            game.deviation = old

    def game(self, *, Lambda, law, policy, mftt=None, seed=0, device="cpu") -> DifferentialGame:
        p = self.params
        g = self.hinf()
        a, abar, b, q, qbar, r, g2 = g.a, g.abar, g.b, g.q, g.qbar, g.r, g.gamma**2
        qT, qTbar, dmax = g.qT, g.qTbar, float(p["delta_max"])
        observation = p["attack"] == "observation"
        agents = make_agents(
            ["defender", "attacker"],
            ["defender", "attacker"],
            policy=policy,
            law=law,
            d_obs=1,
            d_act=1,
            T=g.T,
            seed=seed,
            mftt=mftt,
            law_options={"order": p["order"]},
            init=0.0,
            device=device,
        )
        if (
            policy == "linear"
        ):  # the defender starts from a stabilising gain, the attacker from no attack
            defender = agents[0].policy
            assert isinstance(defender, LinearPolicy)
            with torch.no_grad():
                defender.gains.theta0.fill_(1.0)
        sign = torch.tensor([1.0, -1.0], dtype=DTYPE, device=device)

        built: list[DifferentialGame] = []
        observe: Callable[[Tensor, Tensor], Tensor] | None = None  # None: every agent sees x
        if observation:
            attacker = agents[1].policy

            busy = [False]  # a deviation may itself call observe (to read the current actions)

            # the attacker sees x; the defender sees x + δ(x), |δ| ≤ δ_max
            def observe_attacked(t, x):
                dev = getattr(built[0], "deviation", None) if built else None
                if dev is not None and dev[0] == 1 and not busy[0]:
                    busy[0] = True  # an attacker's deviation corrupts the observation too
                    try:
                        raw = dev[1](t, x, x)
                    finally:
                        busy[0] = False
                else:
                    raw = attacker(t, x)
                delta = dmax * torch.tanh(raw / dmax)
                return torch.stack([x + delta, x])

            observe = observe_attacked

            def attack(u):  # the attacker's action as played: the bounded δ
                return dmax * torch.tanh(u[1] / dmax)

            def dynamics(t, x, u):  # u [2, P, 1]: (defender control, raw attack)
                return a * x + abar * x.mean(0, keepdim=True) + b * u[0]

        else:

            def attack(u):
                return u[1]

            def dynamics(t, x, u):  # u [2, P, 1]: (defender control u, disturbance w)
                return a * x + abar * x.mean(0, keepdim=True) + b * u[0] + u[1]

        def running(t, x, u):
            L = q * x.square().mean() + qbar * x.mean(0).square().sum()
            return sign * (L + r * u[0].square().mean() - g2 * attack(u).square().mean())

        def terminal(x):
            return sign * (qT * x.square().mean() + qTbar * x.mean(0).square().sum())

        x0 = particles(g.m0, g.v0, int(p["particles"]), device)
        game = DifferentialGame(
            agents,
            x0,
            dynamics,
            running,
            terminal,
            T=g.T,
            n_steps=int(p["n_steps"]),
            observe=observe,
        )
        built.append(game)
        return game
