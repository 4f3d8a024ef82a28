"""``flocking``: N birds in the plane align their velocities with the flock's mean at a bounded thrust.

Agent i: dx_i = v_i dt, dv_i = u_i dt + σ dW_i, |u_i|_∞ ≤ u_max;
J_i = E[∫₀ᵀ (κ/2 |v_i − v̄|² + γ/2 |x_i − x̄|² + ρ/2 |u_i|²) dt + κ_T/2 |v_i(T) − v̄(T)|²].

No closed form (the thrust bound makes it non-LQ); what the model says is checked instead: thrust that reads
only the fluctuations (x_i − x̄, v_i − v̄) sums to zero over the flock, so without common noise the mean
velocity moves only by the average of the idiosyncratic noise, and learning narrows the velocity spread
(docs/populations.md#flocking).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch

from control.errors import ValidationError

from ..population import LinearPopulationPolicy, PopulationGame, sample_normal
from ._common import DTYPE
from .base import Scenario, register


@register
class Flocking(Scenario):
    """Velocity alignment of a large flock (one population, shared linear feedback, bounded thrust)."""

    name = "flocking"
    description = (
        "N birds align their velocities with the flock's mean at bounded thrust (a nonlinear mean-field "
        "game); the mean velocity is conserved and the velocity spread narrows."
    )
    n_agents = 500
    population = True
    defaults: ClassVar[dict] = dict(
        kappa=1.0, gamma=0.1, rho=0.5, kappa_T=1.0, u_max=1.5, sigma=0.2, T=2.0, v0=1.0, x0=1.0,
        mean_velocity=[1.0, 0.0], n_steps=20, replicas=1, order=3,
    )  # fmt: skip
    lambda_meaning: ClassVar[dict] = {"selfish": "every bird minimises its own cost (Nash)"}
    default_concept = "nash"
    default_policy = "linear"
    policies = ("linear",)
    default_steps = 150
    default_lr = 0.05

    @property
    def n_players(self) -> int:
        return 1

    def coefficients(self) -> dict[str, Any]:
        # floats, and mean_velocity as an array [2]
        p: dict[str, Any] = {
            k: float(self.params[k])
            for k in ("kappa", "gamma", "rho", "kappa_T", "u_max", "sigma", "T", "v0", "x0")
        }
        for k in ("kappa", "gamma", "kappa_T", "sigma", "v0", "x0"):
            if p[k] < 0:
                raise ValidationError(f"flocking.{k}", "a number ≥ 0", p[k])
        for k in ("rho", "u_max"):
            if p[k] <= 0:
                raise ValidationError(f"flocking.{k}", "a number > 0", p[k])
        mv = np.asarray(self.params["mean_velocity"], dtype=float)
        if mv.shape != (2,) or not np.isfinite(mv).all():
            raise ValidationError(
                "flocking.mean_velocity", "two finite numbers", self.params["mean_velocity"]
            )
        p["mean_velocity"] = mv
        return p

    def game(self, *, Lambda, law, policy, mftt=None, seed=0, device="cpu") -> PopulationGame:
        p = self.coefficients()
        R, order = (
            int(self.params["replicas"]),
            0 if law == "constant" else int(self.params["order"]),
        )
        pol = LinearPopulationPolicy(
            1, 4, 2, T=p["T"], order=order, seed=seed, dtype=DTYPE, device=device
        )
        pos = sample_normal(R, 1, self.n, 2, 0.0, math.sqrt(p["x0"]), seed=seed, device=device)
        vel = sample_normal(
            R, 1, self.n, 2, p["mean_velocity"], math.sqrt(p["v0"]), seed=seed + 1, device=device
        )
        x0 = torch.cat([pos, vel], -1)  # state (position, velocity) ∈ R⁴
        kappa, gamma, rho, kT = p["kappa"], p["gamma"], p["rho"], p["kappa_T"]

        def drift(t, x, u, law):
            return torch.cat([x[..., 2:], u], -1)

        def running(t, x, u, law):
            dev = x - law.mean.unsqueeze(2)
            return 0.5 * (
                kappa * (dev[..., 2:] ** 2).sum(-1)
                + gamma * (dev[..., :2] ** 2).sum(-1)
                + rho * (u**2).sum(-1)
            )

        def terminal(x, law):
            return 0.5 * kT * ((x[..., 2:] - law.mean.unsqueeze(2)[..., 2:]) ** 2).sum(-1)

        return PopulationGame(
            ["flock"],
            pol,
            x0,
            drift,
            running,
            terminal,
            T=p["T"],
            n_steps=int(self.params["n_steps"]),
            sigma=p["sigma"],
            noise_dims=[0.0, 0.0, 1.0, 1.0],
            noise_seed=seed,
            bounds=(-p["u_max"], p["u_max"]),
        )
