"""Item 4: gradients through a solve — direct backprop vs the adjoint (``control.solve(adjoint=True)``), time
and peak memory as the number of rk4 steps grows.

Memory is the peak of the bytes of distinct tensor storages held for backward, tracked with
``torch.autograd.graph.saved_tensors_hooks`` (a storage counts from its first save until its last saved
reference is freed), plus, where asked, the peak-RSS growth of a fresh subprocess doing one forward+backward.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import torch
from torch import Tensor

from control import solve

from .field import models
from .timing import once

FULL = {"A": 16, "D": 32, "d": 64, "steps": (10, 20, 40, 80)}
QUICK = {"A": 2, "D": 4, "d": 16, "steps": (2, 4)}
CUDA = {"A": 128, "D": 64, "d": 64, "steps": (10, 20, 40, 80)}


class SavedBytes:
    """Context manager: ``peak`` and ``live`` bytes of distinct storages saved for backward inside it."""

    def __init__(self):
        self.live = self.peak = 0
        self._refs: dict[tuple, list] = {}

    def _pack(self, t: Tensor):
        st = t.untyped_storage()
        key = (str(t.device), st.data_ptr())
        ref = self._refs.get(key)
        if ref is None:
            ref = self._refs[key] = [0, st.nbytes()]
            self.live += ref[1]
            self.peak = max(self.peak, self.live)
        ref[0] += 1
        return _Held(t.detach(), key, self)  # detached: no node -> holder -> output cycle

    def _release(self, key: tuple) -> None:
        ref = self._refs[key]
        ref[0] -= 1
        if ref[0] == 0:
            self.live -= ref[1]
            del self._refs[key]

    def __enter__(self):
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda h: h.t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        return False


class _Held:
    __slots__ = ("t", "key", "meter")

    def __init__(self, t: Tensor, key: tuple, meter: SavedBytes):
        self.t, self.key, self.meter = t, key, meter

    def __del__(self):
        self.meter._release(self.key)


def _problem(A: int, D: int, d: int, device):
    batched, _ = models(A, d, device=device, loop=False)
    x0 = torch.randn(A, D, d, device=device) * 0.5
    return batched, x0


def step(model, x0: Tensor, steps: int, adjoint: bool) -> None:
    """One forward solve with ``steps`` rk4 steps over [0, 1] (output x(1) only), a squared-norm loss, its backward."""
    grid = torch.tensor(
        [0.0, 1.0], device=x0.device
    )  # only x(1) is needed: the adjoint keeps no trajectory
    sol = solve(
        model.field, x0, grid, method="rk4", adjoint=adjoint, options={"step_size": 1 / steps}
    )
    loss = sol.xs[-1].pow(2).sum()
    loss.backward()
    model.zero_grad(set_to_none=True)


def measure(model, x0: Tensor, steps: int, adjoint: bool) -> dict:
    """Wall seconds and peak saved-tensor bytes of one forward+backward (and CUDA peak allocation)."""
    dev = x0.device
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    with SavedBytes() as m:
        wall = once(lambda: step(model, x0, steps, adjoint), device=dev)
    row = {"steps": steps, "adjoint": adjoint, "seconds": wall, "saved_mb": m.peak / 2**20}
    if dev.type == "cuda":
        row["cuda_peak_mb"] = (torch.cuda.max_memory_allocated(dev) - base) / 2**20
    return row


def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def child(A: int, D: int, d: int, steps: int, adjoint: bool) -> dict:
    """Run in a fresh process: peak RSS growth (MiB) of one forward+backward over the RSS after set-up.

    The peak (VmHWM) is reset after set-up through ``/proc/self/clear_refs`` (Linux), so import-time peaks
    do not hide the step's; without it the process-lifetime ``ru_maxrss`` is used.
    """
    model, x0 = _problem(A, D, d, "cpu")
    before = _status_kb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    step(model, x0, steps, adjoint)
    peak = _status_kb("VmHWM") if reset else None
    if peak is None or before is None:
        peak, before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, before or 0
    return {"rss_delta_mb": max(peak - before, 0) / 1024}


def rss_delta(A: int, D: int, d: int, steps: int, adjoint: bool) -> float | None:
    """``child`` in a subprocess (CPU only); None if it fails."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.gradients",
        str(A),
        str(D),
        str(d),
        str(steps),
        str(int(adjoint)),
    ]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])["rss_delta_mb"]
    except (subprocess.SubprocessError, ValueError, KeyError, IndexError):
        return None


def run(device="cpu", quick: bool = False, rss: bool | None = None) -> dict:
    """Direct vs adjoint over the step counts; memory ratios from the fewest to the most steps."""
    cuda = torch.device(device).type == "cuda"
    size = QUICK if quick else (CUDA if cuda else FULL)
    A, D, d = size["A"], size["D"], size["d"]
    rss = (not quick and not cuda) if rss is None else rss
    model, x0 = _problem(A, D, d, device)
    step(model, x0, size["steps"][0], False)  # warm-up both paths
    step(model, x0, size["steps"][0], True)
    rows = []
    for n in size["steps"]:
        for adjoint in (False, True):
            row = measure(model, x0, n, adjoint)
            if rss:
                row["rss_delta_mb"] = rss_delta(A, D, d, n, adjoint)
            rows.append(row)
    res = {
        "A": A,
        "D": D,
        "d": d,
        "steps": f"{size['steps'][0]}->{size['steps'][-1]}",
        "rows": rows,
    }
    for adjoint, name in ((False, "direct"), (True, "adjoint")):
        rs = [r for r in rows if r["adjoint"] == adjoint]
        res[f"{name}_mem_ratio"] = rs[-1]["saved_mb"] / max(rs[0]["saved_mb"], 1e-12)
        if rss and rs[0].get("rss_delta_mb") and rs[-1].get("rss_delta_mb") is not None:
            res[f"{name}_rss_ratio"] = rs[-1]["rss_delta_mb"] / max(rs[0]["rss_delta_mb"], 1e-12)
    return res


if __name__ == "__main__":  # the subprocess of ``rss_delta``
    torch.set_num_threads(1)
    a, dd, dm, n, adj = (int(v) for v in sys.argv[1:6])
    print(json.dumps(child(a, dd, dm, n, bool(adj))))
