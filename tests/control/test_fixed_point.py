"""Krasnoselskii–Mann iteration, its ODE limit and Lipschitz estimates (docs/theory.md#fixed-points, docs/theory.md#depth-ode)."""

import math

import pytest
import torch

from control import ValidationError, km_flow, km_iterate, lipschitz_estimate


def rotation(theta):
    c, s = math.cos(theta), math.sin(theta)
    return torch.tensor([[c, -s], [s, c]], dtype=torch.float64)


def test_km_half_contracts_a_rotation_by_cos_half_angle():
    """Picard cycles on a rotation; KM(½) contracts by |cos(θ/2)| (docs/theory.md#fixed-points)."""
    theta = 1.2
    Rm = rotation(theta)
    y0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    picard = km_iterate(lambda y: Rm @ y, y0, steps=50, gamma=1.0)
    assert not picard.converged and picard.residuals[-1] == pytest.approx(picard.residuals[0])
    km = km_iterate(lambda y: Rm @ y, y0, steps=30, gamma=0.5, tol=0.0)
    ratios = [km.residuals[k + 1] / km.residuals[k] for k in range(len(km.residuals) - 1)]
    assert all(r == pytest.approx(abs(math.cos(theta / 2)), rel=1e-9) for r in ratios)
    done = km_iterate(lambda y: Rm @ y, y0, steps=500, gamma="sqrt", tol=1e-6)
    assert done.converged and float(done.y.norm()) < 1e-5
    slow = km_iterate(lambda y: Rm @ y, y0, steps=200, gamma="harmonic", tol=0.0)
    assert all(b < a for a, b in zip(slow.residuals, slow.residuals[1:], strict=False))


def test_km_limit_of_an_affine_contraction():
    A = torch.tensor([[0.5, 0.2], [-0.1, 0.3]], dtype=torch.float64)
    c = torch.tensor([1.0, -1.0], dtype=torch.float64)
    ystar = torch.linalg.solve(torch.eye(2, dtype=torch.float64) - A, c)
    res = km_iterate(lambda y: A @ y + c, torch.zeros(2, dtype=torch.float64), steps=200, tol=1e-12)
    assert res.converged and torch.allclose(res.y, ystar, atol=1e-11)
    res2 = km_iterate(lambda y: A @ y + c, torch.zeros(2, dtype=torch.float64),
                      steps=200, gamma=lambda k: 0.8, tol=1e-12)  # fmt: skip
    assert res2.converged and res2.steps < res.steps


def test_km_flow_matches_the_affine_closed_form():
    """dY/dt = AY + c − Y: Y(t) = Y* + e^{(A−I)t}(Y0 − Y*) (docs/theory.md#depth-ode)."""
    A = torch.tensor([[0.5, 0.2], [-0.1, 0.3]], dtype=torch.float64)
    c = torch.tensor([1.0, -1.0], dtype=torch.float64)
    eye = torch.eye(2, dtype=torch.float64)
    ystar = torch.linalg.solve(eye - A, c)
    y0 = torch.tensor([3.0, 2.0], dtype=torch.float64)
    sol = km_flow(lambda y: y @ A.T + c, y0, T=4.0, n=8, rtol=1e-10, atol=1e-12)
    for t, y in zip(sol.t, sol.xs, strict=True):
        exact = ystar + torch.linalg.matrix_exp((A - eye) * t) @ (y0 - ystar)
        assert torch.allclose(y, exact, atol=1e-8)


def test_lipschitz_estimate_is_the_spectral_norm():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(5, 5, generator=g, dtype=torch.float64)
    y = torch.randn(5, dtype=torch.float64)
    est = lipschitz_estimate(lambda v: W @ v, y, iters=200)
    assert est == pytest.approx(float(torch.linalg.matrix_norm(W, 2)), rel=1e-6)
    # nonlinear: ‖diag(tanh'(Wy)) W‖₂ at y
    J = torch.diag(1 - torch.tanh(W @ y) ** 2) @ W
    est = lipschitz_estimate(lambda v: torch.tanh(W @ v), y, iters=300)
    assert est == pytest.approx(float(torch.linalg.matrix_norm(J, 2)), rel=1e-4)


def test_bad_input():
    y0 = torch.zeros(2)
    with pytest.raises(ValidationError, match=r"^gamma: expected one of harmonic, sqrt"):
        km_iterate(lambda y: y, y0, gamma="cosine")
    with pytest.raises(ValidationError, match=r"^gamma: "):
        km_iterate(lambda y: y, y0, gamma=1.5)
    with pytest.raises(ValidationError, match=r"^T: "):
        km_flow(lambda y: y, y0, T=-1.0)
