"""ODE integration over torchdiffeq: ``solve(field, x0, t) -> Solution`` (docs/theory.md#block, docs/theory.md#depth-ode).

``method="dopri5"`` (the default) is the stage-major Dormand–Prince 5(4) of ``control.dopri``, registered in
torchdiffeq as ``"dopri5_sm"`` by ``dopri.register()`` when a solve first asks for it: torchdiffeq's tableau,
step-size controller, grid output and adjoint, with the stages held as one contiguous ``[8, *shape]`` matrix
(``y0`` and the 7 stages) combined by matrix products, so the steps taken and the NFE are those of
torchdiffeq's own ``dopri5``, which stays reachable as ``method="dopri5_torchdiffeq"``
(docs/theory.md#depth-ode).

Device and dtype follow ``x0``. The number of field evaluations (NFE) is counted. A non-finite state raises
``DivergenceError`` naming the time reached, or, with ``throw=False``, returns ``status="diverged"`` with the
trajectory up to the last grid time reached (NaN after it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint
from torchdiffeq._impl.odeint import SOLVERS

from . import dopri
from .errors import DivergenceError, ValidationError, choice, number

# user-facing name -> torchdiffeq's name; every other method keeps torchdiffeq's name
_ALIASES = {"dopri5": dopri.NAME, "dopri5_torchdiffeq": "dopri5"}
METHODS: tuple[str, ...] = tuple(m for m in SOLVERS if m not in ("scipy_solver", dopri.NAME)) + (
    "dopri5_torchdiffeq",
)
FIXED_STEP = ("euler", "midpoint", "heun2", "heun3", "rk4", "fixed_adams", "implicit_adams")
SELF_CHECKED = ("dopri5",)  # solvers that raise DivergenceError themselves (control.dopri)


@dataclass(frozen=True)
class Solution:
    """A solved trajectory: ``xs[k]`` is the state at ``t[k]``; ``status`` is ``ok`` or ``diverged``."""

    t: Tensor
    xs: Tensor
    nfe: int
    status: str = "ok"
    t_reached: float | None = None

    @property
    def final(self) -> Tensor:
        return self.xs[-1]


class _Counted(nn.Module):
    """Wraps a field to count evaluations and to stop at the first non-finite derivative."""

    # set by solve, read by the solver wrappers and in error reports
    method: str
    rtol: float
    atol: float
    options: dict | None
    last_t: float | Tensor

    def __init__(self, field: Callable[[Tensor, Tensor], Tensor], check_finite: bool):
        super().__init__()
        self.field = field
        self.nfe = 0
        self.check_finite = check_finite
        self.last_t = 0.0

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        self.nfe += 1
        dx = self.field(t, x)
        if self.check_finite and not torch.isfinite(dx.sum()):  # one reduction: NaN/inf propagate
            raise DivergenceError(float(t), "derivative")
        self.last_t = t
        return dx


def _all_finite(x: Tensor) -> bool:
    """``torch.isfinite(x).all()`` in one reduction (NaN propagates through min/max): no boolean temporaries."""
    if x.numel() == 0 or x.is_complex():
        return bool(torch.isfinite(x).all())
    return bool(torch.isfinite(torch.stack(torch.aminmax(x))).all())


def _check_grid(t: Tensor) -> None:
    if t.dim() != 1 or t.numel() < 2:
        raise ValidationError("t", "a 1-D grid of at least 2 times", tuple(t.shape))
    if not torch.isfinite(t).all():
        raise ValidationError("t", "finite times", t.tolist()[:4])
    d = t[1:] - t[:-1]
    if not ((d > 0).all() or (d < 0).all()):
        raise ValidationError("t", "strictly monotone times", t.tolist()[:4])


MAX_STEPS = 100_000  # adaptive steps per solve before it is reported as diverged (a stiff field)


def solve(
    field: Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    t: Tensor | list[float] | tuple[float, ...],
    *,
    method: str = "dopri5",
    adjoint: bool = False,
    rtol: float = 1e-6,
    atol: float = 1e-8,
    options: dict | None = None,
    throw: bool = True,
    check_finite: bool = True,
    adjoint_params: tuple[Tensor, ...] | None = None,
) -> Solution:
    """Solve dx/dt = field(t, x), x(t[0]) = x0, returning the states at every time of ``t``.

    ``adjoint=True`` back-propagates by the adjoint ODE (memory constant in the number of steps); the field
    must then be an ``nn.Module`` or ``adjoint_params`` must be given.

    ``method`` is one of ``METHODS`` (torchdiffeq's names). ``"dopri5"`` runs ``control.dopri``'s stage-major
    Dormand–Prince 5(4) (same steps and NFE as torchdiffeq's, less solver overhead: docs/theory.md#block, docs/theory.md#depth-ode);
    ``"dopri5_torchdiffeq"`` runs torchdiffeq's own ``dopri5``.
    """
    if not isinstance(x0, Tensor):
        raise ValidationError("x0", "a torch.Tensor", type(x0).__name__)
    if not x0.is_floating_point():
        raise ValidationError("x0", "a floating-point tensor", str(x0.dtype))
    choice("method", method, METHODS)
    number("rtol", rtol, low=0.0, strict_low=True)
    number("atol", atol, low=0.0, strict_low=True)
    if not callable(field):
        raise ValidationError("field", "a callable f(t, x)", type(field).__name__)
    try:
        t = torch.as_tensor(t, dtype=x0.dtype, device=x0.device)
    except (TypeError, ValueError, RuntimeError):
        raise ValidationError("t", "an increasing 1-d grid of times", t) from None
    _check_grid(t)
    opts = dict(
        options or {}
    )  # fixed-step methods without step_size step on the output grid itself
    # Per-evaluation checks read a value back to the host; on an accelerator with a fixed-step method they
    # would be the only host-device round trips of the solve, so there the trajectory is checked afterwards.
    # The stage-major dopri5 checks each step's error ratio instead (a non-finite stage makes it non-finite).
    per_call = (
        check_finite
        and method not in SELF_CHECKED
        and (x0.device.type == "cpu" or method not in FIXED_STEP)
    )
    f = _Counted(field, per_call)
    kw: dict[str, Any] = dict(method=_ALIASES.get(method, method), options=opts or None)
    if kw["method"] == dopri.NAME:
        dopri.register()
    if method not in FIXED_STEP:
        # tolerances below the dtype's resolution make an adaptive step shrink forever (fp32 with atol 1e-8
        # never ended an adjoint backward): they are floored at 10 ε, and the step count is bounded
        floor = 10 * torch.finfo(x0.dtype).eps
        rtol, atol = max(float(rtol), floor), max(float(atol), floor)
        opts.setdefault("max_num_steps", MAX_STEPS)
        if "max_num_steps" in opts:
            number("options.max_num_steps", opts["max_num_steps"], low=1, integer=True)
        kw.update(rtol=rtol, atol=atol, options=opts)
    f.method, f.rtol, f.atol, f.options = kw["method"], rtol, atol, opts or None
    try:
        if adjoint:
            params = adjoint_params
            if params is None:
                if not isinstance(field, nn.Module):
                    raise ValidationError(
                        "field",
                        "an nn.Module (or adjoint_params) when adjoint=True",
                        type(field).__name__,
                    )
                params = tuple(p for p in field.parameters() if p.requires_grad)
            extra = {}
            if method not in FIXED_STEP:  # error control on the adjoint state only, not on the
                # parameter-gradient integrals (a "seminorm": far fewer backward steps, same gradients)
                extra["adjoint_options"] = {**opts, "norm": "seminorm"}
            xs = odeint_adjoint(f, x0, t, adjoint_params=params, **kw, **extra)
        else:
            xs = odeint(f, x0, t, **kw)
    except DivergenceError as err:
        return _diverged(err, f, x0, t, throw)
    except AssertionError as err:  # torchdiffeq: "underflow in dt" when the step collapses
        if "max_num_steps" in str(
            err
        ):  # the step budget ran out: the field is too stiff for the tolerances
            n = opts.get("max_num_steps", MAX_STEPS)
            msg = f"over {n} adaptive steps by t={float(f.last_t):.6g}: too stiff for rtol/atol"
            return _diverged(DivergenceError(float(f.last_t), message=msg), f, x0, t, throw)
        if "underflow" not in str(err):
            raise
        return _diverged(DivergenceError(float(f.last_t), "step size"), f, x0, t, throw)
    if check_finite and not _all_finite(xs):
        bad = (~torch.isfinite(xs)).flatten(1).any(1)
        k = int(bad.nonzero()[0])
        div = DivergenceError(float(t[max(k - 1, 0)]))
        return _diverged(div, f, x0, t, throw, xs=xs)
    return Solution(t=t, xs=xs, nfe=f.nfe, status="ok", t_reached=float(t[-1]))


def _diverged(
    err: DivergenceError, f: _Counted, x0: Tensor, t: Tensor, throw: bool, xs=None
) -> Solution:
    if throw:
        raise err
    if xs is None:
        xs = torch.full((len(t),) + tuple(x0.shape), float("nan"), dtype=x0.dtype, device=x0.device)
        xs[0] = x0.detach()
        # re-solve on the part of the grid that was reached, to keep the partial trajectory
        k = int(((t - t[0]).abs() < abs(err.t - float(t[0]))).sum())
        if k >= 2:
            with torch.no_grad():
                part = odeint(
                    f, x0, t[:k], method=f.method, rtol=f.rtol, atol=f.atol, options=f.options
                )
            xs[:k] = part
    else:
        xs = xs.detach().clone()
        bad = (~torch.isfinite(xs)).flatten(1).any(1)
        xs[bad.cumsum(0) > 0] = float("nan")
    return Solution(t=t, xs=xs, nfe=f.nfe, status="diverged", t_reached=err.t)
