"""Token normalisations O_nn (docs/theory.md#norms): registry ``NORMS[name](d, **kw)``.

``batch``, ``layer`` and ``rms`` follow the seed code with its defects fixed (β starts at zero, ``super()``,
no shape change on 2-D input). ``center`` is LayerNorm without affine part. ``rmse``, ``ermse``, ``soft`` and
``capsule`` are bijections of R^d onto the open unit ball: they provide ``.inverse(y)`` and ``.lipschitz``.

``batch=(A,)`` gives each of A agents its own affine parameters (input ``[..., A, D, d]``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from control.errors import ValidationError, number


def _norm(x: Tensor) -> Tensor:
    return torch.linalg.vector_norm(x, dim=-1, keepdim=True)


class _Affine(nn.Module):
    """γ (and optionally β) per feature, one set per agent when ``batch=(A,)``."""

    def __init__(self, d: int, *, beta: bool, batch: Sequence[int], device=None, dtype=None):
        super().__init__()
        self.d = int(number("d", d, low=1, integer=True))
        self.batch = tuple(int(b) for b in batch)
        shape = self.batch + (self.d,)
        self.gamma = nn.Parameter(torch.ones(shape, device=device, dtype=dtype))
        # seed defect A.5.1 fixed: β starts at zero so the map is identity-affine at init
        self.beta = nn.Parameter(torch.zeros(shape, device=device, dtype=dtype)) if beta else None

    def _p(self, p: Tensor) -> Tensor:
        """``[*batch, d] -> [*batch, 1, d]`` so it broadcasts over ``[..., A, D, d]`` (plain ``[d]`` otherwise)."""
        return p.unsqueeze(-2) if self.batch else p

    def affine(self, y: Tensor) -> Tensor:
        y = (
            self._p(self.gamma) * y
        )  # seed defect A.5.3 fixed: no unsqueeze, 2-D input keeps its shape
        return y + self._p(self.beta) if self.beta is not None else y


class BatchNorm(_Affine):
    """Seed BatchNorm: statistics over every axis but the features (and the agent axis); leaks future tokens."""

    causal_safe = False

    def __init__(self, d: int, *, eps: float = 1e-5, batch: Sequence[int] = (), **kw):
        super().__init__(d, beta=True, batch=batch, **kw)
        self.eps = float(number("eps", eps, low=0.0))

    def forward(self, x: Tensor) -> Tensor:
        if self.batch:  # pool over everything except the agent axis -3 and the features
            dims = [i for i in range(x.dim() - 1) if i != x.dim() - 3]
        else:
            dims = list(range(x.dim() - 1))
        var, mean = torch.var_mean(x, dim=dims, keepdim=True, correction=0)
        return self.affine((x - mean) / torch.sqrt(var + self.eps))


class LayerNorm(_Affine):
    """Seed LayerNorm (docs/theory.md#norms): per-token mean/variance over features, affine γ, β (β = 0 at init)."""

    def __init__(self, d: int, *, eps: float = 1e-5, batch: Sequence[int] = (), **kw):
        super().__init__(d, beta=True, batch=batch, **kw)
        self.eps = float(number("eps", eps, low=0.0))

    def forward(self, x: Tensor) -> Tensor:
        var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
        return self.affine((x - mean) / torch.sqrt(var + self.eps))


class RMSNorm(_Affine):
    """Seed RMSNorm (docs/theory.md#norms): γ·x/√(mean(x²)+ε)."""

    def __init__(self, d: int, *, eps: float = 1e-5, batch: Sequence[int] = (), **kw):
        super().__init__(d, beta=False, batch=batch, **kw)
        self.eps = float(number("eps", eps, low=0.0))

    def forward(self, x: Tensor) -> Tensor:
        return self.affine(x / torch.sqrt((x * x).mean(-1, keepdim=True) + self.eps))


class _Tokenwise(nn.Module):
    """A parameter-free token-wise map (docs/theory.md#norms); ``batch`` is accepted and ignored (nothing to stack)."""

    causal_safe = True
    lipschitz: float = math.inf

    def __init__(
        self, d: int, *, eps: float = 1.0, batch: Sequence[int] = (), device=None, dtype=None
    ):
        super().__init__()
        self.d = int(number("d", d, low=1, integer=True))
        self.eps = float(number("eps", eps, low=0.0, strict_low=True))

    def extra_repr(self) -> str:
        return f"d={self.d}, eps={self.eps}"


class CenterNorm(_Tokenwise):
    """√d (x − x̄1)/√(ε + ‖x − x̄1‖²): LayerNorm without affine part (docs/theory.md#norms); loses the mean."""

    def __init__(self, d: int, *, eps: float = 1e-5, **kw):
        super().__init__(d, eps=eps, **kw)

    def forward(self, x: Tensor) -> Tensor:
        c = x - x.mean(-1, keepdim=True)
        return math.sqrt(self.d) * c / torch.sqrt(self.eps + (c * c).sum(-1, keepdim=True))


class RMSeNorm(_Tokenwise):
    """y = x/√(ε + ‖x‖²): bijection onto the open unit ball, Lipschitz 1/√ε (docs/theory.md#norms)."""

    def __init__(self, d: int, *, eps: float = 1.0, **kw):
        super().__init__(d, eps=eps, **kw)
        self.lipschitz = 1.0 / math.sqrt(self.eps)

    def forward(self, x: Tensor) -> Tensor:
        return x / torch.sqrt(self.eps + (x * x).sum(-1, keepdim=True))

    def inverse(self, y: Tensor) -> Tensor:
        return math.sqrt(self.eps) * y / torch.sqrt(1 - (y * y).sum(-1, keepdim=True))


class ERMSNorm(_Tokenwise):
    """y = x/(ε + ‖x‖): bijection onto the open unit ball, Lipschitz 1/ε (docs/theory.md#norms)."""

    def __init__(self, d: int, *, eps: float = 1.0, **kw):
        super().__init__(d, eps=eps, **kw)
        self.lipschitz = 1.0 / self.eps

    def forward(self, x: Tensor) -> Tensor:
        return x / (self.eps + _norm(x))

    def inverse(self, y: Tensor) -> Tensor:
        return self.eps * y / (1 - _norm(y))


class SoftNorm(ERMSNorm):
    """y = x/(1 + ‖x‖): the seed transformers' normalisation (docs/theory.md#norms, docs/theory.md#block); 1-Lipschitz, inverse y/(1−‖y‖)."""

    def __init__(self, d: int, **kw):
        kw.pop("eps", None)
        super().__init__(d, eps=1.0, **kw)


class CapsuleNorm(_Tokenwise):
    """Squash y = ‖x‖²/(1+‖x‖²)·x/‖x‖ = ‖x‖x/(1+‖x‖²): onto the open unit ball, Lipschitz 3√3/8 (docs/theory.md#norms)."""

    lipschitz = 3 * math.sqrt(3) / 8

    def forward(self, x: Tensor) -> Tensor:
        # written as ‖x‖ x /(1+‖x‖²): equal, and smooth at x = 0
        return _norm(x) * x / (1 + (x * x).sum(-1, keepdim=True))

    def inverse(self, y: Tensor) -> Tensor:
        r = _norm(y)
        return torch.sqrt(1 / (r * (1 - r))) * y  # √(r/(1−r))·y/r


NORMS: dict[str, type[nn.Module]] = {
    "batch": BatchNorm,
    "layer": LayerNorm,
    "rms": RMSNorm,
    "center": CenterNorm,
    "rmse": RMSeNorm,
    "ermse": ERMSNorm,
    "soft": SoftNorm,
    "capsule": CapsuleNorm,
}
BALL_NORMS: tuple[str, ...] = ("rmse", "ermse", "soft", "capsule")


def make_norm(name: str, d: int, **kw) -> nn.Module:
    """``NORMS[name](d, **kw)`` with a one-line error naming the allowed norms."""
    if name not in NORMS:
        raise ValidationError("norm", f"one of {', '.join(NORMS)}", name)
    return NORMS[name](d, **kw)
