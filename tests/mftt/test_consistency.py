"""Consistency loop (docs/theory.md#fixed-points): Banach contraction, rotation cycles, KM(½) rate |cos(θ/2)|."""

import math

import pytest
import torch

from mftt import MeanFieldTypeTransformer, MFTTConfig
from mftt.consistency import consistency_loop


def _rot(theta, rho=1.0):
    c, s = math.cos(theta), math.sin(theta)
    R = rho * torch.tensor([[c, -s], [s, c]])
    return lambda p: p @ R.T


def test_contraction_forgets_the_prompt():
    G = _rot(0.7, rho=0.8)
    shift = torch.tensor([1.0, -2.0])
    S = lambda y: y + shift  # noqa: E731
    fixed = torch.linalg.solve(
        torch.eye(2)
        - 0.8 * torch.tensor([[math.cos(0.7), -math.sin(0.7)], [math.sin(0.7), math.cos(0.7)]]),
        shift,
    )
    for p0 in (torch.zeros(2), torch.tensor([5.0, 3.0])):
        r = consistency_loop(G, S, p0, steps=200, tol=1e-12)
        assert r.converged
        torch.testing.assert_close(r.fixed_point, fixed, atol=1e-10, rtol=0)
        assert r.lipschitz == pytest.approx(0.8, rel=1e-6)
        assert r.distance_to_prompt[0] == 0.0


def test_rotation_cycles_plain_but_km_half_contracts_at_cos_half_theta():
    theta = 1.0
    G = _rot(theta)
    p0 = torch.tensor([1.0, 0.0])
    plain = consistency_loop(G, None, p0, steps=30)
    assert not plain.converged
    torch.testing.assert_close(torch.tensor(plain.residuals), torch.full((31,), plain.residuals[0]))
    km = consistency_loop(G, None, p0, steps=30, gamma=0.5)
    ratios = torch.tensor(km.residuals[1:]) / torch.tensor(km.residuals[:-1])
    torch.testing.assert_close(ratios, torch.full((30,), abs(math.cos(theta / 2))))
    assert km.lipschitz == pytest.approx(1.0, rel=1e-6)


def test_mftt_loop_runs_and_reports():
    m = MeanFieldTypeTransformer(MFTTConfig(d_model=4, heads=2, d_ff=6, norm="soft"))
    S = lambda y: 0.3 * torch.tanh(y)  # noqa: E731  a 0.3-Lipschitz summariser
    r = consistency_loop(m, S, torch.randn(5, 4), steps=40, gamma=0.5, tol=1e-9)
    assert len(r.residuals) == len(r.distance_to_prompt) == r.prompts.shape[0]
    assert r.residuals[-1] < r.residuals[0]
    assert math.isfinite(r.lipschitz) and r.lipschitz > 0
