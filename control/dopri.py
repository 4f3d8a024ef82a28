"""Stage-major Dormand–Prince 5(4) inside torchdiffeq (docs/theory.md#depth-ode): ``odeint(..., method="dopri5_sm")``
once ``register()`` has run (``control.solve`` calls it).

torchdiffeq's ``_runge_kutta_step`` keeps the 7 stages on the *last* axis (``[*shape, 7]``): every stage
combination, the error estimate and the interpolation fit are strided passes building ``[*shape, i]``
temporaries. Here a step's rows ``(y0, k1, ..., k7)`` are one contiguous ``[8, *shape]`` matrix ``K``, and each
combination is one matrix product of a row of coefficients (tableau × dt, a tensor: no host read) with ``K``
viewed as ``[8, n]`` (a ``bmm`` over column blocks on CPU, so that BLAS uses every thread). The dense output
needs no fit: torchdiffeq's 4th-order interpolant, with its ``y_mid`` and ``y1`` written in the stages (the ``y0``
terms cancel), is ``y(t0 + x·dt) = y0 + dt·(x, x², x³, x⁴) P K`` for a fixed ``4 × 8`` matrix ``P``: one
product per output time, written into the solution. Without autograd two matrices
are reused (the step being tried; the last accepted step, for the dense output); with autograd each step gets
a fresh one, filled as torchdiffeq does (``_UncheckedAssign``), so backprop and ``odeint_adjoint`` both work.

Everything else is torchdiffeq's: the Dormand–Prince–Shampine tableau, initial step selection, the step-size
controller (``_optimal_step_size``, safety, ifactor, dfactor, min/max step), ``step_t``/``jump_t``, the norm
(``options["norm"]``, the adjoint's included), callbacks, event handling and grid output, so accepted and
rejected steps and the number of evaluations are those of ``method="dopri5"``; the states agree to rounding.

This builds on torchdiffeq's private ``_impl`` modules (listed in ``PRIVATE``), which may change in any release:
pyproject.toml pins torchdiffeq to the tested minor series and ``tests/control/test_torchdiffeq_api.py``
fails, naming that range, if one of them moves.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor
from torchdiffeq._impl.dopri5 import DPS_C_MID, Dopri5Solver
from torchdiffeq._impl.event_handling import find_event
from torchdiffeq._impl.interp import _interp_evaluate
from torchdiffeq._impl.misc import Perturb, _nextafter, _optimal_step_size, _PerturbFunc, _rms_norm
from torchdiffeq._impl.odeint import SOLVERS
from torchdiffeq._impl.rk_common import _RungeKuttaState, _UncheckedAssign

from .errors import DivergenceError

NAME = "dopri5_sm"
# the private torchdiffeq names this module imports (module, name), checked by tests/control/test_torchdiffeq_api.py
PRIVATE = (
    ("torchdiffeq._impl.dopri5", "DPS_C_MID"),
    ("torchdiffeq._impl.dopri5", "Dopri5Solver"),
    ("torchdiffeq._impl.event_handling", "find_event"),
    ("torchdiffeq._impl.interp", "_interp_evaluate"),
    ("torchdiffeq._impl.misc", "Perturb"),
    ("torchdiffeq._impl.misc", "_nextafter"),
    ("torchdiffeq._impl.misc", "_optimal_step_size"),
    ("torchdiffeq._impl.misc", "_PerturbFunc"),
    ("torchdiffeq._impl.misc", "_rms_norm"),
    ("torchdiffeq._impl.odeint", "SOLVERS"),
    ("torchdiffeq._impl.rk_common", "_RungeKuttaState"),
    ("torchdiffeq._impl.rk_common", "_UncheckedAssign"),
)


class Dense(NamedTuple):
    """The dense output of an accepted step: ``y(t0 + x·dt) = y0 + dt·(x, x², x³, x⁴) P k``."""

    y0: Tensor
    k: Tensor  # [8, *shape]: y0, then the 7 stages
    dt: Tensor  # the step, in the state's dtype


def _tables() -> tuple[Tensor, Tensor, Tensor]:
    """Over the rows ``(y0, k1, ..., k7)``: stage inputs ``A`` (row i is the input of stage i+2, per unit dt
    but for y0's 1), error weights ``E`` (per unit dt) and the interpolant ``P`` (``[4, 8]``, per unit dt)."""
    tab = Dopri5Solver.tableau
    A = torch.zeros(6, 8, dtype=torch.float64)
    for i, beta in enumerate(tab.beta):
        A[i, 1 : i + 2] = beta
    b, m = tab.c_sol, DPS_C_MID  # y1 = y0 + dt b·k, y_mid = y0 + dt m·k
    e0, e6 = torch.eye(7, dtype=torch.float64)[[0, 6]]
    # torchdiffeq's _interp_fit: p(x) = e + d x + c x² + b x³ + a x⁴ with d = dt f0 and
    # a = 2dt(f1-f0) - 8(y1+y0) + 16 y_mid, b = dt(5f0-3f1) + 18y0 + 14y1 - 32y_mid, c = dt(f1-4f0) - 11y0 - 5y1 + 16y_mid
    P = torch.stack([e0, e6 - 4 * e0 - 5 * b + 16 * m, 5 * e0 - 3 * e6 + 14 * b - 32 * m,
                     2 * e6 - 2 * e0 - 8 * b + 16 * m])  # fmt: skip
    P = torch.cat([torch.zeros(4, 1, dtype=torch.float64), P], 1)  # the y0 terms cancel
    return A, tab.c_error[None], P


class StageMajorDopri5(Dopri5Solver):
    """torchdiffeq's ``Dopri5Solver`` with the stages stored stage-major and combined by matrix products."""

    rk_state: _RungeKuttaState  # set by torchdiffeq's _before_integrate

    def __init__(self, func, y0, rtol, atol, **kwargs):
        super().__init__(func, y0, rtol, atol, **kwargs)
        dev, dt = y0.device, y0.dtype
        A, E, P = _tables()
        self._A, self._E, self._P = (x.to(device=dev, dtype=dt) for x in (A, E, P))
        self._e0 = torch.eye(1, 8, device=dev, dtype=dt)  # the y0 row's coefficient
        self._alpha = self.tableau.alpha  # already in the state's dtype, on its device
        self._at_end = [float(a) == 1.0 for a in Dopri5Solver.tableau.alpha]
        self._powers = torch.arange(1, 5, device=dev).to(dt)
        n = y0.numel()
        self._nb = math.gcd(n, 32) if dev.type == "cpu" and n else 1  # column blocks of _comb
        self._block = n // self._nb
        self._bufs: list[Tensor | None] = [None, None]
        self._cur = 0  # the buffer a step is tried in; the other one holds the last accepted step
        self._checked = None  # the last state found finite
        self._abs: tuple = (None, None)  # (y1, |y1|) of the last step tried

    def _f(self, t: Tensor, y: Tensor, perturb: Perturb) -> Tensor:
        """``self.func(t, y, perturb=...)`` without ``_PerturbFunc``'s ``y.abs()`` (a pass over the state)."""
        f = self.func
        if type(f) is not _PerturbFunc:
            return f(t, y, perturb=perturb)
        if perturb is Perturb.PREV:
            t = _nextafter(t, t - 1)
        elif perturb is Perturb.NEXT:
            t = _nextafter(t, t + 1)
        return f.base_func(t, y)

    def _stages(self, y0: Tensor) -> Tensor:
        """The ``[8, *shape]`` matrix of rows ``(y0, k1, ..., k7)`` for a step."""
        k = None if torch.is_grad_enabled() else self._bufs[self._cur]  # autograd: a fresh one
        if k is None or k.shape[1:] != y0.shape:
            k = torch.empty((8, *y0.shape), dtype=y0.dtype, device=y0.device)
            if not torch.is_grad_enabled():
                self._bufs[self._cur] = k
        return k

    def _comb(self, c: Tensor, k: Tensor, lo: int, hi: int, out: Tensor | None = None) -> Tensor:
        """``c @ k[lo:hi]`` over the flattened state, as a ``bmm`` over ``_nb`` column blocks: CPU BLAS runs a
        single ``[1, m] @ [m, n]`` product on one thread, a batch of them on all."""
        kb = k.view(8, self._nb, self._block)[lo:hi].transpose(0, 1)
        out = None if out is None else out.view(self._nb, 1, self._block)
        return torch.bmm(c.expand(self._nb, 1, hi - lo), kb, out=out)

    @staticmethod
    def _put(k: Tensor, i: int, v: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            return _UncheckedAssign.apply(k, v, i)
        if k[i].data_ptr() != v.data_ptr() or k[i].shape != v.shape:
            k[i].copy_(v)
        return k

    def _rk_step(self, y0: Tensor, f0: Tensor, t0: Tensor, dt: Tensor, t1: Tensor):
        """The six new stages of a step from ``(t0, y0)``: ``(y1, k, error estimate, dt in y's dtype)``."""
        tdt = y0.real.dtype
        t0, dt, t1 = t0.to(tdt), dt.to(tdt), t1.to(tdt)
        coef = torch.addcmul(self._e0, self._A, dt)  # [1, beta_i dt]
        ts = t0 + self._alpha * dt
        k = self._put(self._put(self._stages(y0), 0, y0), 1, f0)
        for i in range(6):
            yi = self._comb(coef[i : i + 1, : i + 2], k, 0, i + 2).view_as(y0)
            if self._at_end[i]:  # just before the end time, in case of a discontinuity there
                f = self._f(t1, yi, Perturb.PREV)
            else:
                f = self._f(ts[i], yi, Perturb.NONE)
            k = self._put(k, i + 2, f)
        with torch.no_grad():
            err = self._comb(self._E * dt, k, 1, 8).view_as(y0)
        return yi, k, err, dt  # the last stage input is y1 (Dormand–Prince is FSAL)

    def _error_ratio(self, err: Tensor, y0: Tensor, y1: Tensor) -> Tensor:
        """torchdiffeq's ``norm(err / (atol + rtol max(|y0|, |y1|)))``, in place; |y1| is kept for the next step."""
        with torch.no_grad():
            a0 = self._abs[1] if self._abs[0] is y0 else y0.abs()
            a1 = y1.abs()
            self._abs = (y1, a1)
            err.div_(torch.maximum(a0, a1).mul_(self.rtol).add_(self.atol))
            if self.norm is _rms_norm:  # the default: one pass
                return torch.linalg.vector_norm(err) / math.sqrt(max(err.numel(), 1))
            return self.norm(err).abs()

    def _check_finite(self, y0: Tensor, t0: Tensor) -> None:
        if y0 is self._checked:
            return
        if y0.is_complex() or y0.numel() == 0:
            ok = torch.isfinite(y0).all()
        else:
            ok = torch.isfinite(torch.stack(torch.aminmax(y0))).all()  # one pass; NaN propagates
        if not ok:  # torchdiffeq asserts here; a non-finite state is a divergence
            raise DivergenceError(float(t0), "state")
        self._checked = y0

    def _adaptive_step(self, rk_state):
        """torchdiffeq's ``RKAdaptiveStepsizeODESolver._adaptive_step`` around the stage-major step."""
        y0, f0, _, t0, dt, interp_coeff = rk_state
        if not torch.isfinite(dt):
            dt = self.min_step
        dt = dt.clamp(self.min_step, self.max_step)
        self.func.callback_step(t0, y0, dt)
        t1 = t0 + dt
        assert t0 + dt > t0, f"underflow in dt {dt.item()}"
        self._check_finite(y0, t0)

        on_step_t = False
        if len(self.step_t):
            next_step_t = self.step_t[self.next_step_index]
            on_step_t = t0 < next_step_t < t0 + dt
            if on_step_t:
                t1 = next_step_t
                dt = t1 - t0
        on_jump_t = False
        if len(self.jump_t):
            next_jump_t = self.jump_t[self.next_jump_index]
            on_jump_t = t0 < next_jump_t < t0 + dt
            if on_jump_t:
                on_step_t = False
                t1 = next_jump_t
                dt = t1 - t0

        y1, k, y1_error, dt_y = self._rk_step(y0, f0, t0, dt, t1)
        error_ratio = self._error_ratio(y1_error, y0, y1)
        # every stage enters the error estimate (directly, or through the later stages), so a non-finite
        # derivative makes this ratio non-finite: the check control.solve would make on every evaluation,
        # once per step and on a scalar the controller reads anyway
        if not torch.isfinite(error_ratio):
            raise DivergenceError(float(t0), "derivative")
        accept_step = error_ratio <= 1
        if dt > self.max_step:
            accept_step = False
        if dt <= self.min_step:
            accept_step = True

        if accept_step:
            self.func.callback_accept_step(t0, y0, dt)
            t_next, y_next = t1, y1
            interp_coeff = Dense(y0, k, dt_y)
            self._cur = 1 - self._cur  # k now serves the dense output; the next step uses the other
            if on_step_t and self.next_step_index != len(self.step_t) - 1:
                self.next_step_index += 1
            f_next = k[7]
            if on_jump_t:
                if self.next_jump_index != len(self.jump_t) - 1:
                    self.next_jump_index += 1
                f_next = self.func(t_next, y_next, perturb=Perturb.NEXT)
        else:
            self.func.callback_reject_step(t0, y0, dt)
            t_next, y_next, f_next = t0, y0, f0
        dt_next = _optimal_step_size(
            dt, error_ratio, self.safety, self.ifactor, self.dfactor, self.order
        )
        dt_next = dt_next.clamp(self.min_step, self.max_step)
        return _RungeKuttaState(y_next, f_next, t0, t_next, dt_next, interp_coeff)

    def _evaluate(self, t: Tensor, out: Tensor | None = None) -> Tensor:
        s = self.rk_state
        d = s.interp_coeff
        if not isinstance(d, Dense):  # before the first step: torchdiffeq's list of coefficients
            y = _interp_evaluate(d, s.t0, s.t1, t)
            return y if out is None else out.copy_(y)
        x = ((t - s.t0) / (s.t1 - s.t0)).to(d.k.dtype)
        w = torch.addmm(self._e0, (x**self._powers * d.dt)[None], self._P)  # [1, dt p(x)]
        return self._comb(w, d.k, 0, 8, out).view_as(d.y0)

    def _step(self, n_steps: int) -> int:
        assert n_steps < self.max_num_steps, (
            f"max_num_steps exceeded ({n_steps}>={self.max_num_steps})"
        )
        self.rk_state = self._adaptive_step(self.rk_state)
        return n_steps + 1

    def _advance(self, next_t, out: Tensor | None = None):
        n_steps = 0
        while next_t > self.rk_state.t1:
            n_steps = self._step(n_steps)
        return self._evaluate(next_t, out)

    def integrate(self, t):
        """torchdiffeq's grid loop; without autograd each output time is written in place."""
        if torch.is_grad_enabled():
            return super().integrate(t)
        solution = torch.empty(len(t), *self.y0.shape, dtype=self.y0.dtype, device=self.y0.device)
        solution[0] = self.y0
        t = t.to(self.dtype)
        self._before_integrate(t)
        for i in range(1, len(t)):
            self._advance(t[i], out=solution[i])
        return solution

    def _advance_until_event(self, event_fn):
        s = self.rk_state
        if event_fn(s.t1, s.y1) == 0:
            return (s.t1, s.y1)
        n_steps = 0
        sign0 = torch.sign(event_fn(s.t1, s.y1))
        while sign0 == torch.sign(event_fn(self.rk_state.t1, self.rk_state.y1)):
            n_steps = self._step(n_steps)
        s = self.rk_state
        return find_event(self._evaluate, sign0, s.t0, s.t1, event_fn, self.atol)


def register() -> str:
    """Make ``method=NAME`` known to torchdiffeq's ``odeint`` and ``odeint_adjoint``; idempotent, returns NAME.

    torchdiffeq looks methods up in its ``SOLVERS`` table and has no public way to add one, so this function is
    the one place that writes to it, when a solve asks for it rather than as a side effect of an import.
    """
    current = SOLVERS.setdefault(NAME, StageMajorDopri5)
    if current is not StageMajorDopri5:
        raise RuntimeError(
            f"torchdiffeq already has a different solver named {NAME!r}: {current!r}"
        )
    return NAME
