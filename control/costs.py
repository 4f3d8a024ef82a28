"""Running/terminal costs and risk measures over a population or batch axis (docs/theory.md#training, docs/theory.md#mean-field, docs/theory.md#lq-control).

The LQ mean-field-type running cost per particle is xᵀQx + ExᵀQ̄Ex + uᵀRu + EuᵀR̄Eu; its population mean is
the cost of docs/theory.md#lq-control. ``risk(name, losses)`` turns a sample of losses into a (risk-aware) scalar:
``mean``, ``mean_variance`` (E + κ Var), ``entropic`` ((1/θ) log E e^{θL}), ``cvar`` (mean of the worst 1 − α).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .errors import ValidationError, choice, no_unknown, number


def quadratic(x: Tensor, M: Tensor) -> Tensor:
    """xᵀ M x over the last axis: ``[..., d], [d, d] -> [...]``."""
    return torch.einsum("...i,ij,...j->...", x, M.to(x), x)


def lq_running(x: Tensor, u: Tensor, Q, Qbar, R, Rbar=None) -> Tensor:
    """Per-particle LQ mean-field-type running cost (docs/theory.md#lq-control): ``x [..., N, d], u [..., N, m] -> [..., N]``."""
    m, w = x.mean(-2, keepdim=True), u.mean(-2, keepdim=True)
    c = quadratic(x, Q) + quadratic(m, Qbar) + quadratic(u, R)
    if Rbar is not None:
        c = c + quadratic(w, Rbar)
    return c


def lq_terminal(x: Tensor, QT, QTbar) -> Tensor:
    """Per-particle terminal cost x_Tᵀ Q_T x_T + Ex_Tᵀ Q̄_T Ex_T: ``[..., N, d] -> [..., N]``."""
    return quadratic(x, QT) + quadratic(x.mean(-2, keepdim=True), QTbar)


def _mean(losses: Tensor, dim: int) -> Tensor:
    return losses.mean(dim)


def _mean_variance(losses: Tensor, dim: int, kappa: float = 1.0) -> Tensor:
    kappa = number("kappa", kappa)
    return losses.mean(dim) + kappa * losses.var(dim, unbiased=False)


def _entropic(losses: Tensor, dim: int, theta: float = 1.0) -> Tensor:
    theta = number("theta", theta)
    if theta == 0:
        raise ValidationError("theta", "a nonzero risk parameter (theta -> 0 is the mean)", theta)
    n = losses.shape[dim]
    return (torch.logsumexp(theta * losses, dim) - math.log(n)) / theta


def _cvar(losses: Tensor, dim: int, alpha: float = 0.95) -> Tensor:
    """CVaR_α: the mean of the worst (1 − α) fraction, with a fractional weight on the boundary sample."""
    alpha = number("alpha", alpha, low=0.0, high=1.0)
    if alpha >= 1.0:
        raise ValidationError("alpha", "a level in [0, 1)", alpha)
    n = losses.shape[dim]
    tail = (1.0 - alpha) * n  # number of samples in the tail (may be fractional)
    srt = torch.sort(losses, dim=dim, descending=True).values
    w = (tail - torch.arange(n, dtype=losses.dtype, device=losses.device)).clamp(0.0, 1.0)
    shape = [1] * losses.dim()
    shape[dim] = n
    return (srt * w.reshape(shape)).sum(dim) / tail


RISKS: dict[str, Callable[..., Tensor]] = {
    "mean": _mean,
    "mean_variance": _mean_variance,
    "entropic": _entropic,
    "cvar": _cvar,
}
RISK_PARAMS = {"mean": set(), "mean_variance": {"kappa"}, "entropic": {"theta"}, "cvar": {"alpha"}}


def risk(name: str, losses: Tensor, dim: int = -1, **param) -> Tensor:
    """Risk measure ``name`` of the sample ``losses`` along ``dim`` (docs/theory.md#training: mean-field-type losses)."""
    choice("risk", name, RISKS)
    no_unknown(f"risk[{name}]", param, RISK_PARAMS[name])
    if not isinstance(losses, Tensor) or losses.dim() == 0:
        raise ValidationError("losses", "a tensor with a sample axis", type(losses).__name__)
    return RISKS[name](losses, dim, **param)
