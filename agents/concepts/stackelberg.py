"""Stackelberg equilibrium: the leader optimises through the followers' best response (docs/theory.md#patterns, docs/theory.md#static-games).

Two ways to differentiate through BR(θ_l):

* ``mode="implicit"``: followers are solved to stationarity F(θ_l, θ_f) = ∇_f E_f = 0; then
  dθ_f/dθ_l = −(∂_f F)⁻¹ ∂_l F, so the leader's hypergradient is ∂_l E_l − (∂_l F)ᵀ w with
  (∂_f F)ᵀ w = ∂_f E_l (explicit Jacobian for small followers, Neumann iteration otherwise).
* ``mode="unrolled"``: ``inner_steps`` follower gradient steps are unrolled with ``create_graph`` and
  the leader back-propagates through them (needs ``game.supports_substitution``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from control.errors import ValidationError, choice, number

from ..empathy import empathetic_costs, require_self_regard
from ..equilibrium import Equilibrium
from ..game import Game
from ..learning import (
    BLOWUP,
    Descent,
    check_options,
    gradient_play,
    lambda_costs,
    own_grads,
    print_progress,
    squared_step,
)
from ._finish import finish

MODES = ("implicit", "unrolled")
EXPLICIT_MAX = 256


def _flat(gs: list[list[Tensor]]) -> Tensor:
    return torch.cat([g.reshape(-1) for gl in gs for g in gl])


def _implicit_hypergrad(
    game: Game, Lambda: np.ndarray, leader: int, followers: list[int], inner_lr: float, iters: int
) -> list[Tensor]:
    """Leader hypergradient ∂_l E_l − (∂_l F)ᵀ w with (∂_f F)ᵀ w = ∂_f E_l (implicit function theorem)."""
    _, E = lambda_costs(game, Lambda)
    fps = [p for j in followers for p in game.parameters_of(j)]
    lps = game.parameters_of(leader)
    F = _flat(own_grads(game, E, followers, create_graph=True))
    raw = torch.autograd.grad(E[leader], fps, retain_graph=True, allow_unused=True)
    b = torch.cat(
        [
            (torch.zeros_like(p) if x is None else x).reshape(-1)
            for p, x in zip(fps, raw, strict=True)
        ]
    )
    m = F.numel()

    def vjp_f(w: Tensor) -> Tensor:
        # (F·w) as a scalar: passing grad_outputs triggers torch's slow sympy import on first use
        gs = torch.autograd.grad((F * w).sum(), fps, retain_graph=True, allow_unused=True)
        return torch.cat(
            [
                (torch.zeros_like(p) if x is None else x).reshape(-1)
                for p, x in zip(fps, gs, strict=True)
            ]
        )

    if m <= EXPLICIT_MAX:
        J = torch.stack(
            [vjp_f(e) for e in torch.eye(m, dtype=F.dtype, device=F.device)]
        )  # rows: (∂_fF)ᵀ e_k
        w = torch.linalg.solve(J.T, b)  # J = ∂_f F, so solve (∂_f F)ᵀ w = b
    else:  # Neumann series: w ← w − η((∂_fF)ᵀ w − b), converges when inner gradient play does
        w = torch.zeros_like(b)
        for _ in range(iters):
            w = w - inner_lr * (vjp_f(w) - b)
    corr = torch.autograd.grad((F * w.detach()).sum(), lps, retain_graph=True, allow_unused=True)
    direct = torch.autograd.grad(E[leader], lps, allow_unused=True)
    return [
        (torch.zeros_like(p) if d is None else d) - (0 if c is None else c)
        for p, d, c in zip(lps, direct, corr, strict=True)
    ]


def _unrolled_hypergrad(
    game: Game, Lambda: np.ndarray, leader: int, followers: list[int], inner_lr: float, k: int
) -> list[Tensor]:
    """Leader gradient through ``k`` unrolled follower gradient steps; followers end at the unrolled point."""
    if not game.supports_substitution:
        raise ValidationError(
            "mode",
            "implicit for this game",
            "unrolled",
            reason=f"{type(game).__name__} does not support substitution",
        )
    prof = [[p for p in game.parameters_of(j)] for j in range(game.n_agents)]
    for j in followers:
        prof[j] = [p.detach().clone().requires_grad_(True) for p in game.parameters_of(j)]
    for _ in range(k):
        E = empathetic_costs(Lambda, game.costs_at(prof))
        for j in followers:
            gs = torch.autograd.grad(E[j], prof[j], create_graph=True, retain_graph=True)
            prof[j] = [p - inner_lr * g for p, g in zip(prof[j], gs, strict=True)]
    E = empathetic_costs(Lambda, game.costs_at(prof))
    lps = game.parameters_of(leader)
    g = torch.autograd.grad(E[leader], lps, allow_unused=True)
    with torch.no_grad():
        for j in followers:
            for p, v in zip(game.parameters_of(j), prof[j], strict=True):
                p.copy_(v)
    game.project()
    return [torch.zeros_like(p) if x is None else x for p, x in zip(lps, g, strict=True)]


def solve_stackelberg(
    game: Game,
    Lambda: np.ndarray,
    *,
    leader: int = 0,
    mode: str = "implicit",
    steps: int = 300,
    lr: float = 0.05,
    inner_steps: int = 5,
    inner_lr: float | None = None,
    implicit_iters: int = 100,
    tol: float = 1e-8,
    progress: bool = False,
    measure_exploitability: bool = False,
    br_steps: int = 300,
    br_lr: float | None = None,
) -> Equilibrium:
    """Leader ``leader`` descends E_l(θ_l, BR(θ_l)); the others (followers) play Nash among themselves.

    Followers must have λ_jj > 0 (and the leader too when ``game.convex_own_cost``): their best
    response is found by minimising their own convex cost (docs/theory.md#self-regard).
    """
    n = game.n_agents
    if n < 2:
        raise ValidationError("concept", "at least two agents for stackelberg", f"{n} agent")
    leader = int(number("leader", leader, low=0, high=n - 1, integer=True))
    choice("mode", mode, MODES)
    check_options(steps, lr, "gradient", tol, "sgd")
    number("inner_steps", inner_steps, low=1, integer=True)
    ilr = float(number("inner_lr", lr if inner_lr is None else inner_lr, low=0, strict_low=True))
    followers = [j for j in range(n) if j != leader]
    need = followers + ([leader] if game.convex_own_cost else [])
    require_self_regard(
        Lambda,
        sorted(need),
        "stackelberg needs a convex own cost: the follower's best response is found by minimising "
        "lambda_jj L_j + ..., which is ill posed for lambda_jj <= 0 (docs/theory.md#self-regard)",
    )
    # Followers first reach their best response to the initial leader action.
    gradient_play(game, Lambda, followers, steps=max(inner_steps, 200), lr=ilr, tol=tol)
    hist, status, res, it = [], "max_steps", float("inf"), 0
    lps = game.parameters_of(leader)
    descent = Descent(lps, lr)  # the leader's plain projected gradient step
    for it in range(1, steps + 1):
        with torch.no_grad():
            _, E = lambda_costs(game, Lambda)
        e = E.cpu().numpy()
        hist.append(e)
        if not np.isfinite(e).all():
            status = "diverged"
            break
        if mode == "implicit":
            fstat = gradient_play(game, Lambda, followers, steps=inner_steps, lr=ilr, tol=tol)
            g = _implicit_hypergrad(game, Lambda, leader, followers, ilr, implicit_iters)
        else:
            g = _unrolled_hypergrad(game, Lambda, leader, followers, ilr, inner_steps)
        before = [p.detach().clone() for p in lps]
        descent.step(g)
        game.project()
        res = math.sqrt(squared_step(lps, before)) / lr
        if progress:
            print_progress(it, steps, e, res)
        if not math.isfinite(res) or any(float(p.detach().abs().max()) > BLOWUP for p in lps):
            status = "diverged"
            break
        if res < tol and (mode == "unrolled" or fstat.status == "converged"):
            status = "converged"
            break
    if status != "diverged":  # polish the followers' best response to the final leader action
        gradient_play(game, Lambda, followers, steps=max(inner_steps, 200), lr=ilr, tol=tol)
    return finish(
        game,
        Lambda,
        "stackelberg",
        status,
        it,
        res,
        np.array(hist).reshape(-1, n),
        measure_exploitability=measure_exploitability,
        steps=br_steps,
        lr=br_lr or lr,
        info={"leader": leader, "mode": mode},
    )
