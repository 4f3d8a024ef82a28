"""Risk measures (docs/theory.md#training, docs/theory.md#mean-field) against closed forms."""

import math

import pytest
import torch

from control import RISKS, ValidationError, risk
from control.costs import lq_running, lq_terminal


def test_risks_closed_forms():
    L = torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 8.0]], dtype=torch.float64)
    assert set(RISKS) == {"mean", "mean_variance", "entropic", "cvar"}
    torch.testing.assert_close(risk("mean", L), torch.tensor([2.5, 2.0], dtype=torch.float64))
    torch.testing.assert_close(
        risk("mean_variance", L, kappa=2.0),
        torch.tensor([2.5 + 2 * 1.25, 2.0 + 2 * 12.0], dtype=torch.float64),
    )
    ent = risk("entropic", L, theta=0.5)
    exact = [2 * math.log(sum(math.exp(0.5 * v) for v in row) / 4) for row in L.tolist()]
    torch.testing.assert_close(ent, torch.tensor(exact, dtype=torch.float64))
    # CVaR_0.5: mean of the worst half; CVaR_0.625 of 4 samples: 1.5 samples in the tail
    torch.testing.assert_close(
        risk("cvar", L, alpha=0.5), torch.tensor([3.5, 4.0], dtype=torch.float64)
    )
    assert float(risk("cvar", L[0], alpha=0.625)) == pytest.approx((4 + 0.5 * 3) / 1.5)
    assert float(risk("cvar", L[0], alpha=0.0)) == pytest.approx(2.5)


def test_risk_ordering_and_limits():
    g = torch.Generator().manual_seed(0)
    L = torch.randn(10_000, generator=g, dtype=torch.float64)
    m = float(risk("mean", L))
    assert float(risk("entropic", L, theta=1e-6)) == pytest.approx(m, abs=1e-5)
    # Gaussian: entropic(θ) = μ + θσ²/2; CVaR_α ≥ mean
    assert float(risk("entropic", L, theta=0.5)) == pytest.approx(
        m + 0.25 * float(L.var()), abs=0.03
    )
    assert float(risk("cvar", L, alpha=0.9)) > m + 1.5


def test_risk_is_differentiable():
    L = torch.tensor([1.0, 5.0, 2.0, 3.0], dtype=torch.float64, requires_grad=True)
    risk("cvar", L, alpha=0.5).backward()
    torch.testing.assert_close(L.grad, torch.tensor([0.0, 0.5, 0.0, 0.5], dtype=torch.float64))


def test_lq_costs_population_mean_is_the_mean_field_cost():
    x = torch.randn(3, 100, 2, dtype=torch.float64)
    u = torch.randn(3, 100, 1, dtype=torch.float64)
    Q, Qb, R = (
        torch.eye(2, dtype=torch.float64),
        2 * torch.eye(2, dtype=torch.float64),
        torch.eye(1, dtype=torch.float64),
    )
    c = lq_running(x, u, Q, Qb, R).mean(-1)
    exact = (x**2).sum(-1).mean(-1) + 2 * (x.mean(-2) ** 2).sum(-1) + (u**2).sum(-1).mean(-1)
    torch.testing.assert_close(c, exact)
    torch.testing.assert_close(lq_terminal(x, Q, 0 * Q).mean(-1), (x**2).sum(-1).mean(-1))


def test_bad_input():
    L = torch.ones(4)
    with pytest.raises(
        ValidationError, match=r"^risk: expected one of mean, mean_variance, entropic, cvar"
    ):
        risk("var", L)
    with pytest.raises(ValidationError, match=r"^risk\[cvar\]\.kappa: "):
        risk("cvar", L, kappa=1.0)
    with pytest.raises(ValidationError, match=r"^alpha: "):
        risk("cvar", L, alpha=1.0)
    with pytest.raises(ValidationError, match=r"^theta: "):
        risk("entropic", L, theta=0.0)
