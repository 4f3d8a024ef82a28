"""``systemic_risk``: N banks borrow and lend towards the average reserve (Carmona, Fouque & Sun, 2015).

dX_i = [a(X̄ − X_i) + α_i] dt + σ(ρ dW⁰ + √(1 − ρ²) dW_i),
J_i = E[∫₀ᵀ (α_i²/2 − q α_i (X̄ − X_i) + ε/2 (X̄ − X_i)²) dt + c/2 (X̄_T − X_T^i)²],  q² ≤ ε.

The closed-loop Nash equilibrium of the N-bank game is explicit: α_i = (q + (1 − 1/N) η_t)(X̄ − X_i) with
η̇ = 2(a + q)η + (1 − 1/N²)η² − (ε − q²), η_T = c; the mean-field limit has 1/N = 0. Common noise moves every
reserve together and leaves the equilibrium unchanged. See docs/populations.md#systemic-risk.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

from control.errors import ValidationError

from ..population import LinearPopulationPolicy, PopulationGame, sample_normal
from ..population_mftt import MFTTPopulationPolicy
from ..population_policy import Policy
from ._common import DTYPE
from .base import Scenario, register


def eta(
    t, *, a: float, q: float, eps: float, c: float, T: float, N: float = math.inf
) -> np.ndarray:
    """η_t of the N-bank equilibrium (N = inf: the mean-field limit), the explicit solution of its Riccati ODE."""
    t = np.asarray(t, dtype=float)
    k = 1.0 - (0.0 if math.isinf(N) else 1.0 / N**2)
    root = math.sqrt((a + q) ** 2 + k * (eps - q**2))
    dp, dm = -(a + q) + root, -(a + q) - root
    e = np.exp((dp - dm) * (T - t))
    num = -(eps - q**2) * (e - 1.0) - c * (dp * e - dm)
    den = (dm * e - dp) - c * k * (e - 1.0)
    return num / den


@register
class SystemicRisk(Scenario):
    """Inter-bank lending with common noise: N banks sharing one linear feedback policy (a population)."""

    name = "systemic_risk"
    description = (
        "N banks' log-reserves mean-revert to the average through borrowing and lending, with common noise "
        "(Carmona–Fouque–Sun); explicit Nash equilibrium at every N and in the mean-field limit."
    )
    n_agents = 100
    population = True
    defaults: ClassVar[dict] = dict(
        a=0.1, q=0.1, eps=0.5, c=0.5, sigma=1.0, rho=0.2, T=1.0, v0=1.0,
        n_steps=50, replicas=8, order=4, gradient="mean_field",
    )  # fmt: skip
    lambda_meaning: ClassVar[dict] = {
        "selfish": "Nash: every bank minimises its own cost (the only Λ of one population)",
    }
    default_concept = "nash"
    default_policy = "linear"
    policies = ("linear", "mftt")
    default_steps = 300
    default_lr = 0.05

    @property
    def n_players(self) -> int:
        return 1

    def coefficients(self) -> dict:
        p = {k: float(self.params[k]) for k in ("a", "q", "eps", "c", "sigma", "rho", "T", "v0")}
        if p["q"] ** 2 > p["eps"]:
            raise ValidationError("systemic_risk.q", f"q² ≤ eps (eps = {p['eps']})", p["q"])
        if not 0.0 <= p["rho"] <= 1.0:
            raise ValidationError("systemic_risk.rho", "a correlation in [0, 1]", p["rho"])
        for k in ("sigma", "v0", "c"):
            if p[k] < 0:
                raise ValidationError(f"systemic_risk.{k}", "a number ≥ 0", p[k])
        return p

    def eta(self, t, N: float | None = None) -> np.ndarray:
        p = self.coefficients()
        return eta(
            t, a=p["a"], q=p["q"], eps=p["eps"], c=p["c"], T=p["T"], N=self.n if N is None else N
        )

    def gain(self, t, N: float | None = None) -> np.ndarray:
        """φ(t) = q + (1 − 1/N) η_t: the equilibrium control is α = φ(t)(X̄ − X)."""
        n = self.n if N is None else N
        return self.coefficients()["q"] + (1.0 - (0.0 if math.isinf(n) else 1.0 / n)) * self.eta(
            t, N=n
        )

    def reference(self, Lambda: np.ndarray) -> np.ndarray | None:
        """E J_i at the equilibrium: η₀/2 E(X̄₀ − X₀)² + σ²(1 − ρ²)(1 − 1/N)/2 ∫₀ᵀ η dt."""
        p = self.coefficients()
        N = self.n
        ts = np.linspace(0.0, p["T"], 2001)
        integral = np.trapezoid(self.eta(ts), ts)
        spread = (1.0 - 1.0 / N) * p["v0"]
        return np.array(
            [
                self.eta(0.0) / 2 * spread
                + p["sigma"] ** 2 * (1 - p["rho"] ** 2) * (1 - 1 / N) / 2 * integral
            ]
        )

    def game(self, *, Lambda, law, policy, mftt=None, seed=0, device="cpu") -> PopulationGame:
        p = self.coefficients()
        a, q, eps, c = p["a"], p["q"], p["eps"], p["c"]
        R = int(self.params["replicas"])
        order = 0 if law == "constant" else int(self.params["order"])
        pol: Policy
        if policy == "mftt":  # each bank attends to a fixed sample of 8 banks
            pol = MFTTPopulationPolicy(
                1, 1, 1, law=law, config=mftt, seed=seed, dtype=DTYPE, device=device
            )
        else:
            pol = LinearPopulationPolicy(
                1, 1, 1, T=p["T"], order=order, seed=seed, dtype=DTYPE, device=device
            )
        x0 = sample_normal(R, 1, self.n, 1, 0.0, math.sqrt(p["v0"]), seed=seed, device=device)

        def drift(t, x, u, law):
            return a * (law.mean.unsqueeze(2) - x) + u

        def running(t, x, u, law):
            gap = (law.mean.unsqueeze(2) - x)[..., 0]
            return 0.5 * u[..., 0] ** 2 - q * u[..., 0] * gap + 0.5 * eps * gap**2

        def terminal(x, law):
            return 0.5 * c * ((law.mean.unsqueeze(2) - x)[..., 0]) ** 2

        return PopulationGame(
            ["banks"],
            pol,
            x0,
            drift,
            running,
            terminal,
            T=p["T"],
            n_steps=int(self.params["n_steps"]),
            sigma=p["sigma"] * math.sqrt(1 - p["rho"] ** 2),
            sigma0=p["sigma"] * p["rho"],
            gradient=str(self.params["gradient"]),
            noise_seed=seed,
        )

    def reference_on_grid(self, Lambda: np.ndarray, game: PopulationGame) -> np.ndarray:
        """E J of the closed-form equilibrium played on ``game``'s own grid, samples and noise."""
        dt = game.x0.dtype

        def closed_form(t, xk, law):  # α = φ(t)(X̄ − X) for every bank
            phi = torch.as_tensor(float(self.gain(float(t))), dtype=dt, device=xk.device)
            return phi * (law.mean[:, 0].unsqueeze(1) - xk)

        game.override = (0, None, closed_form)
        try:
            with torch.no_grad():
                return game.costs().cpu().numpy().astype(float)
        finally:
            game.override = None

    def control_error(self, game: PopulationGame, N: float | None = None) -> float:
        """Relative L² distance (over the grid times and the simulated states) of the learned control to α*."""
        states: list = []
        with torch.no_grad():
            game.agent_costs(states=states)
            num = den = 0.0
            for t, x in zip(game.times[:-1], states[:-1], strict=False):
                law = game.law(x, frozen=True)
                u = game.policy(t, x, law)[..., 0]
                star = float(self.gain(float(t), N)) * (law.mean.unsqueeze(2) - x)[..., 0]
                num += float(((u - star) ** 2).mean())
                den += float((star**2).mean())
        return math.sqrt(num / den)

    def check_gradient(self) -> str:
        g = str(self.params["gradient"])
        if g not in ("mean_field", "exact"):
            raise ValidationError("systemic_risk.gradient", "mean_field or exact", g)
        return g
