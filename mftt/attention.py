"""Attention kernels O_att (spec §A.4, §A.8): registry ``ATTENTION`` of pure functions.

Each kernel is ``kernel(q, k, v, *, mask=None, scale=None, **kw) -> (out, weights)`` with q, k ``[..., D, d_k]``,
v ``[..., D, d_v]``, ``scale`` defaulting to 1/√d_k (the seed's ``K.shape ** 0.5`` fixed to d_k, spec §A.4) and
``mask`` a boolean ``[D, D]`` (True = may attend, e.g. ``causal_mask(D)``). ``fast=True`` returns
``(out, None)`` through ``torch.nn.functional.scaled_dot_product_attention`` where the kernel has such a path;
the plain reference path always stands beside it.

* ``boltzmann``   w_ij = softmax_j(s_ij)                              rows sum to 1
* ``sigmoid``     w_ij = e^{s_ij}/(D + e^{s_ij}) = σ(s_ij − ln D)     rows sum below 1
* ``difference``  w = softmax(s⁽¹⁾) − λ softmax(s⁽²⁾)                  rows sum to 1 − λ;
  q and k carry the two query/key pairs on axis −3: ``[..., 2, D, d_k]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from control.errors import ValidationError


def causal_mask(D: int, device: torch.device | str | None = None) -> Tensor:
    """Lower-triangular boolean ``[D, D]``: token i sees tokens j ≤ i (the seed's Σ_{j≤i}, spec §A.8)."""
    return torch.ones(D, D, dtype=torch.bool, device=device).tril()


def _scores(q: Tensor, k: Tensor, scale: float | None) -> Tensor:
    s = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return (q @ k.transpose(-1, -2)) * s


def _softmax(s: Tensor, mask: Tensor | None) -> Tensor:
    if mask is not None:
        s = s.masked_fill(~mask, float("-inf"))
    return torch.softmax(s, -1)


def boltzmann(
    q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None = None, scale=None, fast=False
) -> tuple[Tensor, Tensor | None]:
    """Boltzmann–Gibbs (softmax) attention, spec §A.4/§A.8."""
    if fast:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
        return out, None
    w = _softmax(_scores(q, k, scale), mask)
    return w @ v, w


def sigmoid(
    q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None = None, scale=None, fast=False
) -> tuple[Tensor, Tensor]:
    """Sigmoid attention e^s/(D + e^s) = σ(s − ln D) (spec §A.8, slide 55); D = number of key tokens."""
    D = k.shape[-2]
    w = torch.sigmoid(_scores(q, k, scale) - math.log(D))
    if mask is not None:
        w = w.masked_fill(~mask, 0.0)
    return w @ v, w


def difference(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    scale=None,
    lam: Tensor | float = 0.5,
    fast=False,
) -> tuple[Tensor, Tensor | None]:
    """Difference attention softmax(s⁽¹⁾) − λ softmax(s⁽²⁾) (spec §A.8, slide 59); q, k ``[..., 2, D, d_k]``.

    ``lam`` is a scalar or a tensor broadcastable to the weights' rows ``[..., D, 1]`` (per query token).
    """
    if q.shape[-3] != 2 or k.shape[-3] != 2:
        raise ValidationError("q, k", "two query/key pairs on axis -3: [..., 2, D, d_k]", q.shape)
    lam = torch.as_tensor(lam, dtype=q.dtype, device=q.device)
    if fast:
        vv = v.unsqueeze(-3).expand(v.shape[:-2] + (2,) + v.shape[-2:])
        o = F.scaled_dot_product_attention(q, k, vv, attn_mask=mask, scale=scale)
        return o[..., 0, :, :] - lam * o[..., 1, :, :], None
    a = _softmax(_scores(q, k, scale), mask)
    w = a[..., 0, :, :] - lam * a[..., 1, :, :]
    return w @ v, w


ATTENTION: dict[str, Callable[..., tuple[Tensor, Tensor | None]]] = {
    "boltzmann": boltzmann,
    "sigmoid": sigmoid,
    "difference": difference,
}
FAST_PATH: frozenset[str] = frozenset({"boltzmann", "difference"})


class MultiHeadAttention(torch.nn.Module):
    """Multi-head self-attention whose Q, K, V, W_h (and λ) are control weight laws (spec §A.8).

    ũ_i = c_H Σ_h W_h Σ_j w^h_ij V_h u_j with c_H = 1/√H when ``head_scale="seed"`` (the seed's factor) and 1
    for ``"standard"``. ``forward(t, u, mu)`` reads the laws at depth time t on the normalised tokens u.
    """

    def __init__(
        self,
        d_model: int,
        heads: int,
        d_k: int,
        d_v: int,
        *,
        kernel: str = "boltzmann",
        law: str = "constant",
        law_options: dict | None = None,
        causal: bool = False,
        head_scale: str = "standard",
        T: float = 1.0,
        batch: tuple[int, ...] = (),
        device=None,
        dtype=None,
    ):
        super().__init__()
        from .weights import weight_law

        if kernel not in ATTENTION:
            raise ValidationError("attention", f"one of {', '.join(ATTENTION)}", kernel)
        if head_scale not in ("standard", "seed"):
            raise ValidationError("head_scale", "one of standard, seed", head_scale)
        self.d_model, self.heads, self.d_k, self.d_v = d_model, heads, d_k, d_v
        self.kernel, self.causal, self.head_scale = kernel, causal, head_scale
        self.batch = tuple(batch)
        pairs = 2 if kernel == "difference" else 1
        kw = dict(options=law_options or {}, batch=batch, T=T, device=device, dtype=dtype)
        self.Q = weight_law(law, (d_model, pairs * heads * d_k), d_model, **kw)
        self.K = weight_law(law, (d_model, pairs * heads * d_k), d_model, **kw)
        self.V = weight_law(law, (d_model, heads * d_v), d_model, **kw)
        self.W = weight_law(law, (heads * d_v, d_model), d_model, **kw)
        self.lam = weight_law(law, (1,), d_model, init=0.5, **kw) if pairs == 2 else None

    def _split(self, y: Tensor, pairs: int, dh: int) -> Tensor:
        """``[..., D, P·H·dh] -> [..., H, D, dh]`` (P = 1) or ``[..., H, 2, D, dh]`` (P = 2)."""
        y = y.reshape(y.shape[:-1] + (pairs, self.heads, dh))  # [..., D, P, H, dh]
        n = y.dim() - 4
        y = y.permute(*range(n), n + 2, n + 1, n, n + 3)  # [..., H, P, D, dh]
        return y if pairs == 2 else y.squeeze(-3)

    def forward(
        self, t, u: Tensor, mu=None, *, need_weights: bool = False, fast: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """u ``[..., D, d_model]`` → (ũ ``[..., D, d_model]``, weights ``[..., H, D, D]`` or None)."""
        pairs = 2 if self.kernel == "difference" else 1
        # law.apply_to: u_i θ(t, u_i, μ) without one weight matrix per token for feedback laws
        q = self._split(self.Q.apply_to(t, u, u, mu), pairs, self.d_k)
        k = self._split(self.K.apply_to(t, u, u, mu), pairs, self.d_k)
        v = self._split(self.V.apply_to(t, u, u, mu), 1, self.d_v)
        D = u.shape[-2]
        mask = causal_mask(D, u.device) if self.causal else None
        kw = {}
        if self.lam is not None:
            kw["lam"] = self.lam(t, u, mu).unsqueeze(-3)  # [..., N|1, 1] -> [..., 1, N|1, 1]
        use_fast = fast and not need_weights and self.kernel in FAST_PATH
        out, w = ATTENTION[self.kernel](q, k, v, mask=mask, fast=use_fast, **kw)
        out = out.transpose(-3, -2).flatten(-2)  # [..., D, H·d_v]
        out = self.W.apply_to(t, u, out, mu)
        if self.head_scale == "seed":
            out = out / math.sqrt(self.heads)
        return out, w
