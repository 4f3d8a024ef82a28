"""The model (docs/theory.md#block, docs/theory.md#depth-ode, docs/theory.md#weight-laws): seed block, Euler = block, discrete → continuous, gradients."""

import itertools
import math

import pytest
import torch

from control.errors import ValidationError
from mftt import ATTENTION, NORMS, MeanFieldTypeTransformer, MFTTConfig

LAWS = ("constant", "time", "feedback", "meanfield")


def _perturb_laws(m, scale=0.3):
    """Give the laws' non-constant parts (zero at init) random values so t, x and μ really enter."""
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.split(".")[-1] in ("coef", "U", "Umu"):
                p.normal_(0, scale)
    return m


def test_seed_boltzmann_transformer_block_by_hand():
    """One block with T = depth, soft norm, causal, 1/√H heads, ReLU FFN is the seed's layer verbatim (docs/theory.md#block)."""
    H, dk, d, q, D = 2, 3, 4, 5, 6
    cfg = MFTTConfig(
        d_model=d, heads=H, d_k=dk, d_ff=q, depth=1, T=1.0, causal=True, head_scale="seed"
    )
    m = MeanFieldTypeTransformer(cfg)
    with torch.no_grad():
        m.block.ff.b1.theta0.normal_()
        m.block.ff.b2.theta0.normal_()
    a, f = m.block.attn, m.block.ff
    WQ, WK, WV = a.QKV.theta0.split(H * dk, -1)  # token-shared laws: one fused [W_Q | W_K | W_V]
    WO = a.W.theta0
    W1, b1, W2, b2 = (law.theta0 for law in (f.W1, f.b1, f.W2, f.b2))
    x = torch.randn(D, d)
    y = m(x)
    u = x / (1 + x.norm(dim=-1, keepdim=True))
    ut = torch.zeros(D, d)
    for i in range(D):  # the slide's loops, literally
        for h in range(H):
            Qh, Kh = WQ[:, h * dk : (h + 1) * dk], WK[:, h * dk : (h + 1) * dk]
            Vh, Wh = WV[:, h * dk : (h + 1) * dk], WO[h * dk : (h + 1) * dk]
            s = torch.stack([(u[i] @ Qh) @ (u[j] @ Kh) / math.sqrt(dk) for j in range(i + 1)])
            w = torch.exp(s) / torch.exp(s).sum()
            ut[i] += (sum(w[j] * (u[j] @ Vh) for j in range(i + 1)) @ Wh) / math.sqrt(H)
    uh = x + ut
    yh = uh / (1 + uh.norm(dim=-1, keepdim=True))
    expected = uh + torch.relu(yh @ W1 + b1) @ W2 + b2
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize("law", LAWS)
def test_euler_step_of_field_equals_one_discrete_block(law):
    cfg = MFTTConfig(
        d_model=4, heads=2, d_ff=6, depth=1, T=1.0, weights=law, attention="difference", ff="moe"
    )
    disc = _perturb_laws(MeanFieldTypeTransformer(cfg))
    cont = MeanFieldTypeTransformer(cfg.replace(continuous=True, method="euler"))
    cont.load_state_dict(disc.state_dict())
    x = torch.randn(3, 5, 4)
    torch.testing.assert_close(cont(x), disc(x), rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(disc(x), disc.block.step(0.0, x, 1.0), rtol=0, atol=0)


@pytest.mark.parametrize("law", ["time", pytest.param("meanfield", marks=pytest.mark.slow)])
def test_discrete_converges_to_continuous_at_first_order(law):
    cfg = MFTTConfig(
        d_model=4, heads=2, d_ff=6, T=1.0, weights=law, activation="tanh", law_options={"order": 2}
    )
    ref_m = _perturb_laws(
        MeanFieldTypeTransformer(
            cfg.replace(continuous=True, method="dopri5", rtol=1e-11, atol=1e-12)
        )
    )
    x = torch.randn(2, 5, 4)
    errs = []
    with torch.no_grad():
        ref = ref_m(x)
        for L in (8, 16, 32, 64):
            m = MeanFieldTypeTransformer(cfg.replace(depth=L))
            m.load_state_dict(ref_m.state_dict())
            errs.append(float((m(x) - ref).abs().max()))
    orders = [math.log2(errs[i] / errs[i + 1]) for i in range(3)]
    assert all(0.85 < p < 1.15 for p in orders), (errs, orders)


def test_adjoint_equals_direct_gradients():
    """Smooth field (tanh), tight adaptive solves: the adjoint ODE reproduces backprop's gradients."""
    cfg = MFTTConfig(
        d_model=4,
        heads=2,
        d_ff=6,
        depth=2,
        weights="feedback",
        continuous=True,
        method="dopri5",
        rtol=1e-9,
        atol=1e-10,
        activation="tanh",
        d_in=3,
        d_out=2,
        law_options={"order": 1, "rank": 1},
    )
    m1 = _perturb_laws(MeanFieldTypeTransformer(cfg), scale=0.05)
    m2 = MeanFieldTypeTransformer(cfg.replace(adjoint=True))
    m2.load_state_dict(m1.state_dict())
    x = torch.randn(2, 5, 3)
    g1 = torch.autograd.grad(m1(x).square().sum(), list(m1.parameters()))
    g2 = torch.autograd.grad(m2(x).square().sum(), list(m2.parameters()))
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6 * float(a.abs().max()))


COMBOS = list(itertools.product(ATTENTION, NORMS, LAWS))
# a fast cover: every kernel, norm and law appears at least once; the full grid runs in the slow step
COVER = [
    (k, n, LAWS[i % 4]) for i, (k, n) in enumerate(zip(list(ATTENTION) * 3, NORMS, strict=False))
]
PARAMS = [pytest.param(*c, marks=() if c in COVER else pytest.mark.slow) for c in COMBOS]


@pytest.mark.parametrize("kernel, norm, law", PARAMS)
def test_gradcheck_every_kernel_norm_law(kernel, norm, law):
    """Input gradient by gradcheck and a directional parameter derivative vs central differences."""
    ff = "moe" if COMBOS.index((kernel, norm, law)) % 3 == 0 else "mlp"
    cfg = MFTTConfig(
        d_model=2,
        heads=1,
        d_ff=3,
        depth=1,
        attention=kernel,
        norm=norm,
        weights=law,
        activation="tanh",
        ff=ff,
        experts=2,
        top_k=1,
        law_options={}
        if law == "constant"
        else {"order": 1, **({"rank": 1} if law in ("feedback", "meanfield") else {})},
    )
    m = _perturb_laws(MeanFieldTypeTransformer(cfg))
    x = torch.randn(3, 2, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,), eps=1e-6, atol=1e-6)
    params = list(m.parameters())
    dirs = [torch.randn_like(p) for p in params]
    x = x.detach()
    g = torch.autograd.grad(m(x).sin().sum(), params)
    analytic = sum((a * v).sum() for a, v in zip(g, dirs, strict=True))
    eps = 1e-6

    def shifted(s):
        with torch.no_grad():
            for p, v in zip(params, dirs, strict=True):
                p.add_(s * v)
            out = m(x).sin().sum()
            for p, v in zip(params, dirs, strict=True):
                p.sub_(s * v)
        return out

    numeric = (shifted(eps) - shifted(-eps)) / (2 * eps)
    assert float(analytic) == pytest.approx(float(numeric), rel=1e-5, abs=1e-7)


def test_agents_batch_equals_separate_models():
    cfg = MFTTConfig(
        d_model=4,
        heads=2,
        d_ff=5,
        depth=2,
        weights="meanfield",
        norm="layer",
        d_in=3,
        d_out=2,
        continuous=True,
    )
    A = 3
    mb = _perturb_laws(MeanFieldTypeTransformer(cfg, batch=(A,)))
    x = torch.randn(2, A, 5, 3)
    y = mb(x)
    assert y.shape == (2, A, 5, 2)
    assert mb.n_params == A * mb.n_params_per_agent
    for a in range(A):
        single = MeanFieldTypeTransformer(cfg)
        single.load_state_dict({k: v[a] for k, v in mb.state_dict().items()})
        torch.testing.assert_close(single(x[:, a]), y[:, a])
    assert single.n_params == mb.n_params_per_agent


@pytest.mark.parametrize("continuous", [False, True])
def test_info_trajectory_and_attention(continuous):
    cfg = MFTTConfig(d_model=4, heads=2, d_ff=5, depth=3, continuous=continuous, d_out=1)
    m = MeanFieldTypeTransformer(cfg)
    x = torch.randn(2, 6, 4)
    y, info = m(x, return_info=True)
    assert info["trajectory"].shape == (4, 2, 6, 4)
    torch.testing.assert_close(info["trajectory"][0], x)
    torch.testing.assert_close(
        y,
        m.read_out["W"].new_tensor(0) + info["trajectory"][-1] @ m.read_out["W"] + m.read_out["b"],
    )
    n_maps = 3 + int(continuous)
    assert len(info["attention"]) == n_maps
    for w in info["attention"]:
        assert w.shape == (2, 2, 6, 6)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 6))


def test_n_params_and_flops_counts():
    cfg = MFTTConfig(d_model=4, heads=2, d_ff=5, depth=2)
    m = MeanFieldTypeTransformer(cfg)
    # Q, K, V, W_h: 4 4×4 matrices; FFN 4·5 + 5 + 5·4 + 4; soft norm has no parameters
    assert m.n_params == 4 * 16 + 20 + 5 + 20 + 4
    assert m.flops(8) > m.flops(4) > 0
    assert MeanFieldTypeTransformer(cfg.replace(depth=4)).flops(8) == 2 * m.flops(8)
    assert MeanFieldTypeTransformer(cfg.replace(weights="feedback")).n_params > m.n_params


@pytest.mark.parametrize(
    "kw, field, allowed",
    [
        ({"attention": "softer"}, "attention", "boltzmann"),
        ({"norm": "l2"}, "norm", "capsule"),
        ({"weights": "neural"}, "weights", "meanfield"),
        ({"ff": "kan"}, "ff", "moe"),
        ({"d_model": 6, "heads": 4}, "heads", "divisor"),
        ({"ff": "moe", "experts": 2, "top_k": 3}, "top_k", "experts=2"),
        ({"norm": "batch", "causal": True}, "norm", "layer"),
        ({"weights": "meanfield", "causal": True}, "weights", "feedback"),
        ({"weights": "time", "law_options": {"rank": 2}}, "law.rank", "order"),
        ({"method": "rk5"}, "method", "dopri5"),
        ({"depth": 0}, "depth", ">= 1"),
    ],
)
def test_bad_configs_one_line_errors(kw, field, allowed):
    with pytest.raises(ValidationError) as e:
        MFTTConfig(**kw)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(field) and allowed in msg, msg


def test_bad_input_shape():
    m = MeanFieldTypeTransformer(MFTTConfig(), batch=(2,))
    with pytest.raises(ValidationError, match="x: expected a tensor"):
        m(torch.randn(3, 5, 8))


@pytest.mark.gpu
def test_continuous_model_on_cuda():
    cfg = MFTTConfig(
        d_model=8,
        heads=2,
        d_ff=16,
        depth=4,
        weights="meanfield",
        continuous=True,
        method="dopri5",
        adjoint=True,
        rtol=1e-4,  # fp32: at the defaults (1e-6/1e-8) the adjoint backward takes minutes (measured on an H100)
        atol=1e-6,
    )
    m = _perturb_laws(MeanFieldTypeTransformer(cfg, device="cuda"))
    x = torch.randn(4, 10, 8, device="cuda")
    y, info = m(x, return_info=True)
    assert y.device.type == "cuda" and info["trajectory"].device.type == "cuda"
    y.square().sum().backward()
    assert all(p.grad is not None and p.grad.device.type == "cuda" for p in m.parameters())
    cpu = MeanFieldTypeTransformer(cfg.replace(adjoint=False))
    cpu.load_state_dict({k: v.cpu() for k, v in m.state_dict().items()})
    torch.testing.assert_close(cpu(x.cpu()), y.detach().cpu(), rtol=1e-5, atol=1e-6)


def test_module_conversions_work():
    """``.to``/``.double`` reach every parameter (no method shadows ``nn.Module._apply``)."""
    import torch

    from mftt import MeanFieldTypeTransformer, MFTTConfig

    m = MeanFieldTypeTransformer(MFTTConfig(d_model=8, heads=2, d_ff=16, d_in=3, d_out=2)).double()
    assert all(p.dtype == torch.float64 for p in m.parameters())
    assert m(torch.randn(2, 4, 3, dtype=torch.float64)).dtype == torch.float64
