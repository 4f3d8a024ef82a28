"""Attention kernels (docs/theory.md#attention, docs/theory.md#block): the seed's numpy example, row sums, causality, equivariance, fast path."""

import math

import numpy as np
import pytest
import torch
from scipy.special import softmax

from mftt import ATTENTION, MeanFieldTypeTransformer, MFTTConfig, causal_mask


def _seed_example():
    """The seed's numpy example, with the scale fixed to 1/√d_k (docs/theory.md#attention)."""
    words = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    np.random.seed(42)
    W_Q = np.random.randint(3, size=(3, 3))
    W_K = np.random.randint(3, size=(3, 3))
    W_V = np.random.randint(3, size=(3, 3))
    Q, K, V = words @ W_Q, words @ W_K, words @ W_V
    scores = Q @ K.transpose()
    with pytest.raises(TypeError):  # the slide's literal `K.shape ** 0.5`
        scores / K.shape**0.5
    weights = softmax(scores / K.shape[1] ** 0.5, axis=1)
    return Q, K, V, weights, weights @ V


def test_seed_numpy_example_reproduced_exactly():
    Q, K, V, w_ref, att_ref = _seed_example()
    q, k, v = (torch.tensor(a, dtype=torch.float64) for a in (Q, K, V))
    out, w = ATTENTION["boltzmann"](q, k, v)
    np.testing.assert_allclose(w.numpy(), w_ref, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(out.numpy(), att_ref, rtol=1e-14, atol=1e-14)
    out_fast, _ = ATTENTION["boltzmann"](q, k, v, fast=True)
    np.testing.assert_allclose(out_fast.numpy(), att_ref, rtol=1e-12)


def _qkv(D=6, dk=4, lead=(3,), pairs=False):
    shp = lead + ((2,) if pairs else ()) + (D, dk)
    return torch.randn(shp), torch.randn(shp), torch.randn(lead + (D, 5))


@pytest.mark.parametrize("masked", [False, True])
def test_row_sums(masked):
    D = 6
    mask = causal_mask(D) if masked else None
    q, k, v = _qkv(D)
    _, w = ATTENTION["boltzmann"](q, k, v, mask=mask)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, D))
    _, w = ATTENTION["sigmoid"](q, k, v, mask=mask)
    s = (q @ k.transpose(-1, -2)) / 2
    assert ((w > 0) | (mask is not None)).all() and (w < 1).all()
    rows = w.sum(-1)
    n_visible = torch.arange(1, D + 1) if masked else torch.full((D,), D)
    # row i ≤ (visible count)/(1 + D e^{-max_j s_ij})  (docs/theory.md#block)
    smax = s.masked_fill(~mask, -math.inf).amax(-1) if masked else s.amax(-1)
    assert (rows <= n_visible / (1 + D * torch.exp(-smax)) + 1e-12).all()
    assert (rows < n_visible).all()
    q2, k2, v2 = _qkv(D, pairs=True)
    _, w = ATTENTION["difference"](q2, k2, v2, mask=mask, lam=0.3)
    torch.testing.assert_close(w.sum(-1), torch.full((3, D), 0.7))


def test_sigmoid_is_shifted_logistic():
    q, k, v = _qkv(5)
    _, w = ATTENTION["sigmoid"](q, k, v, scale=1.0)
    s = q @ k.transpose(-1, -2)
    torch.testing.assert_close(w, torch.exp(s) / (5 + torch.exp(s)))


@pytest.mark.parametrize("kernel", list(ATTENTION))
@pytest.mark.parametrize("fast", [False, True])
def test_kernel_causality(kernel, fast):
    D = 7
    pairs = kernel == "difference"
    q, k, v = _qkv(D, pairs=pairs)
    out, _ = ATTENTION[kernel](q, k, v, mask=causal_mask(D), fast=fast)
    i = 4
    q2, k2, v2 = q.clone(), k.clone(), v.clone()
    for a in (q2, k2, v2):
        a[..., i + 1 :, :] += torch.randn_like(a[..., i + 1 :, :])
    out2, _ = ATTENTION[kernel](q2, k2, v2, mask=causal_mask(D), fast=fast)
    torch.testing.assert_close(out2[..., : i + 1, :], out[..., : i + 1, :], rtol=0, atol=1e-12)
    assert not torch.allclose(out2[..., i + 1 :, :], out[..., i + 1 :, :])


@pytest.mark.parametrize("kernel", list(ATTENTION))
def test_kernel_permutation_equivariance(kernel):
    D = 6
    q, k, v = _qkv(D, pairs=kernel == "difference")
    perm = torch.randperm(D)
    out, w = ATTENTION[kernel](q, k, v)
    outp, wp = ATTENTION[kernel](q[..., perm, :], k[..., perm, :], v[..., perm, :])
    torch.testing.assert_close(outp, out[..., perm, :])
    torch.testing.assert_close(wp, w[..., perm, :][..., perm])


@pytest.mark.parametrize("kernel", ["boltzmann", "difference"])
@pytest.mark.parametrize("masked", [False, True])
def test_fast_path_equals_reference(kernel, masked):
    D = 6
    q, k, v = _qkv(D, pairs=kernel == "difference")
    mask = causal_mask(D) if masked else None
    ref, _ = ATTENTION[kernel](q, k, v, mask=mask)
    fast, none = ATTENTION[kernel](q, k, v, mask=mask, fast=True)
    assert none is None
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel", list(ATTENTION))
@pytest.mark.parametrize("law", ["constant", "time", "feedback"])
def test_model_causality(kernel, law):
    cfg = MFTTConfig(
        d_model=4,
        heads=2,
        d_ff=6,
        attention=kernel,
        weights=law,
        causal=True,
        law_options={} if law == "constant" else {"order": 1},
    )
    m = MeanFieldTypeTransformer(cfg)
    with torch.no_grad():  # make the non-constant law parts non-trivial
        for n, p in m.named_parameters():
            if n.endswith(("coef", ".U")):
                p.normal_(0, 0.3)
    x = torch.randn(2, 6, 4)
    x2 = x.clone()
    x2[:, 4:] = torch.randn(2, 2, 4)
    y, y2 = m(x), m(x2)
    torch.testing.assert_close(y2[:, :4], y[:, :4], rtol=0, atol=1e-12)
    assert not torch.allclose(y2[:, 4:], y[:, 4:])


@pytest.mark.parametrize("kernel", list(ATTENTION))
@pytest.mark.parametrize("law", ["feedback", "meanfield"])
def test_model_permutation_equivariance(kernel, law):
    cfg = MFTTConfig(d_model=4, heads=2, d_ff=6, attention=kernel, weights=law, ff="moe", top_k=1)
    m = MeanFieldTypeTransformer(cfg)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith(("coef", "U", "Umu")):
                p.normal_(0, 0.3)
    x = torch.randn(2, 6, 4)
    perm = torch.randperm(6)
    torch.testing.assert_close(m(x[:, perm]), m(x)[:, perm])


def test_seed_head_scaling():
    cfg = MFTTConfig(d_model=4, heads=4, d_ff=3)
    m1 = MeanFieldTypeTransformer(cfg)
    m2 = MeanFieldTypeTransformer(cfg.replace(head_scale="seed"))
    m2.load_state_dict(m1.state_dict())
    u = torch.randn(5, 4)
    a1, _ = m1.block.attn(0.0, u)
    a2, _ = m2.block.attn(0.0, u)
    torch.testing.assert_close(a2, a1 / 2)
