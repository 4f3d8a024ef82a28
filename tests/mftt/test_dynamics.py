"""Self-attention dynamics on the sphere (docs/theory.md#sphere): equiangular ODE, energy monotonicity, cone collapse."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from control.errors import ValidationError
from mftt.dynamics import energy, pairwise_inner, self_attention_flow


def _gamma_rhs(variant, n, beta):
    def f(t, g):
        if variant == "SA":
            return (
                2
                * np.exp(beta * g)
                * (1 - g)
                * ((n - 1) * g + 1)
                / (np.exp(beta) + (n - 1) * np.exp(beta * g))
            )
        return 2 / n * np.exp(beta * g) * (1 - g) * ((n - 1) * g + 1)

    return f


@pytest.mark.parametrize("variant", ["SA", "USA"])
@pytest.mark.parametrize("n, d, beta", [(3, 3, 1.0), (4, 6, 2.5)])
def test_equiangular_reduction_matches_scipy(variant, n, d, beta):
    x0 = torch.eye(d)[:n]
    t = torch.linspace(0, 3, 31)
    xs = self_attention_flow(x0, t, beta=beta, variant=variant, rtol=1e-11, atol=1e-12)
    ref = solve_ivp(
        _gamma_rhs(variant, n, beta), (0, 3), [0.0], t_eval=t.numpy(), rtol=1e-12, atol=1e-13
    ).y[0]
    G = pairwise_inner(xs)
    off = G[:, ~torch.eye(n, dtype=torch.bool)]  # every off-diagonal inner product
    assert float((off - torch.as_tensor(ref)[:, None]).abs().max()) <= 1e-6
    torch.testing.assert_close(torch.diagonal(G, dim1=-2, dim2=-1), torch.ones(31, n))


@pytest.mark.parametrize("variant", ["SA", "USA"])
@pytest.mark.parametrize("beta", [0.0, 1.0, 4.0])
def test_energy_never_decreases(variant, beta):
    x0 = torch.randn(7, 3)
    t = torch.linspace(0, 5, 51)
    xs = self_attention_flow(x0, t, beta=beta, variant=variant)
    E = energy(xs, beta)
    assert (E[1:] - E[:-1] >= -1e-10).all()
    assert E[-1] > E[0]
    if beta > 0:  # bounded by the consensus value e^β/(2β)
        assert (E <= math.exp(beta) / (2 * beta) + 1e-9).all()


@pytest.mark.parametrize("qk", [False, True])
def test_hemisphere_collapse(qk):
    g = torch.Generator().manual_seed(3)
    w = torch.tensor([0.0, 0.0, 1.0])
    x0 = torch.randn(8, 3, generator=g)
    x0[:, 2] = x0[:, 2].abs() + 0.05  # an open hemisphere around w
    kw = {}
    if qk:  # the lemma holds for any Q, K with V = I
        kw = dict(Q=torch.randn(3, 3, generator=g), K=torch.randn(3, 3, generator=g))
    t = torch.linspace(0, 40, 81)
    xs = self_attention_flow(x0, t, beta=1.0, **kw)
    m = (xs @ w).amin(-1)
    assert (m[1:] - m[:-1] >= -1e-7).all()  # up to the solver tolerance
    spread = torch.cdist(xs[-1], xs[-1]).max()
    assert spread < 1e-4, float(spread)
    assert torch.cdist(xs[0], xs[0]).max() > 0.5


def test_bad_variant():
    with pytest.raises(ValidationError, match="variant: expected one of SA, USA"):
        self_attention_flow(torch.randn(3, 2), [0.0, 1.0], beta=1.0, variant="XA")
