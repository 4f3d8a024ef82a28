"""Self-attention dynamics on the sphere: tokens as interacting particles (docs/theory.md#sphere).

ẋ_i = P⊥_{x_i}( Σ_j w_ij V x_j ),  w_ij = e^{β⟨Qx_i, Kx_j⟩}/Z_i  (SA)  or  e^{β⟨Qx_i, Kx_j⟩}/n  (USA),
with P⊥_x y = y − ⟨x, y⟩x. Depth is time; the sphere models layer normalisation. The energy
E_β = (1/(2βn²)) Σ_ij e^{β⟨x_i, x_j⟩} never decreases along SA and USA with Q = K = V = I.
"""

from __future__ import annotations

import torch
from torch import Tensor

from control import solve
from control.errors import ValidationError, choice, number

VARIANTS = ("SA", "USA")


def project(x: Tensor, y: Tensor) -> Tensor:
    """P⊥_x y = y − ⟨x, y⟩ x, token-wise (tangent projection on the unit sphere)."""
    return y - (x * y).sum(-1, keepdim=True) * x


def self_attention_field(
    beta: float,
    variant: str = "SA",
    Q: Tensor | None = None,
    K: Tensor | None = None,
    V: Tensor | None = None,
):
    """The vector field f(t, x) of (SA)/(USA) for x ``[..., n, d]`` (docs/theory.md#sphere)."""
    beta = float(number("beta", beta))
    choice("variant", variant, VARIANTS)

    def f(t: Tensor, x: Tensor) -> Tensor:
        qx = x if Q is None else x @ Q.to(x).T
        kx = x if K is None else x @ K.to(x).T
        vx = x if V is None else x @ V.to(x).T
        s = beta * (qx @ kx.transpose(-1, -2))
        if variant == "SA":
            w = torch.softmax(s, -1)
        else:
            w = torch.exp(s) / x.shape[-2]
        return project(x, w @ vx)

    return f


def self_attention_flow(
    x0: Tensor,
    t: Tensor | list[float],
    *,
    beta: float,
    variant: str = "SA",
    Q: Tensor | None = None,
    K: Tensor | None = None,
    V: Tensor | None = None,
    method: str = "dopri5",
    rtol: float = 1e-9,
    atol: float = 1e-11,
) -> Tensor:
    """Token trajectory ``[len(t), ..., n, d]`` of the sphere dynamics from x0 (normalised onto S^{d-1})."""
    if not isinstance(x0, Tensor) or x0.dim() < 2:
        raise ValidationError("x0", "a tensor [..., n, d] of tokens", getattr(x0, "shape", x0))
    x0 = x0 / torch.linalg.vector_norm(x0, dim=-1, keepdim=True)
    f = self_attention_field(beta, variant, Q, K, V)
    return solve(f, x0, t, method=method, rtol=rtol, atol=atol).xs


def energy(x: Tensor, beta: float) -> Tensor:
    """E_β(X) = (1/(2βn²)) Σ_ij e^{β⟨x_i, x_j⟩} over ``[..., n, d]`` → ``[...]``; β = 0: (1/(2n²)) Σ⟨x_i, x_j⟩."""
    n = x.shape[-2]
    g = x @ x.transpose(-1, -2)
    if beta == 0:
        return g.sum((-1, -2)) / (2 * n * n)
    return torch.exp(beta * g).sum((-1, -2)) / (2 * beta * n * n)


def pairwise_inner(x: Tensor) -> Tensor:
    """Gram matrices ⟨x_i, x_j⟩: ``[..., n, d] -> [..., n, n]``."""
    return x @ x.transpose(-1, -2)
