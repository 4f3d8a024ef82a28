"""Item 3: full solves of the batched MFTT field over t ∈ [0, 1] — the share of wall time spent outside the
vector field (solver overhead) for rk4 and dopri5, and the batched dopri5 solve against torchode.

``dopri5`` is ``control.solve``'s default, the stage-major Dormand–Prince of ``control.dopri``;
``dopri5_torchdiffeq`` (torchdiffeq's own, stages on the last axis) is measured beside it for attribution:
both take the same steps and NFE, so the difference is the stage bookkeeping.

The field is wrapped in a timer (device-synchronised around each call), so overhead = 1 − field time / solve
time (both CPU time at one thread, wall time otherwise: ``timing.clock``); the median of repeats is reported.
torchode (an optional extra, ``pip install .[bench]``) solves the same problem twice: as one sample holding
every agent (``joint``: the same error norm and step sizes as ``control.solve``) and with one sample per
agent (``per_agent``: torchode's own per-sample step sizes; the field is autonomous, so this is exact).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from control import solve

from .field import models
from .timing import clock, sync

FULL = {"A": 128, "D": 32, "d": 64, "steps": 10}
QUICK = {"A": 4, "D": 8, "d": 16, "steps": 4}
CUDA = {"A": 512, "D": 128, "d": 64, "steps": 10}
RTOL, ATOL = 1e-5, 1e-7


class Timed(nn.Module):
    """A field that adds the wall time of each of its calls to ``seconds``."""

    def __init__(self, field: nn.Module, device):
        super().__init__()
        self.field, self.device = field, device
        self.seconds, self.calls = 0.0, 0

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        now = clock(self.device)
        sync(self.device)
        t0 = now()
        y = self.field(t, x)
        sync(self.device)
        self.seconds += now() - t0
        self.calls += 1
        return y


def overhead(
    field: nn.Module, x0: Tensor, grid: Tensor, method: str, device, repeat: int, **solve_kw
) -> dict:
    """Median time of a solve and the fraction of it outside the field (median of ``repeat``)."""
    timed = Timed(field, device)
    kw = dict(method=method, rtol=RTOL, atol=ATOL, **solve_kw)
    solve(timed, x0, grid, **kw)  # warm-up
    runs = []
    for _ in range(repeat):
        timed.seconds, timed.calls = 0.0, 0
        now = clock(device)
        sync(device)
        t0 = now()
        sol = solve(timed, x0, grid, **kw)
        sync(device)
        wall = now() - t0
        runs.append((1 - timed.seconds / wall, wall, sol.nfe))
    runs.sort()
    frac, wall, nfe = runs[len(runs) // 2]
    return {
        "overhead": frac,
        "wall_ms": wall * 1e3,
        "nfe": nfe,
        "field_ms": wall * (1 - frac) * 1e3 / nfe,
    }


def torchode_solver(field: nn.Module, shape: tuple[int, ...], batch: int):
    """A torchode dopri5 solver of dx/dt = field(x) on ``batch`` samples, or None when torchode is missing."""
    try:
        import torchode as to
    except ImportError:
        return None

    def f(t: Tensor, y: Tensor) -> Tensor:
        return field(t[0], y.reshape(shape)).reshape(batch, -1)

    term = to.ODETerm(f)
    step = to.Dopri5(term=term)
    ctrl = to.IntegralController(atol=ATOL, rtol=RTOL, term=term)
    return to.AutoDiffAdjoint(step, ctrl), to.InitialValueProblem


def vs_torchode(field: nn.Module, x0: Tensor, grid: Tensor, device, repeat: int) -> dict:
    """Wall time of control.solve(dopri5) (the stage-major default) and of torchode on the same problem, and
    their ratios: best of ``2·repeat`` rounds, each round timing the three solves back to back, so that a
    change of machine load during the measurement cannot favour one side."""
    out: dict = {}

    def ours():
        return solve(field, x0, grid, method="dopri5", rtol=RTOL, atol=ATOL)

    runs = {"ours": ours}
    A = x0.shape[0]
    solved = {"ours": ours()}
    for name, batch in (("joint", 1), ("per_agent", A)):
        made = torchode_solver(field, tuple(x0.shape), batch)
        if made is None:
            out["torchode"] = "unavailable (pip install torchode, the 'bench' extra)"
            break
        solver, IVP = made
        ivp = IVP(y0=x0.reshape(batch, -1), t_eval=grid.expand(batch, -1))
        runs[name] = lambda s=solver, p=ivp: s.solve(p)
        solved[name] = runs[name]()  # warm-up
    best = {k: float("inf") for k in runs}
    now = clock(device)
    for _ in range(2 * repeat):
        for k, fn in runs.items():
            sync(device)
            t0 = now()
            fn()
            sync(device)
            best[k] = min(best[k], now() - t0)
    out["ours_ms"] = best["ours"] * 1e3
    out["ours_nfe"] = solved["ours"].nfe
    y_ours = solved["ours"].xs[-1]
    for name in ("joint", "per_agent"):
        if name not in runs:
            continue
        sol = solved[name]
        out[f"torchode_{name}_ms"] = best[name] * 1e3
        out[f"torchode_{name}_nfe"] = int(sol.stats["n_f_evals"].max())
        out[f"speedup_vs_torchode_{name}"] = best[name] / best["ours"]
        out[f"torchode_{name}_max_abs_diff"] = (sol.ys[:, -1].reshape(x0.shape) - y_ours).abs().max().item()  # fmt: skip
    return out


def run(device="cpu", quick: bool = False) -> dict:
    """rk4 and dopri5 (ours and torchdiffeq's) overhead at one size, and dopri5 against torchode on the same
    field."""
    size = QUICK if quick else (CUDA if torch.device(device).type == "cuda" else FULL)
    A, D, d, steps = size["A"], size["D"], size["d"], size["steps"]
    batched, _ = models(A, d, device=device, loop=False)
    field = batched.field
    x0 = torch.randn(A, D, d, device=device) * 0.5
    grid = torch.linspace(0, 1, steps + 1, device=device)
    repeat = 3
    res = {"A": A, "D": D, "d": d, "steps": steps, "rtol": RTOL, "atol": ATOL}
    with torch.no_grad():
        for method in ("rk4", "dopri5", "dopri5_torchdiffeq"):
            res[method] = overhead(field, x0, grid, method, device, repeat)
            # the same without control.solve's per-evaluation finiteness check (attribution only)
            nocheck = overhead(field, x0, grid, method, device, repeat, check_finite=False)
            res[method]["overhead_without_finite_check"] = nocheck["overhead"]
        res["torchode"] = vs_torchode(field, x0, grid, device, repeat)
    return res
