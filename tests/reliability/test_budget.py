"""Resource bounds: the estimate's arithmetic, and refusal up front with the estimate in the one-line message."""

from __future__ import annotations

import time

import pytest

from agents.experiments import budget
from agents.experiments.config import Experiment
from control.errors import ValidationError
from control.limits import check_size, device, real_array


def exp(n=2, seeds=1, steps=10, **budget_kw):
    d = {
        "name": "b",
        "scenarios": {"cournot": {}},
        "agents": {"n": n, "weights": ["constant"]},
        "training": {"steps": steps},
        "seeds": list(range(seeds)),
        "backend": "local",
        "budget": {"max_memory_mb": 1e9, "max_cells": 10**9, **budget_kw},
    }
    return Experiment.from_dict(d)


def test_estimate_arithmetic():
    """Result memory is linear in the cells, and per cell 4n + (steps+1)n + n² + 256·9 + 8 float64, ×2."""
    a, b = budget.estimate(exp(seeds=1)), budget.estimate(exp(seeds=10))
    assert (a.cells, b.cells) == (1, 10)
    assert b.result_mb == pytest.approx(10 * a.result_mb)
    n, it = 2, 11
    per_cell = 4 * n + it * n + n * n + 256 * 9 + 8
    assert a.result_mb == pytest.approx(per_cell * 8 * 2 / 2**20)
    big = budget.estimate(exp(n=1000))
    tokens = 2 * 8 * 6  # Cournot's default markets x window price/quantity tokens
    assert big.cell_mb == pytest.approx((1000**2 + 11 * 1000 + tokens) * 8 / 2**20)
    assert "1 cells, up to 1000 agents x 11 iterations" in str(big)


def test_refused_up_front_with_the_estimate():
    t0 = time.perf_counter()
    with pytest.raises(ValidationError) as e:
        exp(n=40_000, max_memory_mb=4096)  # Λ alone: 40000² × 8 B ≈ 12 GB per cell
    assert time.perf_counter() - t0 < 1.0  # nothing was allocated or run
    msg = str(e.value)
    assert msg.startswith("budget.max_memory_mb:") and "\n" not in msg
    assert "MB" in msg and "agents.n = 40000" in msg
    with pytest.raises(ValidationError) as e:
        exp(seeds=50, max_cells=49)
    assert str(e.value).startswith("budget.max_cells:") and "got 50" in str(e.value)
    assert budget.check(exp(seeds=50), max_cells=50).cells == 50


def test_python_api_size_guards(monkeypatch):
    assert check_size("x", (1024, 1024)) == pytest.approx(8.0)
    monkeypatch.setenv("MFTT_MAX_MEMORY_MB", "4")
    with pytest.raises(
        ValidationError, match=r"^x: expected a size whose arrays fit the 4 MB budget"
    ):
        check_size("x", (1024, 1024))
    with pytest.raises(ValidationError, match="^n_agents:"):
        budget.check_agents(10**6)
    assert budget.check_agents(100) == 100
    with pytest.raises(ValidationError, match="^A: expected a real number or array"):
        real_array("A", "abc")
    with pytest.raises(ValidationError, match="^A: expected finite entries"):
        real_array("A", [[1.0, float("nan")]])
    for bad in ("banana", "", 3, "cuda:99", "tpu"):
        with pytest.raises(ValidationError, match="^device:"):
            device("device", bad)
    assert str(device("device", "cpu")) == "cpu"
