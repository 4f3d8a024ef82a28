"""Norms (docs/theory.md#norms): ball maps, inverses, Lipschitz constants, seed semantics vs torch.nn."""

import math

import pytest
import torch
from torch.autograd.functional import jacobian

from control.errors import ValidationError
from mftt import BALL_NORMS, NORMS, MFTTConfig, make_norm


def _points(n=200, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = torch.exp(torch.randn(n, 1, generator=g) * 2)  # radii over several decades
    return r * torch.randn(n, d, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("name", BALL_NORMS)
def test_ball_maps_image_in_open_ball_and_inverse_round_trip(name):
    N = NORMS[name](5, eps=0.5) if name in ("rmse", "ermse") else NORMS[name](5)
    x = _points()
    y = N(x)
    r = y.norm(dim=-1)
    assert (r < 1).all() and (r > 0).all()
    torch.testing.assert_close(N.inverse(y), x, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "name, eps, L",
    [
        ("rmse", 0.25, 2.0),
        ("ermse", 0.5, 2.0),
        ("soft", None, 1.0),
        ("capsule", None, 3 * math.sqrt(3) / 8),
    ],
)
def test_lipschitz_constant_via_autograd_jacobians(name, eps, L):
    N = NORMS[name](4, eps=eps) if eps else NORMS[name](4)
    assert N.lipschitz == pytest.approx(L)
    x = _points(100, 4, seed=1)
    # add points near the maximiser: 0 for rmse/ermse/soft, radius 1/√3 for capsule
    u = torch.randn(20, 4)
    u = u / u.norm(dim=-1, keepdim=True)
    near = u * (1 / math.sqrt(3) if name == "capsule" else 1e-7)
    norms = [torch.linalg.matrix_norm(jacobian(N, p), ord=2) for p in torch.cat([x, near])]
    norms = torch.stack(norms)
    assert norms.max() <= L * (1 + 1e-9)
    assert norms.max() >= L * (1 - 1e-5)  # the constant is attained: it is the best one


def test_center_norm_zero_mean_and_radius():
    N = NORMS["center"](6, eps=0.0 + 1e-12)
    y = N(_points(50, 6))
    torch.testing.assert_close(y.sum(-1), torch.zeros(50), atol=1e-9, rtol=0)
    torch.testing.assert_close(y.norm(dim=-1), torch.full((50,), math.sqrt(6)), atol=1e-6, rtol=0)


def test_layer_and_rms_match_torch_nn():
    x = torch.randn(3, 7, 6)
    ln, ref = NORMS["layer"](6), torch.nn.LayerNorm(6, eps=1e-5)
    with torch.no_grad():
        ln.gamma.copy_(torch.randn(6))
        ln.beta.copy_(torch.randn(6))
        ref.weight.copy_(ln.gamma)
        ref.bias.copy_(ln.beta)
    torch.testing.assert_close(ln(x), ref(x))
    rms, ref2 = NORMS["rms"](6), torch.nn.RMSNorm(6, eps=1e-5)
    with torch.no_grad():
        rms.gamma.copy_(torch.randn(6))
        ref2.weight.copy_(rms.gamma)
    torch.testing.assert_close(rms(x), ref2(x))


def test_batch_norm_seed_semantics_and_defects_fixed():
    bn = NORMS["batch"](4)
    x = torch.randn(3, 5, 4) * 3 + 2
    y = bn(x)
    # β starts at 0: per-feature mean 0, population variance 1 over (batch, seq)
    torch.testing.assert_close(y.mean((0, 1)), torch.zeros(4), atol=1e-12, rtol=0)
    torch.testing.assert_close(y.var((0, 1), correction=0), torch.ones(4), atol=1e-4, rtol=0)
    # 2-D input keeps its shape (seed defect A.5.3)
    assert NORMS["layer"](4)(torch.randn(3, 4)).shape == (3, 4)
    assert NORMS["rms"](4)(torch.randn(3, 4)).shape == (3, 4)
    # pooling over the sequence: a future token changes a past output (why it is refused with causal)
    x2 = x.clone()
    x2[:, -1] += 1.0
    assert not torch.allclose(bn(x2)[:, 0], y[:, 0])


def test_batch_norm_with_causal_refused_and_unknown_norm():
    with pytest.raises(ValidationError, match="norm") as e:
        MFTTConfig(norm="batch", causal=True)
    assert "\n" not in str(e.value)
    with pytest.raises(ValidationError, match="soft"):
        make_norm("nope", 3)


def test_agent_stacked_affine_parameters():
    ln = NORMS["layer"](3, batch=(2,))
    with torch.no_grad():
        ln.gamma[1] *= 2
    x = torch.randn(4, 2, 5, 3)
    y = ln(x)
    plain = NORMS["layer"](3)
    torch.testing.assert_close(y[:, 0], plain(x[:, 0]))
    torch.testing.assert_close(y[:, 1], 2 * plain(x[:, 1]))
