"""Input guards shared by every public entry point: sizes that fit in memory, real finite arrays, so bad input fails fast with a one-line error.

A size that cannot fit (``n_agents=10**9``, ``d_model=10**12``) must be refused up front with a one-line
``ValidationError`` carrying the estimate — never reach the allocator and come back as a ``MemoryError`` or
a torch ``RuntimeError``. The budget is ``MFTT_MAX_MEMORY_MB`` (environment) or 4096 MB.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from .errors import ValidationError

DEFAULT_MAX_MEMORY_MB = 4096.0


def max_memory_mb() -> float:
    """The memory budget in MB: ``MFTT_MAX_MEMORY_MB`` when set to a positive number, else 4096."""
    try:
        v = float(os.environ.get("MFTT_MAX_MEMORY_MB", DEFAULT_MAX_MEMORY_MB))
    except ValueError:
        return DEFAULT_MAX_MEMORY_MB
    return v if math.isfinite(v) and v > 0 else DEFAULT_MAX_MEMORY_MB


def check_size(
    field: str,
    dims: Iterable[Any],
    *,
    itemsize: int = 8,
    copies: float = 1.0,
    budget_mb: float | None = None,
) -> float:
    """Refuse an array of shape ``dims`` (× ``copies``) whose size exceeds the memory budget; returns its MB."""
    try:
        elems = math.prod(int(d) for d in dims)
    except (TypeError, ValueError):
        raise ValidationError(field, "integer sizes", tuple(dims) if dims else dims) from None
    mb = elems * itemsize * copies / 2**20
    limit = max_memory_mb() if budget_mb is None else budget_mb
    if mb > limit:
        raise ValidationError(
            field,
            f"a size whose arrays fit the {limit:g} MB budget",
            f"~{mb:.3g} MB",
            reason="set MFTT_MAX_MEMORY_MB to raise it",
        )
    return mb


def real_array(field: str, value: Any, *, ndim: int | None = None) -> np.ndarray:
    """``value`` as a finite float64 array (tensors included); text, ragged or NaN/inf input is refused."""
    if isinstance(value, str | bytes) or value is None:
        raise ValidationError(field, "a real number or array", value)
    try:
        if type(value).__module__.startswith("torch"):
            value = value.detach().cpu().numpy()
        a = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValidationError(field, "a real number or array", value) from None
    if ndim is not None and a.ndim != ndim:
        raise ValidationError(field, f"a {ndim}-d array", f"shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValidationError(field, "finite entries", "NaN or inf")
    return a


def device(field: str, value: Any) -> Any:
    """A torch device that exists here (``cpu``, ``cuda``, ``cuda:0`` …); unknown or absent ones are refused."""
    if value is None or isinstance(value, torch.device):
        d = value
    elif isinstance(value, str) and value.strip():
        try:
            d = torch.device(value)
        except (RuntimeError, ValueError):
            raise ValidationError(field, "a torch device such as cpu or cuda:0", value) from None
    else:
        raise ValidationError(field, "a torch device such as cpu or cuda:0", value)
    if d is not None and d.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (d.index is not None and d.index >= n):
            raise ValidationError(field, f"an available device (cpu, {n} CUDA)", value)
    elif d is not None and d.type not in ("cpu", "cuda", "mps", "meta"):
        raise ValidationError(field, "cpu or cuda[:index]", value)
    return d
