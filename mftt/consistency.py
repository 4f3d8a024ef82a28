"""The consistency loop p_{k+1} = p_k + γ_k (S(G(p_k)) − p_k) (docs/theory.md#fixed-points): generator G, summariser S.

γ = 1 is the plain loop (Picard), γ ∈ (0, 1) or ``"harmonic"`` the Krasnoselskii–Mann average. The result
reports the residuals ‖T p_k − p_k‖, whether a fixed point was reached, the distance of every prompt to the first
one ("is the output still relevant to the initial input?") and a Lipschitz estimate of T = S∘G at the end
(< 1: a contraction, whose fixed point forgets p₀).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from control.errors import ValidationError
from control.fixed_point import km_iterate, lipschitz_estimate


@dataclass(frozen=True)
class ConsistencyResult:
    """Prompts p_0..p_K, residuals, convergence, ‖p_k − p_0‖ and Lip(T) at the last prompt."""

    prompts: Tensor
    residuals: list[float]
    converged: bool
    steps: int
    distance_to_prompt: list[float]
    lipschitz: float

    @property
    def fixed_point(self) -> Tensor:
        return self.prompts[-1]


def consistency_loop(
    generator: Callable[[Tensor], Tensor],
    summarizer: Callable[[Tensor], Tensor] | None,
    p0: Tensor,
    *,
    steps: int = 50,
    gamma: float | str = 1.0,
    tol: float = 1e-8,
    lipschitz_iters: int = 30,
) -> ConsistencyResult:
    """Iterate T = S∘G from the prompt p0, plain (γ = 1) or KM-averaged (docs/theory.md#fixed-points)."""
    if not isinstance(p0, Tensor):
        raise ValidationError("p0", "a torch.Tensor", type(p0).__name__)
    S = summarizer if summarizer is not None else (lambda y: y)

    def T(p: Tensor) -> Tensor:
        return S(generator(p))

    seen: list[Tensor] = []

    def recorded(p: Tensor) -> Tensor:
        seen.append(p.detach())
        return T(p)

    with torch.no_grad():
        res = km_iterate(recorded, p0, steps=steps, gamma=gamma, tol=tol)
    prompts = torch.stack(seen)
    dist = [float(torch.linalg.vector_norm(p - p0)) for p in prompts]
    lip = lipschitz_estimate(T, res.y, iters=lipschitz_iters)
    return ConsistencyResult(prompts, res.residuals, res.converged, res.steps, dist, lip)
