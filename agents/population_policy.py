"""What a population game is made of: the law of the populations, ghost deviators and the linear policy.

Split from ``agents.population`` so that its deviation engine (``agents.deviations``) reads them without an
import cycle. See docs/populations.md#populations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from control.errors import number
from control.laws import legendre


@dataclass(frozen=True)
class Law:
    """The empirical law of each population in each replica: ``mean``/``var`` ``[R, K, d]``."""

    mean: Tensor
    var: Tensor
    sample: Tensor | None = (
        None  # [R, K, S, d]: a fixed sample of the agents (attention policies read it)
    )

    @staticmethod
    def of(x: Tensor, sample: Tensor | None = None) -> Law:
        """The law of states ``x [R, K, N, d]`` (population variance); ``sample``: agent indices [S]."""
        m = x.mean(2)
        return Law(
            m, ((x - m.unsqueeze(2)) ** 2).mean(2), None if sample is None else x[:, :, sample]
        )

    def detach(self) -> Law:
        s = None if self.sample is None else self.sample.detach()
        return Law(self.mean.detach(), self.var.detach(), s)


@dataclass(frozen=True)
class Ghosts:
    """M small deviating agents per population: initial states ``x0 [R, K, M, d]``, ``play(t, g, law)``, the
    seed of their own noise, and (with noise) the recorded flow they face."""

    x0: Tensor
    play: Callable[[Tensor, Tensor, Law], Tensor]
    seed: int = 1
    flow: list[Law] | None = None


class Policy(Protocol):
    """A population policy: actions ``[R, K, N, m]`` from states and the law; leaves per population."""

    kind: str
    samples: int
    m: int  # action dimension

    def __call__(self, t: Tensor, x: Tensor, law: Law, W: Tensor | None = None) -> Tensor: ...

    def parameters_of(self, k: int) -> list[Tensor]: ...

    def n_params(self) -> int: ...


Drift = Callable[[Tensor, Tensor, Tensor, Law], Tensor]
Running = Callable[[Tensor, Tensor, Tensor, Law], Tensor]
Terminal = Callable[[Tensor, Law], Tensor]


class LinearPopulationPolicy:
    """u_i = G_k(t) φ_i with φ_i = (x_i − m_k, m_1, …, m_K[, 1]) and G_k(t) = Σ_j P_j(s) W_kj (Legendre in s).

    ``order`` 0 is the constant law. One leaf ``W_k [order+1, m, f]`` per population; ``W`` may also be given
    per agent ``[K, N, order+1, m, f]`` (the exact own-gradient and single-agent deviations use that).
    """

    kind = "linear"
    samples = 0  # agents of the empirical measure the policy reads (none: it reads the means)

    def __init__(
        self,
        K: int,
        d: int,
        m: int,
        *,
        T: float,
        order: int = 4,
        offset: bool = False,
        init: float = 0.0,
        scale: float = 0.0,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ):
        self.K, self.d, self.m, self.T = K, d, m, float(T)
        self.order = int(number("order", order, low=0, integer=True))
        self.offset = bool(offset)
        self.f = d + K * d + int(self.offset)
        g = torch.Generator().manual_seed(int(seed))
        self.W = []
        for _ in range(K):
            w = torch.zeros(self.order + 1, m, self.f, dtype=dtype)
            w[0, :, :d] = init * torch.eye(m, d, dtype=dtype)  # a starting fluctuation gain
            if scale > 0:  # a seeded perturbation: seeds then change where learning starts
                w = w + scale * torch.randn(w.shape, generator=g, dtype=dtype)
            self.W.append(w.to(device).requires_grad_(True))

    def n_params(self) -> int:
        return sum(w.numel() for w in self.W)

    def parameters_of(self, k: int) -> list[Tensor]:
        return [self.W[k]]

    def features(self, x: Tensor, law: Law) -> Tensor:
        """φ ``[R, K, N, f]``."""
        R, K, N, _ = x.shape
        parts = [
            x - law.mean.unsqueeze(2),
            law.mean.reshape(R, 1, 1, -1).expand(R, K, N, K * self.d),
        ]
        if self.offset:
            parts.append(x.new_ones(R, K, N, 1))
        return torch.cat(parts, -1)

    def basis(self, t: Tensor) -> Tensor:
        s = 2.0 * t / self.T - 1.0
        one = torch.ones_like(s).reshape(1)
        return one if self.order == 0 else torch.cat([one, legendre(s, self.order).reshape(-1)])

    def __call__(self, t: Tensor, x: Tensor, law: Law, W: Tensor | None = None) -> Tensor:
        """Actions ``[R, K, N, m]``; ``W`` per agent ``[K, N, order+1, m, f]`` replaces the shared gains."""
        phi = self.features(x, law)
        b = self.basis(t).to(x.dtype)
        if W is None:
            G = torch.einsum("j,kjmf->kmf", b, torch.stack(self.W))
            return torch.einsum("kmf,rknf->rknm", G, phi)
        G = torch.einsum("j,knjmf->knmf", b, W)
        return torch.einsum("knmf,rknf->rknm", G, phi)


def sample_normal(
    R: int, K: int, N: int, d: int, mean, std, *, seed: int, dtype=torch.float64, device="cpu"
) -> Tensor:
    """Seeded i.i.d. initial states ``[R, K, N, d]`` with per-population mean and std (broadcast)."""
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(R, K, N, d, generator=g, dtype=dtype)
    m = (
        torch.as_tensor(np.asarray(mean, dtype=float), dtype=dtype).reshape(-1, 1, 1)[:K]
        if np.ndim(mean)
        else mean
    )
    s = (
        torch.as_tensor(np.asarray(std, dtype=float), dtype=dtype).reshape(-1, 1, 1)[:K]
        if np.ndim(std)
        else std
    )
    return (m + s * z).to(device)
