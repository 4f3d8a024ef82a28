"""Smoke test of the benchmark suite: ``python -m benchmarks.run --quick`` on tiny sizes, checking
that the figures it reports are consistent (not their speed: timings are machine- and load-dependent)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.gradients import SavedBytes
from control.errors import ValidationError
from control.laws import WEIGHT_LAWS, make_law

ROOT = Path(__file__).resolve().parent.parent


def test_saved_bytes_counts_distinct_storages_until_backward():
    """exp saves its output, mul saves both inputs: 3 distinct fp32 storages of n floats, freed by backward."""
    n = 1000
    x = torch.randn(n, requires_grad=True)
    w = torch.randn(n, requires_grad=True)
    with SavedBytes() as m:
        y = x.exp()
        z = (y * w).sum() + (x * w).sum()  # x and w saved twice: counted once
        assert m.live == 3 * 4 * n
        z.backward()
        del y, z
    assert m.peak == 3 * 4 * n
    assert m.live == 0


@pytest.mark.parametrize("name", sorted(WEIGHT_LAWS))
def test_law_apply_to_is_the_per_particle_product(name):
    """law.apply_to(t, x, y, μ)_i = y_i θ(t, x_i, μ): the fast product equals the explicit one (float64)."""
    lead, batch, N, d, a, b = (3,), (2,), 6, 4, 5, 7
    law = make_law(name, (a, b), d, batch=batch, dtype=torch.float64)
    with torch.no_grad():  # every coefficient non-zero, so the feedback and mean-field terms count
        for p in law.parameters():
            p.normal_()
    x = torch.randn(lead + batch + (N, d), dtype=torch.float64)
    y = torch.randn(lead + batch + (N, a), dtype=torch.float64)
    t = torch.tensor(0.3, dtype=torch.float64)
    W = law(t, x).expand(lead + batch + (N, a, b))
    want = torch.einsum("...na,...nab->...nb", y, W)
    torch.testing.assert_close(law.apply_to(t, x, y), want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValidationError):
        make_law(name, (a,), d).apply_to(t, x[..., :1, :], y[..., :1, :1])


@pytest.mark.slow
def test_quick_suite_runs_and_is_consistent(tmp_path):
    out = tmp_path / "results.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "benchmarks.run", "--quick", "--threads", "1", "--out", str(out)]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(out.read_text())
    items = res["items"]
    assert set(items) == {"roofline", "field", "solvers", "gradients"}
    assert not any("error" in v for v in items.values()), items
    assert items["roofline"]["matmul_gflops_1thread"] > 0
    # the batched field computes exactly what the per-agent loop of separate models computes
    rows = items["field"]["rows"]
    assert rows and all(r["max_abs_diff"] < 1e-5 and r["gflops"] > 0 for r in rows)
    s = items["solvers"]
    assert s["rk4"]["nfe"] == 4 * s["steps"]  # rk4: four field evaluations per grid step
    assert 0.0 <= s["rk4"]["overhead"] < 1.0 and 0.0 <= s["dopri5"]["overhead"] < 1.0
    tode = s["torchode"]
    if "torchode_joint_ms" in tode:  # the same problem, the same tolerances: the same answer
        assert tode["torchode_joint_max_abs_diff"] < 1e-3
    g = items["gradients"]
    # direct backprop keeps every step's graph; the adjoint keeps one evaluation's
    assert g["direct_mem_ratio"] > 1.4 and g["adjoint_mem_ratio"] < 1.2
    names = [t["target"] for t in res["targets"]]
    assert names[-2].startswith("Ray sweep") and names[-1].startswith("fused sweep")
    assert "targets" in p.stdout


@pytest.mark.slow
@pytest.mark.gpu
def test_quick_suite_on_cuda(tmp_path):
    out = tmp_path / "results.json"
    cmd = [sys.executable, "-m", "benchmarks.run", "--quick", "--device", "cuda", "--out", str(out)]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(out.read_text())
    assert res["machine"]["gpu"] and not any("error" in v for v in res["items"].values())
    assert all(r["max_abs_diff"] < 1e-4 for r in res["items"]["field"]["rows"])
