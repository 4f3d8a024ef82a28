"""Best responses in population games, at a cost that does not grow with N.

The deviation class is linear feedback with time-polynomial gains on (x − m_k, m_1..m_K, 1), richer than the
policy's own linear class (higher order, an offset) and independent of how the population is parametrised.
Who deviates follows the game's ``gradient``:

* ``mean_field``: one small agent against the frozen flow μ(t) — M "ghost" agents who face the recorded law
  and common noise without moving them. The deviation is fitted on one ghost sample and its gain measured
  on a fresh one (held out), so the gain is an unbiased estimate for a concrete non-anticipative deviation.
* ``exact``: agent 0 of the population deviates inside the N-player game (its state still enters the law).
* ``population``: the whole population deviates (its decision-maker's best response in the Λ-game).

See docs/populations.md#population-best-responses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from .best_response import BestResponse, Budget, _lbfgsb, _result
from .population_policy import Ghosts, Law, LinearPopulationPolicy, Policy


class PopulationGame(Protocol):
    """What the deviations read of an ``agents.population.PopulationGame`` (which imports this module)."""

    K: int
    N: int
    d: int
    T: float
    x0: Tensor
    device: torch.device
    policy: Policy
    gradient: str
    noisy: bool
    noise_seed: int
    override: tuple[int, int | None, Callable[[Tensor, Tensor, Law], Tensor]] | None

    def agent_costs(
        self,
        W: Tensor | None = None,
        *,
        ghosts: Ghosts | None = None,
        states: list[Tensor] | None = None,
    ) -> Tensor: ...

    def flow(self) -> list[Law]: ...


ORDER = 6  # Legendre order of the deviation's gains
GHOSTS = 512  # ghost agents per replica (mean_field deviations)


class LinearDeviation:
    """u = G(t) (x − m_k, m, 1), G(t) = Σ_j P_j(s) z_j: population k's deviation, parameters ``z [P+1, m, f]``."""

    def __init__(self, game: PopulationGame, k: int, order: int = ORDER):
        self.game, self.k = game, k
        self.basis = LinearPopulationPolicy(
            game.K,
            game.d,
            game.policy.m,
            T=game.T,
            order=order,
            offset=True,
            dtype=game.x0.dtype,
            device=game.device,
        )
        self.shape = (order + 1, game.policy.m, self.basis.f)

    def start(self) -> Tensor:
        """The current policy's gains embedded in the deviation class (the search starts at the profile)."""
        z = self.game.x0.new_zeros(self.shape)
        pol = self.game.policy
        if isinstance(pol, LinearPopulationPolicy) and pol.order <= self.shape[0] - 1:
            w = pol.W[self.k].detach()
            z[: w.shape[0], :, : w.shape[-1]] = w  # same feature order: (x − m_k, m[, 1])
        return z

    def play(self, z: Tensor):
        """play(t, x_k [R, M, d], law) -> [R, M, m] for ``PopulationGame.override``."""

        def fn(t: Tensor, xk: Tensor, law: Law) -> Tensor:
            R, M, _ = xk.shape
            m = law.mean
            phi = torch.cat(
                [
                    xk - m[:, self.k].unsqueeze(1),
                    m.reshape(R, 1, -1).expand(R, M, -1),
                    xk.new_ones(R, M, 1),
                ],
                -1,
            )  # the policy's features (x − m_k, m, 1)
            G = torch.einsum("j,jmf->mf", self.basis.basis(t).to(xk.dtype), z)
            return torch.einsum("mf,rnf->rnm", G, phi)

        return fn

    def ghost_play(self, z: Tensor):
        """play(t, g [R, K, M, d], law) for ghosts: population k's ghosts deviate, the others follow the policy."""
        dev = self.play(z)

        def fn(t: Tensor, g: Tensor, law: Law) -> Tensor:
            u = self.game.policy(t, g, law)
            uk = dev(t, g[:, self.k], law)
            return torch.cat([u[:, : self.k], uk.unsqueeze(1), u[:, self.k + 1 :]], 1)

        return fn


def population_best_response(
    game: PopulationGame, j: int, Lambda: np.ndarray, e0: float, budget: Budget
) -> BestResponse:
    """Population j's best deviation in the linear-feedback class, as its Λ-cost gain (see module doc)."""
    dev = LinearDeviation(game, j)
    z0 = dev.start()
    inf = torch.full_like(z0, math.inf)
    lam = torch.as_tensor(
        np.asarray(Lambda, dtype=float)[j], dtype=game.x0.dtype, device=game.device
    )
    if game.gradient == "mean_field":
        return _small_agent(game, dev, j, float(lam[j]), z0, budget)

    who = None if game.gradient == "population" else 0

    def E(z: Tensor) -> Tensor:
        game.override = (j, who, dev.play(z))
        try:
            c = game.agent_costs()
        finally:
            game.override = None
        Jbar = c.mean((0, 2))
        if who is None:
            return lam @ Jbar
        own = c[:, j, 0].mean()  # the deviating agent's own cost, the others' mean costs
        return lam @ Jbar + lam[j] * (own - Jbar[j])

    with torch.no_grad():
        base = float(E(z0))
    cost, ok = _lbfgsb(E, z0, -inf, inf, base, budget)
    method = "population" if who is None else "population:agent"
    return _result(j, method, base, min(cost, base), False, ok, budget)


def _small_agent(
    game: PopulationGame, dev: LinearDeviation, j: int, lam_jj: float, z0: Tensor, budget: Budget
) -> BestResponse:
    flow = game.flow() if game.noisy else None
    fit, held = _ghosts(game, 11), _ghosts(game, 23)
    inf = torch.full_like(z0, math.inf)

    def cost(z: Tensor, x0: Tensor, seed: int) -> Tensor:
        gh = Ghosts(x0, dev.ghost_play(z), seed=game.noise_seed + seed, flow=flow)
        return lam_jj * game.agent_costs(ghosts=gh)[:, j].mean()

    with torch.no_grad():
        base_fit = float(cost(z0, fit, 11))
    best: list = []
    _, ok = _lbfgsb(lambda z: cost(z, fit, 11), z0, -inf, inf, base_fit, budget, best_z=best)
    z = best[0] if best else z0
    with torch.no_grad():
        base, dev_cost = float(cost(z0, held, 23)), float(cost(z, held, 23))
    msg = "" if ok else "the deviation search stopped at its iteration budget"
    return _result(j, "population:held_out", base, dev_cost, False, ok, budget, msg)


def _ghosts(game: PopulationGame, salt: int) -> Tensor:
    """M ghost initial states per population drawn from the real agents' initial states (same law)."""
    g = torch.Generator().manual_seed(game.noise_seed * 7 + salt)
    M = min(GHOSTS, 4 * game.N)
    idx = torch.randint(game.N, (M,), generator=g).to(game.device)
    return game.x0[:, :, idx]
