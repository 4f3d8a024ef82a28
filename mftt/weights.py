"""Transformer weights as control laws θ(t, x_i, μ) (docs/theory.md#block, docs/theory.md#weight-laws): build them and apply them per token.

A per-particle law returns one matrix per token ``[..., D, a, b]``; a shared one ``[..., 1, a, b]``. Both are
applied by one broadcast matmul, never by a loop over tokens. ``agent_chunks`` cuts a stack of A agents into
groups whose intermediates fit the L2 cache (cache blocking of a gradient-free forward; same products).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from control import make_law
from control.laws import WeightLaw


def weight_law(
    name: str,
    shape: Sequence[int],
    d_state: int,
    *,
    options: dict,
    batch: Sequence[int],
    T: float,
    init: Tensor | float | None = None,
    init_scale: float | None = None,
    device=None,
    dtype=None,
) -> WeightLaw:
    """``control.make_law`` for one transformer parameter, its particles being the d_state-dimensional tokens."""
    kw = dict(options)
    if init is not None:
        kw["init"] = torch.as_tensor(init, device=device, dtype=dtype or torch.get_default_dtype())
    if init_scale is not None:
        kw["init_scale"] = init_scale
    return make_law(
        name, tuple(shape), d_state, batch=tuple(batch), T=T, device=device, dtype=dtype, **kw
    )


def gemm(y: Tensor, w: Tensor, bias: Tensor | None = None) -> Tensor:
    """y w (+ bias) for y ``[*lead, *batch, N, a]``, w ``[*batch, a, b]``, bias broadcastable to the result.

    One fused BLAS call where the layout allows it: ``addmm`` when w is a single matrix (all tokens of all
    samples are one product of lead·N rows), ``baddbmm`` for a stack of per-agent matrices with no extra leading
    axes; otherwise a broadcast matmul and an in-place bias add. The result is always a fresh tensor.
    """
    a, b = w.shape[-2:]
    if w.dim() == 2:
        y2 = y.reshape(-1, a)
        if bias is not None and bias.shape[:-1].numel() == 1:
            return torch.addmm(bias.reshape(b), y2, w).view(y.shape[:-1] + (b,))
        out = (y2 @ w).view(y.shape[:-1] + (b,))
    elif w.dim() == 3 and y.dim() == 3:
        if bias is not None and bias.dim() <= 3:
            return torch.baddbmm(bias, y, w)
        out = torch.bmm(y, w)
    else:
        out = y @ w
    return out if bias is None else out.add_(bias)


def affine(W: WeightLaw, b: WeightLaw | None, t, x: Tensor, y: Tensor, mu=None) -> Tensor:
    """y_i θ_W(t, x_i, μ) + θ_b(t, x_i, μ) for every token i: a fresh ``[..., N, n]`` tensor.

    A law shared by the tokens (``constant``, ``time``) is one matrix per sample and goes through ``gemm``
    (the bias fused into the product); a per-token law goes through its own ``apply_to``.
    """
    if W.per_particle:
        out = W.apply_to(t, x, y, mu)
        return out if b is None else out.add_(b(t, x, mu))
    return gemm(y, W(t, x, mu).squeeze(-3), None if b is None else b(t, x, mu))


# floats of intermediates one agent chunk may touch per CPU thread (1 MiB: a per-core L2); measured best for
# the feed-forward hidden layer at A = 128, D = 32…128, d = 64 on 1 and 2 threads (benchmarks/field.py)
CHUNK_FLOATS = 1 << 18


def agent_chunks(A: int, floats_per_agent: int, target: int | None = None) -> list[slice] | None:
    """Slices of the agent axis, each holding about ``target`` (default ``CHUNK_FLOATS``) floats of
    intermediates per intra-op thread; None when one chunk suffices."""
    target = (CHUNK_FLOATS if target is None else target) * max(1, torch.get_num_threads())
    n = -(-A * max(1, floats_per_agent) // max(1, target))  # ⌈A·floats / target⌉ chunks
    if n <= 1:
        return None
    n = min(n, A)
    cuts = [A * i // n for i in range(n + 1)]  # balanced: sizes differ by at most one
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def blockable(x: Tensor, *tensors: Tensor) -> bool:
    """Whether a forward may run cache-blocked over agent chunks: on the CPU (caches; a GPU wants one big
    launch) and with no autograd graph through the tensors (the chunks write into ``out=`` slices)."""
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (x, *tensors))
    return x.device.type == "cpu" and not grad


def apply_weight(W: Tensor, x: Tensor) -> Tensor:
    """x_i ↦ x_i W_i for x ``[..., N, a]`` and W ``[..., N or 1, a, b]`` → ``[..., N, b]``."""
    if W.shape[-3] == 1:
        return x @ W.squeeze(-3)
    return (x.unsqueeze(-2) @ W).squeeze(-2)
