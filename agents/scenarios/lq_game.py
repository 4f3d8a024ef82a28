"""``lq_game``: N players steer a common scalar state; exact coupled-Riccati reference for any Λ (docs/theory.md#lq-game)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from control.errors import ValidationError
from control.riccati import LQGame

from ..differential import DifferentialGame
from ._common import DTYPE, ParticleScenario, particles, per_entity
from .base import register


@register
class LQGameScenario(ParticleScenario):
    """dx = (ax + āEx + Σ b_i u_i)dt; J_i = E∫(q_i x² + q̄_i (Ex)² + r_i u_i²)dt + q_T,i x_T² + q̄_T,i (Ex_T)².

    The law of x is carried by P particles with mean m0 and variance v0 (σ = 0: the randomness is in x0), so
    a linear policy u_j = −k_j(t)(x − Ex) − l_j(t)Ex reproduces the moment dynamics exactly.
    """

    name = "lq_game"
    description = (
        "N players steer one common scalar state at quadratic cost (mean-field-type LQ game, docs/theory.md#lq-game); "
        "the coupled-Riccati feedback equilibrium of the Λ-game is the exact reference."
    )
    n_agents = 2
    defaults: ClassVar[dict] = dict(
        a=0.5, abar=0.0, b=1.0, q=1.0, qbar=0.5, r=1.0, qT=1.0, qTbar=0.0, T=1.0,
        m0=1.0, v0=0.5, particles=4, n_steps=6, order=3,
    )  # fmt: skip
    lambda_meaning: ClassVar[dict] = {
        "selfish": "Nash: each player pays its own control and bears the shared state cost (free riding)",
        "team": "Λ = 11ᵀ: the social optimum (everyone minimises the sum of costs)",
        "altruistic": "players also weigh the others' costs: more effort, lower total cost",
        "spiteful": "players gain when the others pay: less effort, higher total cost",
        "coopetitive": "help your group, hurt the other group",
        "zero_sum": "λ_ji = −1/(n−1): the others' costs count against mine (may have no equilibrium)",
        "berge": "λ_jj = 0: refused (the LQ best response is unbounded, docs/theory.md#self-regard)",
    }
    default_steps = 400  # a safety net: learning stops on its own rule first (about 300 steps)
    default_lr = 0.1

    def coefficients(self) -> dict:
        """The LQ coefficients, one entry per player where the game has one."""
        p, n = self.params, self.n
        out: dict[str, Any] = {k: float(p[k]) for k in ("a", "abar", "T", "m0", "v0")}
        for k in ("b", "q", "qbar", "r", "qT", "qTbar"):
            out[k] = per_entity(f"lq_game.{k}", p[k], n)
        if np.any(out["r"] <= 0):
            raise ValidationError("lq_game.r", "r_i > 0", out["r"].tolist())
        return out

    def lq(self, Lambda: np.ndarray | None = None) -> LQGame:
        """The matching ``control.riccati.LQGame`` (σ = 0)."""
        c = self.coefficients()
        return LQGame(
            c["a"],
            c["abar"],
            0.0,
            c["b"],
            c["q"],
            c["qbar"],
            c["r"],
            c["qT"],
            c["qTbar"],
            c["T"],
            Lambda=Lambda,
        )

    def reference(self, Lambda: np.ndarray) -> np.ndarray | None:
        """Material costs of the coupled-Riccati feedback equilibrium (None if it does not exist)."""
        try:
            eq = self.lq(Lambda).solve_nash()
            c = self.coefficients()
            out = np.asarray(eq.costs(c["m0"], c["v0"]), dtype=float)
        except (ValidationError, RuntimeError, ArithmeticError):
            return None
        return out if np.isfinite(out).all() else None

    def reference_on_grid(self, Lambda: np.ndarray, game: DifferentialGame) -> np.ndarray | None:
        """Material costs of the exact feedback equilibrium played on ``game``'s own time grid and particles.

        Its gap to ``reference`` is the discretisation error alone; the learned profile's gap to it is the
        optimisation and policy-class error.
        """
        eq = self.lq(Lambda).solve_nash()
        dt = game.x0.dtype

        def profile(t, obs, x):  # u_j = −k_j(t)(x − Ex) − l_j(t)Ex for every player j: [n, P, 1]
            tt = float(t)
            k = torch.as_tensor(np.asarray(eq.k(tt), float), dtype=dt, device=x.device)
            ell = torch.as_tensor(np.asarray(eq.l(tt), float), dtype=dt, device=x.device)
            m = x.mean(0, keepdim=True)
            return -(k[:, None, None] * (x - m)[None] + ell[:, None, None] * m[None])

        old, game.deviation = game.deviation, (None, profile)
        try:
            return game.costs().detach().cpu().numpy().astype(float)
        finally:
            game.deviation = old

    def game(self, *, Lambda, law, policy, mftt=None, seed=0, device="cpu") -> DifferentialGame:
        c, p = self.coefficients(), self.params
        b = torch.as_tensor(c["b"], dtype=DTYPE, device=device)
        q, qbar, r = (torch.as_tensor(c[k], dtype=DTYPE, device=device) for k in ("q", "qbar", "r"))
        qT, qTbar = (torch.as_tensor(c[k], dtype=DTYPE, device=device) for k in ("qT", "qTbar"))
        a, abar = c["a"], c["abar"]

        def dynamics(t, x, u):  # x [P, 1], u [n, P, 1]
            return a * x + abar * x.mean(0, keepdim=True) + torch.einsum("j,jpm->pm", b, u)

        def running(t, x, u):
            m2 = x.mean(0).square()
            return q * x.square().mean() + qbar * m2 + r * u.square().mean((1, 2))

        def terminal(x):
            return qT * x.square().mean() + qTbar * x.mean(0).square()

        agents = self.agents("player", "player", 1, policy, law, mftt, seed, device)
        x0 = particles(c["m0"], c["v0"], int(p["particles"]), device)
        return self.differential_game(agents, x0, dynamics, running, terminal, convex_own_cost=True)
