"""Item 2: the MFTT vector field G(t, x) of ``mftt.block`` — achieved GFLOP/s against the matmul peak, and
the speed-up of one batched field over A agents (``batch=(A,)``) against a Python loop over A separate models.

Constant weights over the grid of sizes, plus state-feedback laws (``feedback``, ``meanfield``: one weight
matrix per token) at one size. Flops are ``model.flops(D)`` (one agent, one field evaluation at depth = 1) times A. The loop models carry
the same weights as the batched one (sliced from its state), so both compute the same numbers; the largest
difference is recorded as ``max_abs_diff``.
"""

from __future__ import annotations

import itertools

import torch

from mftt import MeanFieldTypeTransformer, MFTTConfig

from .roofline import peak_gflops
from .timing import bench, threads

FULL = {"A": (1, 16, 128), "D": (8, 32, 128), "d": (16, 64)}
QUICK = {"A": (1, 4), "D": (8,), "d": (16,)}
CUDA = {"A": (128, 512), "D": (32, 128), "d": (64, 128)}
# state-feedback weight laws (one weight matrix per token), at one size each: (A, D, d, weights)
LAWS = [(128, 32, 64, "feedback"), (128, 32, 64, "meanfield")]
QUICK_LAWS = [(4, 8, 16, "feedback")]


def field_config(d: int, **kw) -> MFTTConfig:
    """The benchmark transformer: d_model = d, one head per 16 features, d_ff = 4d, one layer (one field)."""
    return MFTTConfig(d_model=d, heads=max(1, d // 16), d_ff=4 * d, depth=1, **kw)


def models(
    A: int,
    d: int,
    *,
    device="cpu",
    dtype=torch.float32,
    seed: int = 0,
    loop: bool = True,
    weights: str = "constant",
) -> tuple[MeanFieldTypeTransformer, list[MeanFieldTypeTransformer]]:
    """A batched model over A agents and (optionally) A single models holding its weights, agent by agent."""
    torch.manual_seed(seed)
    cfg = field_config(d, weights=weights)
    batched = MeanFieldTypeTransformer(cfg, device=device, dtype=dtype, batch=(A,))
    singles = []
    if loop:
        state = batched.state_dict()
        for a in range(A):
            m = MeanFieldTypeTransformer(cfg, device=device, dtype=dtype)
            m.load_state_dict({k: v[a] for k, v in state.items()})
            singles.append(m)
    return batched, singles


def measure(
    A: int,
    D: int,
    d: int,
    *,
    device="cpu",
    peak: float,
    loop: bool = True,
    weights: str = "constant",
) -> dict:
    """One size: batched field time and GFLOP/s, its fraction of ``peak``, and the per-agent loop ratio."""
    batched, singles = models(A, d, device=device, loop=loop, weights=weights)
    x = torch.randn(A, D, d, device=device)
    t = torch.zeros((), device=device)
    f = batched.field
    flops = batched.flops(D) * A
    row = {"weights": weights, "A": A, "D": D, "d": d, "flops": flops}
    with torch.no_grad():
        s = bench(lambda: f(t, x), device=device)
        row.update(batched_ms=s * 1e3, gflops=flops / s / 1e9, frac_peak=flops / s / 1e9 / peak)
        if loop:
            fields = [m.field for m in singles]
            xs = x.unbind(0)

            def per_agent():
                return [g(t, xa) for g, xa in zip(fields, xs, strict=True)]

            s_loop = bench(per_agent, device=device, repeat=3)
            diff = (torch.stack(per_agent()) - f(t, x)).abs().max().item()
            row.update(loop_ms=s_loop * 1e3, speedup=s_loop / s, max_abs_diff=diff)
    return row


def compiled(A: int, D: int, d: int, *, device="cpu") -> dict:
    """Whether ``torch.compile`` of the field pays: compile seconds, eager vs compiled time, break-even calls."""
    import time

    batched, _ = models(A, d, device=device, loop=False)
    x = torch.randn(A, D, d, device=device)
    t = torch.zeros((), device=device)
    f = batched.field
    res: dict = {"A": A, "D": D, "d": d, "threads": torch.get_num_threads()}
    with torch.no_grad():
        try:
            cf = torch.compile(f, dynamic=False)
            t0 = time.perf_counter()
            y = cf(t, x)
            res["compile_s"] = time.perf_counter() - t0
        except Exception as e:  # no compiler tool-chain (e.g. no C++ compiler or triton)
            return {**res, "unavailable": f"{type(e).__name__}: {str(e)[:200]}"}
        eager = bench(lambda: f(t, x), device=device)
        comp = bench(lambda: cf(t, x), device=device)
        res.update(eager_ms=eager * 1e3, compiled_ms=comp * 1e3, speedup=eager / comp)
        res["max_abs_diff"] = (y - f(t, x)).abs().max().item()
        gain = eager - comp
        res["break_even_calls"] = res["compile_s"] / gain if gain > 0 else None
    return res


def run(device="cpu", quick: bool = False, loop_max_A: int = 128) -> dict:
    """The grid of sizes at 1 thread and at all threads (CPU), each against the matmul peak at that count.

    The peak is measured before and after each grid (the better one is used), in this process.
    """
    grid = QUICK if quick else (CUDA if torch.device(device).type == "cuda" else FULL)
    counts = [torch.get_num_threads()]
    if torch.device(device).type == "cpu" and counts[0] > 1:
        counts = [1, counts[0]]
    rows, peaks = [], {}
    for n in counts:
        with threads(n):
            peak0 = peak_gflops(device, quick=quick)
            part = []
            sizes = [(*s, "constant") for s in itertools.product(grid["A"], grid["D"], grid["d"])]
            for A, D, d, w in sizes + (QUICK_LAWS if quick else LAWS):
                row = measure(A, D, d, device=device, peak=peak0, loop=A <= loop_max_A, weights=w)
                part.append({"threads": n, **row})
            peak = max(peak0, peak_gflops(device, quick=quick))
        for r in part:
            r["frac_peak"] = r["gflops"] / peak
        peaks[n] = peak
        rows += part
    res = {"peak_gflops": {str(k): v for k, v in peaks.items()}, "rows": rows}
    if not quick:
        A, D, d = (128, 32, 64) if torch.device(device).type == "cpu" else (512, 128, 64)
        with threads(counts[0]):
            res["compile"] = compiled(A, D, d, device=device)
    return res
