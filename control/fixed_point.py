"""Fixed points of an operator O: Krasnoselskii–Mann iteration, its ODE limit, Lipschitz estimates (docs/theory.md#fixed-points, docs/theory.md#depth-ode).

* ``km_iterate``: Y ← Y + γ_k (O(Y) − Y) with a constant, harmonic or custom step schedule and the residual
  history ‖O(Y_k) − Y_k‖.
* ``km_flow``: the small-step limit dY/dt = O(Y) − Y solved by ``control.solve``.
* ``lipschitz_estimate``: ‖∂O(y)‖₂ by power iteration on Jacobian-vector products (a contraction test: < 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import ValidationError, choice, number
from .integrate import Solution, solve

SCHEDULES: dict[str, Callable[[int], float]] = {
    "harmonic": lambda k: 1.0 / (k + 2),  # Σ γ(1−γ) = ∞ (docs/theory.md#fixed-points)
    "sqrt": lambda k: 1.0 / math.sqrt(k + 2),
}


@dataclass(frozen=True)
class FixedPointResult:
    """Last iterate ``y``, residuals ‖O(y_k) − y_k‖ per step, whether ``tol`` was met, steps taken."""

    y: Tensor
    residuals: list[float]
    converged: bool
    steps: int


def _schedule(gamma) -> Callable[[int], float]:
    if isinstance(gamma, str):
        return SCHEDULES[choice("gamma", gamma, SCHEDULES)]
    if callable(gamma):
        return gamma
    g = number("gamma", gamma, low=0.0, high=1.0, strict_low=True)
    return lambda k: g


def km_iterate(
    op: Callable[[Tensor], Tensor],
    y0: Tensor,
    *,
    steps: int = 100,
    gamma: float | str | Callable[[int], float] = 0.5,
    tol: float = 1e-8,
) -> FixedPointResult:
    """Krasnoselskii–Mann iteration y_{k+1} = y_k + γ_k (O(y_k) − y_k) (docs/theory.md#fixed-points); γ = 1 is Picard."""
    if not isinstance(y0, Tensor):
        raise ValidationError("y0", "a torch.Tensor", type(y0).__name__)
    steps = number("steps", steps, low=0, integer=True)
    tol = number("tol", tol, low=0.0)
    sched = _schedule(gamma)
    y, res = y0, []
    for k in range(steps):
        r = op(y) - y
        res.append(float(torch.linalg.vector_norm(r)))
        if not math.isfinite(res[-1]):
            return FixedPointResult(y, res, False, k)
        if res[-1] <= tol:
            return FixedPointResult(y, res, True, k)
        g = float(sched(k))
        if not 0.0 < g <= 1.0:
            raise ValidationError("gamma", "steps gamma_k in (0, 1]", g)
        y = y + g * r
    rn = float(torch.linalg.vector_norm(op(y) - y))
    res.append(rn)
    return FixedPointResult(y, res, rn <= tol, steps)


def km_flow(
    op: Callable[[Tensor], Tensor],
    y0: Tensor,
    T: float = 10.0,
    *,
    n: int = 50,
    method: str = "dopri5",
    **solve_kw,
) -> Solution:
    """The ODE limit dY/dt = O(Y) − Y on [0, T] at n+1 equally spaced times (docs/theory.md#depth-ode)."""
    T = number("T", T, low=0.0, strict_low=True)
    n = number("n", n, low=1, integer=True)
    if not isinstance(y0, Tensor):
        raise ValidationError("y0", "a torch.Tensor", type(y0).__name__)
    t = torch.linspace(0.0, T, n + 1, dtype=y0.dtype, device=y0.device)
    return solve(lambda t, y: op(y) - y, y0, t, method=method, **solve_kw)


def lipschitz_estimate(
    op: Callable[[Tensor], Tensor], y: Tensor, *, iters: int = 50, seed: int = 0
) -> float:
    """‖∂O(y)‖₂ (the local Lipschitz constant) by power iteration v ← JᵀJv on JVPs/VJPs (docs/theory.md#fixed-points)."""
    iters = number("iters", iters, low=1, integer=True)
    y = y.detach().requires_grad_(True)
    with torch.enable_grad():
        out = op(y)
        w = torch.zeros_like(out, requires_grad=True)
        (g,) = torch.autograd.grad(out, y, w, create_graph=True)  # g(w) = Jᵀw, linear in w
    gen = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(y.shape, generator=gen, dtype=y.dtype).to(y.device)
    v = v / torch.linalg.vector_norm(v)
    sigma = 0.0
    for _ in range(iters):
        (jv,) = torch.autograd.grad(g, w, v, retain_graph=True)  # J v by double backward
        (jtjv,) = torch.autograd.grad(out, y, jv, retain_graph=True)  # Jᵀ J v
        sigma = float(torch.linalg.vector_norm(jv))
        nw = torch.linalg.vector_norm(jtjv)
        if nw == 0:
            return 0.0
        v = (jtjv / nw).detach()
    return sigma
