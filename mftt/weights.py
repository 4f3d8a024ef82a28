"""Transformer weights as control laws θ(t, x_i, μ) (spec §A.7, §A.13.3): build them and apply them per token.

A per-particle law returns one matrix per token ``[..., D, a, b]``; a shared one ``[..., 1, a, b]``. Both are
applied by one broadcast matmul, never by a loop over tokens.
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


def apply_weight(W: Tensor, x: Tensor) -> Tensor:
    """x_i ↦ x_i W_i for x ``[..., N, a]`` and W ``[..., N or 1, a, b]`` → ``[..., N, b]``."""
    if W.shape[-3] == 1:
        return x @ W.squeeze(-3)
    return (x.unsqueeze(-2) @ W).squeeze(-2)
