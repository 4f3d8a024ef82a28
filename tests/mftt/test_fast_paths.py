"""The field's fast paths equal the plain ones (float64): fused Q|K|V law, fused bias products, agent chunks."""

import pytest
import torch

import mftt.attention
import mftt.weights
from mftt import MeanFieldTypeTransformer, MFTTConfig, MultiHeadAttention
from mftt.weights import agent_chunks, gemm

F64 = dict(dtype=torch.float64)


@pytest.fixture
def one_thread():
    """Chunk sizes scale with the intra-op thread count: pin it to 1 for exact chunk expectations."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _perturb(m, scale=0.3):
    """Random values in the laws' time coefficients (zero at init) and biases, so t and b really enter."""
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.split(".")[-1] in ("coef", "U", "Umu") or ".b" in n:
                p.normal_(0, scale)
    return m


@pytest.mark.parametrize("law", ["constant", "time"])
@pytest.mark.parametrize("kernel", ["boltzmann", "difference", "sigmoid"])
@pytest.mark.parametrize("batch", [(), (3,)])
def test_fused_qkv_equals_separate_laws(law, kernel, batch):
    """One [W_Q | W_K | W_V] law = three laws entry-wise; the old three-law state dict loads into it."""
    kw = dict(kernel=kernel, law=law, causal=kernel == "sigmoid", batch=batch, **F64)
    kw["law_options"] = {"order": 2} if law == "time" else {}
    sep = _perturb(MultiHeadAttention(6, 2, 3, 4, fuse=False, **kw))
    fused = MultiHeadAttention(6, 2, 3, 4, **kw)
    assert fused.fused and not sep.fused and hasattr(sep, "Q") and not hasattr(fused, "Q")
    fused.load_state_dict(sep.state_dict())  # separate Q, K, V entries → columns of QKV
    for n in ("theta0",) + (("coef",) if law == "time" else ()):
        want = torch.cat([getattr(getattr(sep, c), n) for c in "QKV"], -1)
        torch.testing.assert_close(getattr(fused.QKV, n), want, rtol=0, atol=0)
    assert sum(p.numel() for p in fused.parameters()) == sum(p.numel() for p in sep.parameters())
    u = torch.randn(2, *batch, 5, 6, **F64)
    t = torch.tensor(0.7, **F64)
    for need in (False, True):
        a, wa = sep(t, u, need_weights=need)
        b, wb = fused(t, u, need_weights=need)
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
        if need:
            torch.testing.assert_close(wb, wa, rtol=1e-12, atol=1e-12)
    qs, qf = sep.projections(t, u), fused.projections(t, u)
    for x, y in zip(qs, qf, strict=True):
        torch.testing.assert_close(y, x, rtol=1e-12, atol=1e-12)


def test_fused_init_draws_the_separate_laws_random_stream():
    """Same seed, same weights: the fused law's columns are the three laws' draws, in order."""
    torch.manual_seed(3)
    sep = MultiHeadAttention(8, 2, 4, 4, fuse=False, batch=(2,))
    torch.manual_seed(3)
    fused = MultiHeadAttention(8, 2, 4, 4, batch=(2,))
    want = torch.cat([sep.Q.theta0, sep.K.theta0, sep.V.theta0], -1)
    torch.testing.assert_close(fused.QKV.theta0, want, rtol=0, atol=0)
    torch.testing.assert_close(fused.W.theta0, sep.W.theta0, rtol=0, atol=0)


@pytest.mark.parametrize(
    "y_shape, w_shape, b_shape",
    [
        ((5, 3), (3, 4), (1, 4)),  # one matrix: addmm
        ((2, 5, 3), (3, 4), (1, 4)),  # one matrix, lead axes folded into the rows: addmm
        ((2, 5, 3), (3, 4), (5, 4)),  # per-token bias: product then add
        ((2, 5, 3), (2, 3, 4), (2, 1, 4)),  # per-agent matrices: baddbmm
        ((2, 5, 3), (2, 3, 4), (2, 5, 4)),  # per-agent, per-token bias: baddbmm
        ((6, 2, 5, 3), (2, 3, 4), (2, 1, 4)),  # per-agent with lead axes: broadcast matmul
        ((2, 5, 3), (2, 3, 4), None),
        ((2, 5, 3), (3, 4), None),
    ],
)
def test_gemm_equals_matmul_plus_bias(y_shape, w_shape, b_shape):
    y, w = torch.randn(y_shape, **F64), torch.randn(w_shape, **F64)
    b = None if b_shape is None else torch.randn(b_shape, **F64)
    want = y @ w if b is None else y @ w + b
    torch.testing.assert_close(gemm(y, w, b), want, rtol=1e-13, atol=1e-13)


def test_agent_chunks_cover_the_agents_in_balanced_slices(one_thread):
    assert agent_chunks(4, 10, target=100) is None
    for A, per, target in [(128, 8192, 1 << 18), (128, 40960, 1 << 19), (7, 5, 11), (5, 100, 1)]:
        chunks = agent_chunks(A, per, target=target)
        sizes = [s.stop - s.start for s in chunks]
        assert chunks[0].start == 0 and chunks[-1].stop == A and len(chunks) > 1
        assert all(a.stop == b.start for a, b in zip(chunks[:-1], chunks[1:], strict=True))
        assert max(sizes) - min(sizes) <= 1 and max(sizes) * per <= max(target, per) * 1.5
    torch.set_num_threads(2)  # per-thread target: twice the floats a chunk with two threads
    assert len(agent_chunks(128, 8192, target=1 << 18)) == 2


@pytest.mark.parametrize(
    "kw",
    [
        dict(weights="constant"),
        dict(weights="time", law_options={"order": 2}, activation="tanh"),
        dict(weights="constant", attention="difference", causal=True, norm="layer"),
        dict(weights="constant", head_scale="seed", norm="rms"),
    ],
)
def test_agent_chunked_field_equals_one_pass(kw, monkeypatch, one_thread):
    """Without an autograd graph the per-agent field runs over agent chunks: the same numbers as one pass."""
    A, D, d = 5, 6, 8
    m = _perturb(
        MeanFieldTypeTransformer(MFTTConfig(d_model=d, heads=2, d_ff=12, depth=1, **kw), batch=(A,))
    ).double()
    x = torch.randn(A, D, d, **F64)
    t = torch.tensor(0.4, **F64)
    one_pass = m.field(t, x.requires_grad_())  # a graph: no chunks
    monkeypatch.setattr(mftt.weights, "CHUNK_FLOATS", D * 12 * 2)  # FFN: 2 agents a chunk
    monkeypatch.setattr(mftt.attention, "QKV_CHUNK_FLOATS", D * 3 * d)  # attention: 1 agent a chunk
    calls = {"bmm": [], "baddbmm": []}
    for name, seen in calls.items():
        f = getattr(torch, name)
        monkeypatch.setattr(
            torch, name, lambda *a, f=f, seen=seen, **k: seen.append(a[-2]) or f(*a, **k)
        )
    with torch.no_grad():
        chunked = m.field(t, x)
    # attention (bmm) and feed-forward (baddbmm) products really ran on agent chunks
    assert [[y.shape[0] for y in c] for c in calls.values()] == [[1] * 10, [1, 1, 2, 2, 2, 2]]
    torch.testing.assert_close(chunked, one_pass.detach(), rtol=1e-12, atol=1e-12)
