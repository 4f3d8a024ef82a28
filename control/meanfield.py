"""Population statistics over the particle axis (-2) of ``[..., N, d]``: the mean field μ (docs/theory.md#mean-field).

Everything is differentiable, so autograd supplies the ∂μ terms of the mean-field-type adjoint.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import ValidationError


def _weights(x: Tensor, masses: Tensor | None) -> Tensor:
    if masses is None:
        n = x.shape[-2]
        return x.new_full(x.shape[:-2] + (n, 1), 1.0 / n)
    w = masses.to(x)
    if w.shape[-1] != x.shape[-2]:
        raise ValidationError("masses", f"length {x.shape[-2]} (particles)", tuple(w.shape))
    w = w / w.sum(-1, keepdim=True)
    return w.unsqueeze(-1)


def mean(x: Tensor, masses: Tensor | None = None) -> Tensor:
    """E[x] over particles: ``[..., N, d] -> [..., d]``."""
    if masses is None:
        return x.mean(-2)
    return (_weights(x, masses) * x).sum(-2)


def covariance(x: Tensor, masses: Tensor | None = None) -> Tensor:
    """Cov[x] = E[(x - Ex)(x - Ex)ᵀ] (population, biased): ``[..., N, d] -> [..., d, d]``."""
    w = _weights(x, masses)
    y = x - (w * x).sum(-2, keepdim=True)
    return (w * y).transpose(-1, -2) @ y


def variance(x: Tensor, masses: Tensor | None = None) -> Tensor:
    """Diagonal of the covariance: ``[..., N, d] -> [..., d]``."""
    w = _weights(x, masses)
    y = x - (w * x).sum(-2, keepdim=True)
    return (w * y * y).sum(-2)


@dataclass(frozen=True)
class MeanField:
    """The statistics of the law of x that the weight laws read: mean and covariance."""

    mean: Tensor
    cov: Tensor

    @classmethod
    def of(cls, x: Tensor, masses: Tensor | None = None) -> MeanField:
        return cls(mean(x, masses), covariance(x, masses))

    @property
    def var(self) -> Tensor:
        return torch.diagonal(self.cov, dim1=-2, dim2=-1)
