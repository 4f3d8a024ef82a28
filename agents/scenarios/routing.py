"""``routing``: N drivers choose among P routes with affine latencies ℓ_p(f) = α_p + β_p f_p (f: shares).

The drivers form one population sharing a mixed route choice π = softmax(θ). A driver's expected latency
against the others' shares is Σ_p π_p (α_p + β_p (1 + (N − 1) π_p)/N). Its Nash equilibrium equalises the
latencies of the routes in use (water-filling); as N → ∞ it is the Wardrop equilibrium, and the social
optimum (``gradient = "population"``: the population moves its own shares) equalises marginal costs
α_p + 2β_p f_p instead (docs/populations.md#routing-wardrop).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from control.errors import ValidationError, choice

from ..best_response import BestResponse, Budget, _result
from ..game import Game
from ._common import DTYPE
from .base import Scenario, register

ABANDONED = 1e-10  # a route with a smaller share and a higher cost than the mean is out of use


def water_filling(alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Shares f ≥ 0, Σ f = 1, with α_p + β_p f_p equal on the used routes and ≤ α_p on the unused ones."""
    order = np.argsort(alpha)
    f = np.zeros_like(alpha)
    for k in range(len(alpha), 0, -1):
        used = order[:k]
        level = (1.0 + (alpha[used] / beta[used]).sum()) / (1.0 / beta[used]).sum()
        share = (level - alpha[used]) / beta[used]
        if (share >= 0).all():
            f[used] = share
            return f
    raise ArithmeticError("no feasible water level")  # pragma: no cover - k = 1 is always feasible


class RoutingGame(Game):
    """One population of N drivers; the player is the population, its cost the mean expected latency."""

    players_are_populations = True
    solve_defaults: dict = {"optimizer": "adam"}  # an instance attribute of Game

    def __init__(self, alpha: Tensor, beta: Tensor, N: int, *, gradient: str, seed: int = 0):
        self.alpha, self.beta, self.N = alpha, beta, int(N)
        self.gradient = choice("gradient", gradient, ("mean_field", "population"))
        self.n_agents, self.agent_names, self.device = 1, ["drivers"], alpha.device
        g = torch.Generator().manual_seed(int(seed))
        self.theta = (0.1 * torch.randn(len(alpha), generator=g, dtype=alpha.dtype)).to(
            alpha.device
        )
        self.theta.requires_grad_(True)

    def parameters_of(self, j: int) -> list[Tensor]:
        return [self.theta]

    def shares(self) -> Tensor:
        return torch.softmax(self.theta, 0)

    def latencies(self, others: Tensor) -> Tensor:
        """ℓ_p a driver meets on route p when the others play shares ``others``."""
        N = self.N
        return self.alpha + self.beta * (1.0 + (N - 1) * others) / N

    def costs(self) -> Tensor:
        """Mean latency; its gradient in θ is the natural (mirror) gradient ∂J/∂π − Σ_p π_p ∂J/∂π_p, so
        unused routes are abandoned at a linear rate in θ instead of the softmax gradient's vanishing one."""
        pi = self.shares()
        lat = self.latencies(pi)
        J = (pi * lat).sum()
        with (
            torch.no_grad()
        ):  # ∂J/∂π_p: a driver's latency (it cannot move the others), or the marginal cost
            dJ = (
                lat
                if self.gradient == "mean_field"
                else lat + self.beta * (self.N - 1) / self.N * pi
            )
            g = dJ - (pi * dJ).sum()
            g = torch.where(
                (pi < ABANDONED) & (g > 0), torch.zeros_like(g), g
            )  # KKT met on the boundary
        return (J.detach() + ((self.theta - self.theta.detach()) * g).sum()).reshape(1)

    def actions(self) -> np.ndarray:
        return self.shares().detach().cpu().numpy().reshape(1, -1)

    def deviation_response(
        self, j: int, Lambda: np.ndarray, e0: float, budget: Budget
    ) -> BestResponse:
        """Exact: one driver's best reply is the route of least latency against the others' shares; the
        population's (``population``) is the least total latency over shares, by water-filling."""
        lam = float(np.asarray(Lambda, dtype=float)[j, j])
        with torch.no_grad():
            pi = self.shares()
            if self.gradient == "mean_field":
                best = float(self.latencies(pi).min())
            else:
                N = self.N
                a = (self.alpha + self.beta / N).cpu().numpy()
                b = (2 * self.beta * (N - 1) / N).cpu().numpy()  # marginal cost of the own shares
                f = torch.as_tensor(water_filling(a, b), dtype=pi.dtype, device=pi.device)
                best = float((f * self.latencies(f)).sum())
        return _result(j, "route", e0, lam * best, True, True, budget)


@register
class Routing(Scenario):
    """Route choice with affine congestion: Wardrop equilibrium and system optimum in closed form."""

    name = "routing"
    description = (
        "N drivers share routes with affine latencies α + β·share; the Nash equilibrium tends to the Wardrop "
        "equilibrium (closed form by water-filling), the social optimum equalises marginal costs."
    )
    n_agents = 10_000
    population = True
    defaults: ClassVar[dict] = dict(
        alpha=[1.0, 1.4, 2.0, 3.5], beta=[2.0, 1.0, 0.5, 1.0], gradient="mean_field"
    )
    lambda_meaning: ClassVar[dict] = {
        "selfish": "each driver minimises its own latency (Wardrop as N grows)",
    }
    default_concept = "nash"
    default_policy = "direct"
    policies = ("direct",)
    default_steps = 600
    default_lr = 0.1

    @property
    def n_players(self) -> int:
        return 1

    def coefficients(self) -> tuple[np.ndarray, np.ndarray]:
        a = np.atleast_1d(np.asarray(self.params["alpha"], dtype=float))
        b = np.atleast_1d(np.asarray(self.params["beta"], dtype=float))
        if a.ndim != 1 or len(a) < 2 or not np.isfinite(a).all():
            raise ValidationError(
                "routing.alpha", "at least two finite free-flow latencies", a.tolist()
            )
        if b.shape != a.shape or not np.isfinite(b).all() or (b <= 0).any():
            raise ValidationError("routing.beta", f"{len(a)} congestion slopes > 0", b.tolist())
        return a, b

    def equilibrium(self, N: float | None = None) -> np.ndarray:
        """Nash shares at N drivers (N = inf: Wardrop)."""
        a, b = self.coefficients()
        N = self.n if N is None else N
        if np.isinf(N):
            return water_filling(a, b)
        return water_filling(a + b / N, b * (N - 1) / N)

    def social(self) -> np.ndarray:
        """Shares minimising the mean latency Σ f_p (α_p + β_p f_p) (large N): marginal costs equal."""
        a, b = self.coefficients()
        return water_filling(a, 2 * b)

    def reference(self, Lambda: np.ndarray) -> np.ndarray:
        a, b = self.coefficients()
        N = self.n
        if self.params["gradient"] == "population":
            ap, bp = a + b / N, 2 * b * (N - 1) / N
            f = water_filling(ap, bp)
        else:
            f = self.equilibrium()
        return np.array([float((f * (a + b * (1 + (N - 1) * f) / N)).sum())])

    def game(self, *, Lambda, law, policy, mftt=None, seed=0, device="cpu") -> RoutingGame:
        a, b = self.coefficients()
        t = {k: torch.as_tensor(v, dtype=DTYPE, device=device) for k, v in (("a", a), ("b", b))}
        return RoutingGame(t["a"], t["b"], self.n, gradient=str(self.params["gradient"]), seed=seed)
