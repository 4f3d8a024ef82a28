"""control.dopri: the stage-major Dormand–Prince 5(4) inside torchdiffeq (docs/theory.md#block, docs/theory.md#depth-ode).

Against torchdiffeq's own dopri5 (same accepted and rejected steps, same NFE, states equal to rounding), against
closed forms (tolerance, 5th-order local error, 4th-order dense output), gradients (backprop = adjoint = finite
differences) and divergence.
"""

import math

import pytest
import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint, odeint_event

from control import METHODS, DivergenceError, ValidationError, solve
from control.dopri import register

NAME = register()  # torchdiffeq's odeint is called directly below

F64 = torch.float64
A = torch.tensor([[-0.4, 2.0, 0.0], [-2.0, -0.3, 0.5], [0.1, -0.5, -1.0]], dtype=F64)


def linear(t, y):
    return y @ A.T


def linear_exact(y0, ts):
    return torch.stack([y0 @ torch.linalg.matrix_exp(A * float(s)).T for s in ts])


def van_der_pol(t, y):  # mu = 4: sharp turns, so the controller rejects steps
    x, v = y[..., 0], y[..., 1]
    return torch.stack([v, 4.0 * (1 - x**2) * v - x], -1)


def forced(t, y):  # time-dependent, nonlinear
    return torch.sin(3 * t) * torch.tanh(y) - 0.5 * y**3


def switched(t, y):  # discontinuous at t = 1.3: the stage at a step's end must see t just before it
    return torch.where(t < 1.3, 1.0, -2.0) * torch.sin(y) + torch.cos(t)


class Recorder:
    """A field that records NFE and every step torchdiffeq accepts or rejects (its callbacks)."""

    def __init__(self, f):
        self.f, self.nfe, self.steps = f, 0, []

    def __call__(self, t, y):
        self.nfe += 1
        return self.f(t, y)

    def callback_accept_step(self, t0, y0, dt):
        self.steps.append(("accept", float(t0), float(dt)))

    def callback_reject_step(self, t0, y0, dt):
        self.steps.append(("reject", float(t0), float(dt)))


def both(f, y0, t, grad=False, **kw):
    out = []
    for method in ("dopri5", NAME):
        rec = Recorder(f)
        with torch.set_grad_enabled(grad):
            ys = odeint(rec, y0, t, method=method, **kw)
        out.append((ys, rec))
    return out


def assert_same_run(f, y0, t, grad=False, **kw):
    (ys0, r0), (ys1, r1) = both(f, y0, t, grad=grad, **kw)
    assert r1.nfe == r0.nfe
    assert [s[0] for s in r1.steps] == [s[0] for s in r0.steps]
    # The error estimate Σ e_j k_j cancels to O(h⁵): its rounding (summation order) is ~ eps·|k|·h against a value
    # ~ rtol·|y|, so step sizes agree to ~ eps/rtol relative, not to eps; the states do agree to eps.
    for a, b in zip(r0.steps, r1.steps, strict=True):
        assert a[1] == pytest.approx(b[1], rel=1e-6, abs=1e-12)
        assert a[2] == pytest.approx(b[2], rel=1e-6)
    scale = ys0.abs().max()
    assert float((ys1 - ys0).abs().max() / scale) < 1e-12
    return ys1, r1


@pytest.mark.parametrize("grad", [False, True])  # reused buffers / fresh stages under autograd
def test_same_steps_nfe_and_states_as_torchdiffeq(grad):
    y0 = torch.tensor([[1.0, 0.5, -0.2], [0.2, -1.0, 0.3]], dtype=F64)
    t = torch.linspace(0, 4, 9, dtype=F64)
    ys, _ = assert_same_run(linear, y0, t, grad=grad, rtol=1e-8, atol=1e-10)
    assert float((ys - linear_exact(y0, t)).abs().max()) < 1e-7

    _, rec = assert_same_run(van_der_pol, torch.tensor([2.0, 0.0], dtype=F64),
                             torch.linspace(0, 6, 13, dtype=F64), grad=grad, rtol=1e-6, atol=1e-8)  # fmt: skip
    assert sum(s[0] == "reject" for s in rec.steps) >= 3  # the rejection path is exercised
    y0 = torch.linspace(-1.5, 1.5, 12, dtype=F64).reshape(3, 2, 2)  # a 3-d state
    assert_same_run(
        forced, y0, torch.tensor([0.0, 0.3, 2.5], dtype=F64), grad=grad, rtol=1e-7, atol=1e-9
    )


def test_options_reversed_time_and_float32_follow_torchdiffeq():
    y0 = torch.tensor([0.5, -1.0], dtype=F64)
    t = torch.linspace(0, 3, 4, dtype=F64)
    assert_same_run(
        forced,
        y0,
        t,
        rtol=1e-8,
        atol=1e-10,
        options={"step_t": torch.tensor([0.7, 2.2], dtype=F64)},
    )
    assert_same_run(
        switched, y0, t, rtol=1e-8, atol=1e-10, options={"jump_t": torch.tensor([1.3], dtype=F64)}
    )
    assert_same_run(linear, y0.repeat(2)[:3], t.flip(0), rtol=1e-8, atol=1e-10)  # decreasing grid
    (y32, r0), (z32, r1) = both(van_der_pol, torch.tensor([2.0, 0.0]), torch.linspace(0, 3, 4))
    assert r0.nfe == r1.nfe and z32.dtype == torch.float32
    assert float((y32 - z32).abs().max()) < 1e-4


def test_events_as_torchdiffeq():
    """odeint_event: the first time x crosses 0 on the Van der Pol orbit."""
    y0, t0 = torch.tensor([2.0, 0.0], dtype=F64), torch.tensor(0.0, dtype=F64)
    times = []
    for method in ("dopri5", NAME):
        t_ev, ys = odeint_event(van_der_pol, y0, t0, event_fn=lambda t, y: y[0], method=method,
                                rtol=1e-9, atol=1e-11)  # fmt: skip
        times.append(float(t_ev))
        assert abs(float(ys[-1, 0])) < 1e-8
    assert times[1] == pytest.approx(times[0], rel=1e-10) and 1.0 < times[0] < 10.0


def test_matches_closed_form_within_tolerance():
    y0 = torch.tensor([1.0, -0.5, 2.0], dtype=F64)
    t = torch.linspace(0, 5, 11, dtype=F64)
    exact = linear_exact(y0, t)
    errs = []
    for rtol in (1e-5, 1e-8, 1e-11):
        sol = solve(linear, y0, t, rtol=rtol, atol=rtol * 1e-2)
        errs.append(float((sol.xs - exact).abs().max()))
        assert errs[-1] < 50 * rtol * float(exact.abs().max())
    assert errs[0] > errs[1] > errs[2]


def one_step(f, y0, h, ts):
    """One step of size h from t = 0 (a huge tolerance: always accepted), read at the times ``ts``."""
    return odeint(f, y0, torch.tensor(ts, dtype=F64), method=NAME, rtol=1e6, atol=1e6,
                  options={"first_step": h})  # fmt: skip


def test_local_error_is_fifth_order_and_dense_output_fourth():
    y0 = torch.tensor([1.0, 0.3, -0.7], dtype=F64)
    end, mid = [], []
    for h in (0.4, 0.2, 0.1, 0.05):
        ys = one_step(linear, y0, h, [0.0, 0.3 * h, h])
        ex = linear_exact(y0, [0.0, 0.3 * h, h])
        end.append(float((ys[2] - ex[2]).abs().max()))  # the step: local error O(h^6)
        mid.append(float((ys[1] - ex[1]).abs().max()))  # the interpolant inside it: O(h^5)
    p_end = [math.log2(end[i] / end[i + 1]) for i in range(3)]
    p_mid = [math.log2(mid[i] / mid[i + 1]) for i in range(3)]
    assert all(5.6 < p < 6.4 for p in p_end), p_end
    assert all(4.6 < p < 5.4 for p in p_mid), p_mid


class Field(nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.W = nn.Parameter(torch.randn(3, 3, generator=g, dtype=F64) * 0.7)
        self.b = nn.Parameter(torch.randn(3, generator=g, dtype=F64) * 0.3)

    def forward(self, t, x):
        return torch.tanh(x @ self.W.T + self.b * torch.cos(t))


def loss(field, x0, adjoint=False):
    t = torch.tensor([0.0, 0.6, 1.5], dtype=F64)
    xs = solve(field, x0, t, adjoint=adjoint, rtol=1e-11, atol=1e-12).xs
    return (xs[1:] ** 2).sum() + xs[-1, 0, 1]


def test_gradients_backprop_adjoint_and_finite_differences_agree():
    field = Field()
    x0 = torch.tensor([[0.3, -0.2, 0.5], [1.0, 0.0, -1.0]], dtype=F64, requires_grad=True)
    grads = []
    for adjoint in (False, True):
        field.zero_grad()
        x0.grad = None
        loss(field, x0, adjoint).backward()
        grads.append(torch.cat([field.W.grad.flatten(), field.b.grad, x0.grad.flatten()]))
    assert float((grads[0] - grads[1]).abs().max()) < 1e-7
    eps, fd = 1e-6, []
    with torch.no_grad():
        for p, i in ((field.W, (1, 2)), (field.b, (0,)), (x0, (1, 2))):
            p[i] += eps
            up = float(loss(field, x0))
            p[i] -= 2 * eps
            down = float(loss(field, x0))
            p[i] += eps
            fd.append((up - down) / (2 * eps))
    got = [float(grads[0][5]), float(grads[0][9]), float(grads[0][12 + 5])]
    assert got == pytest.approx(fd, rel=1e-5, abs=1e-8)


def test_odeint_adjoint_runs_the_stage_major_solver_both_ways():
    field = Field()
    x0 = torch.tensor([0.3, -0.2, 0.5], dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    counts, grads = [], []
    for method in ("dopri5", NAME):  # forward and adjoint solves both use ``method``
        field.zero_grad()
        rec = Recorder(field)
        ys = odeint_adjoint(rec, x0, t, method=method, rtol=1e-9, atol=1e-10,
                            adjoint_params=tuple(field.parameters()))  # fmt: skip
        forward = rec.nfe
        ys[-1].sum().backward()
        counts.append((forward, rec.nfe - forward))
        grads.append(field.W.grad.clone())
    assert counts[0] == counts[1] and counts[1][1] > counts[1][0] > 0
    assert float((grads[0] - grads[1]).abs().max()) < 1e-12


def test_divergence_names_the_time_and_keeps_the_partial_trajectory():
    x0 = torch.tensor([1.0], dtype=F64)  # x' = x², x(t) = 1/(1 − t): blows up at t = 1
    with pytest.raises(DivergenceError, match=r"non-finite .* at t=(0\.9|1\b)") as err:
        solve(lambda t, x: x**2, x0, [0.0, 2.0], method="dopri5")
    assert 0.9 < err.value.t <= 1.0 + 1e-5
    sol = solve(lambda t, x: x**2, x0, [0.0, 0.5, 0.8, 1.5], throw=False)
    assert sol.status == "diverged" and 0.8 < sol.t_reached <= 1.0 + 1e-5
    assert sol.xs[1:3, 0].tolist() == pytest.approx([2.0, 5.0], rel=1e-5)
    assert torch.isnan(sol.xs[3]).all()


def test_method_names():
    assert "dopri5" in METHODS and "dopri5_torchdiffeq" in METHODS and NAME not in METHODS
    x0 = torch.tensor([0.5, -1.0], dtype=F64)
    a = solve(forced, x0, [0.0, 1.0, 2.0])
    b = solve(forced, x0, [0.0, 1.0, 2.0], method="dopri5_torchdiffeq")
    assert a.nfe == b.nfe and float((a.xs - b.xs).abs().max()) < 1e-13
    with pytest.raises(
        ValidationError, match=r"^method: expected one of .*dopri5_torchdiffeq.*got 'x'$"
    ):
        solve(forced, x0, [0.0, 1.0], method="x")


def test_the_step_check_replaces_the_per_evaluation_check():
    """dopri5 checks each step's error ratio (every stage enters it) instead of every evaluation."""
    x0 = torch.tensor([1.0, 2.0], dtype=F64)

    def poisoned(t, x):  # one component turns NaN after t = 0.3
        dx = -x.clone()
        if t > 0.3:
            dx[1] = float("nan")
        return dx

    with pytest.raises(DivergenceError, match="non-finite derivative") as err:
        solve(poisoned, x0, [0.0, 1.0], method="dopri5")
    assert 0.0 < err.value.t <= 0.3
