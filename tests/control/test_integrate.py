"""control.solve over torchdiffeq (docs/theory.md#block, docs/theory.md#depth-ode): orders, tolerances, gradients, divergence, bad input."""

import math

import pytest
import torch
from torch import nn

from control import DivergenceError, ValidationError, make_law, solve


class Field(nn.Module):
    """dx/dt = tanh(W x + b t): a small nonlinear field with parameters."""

    def __init__(self, d=3):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.W = nn.Parameter(torch.randn(d, d, generator=g, dtype=torch.float64) * 0.5)
        self.b = nn.Parameter(torch.randn(d, generator=g, dtype=torch.float64) * 0.5)

    def forward(self, t, x):
        return torch.tanh(x @ self.W.T + self.b * t)


def exact_problem(t, x):
    """dx/dt = cos(t) x, exact solution x0·exp(sin t)."""
    return torch.cos(t) * x


def test_rk4_has_order_four():
    x0 = torch.tensor([1.0, -0.5], dtype=torch.float64)
    t = torch.tensor([0.0, 2.0], dtype=torch.float64)
    exact = x0 * math.exp(math.sin(2.0))
    errs = []
    for h in (0.1, 0.05, 0.025):
        xs = solve(exact_problem, x0, t, method="rk4", options={"step_size": h}).xs
        errs.append(float((xs[-1] - exact).abs().max()))
    orders = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(3.7 < p < 4.3 for p in orders), orders


def test_dopri5_meets_its_tolerance():
    x0 = torch.tensor([1.0, 2.0], dtype=torch.float64)
    t = torch.linspace(0.0, 5.0, 11, dtype=torch.float64)
    exact = x0 * torch.exp(torch.sin(t))[:, None]
    for rtol in (1e-5, 1e-8):
        sol = solve(exact_problem, x0, t, rtol=rtol, atol=rtol * 1e-2)
        rel = float(((sol.xs - exact).abs() / exact.abs()).max())
        assert rel < 20 * rtol and sol.status == "ok" and sol.nfe > 0


def test_adjoint_and_direct_gradients_agree():
    field = Field()
    x0 = torch.tensor([[0.3, -0.2, 0.5], [1.0, 0.0, -1.0]], dtype=torch.float64)
    t = torch.linspace(0.0, 1.5, 4, dtype=torch.float64)
    grads = []
    for adjoint in (False, True):
        field.zero_grad()
        xs = solve(field, x0, t, adjoint=adjoint, rtol=1e-9, atol=1e-11).xs
        (xs**2).sum().backward()
        grads.append(torch.cat([field.W.grad.flatten(), field.b.grad]))
    assert float((grads[0] - grads[1]).abs().max()) < 1e-6


def test_gradcheck_small_field():
    x0 = torch.tensor([0.3, -0.2], dtype=torch.float64)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)

    def f(W, b):
        return solve(lambda t, x: torch.tanh(x @ W.T + b), x0, t, method="rk4",
                     options={"step_size": 0.1}).xs  # fmt: skip

    W = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (W, b))


def test_law_driven_field_gradcheck():
    """A meanfield weight law inside the field: gradients through μ = (E x, Var x) are correct."""
    law = make_law("meanfield", 2, 1, dtype=torch.float64, init=torch.zeros(2))
    with torch.no_grad():
        for p in law.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x0 = torch.randn(5, 1, dtype=torch.float64, requires_grad=True)

    def f(x0):
        def field(t, x):
            th = law(t, x)
            return -(th[..., :1] * x + th[..., 1:])

        return solve(field, x0, [0.0, 0.5], method="rk4", options={"step_size": 0.1}).xs

    assert torch.autograd.gradcheck(f, (x0,))


def test_blowing_up_field_raises_divergence_with_time():
    x0 = torch.tensor([1.0], dtype=torch.float64)  # x' = x², x(t) = 1/(1 − t): blows up at t = 1
    with pytest.raises(DivergenceError, match=r"t=") as err:
        solve(lambda t, x: x**2, x0, [0.0, 2.0])
    assert 0.5 < err.value.t <= 1.0 + 1e-6
    sol = solve(lambda t, x: x**2, x0, torch.linspace(0, 2, 5), throw=False)
    assert sol.status == "diverged" and sol.t_reached <= 1.0 + 1e-6
    with pytest.raises(DivergenceError):  # fixed steps: the state overflows to inf
        solve(lambda t, x: torch.exp(x), x0, torch.linspace(0, 2, 21), method="rk4")


def test_bad_input_is_one_line_naming_the_argument():
    x0 = torch.zeros(2)
    with pytest.raises(ValidationError, match=r"^method: expected one of .*dopri5.*rk4.*got 'rk5'"):
        solve(exact_problem, x0, [0.0, 1.0], method="rk5")
    with pytest.raises(ValidationError, match=r"^t: "):
        solve(exact_problem, x0, [0.0])
    with pytest.raises(ValidationError, match=r"^x0: "):
        solve(exact_problem, [0.0], [0.0, 1.0])
    with pytest.raises(TypeError, match="bogus"):
        solve(exact_problem, x0, [0.0, 1.0], bogus=1)


@pytest.mark.parametrize("method", ["dopri5", "dopri5_torchdiffeq"])
def test_tolerances_below_the_dtype_resolution_are_floored_not_looped_on(method):
    """fp32 with rtol 1e-12: floored at 10 ε, so the solve ends and still meets fp32 accuracy."""
    x0 = torch.tensor([1.0, -0.5], dtype=torch.float32)
    sol = solve(lambda t, x: -x, x0, [0.0, 2.0], method=method, rtol=1e-12, atol=1e-14)
    assert sol.nfe < 2000
    torch.testing.assert_close(sol.xs[-1], x0 * math.exp(-2.0), rtol=1e-5, atol=1e-6)


def test_a_step_budget_that_runs_out_is_reported_as_diverged():
    x0 = torch.tensor([1.0], dtype=torch.float64)
    with pytest.raises(DivergenceError, match="over 5 adaptive steps"):
        solve(lambda t, x: -50 * x, x0, [0.0, 10.0], options={"max_num_steps": 5})
