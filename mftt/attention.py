"""Attention kernels O_att (docs/theory.md#attention): registry ``ATTENTION`` of pure functions.

Each kernel is ``kernel(q, k, v, *, mask=None, scale=None, **kw) -> (out, weights)`` with q, k ``[..., D, d_k]``,
v ``[..., D, d_v]``, ``scale`` defaulting to 1/√d_k (the seed's ``K.shape ** 0.5`` fixed to d_k, docs/theory.md#attention) and
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
from control.laws import WEIGHT_LAWS

from .weights import affine, agent_chunks, blockable, gemm, weight_law


def causal_mask(D: int, device: torch.device | str | None = None) -> Tensor:
    """Lower-triangular boolean ``[D, D]``: token i sees tokens j ≤ i (the seed's Σ_{j≤i}, docs/theory.md#attention)."""
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
    """Boltzmann–Gibbs (softmax) attention, docs/theory.md#attention."""
    if fast:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
        return out, None
    w = _softmax(_scores(q, k, scale), mask)
    return w @ v, w


def sigmoid(
    q: Tensor, k: Tensor, v: Tensor, *, mask: Tensor | None = None, scale=None, fast=False
) -> tuple[Tensor, Tensor]:
    """Sigmoid attention e^s/(D + e^s) = σ(s − ln D) (docs/theory.md#attention); D = number of key tokens."""
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
    """Difference attention softmax(s⁽¹⁾) − λ softmax(s⁽²⁾) (docs/theory.md#attention); q, k ``[..., 2, D, d_k]``.

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
# floats of intermediates (q, k, v, heads' outputs, output) an agent chunk of the fused path may touch per
# CPU thread: 2 MiB (measured best at A = 128, D = 128, d = 64; D = 32 runs in two or three chunks)
QKV_CHUNK_FLOATS = 1 << 19


class MultiHeadAttention(torch.nn.Module):
    """Multi-head self-attention whose Q, K, V, W_h (and λ) are control weight laws (docs/theory.md#attention).

    ũ_i = c_H Σ_h W_h Σ_j w^h_ij V_h u_j with c_H = 1/√H when ``head_scale="seed"`` (the seed's factor) and 1
    for ``"standard"``. ``forward(t, u, mu)`` reads the laws at depth time t on the normalised tokens u.

    Token-shared laws (``constant``, ``time``) hold Q, K, V as one law ``QKV`` of shape (d, 2·P·H·d_k + H·d_v),
    the columns [W_Q | W_K | W_V] (P = 2 query/key pairs for ``difference``, else 1): entry-wise the same laws,
    read by one product. A state dict with separate ``Q``/``K``/``V`` entries still loads. Per-token laws
    (``feedback``, ``meanfield``) and ``fuse=False`` keep three laws, each with its own low-rank feedback.
    Without an autograd graph, per-agent weights (``batch=(A,)``) run cache-blocked over agent chunks.
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
        fuse: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        if kernel not in ATTENTION:
            raise ValidationError("attention", f"one of {', '.join(ATTENTION)}", kernel)
        if head_scale not in ("standard", "seed"):
            raise ValidationError("head_scale", "one of standard, seed", head_scale)
        self.d_model, self.heads, self.d_k, self.d_v = d_model, heads, d_k, d_v
        self.kernel, self.causal, self.head_scale = kernel, causal, head_scale
        self.batch = tuple(batch)
        pairs = 2 if kernel == "difference" else 1
        nq, nv = pairs * heads * d_k, heads * d_v
        self._cols = (nq, nq, nv)
        kw = dict(options=law_options or {}, batch=batch, T=T, device=device, dtype=dtype)
        # token-shared laws: Q, K, V as one law of shape (d, 2nq + nv) = [W_Q | W_K | W_V], one product
        self.fused = fuse and law in WEIGHT_LAWS and not WEIGHT_LAWS[law].per_particle
        if self.fused:
            self.QKV = weight_law(
                law, (d_model, sum(self._cols)), d_model, init=self._qkv_init(device, dtype), **kw
            )
        else:  # per-token (feedback) laws keep one low-rank feedback per weight
            self.Q = weight_law(law, (d_model, nq), d_model, **kw)
            self.K = weight_law(law, (d_model, nq), d_model, **kw)
            self.V = weight_law(law, (d_model, nv), d_model, **kw)
        self.W = weight_law(law, (heads * d_v, d_model), d_model, **kw)
        self.lam = weight_law(law, (1,), d_model, init=0.5, **kw) if pairs == 2 else None
        self.register_load_state_dict_pre_hook(self._fuse_old_layout)

    def _qkv_init(self, device, dtype) -> Tensor:
        """[W_Q | W_K | W_V] drawn as three separate laws would be (same random stream, scale 1/√d)."""
        scale = 1.0 / math.sqrt(self.d_model)
        parts = [
            torch.randn(self.batch + (self.d_model, n), dtype=dtype).to(device) * scale
            for n in self._cols
        ]
        return torch.cat(parts, -1)

    @staticmethod
    def _fuse_old_layout(module, state_dict, prefix, *args) -> None:
        """Load-state-dict pre-hook: a state with separate ``Q``/``K``/``V`` laws (the layout before the fused
        ``QKV``) loads into a fused module, each parameter concatenated along the columns."""
        names = [prefix + c + "." for c in "QKV"]
        if not module.fused or any(k.startswith(prefix + "QKV.") for k in state_dict):
            return
        for n in [k[len(names[0]) :] for k in list(state_dict) if k.startswith(names[0])]:
            if all(c + n in state_dict for c in names):
                state_dict[prefix + "QKV." + n] = torch.cat(
                    [state_dict.pop(c + n) for c in names], -1
                )

    def projections(self, t, u: Tensor, mu=None) -> tuple[Tensor, Tensor, Tensor]:
        """(u W_Q, u W_K, u W_V) as ``[..., D, n]`` tensors: column views of one product for fused laws."""
        if self.fused:
            q, k, v = affine(self.QKV, None, t, u, u, mu).split(self._cols, -1)
        else:
            q, k, v = (affine(law, None, t, u, u, mu) for law in (self.Q, self.K, self.V))
        return q, k, v

    def _split(self, y: Tensor, pairs: int, dh: int) -> Tensor:
        """``[..., D, P·H·dh] -> [..., H, D, dh]`` (P = 1) or ``[..., H, 2, D, dh]`` (P = 2): a view, no copy."""
        y = y.unflatten(-1, (pairs, self.heads, dh))  # [..., D, P, H, dh]
        n = y.dim() - 4
        y = y.permute(*range(n), n + 2, n + 1, n, n + 3)  # [..., H, P, D, dh]
        return y if pairs == 2 else y.squeeze(-3)

    def _attend(
        self, q: Tensor, k: Tensor, v: Tensor, mask, fast: bool, kw: dict
    ) -> tuple[Tensor, Tensor | None]:
        """Projected tokens ``[..., D, n]`` → (Σ_j w^h_ij v^h_j with heads side by side ``[..., D, H·d_v]``, w)."""
        pairs = 2 if self.kernel == "difference" else 1
        q, k = self._split(q, pairs, self.d_k), self._split(k, pairs, self.d_k)
        out, w = ATTENTION[self.kernel](
            q, k, self._split(v, 1, self.d_v), mask=mask, fast=fast, **kw
        )
        return out.transpose(-3, -2).flatten(-2), w  # [..., D, H·d_v]

    def forward(
        self, t, u: Tensor, mu=None, *, need_weights: bool = False, fast: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """u ``[..., D, d_model]`` → (ũ ``[..., D, d_model]``, weights ``[..., H, D, D]`` or None)."""
        mask = causal_mask(u.shape[-2], u.device) if self.causal else None
        kw = {}
        if self.lam is not None:
            kw["lam"] = self.lam(t, u, mu).unsqueeze(-3)  # [..., N|1, 1] -> [..., 1, N|1, 1]
        fast = fast and not need_weights and self.kernel in FAST_PATH
        if not self.fused:  # u_i θ(t, u_i, μ) per law: no weight matrix per token (feedback laws)
            out, w = self._attend(*self.projections(t, u, mu), mask, fast, kw)
            out = affine(self.W, None, t, u, out, mu)
        else:  # token-shared laws: one [W_Q | W_K | W_V] product per sample (per agent)
            Wqkv, Wo = self.QKV(t, u, mu).squeeze(-3), self.W(t, u, mu).squeeze(-3)
            chunks = self._chunks(u, Wqkv, Wo, kw) if fast else None
            if chunks is None:
                q, k, v = gemm(u, Wqkv).split(self._cols, -1)
                out, w = self._attend(q, k, v, mask, fast, kw)
                out = gemm(out, Wo)
            else:  # cache-blocked over agent chunks: the same products, chunk by chunk
                out, w = u.new_empty(u.shape[:-1] + (Wo.shape[-1],)), None
                for s in chunks:
                    kws = {n: x[s] if x.dim() == u.dim() + 1 else x for n, x in kw.items()}
                    q, k, v = torch.bmm(u[s], Wqkv[s]).split(self._cols, -1)
                    torch.bmm(self._attend(q, k, v, mask, True, kws)[0], Wo[s], out=out[s])
        if self.head_scale == "seed":
            out = out / math.sqrt(self.heads)
        return out, w

    def _chunks(self, u: Tensor, Wqkv: Tensor, Wo: Tensor, kw: dict) -> list[slice] | None:
        """Agent chunks for per-agent weights ``[A, d, n]`` and tokens ``[A, D, d]`` with no autograd graph
        on the CPU (``blockable``), each touching about ``QKV_CHUNK_FLOATS`` floats; None: one pass over all agents."""
        if Wqkv.dim() != 3 or u.dim() != 3 or not blockable(u, Wqkv, Wo, *kw.values()):
            return None
        per_agent = u.shape[-2] * (Wqkv.shape[-1] + Wo.shape[-2] + Wo.shape[-1])
        return agent_chunks(u.shape[0], per_agent, target=QKV_CHUNK_FLOATS)
