"""Item 5: Ray sweep scaling — cells per second of ``agents.experiments.runner.run_experiment`` with 1 and 2 Ray workers
on equal cells (one scenario, one law, one Λ; only the seed differs), and the per-cell overhead.

Each worker count gets a fresh embedded Ray with ``num_cpus`` = workers (one CPU per cell) and a warm-up run
of four cells per worker, one per task (process start and imports are not counted). The 1-minute load average before each
phase is recorded: on a shared machine, 2 workers only scale if a second core is actually free. Per-cell overhead = wall per cell on
one worker − the mean in-cell time ``wall_time`` that ``agents.play`` reports. These phases run one cell per
task (``fuse=1``). Then, on the most workers, the same cells fused (``fuse=8``: eight cells per task, one ODE
``[8, ·]`` per evaluation, ``agents.experiments.fusion``): ``fusion_speedup`` = fused cells/s ÷ per-cell cells/s.
"""

from __future__ import annotations

import logging
import os
import time

FULL = {"cells": 32, "scenario": "lq_game", "steps": 5, "workers": (1, 2)}
QUICK = {"cells": 4, "scenario": "lq_game", "steps": 2, "workers": (1, 2)}
FUSE = 8


def _max_rel(a, b) -> float:
    """Largest relative difference of the costs of two runs of the same cells."""
    import numpy as np

    x, y = a["cost"].values, b["cost"].values
    return float(np.nanmax(np.abs(x - y) / np.maximum(np.abs(y), 1e-300)))


def experiment(cells: int, scenario: str, steps: int, seed0: int = 0):
    """An experiment of ``cells`` equal cells (seeds seed0 … seed0+cells−1)."""
    from agents.experiments.config import Experiment

    seeds = ", ".join(str(s) for s in range(seed0, seed0 + cells))
    return Experiment.from_toml(
        f'name = "bench_sweep"\nseeds = [{seeds}]\nbackend = "ray"\n[scenarios.{scenario}]\n'
        f'[agents]\nweights = ["feedback"]\n[Lambda]\npresets = ["selfish"]\n'
        f"[training]\nsteps = {steps}\n"
    )


def run(device="cpu", quick: bool = False) -> dict:
    """Cells/s per worker count, the scaling ratio and the per-cell overhead (None entries when unavailable)."""
    try:
        import ray

        from agents.experiments.runner import ray_env, run_experiment
    except ImportError as e:
        return {"unavailable": f"{type(e).__name__}: {e}"}
    size = QUICK if quick else FULL
    exp = experiment(size["cells"], size["scenario"], size["steps"])
    res: dict = {k: size[k] for k in ("cells", "scenario", "steps")}
    res["cores"] = os.cpu_count()
    ray_env()
    if ray.is_initialized():
        ray.shutdown()
    for k in size["workers"]:
        ray.init(address="local", num_cpus=k, include_dashboard=False,
                 logging_level=logging.ERROR, log_to_driver=False)  # fmt: skip
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        try:
            # several warm-up cells per worker, so that every worker process has started and imported
            warm = experiment(4 * k, size["scenario"], size["steps"], seed0=10_000)
            run_experiment(warm, backend="ray", progress=False, fuse=1)
            t0 = time.perf_counter()
            ds = run_experiment(exp, backend="ray", progress=False, fuse=1)
            wall = time.perf_counter() - t0
            if k == max(size["workers"]):
                run_experiment(warm, backend="ray", progress=False, fuse=FUSE)
                t0 = time.perf_counter()
                fds = run_experiment(exp, backend="ray", progress=False, fuse=FUSE)
                fwall = time.perf_counter() - t0
                res[f"fused_workers_{k}"] = {
                    "fuse": FUSE,
                    "wall_s": fwall,
                    "cells_per_s": size["cells"] / fwall,
                    "ok": int((fds["status"].values == "ok").sum()),
                    "max_rel_diff_vs_per_cell": _max_rel(fds, ds),
                }
                res["fusion_speedup"] = wall / fwall
        finally:
            ray.shutdown()
        ok = int((ds["status"].values == "ok").sum())
        res[f"workers_{k}"] = {
            "wall_s": wall,
            "cells_per_s": size["cells"] / wall,
            "ok": ok,
            "cell_time_s": float(ds["wall_time"].values.mean()),
            "loadavg_1min_before": load,
        }
    one = res["workers_1"]
    res["per_cell_overhead_s"] = one["wall_s"] / size["cells"] - one["cell_time_s"]
    if "workers_2" in res:
        res["scaling_2_over_1"] = res["workers_2"]["cells_per_s"] / one["cells_per_s"]
    return res
