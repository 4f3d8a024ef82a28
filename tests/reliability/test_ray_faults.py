"""Ray under faults: a worker killed by PID mid-sweep (tasks retry, dataset unchanged), loopback-only sockets.

The driver runs as a subprocess started here, with the RAY_* variables removed from its environment so
the runner's own defaults are what is tested. Only that subprocess's descendants are ever signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from agents.experiments.config import Experiment
from agents.experiments.results import open_results
from agents.experiments.runner import run_experiment
from agents.status import PLAYED

from . import _procs

pytestmark = pytest.mark.ray
REPO = Path(__file__).resolve().parents[2]
SWEEP = """
name = "rayfault"
seeds = [0, 1, 2, 3]
backend = "ray"
[scenarios.lq_game]
[agents]
weights = ["constant", "feedback"]
[Lambda]
presets = ["selfish"]
[training]
steps = 3
[ray]
num_cpus = 1
max_retries = 3
"""


def clean_env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    e.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return e


@pytest.mark.slow
def test_killed_worker_retries_and_sockets_stay_on_loopback(tmp_path):
    cfg = tmp_path / "sweep.toml"
    cfg.write_text(SWEEP)
    out = tmp_path / "ray.nc"
    p = subprocess.Popen(
        [sys.executable, "-m", "agents.experiments.cli", "run", str(cfg), "--out", str(out), "--quiet"],
        cwd=REPO, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    tree: set[int] = set()
    killed: tuple[int, str] | None = None
    sockets: set[tuple[int, str, str]] = set()
    t0 = time.monotonic()
    try:
        while p.poll() is None:
            assert time.monotonic() - t0 < 300, "the Ray sweep did not finish"
            procs = _procs.descendants(p.pid)
            tree |= set(procs)
            sockets |= set(_procs.listening([p.pid, *procs]))
            if killed is None:
                busy = [q for q in procs if _procs.cmdline(q).startswith("ray::run_cell")]
                if busy:  # a worker in the middle of a cell: SIGKILL it by PID
                    os.kill(busy[0], signal.SIGKILL)
                    killed = (busy[0], _procs.cmdline(busy[0]) or "ray::run_cell")
            time.sleep(0.05)
        so, se = p.communicate()
    finally:
        if p.poll() is None:
            _procs.kill_tree(p.pid, list(tree))
            p.wait()
        for q in tree:  # anything of this run still alive (Ray should have stopped it): stop by PID
            if _procs.cmdline(q):
                _procs.kill_tree(q)
    assert p.returncode == 0, se[-3000:]
    assert killed is not None, "never saw a worker running a cell"
    ds = open_results(out)
    assert ds["status"].isin(list(PLAYED)).all(), ds["message"].values
    reference = run_experiment(Experiment.from_toml(SWEEP), backend="local", progress=False)
    xr.testing.assert_identical(
        ds.drop_vars("wall_time").drop_attrs(), reference.drop_vars("wall_time").drop_attrs()
    )
    assert ds.attrs["manifest"] == reference.attrs["manifest"]
    # listening sockets of every Ray process this run started: loopback only, no dashboard
    assert sockets, "no listening sockets seen (Ray should have some)"
    public = [s for s in sockets if not _procs.is_loopback(s[2])]
    assert not public, f"sockets not on loopback: {public}"
    assert not any(s[2].endswith(":8265") for s in sockets), "Ray dashboard is listening"
    print(f"\nkilled worker {killed}; {len(sockets)} sockets, all loopback; "
          f"{len(tree)} processes in the run's tree")  # fmt: skip
    np.testing.assert_array_equal(ds["cost"].values, reference["cost"].values)


ACTORS = """
name = "actorfault"
seeds = [0, 1, 2]
backend = "actors"
[scenarios.berge]
[agents]
weights = ["constant"]
[Lambda]
presets = ["selfish", "berge"]
[training]
steps = 400
"""


@pytest.mark.slow
def test_killed_agent_actor_restarts_and_the_cell_finishes(tmp_path):
    """Per-agent actors (plain gradient play): one actor SIGKILLed mid-cell restarts, rebuilds its agent
    and continues from the profile the driver sends each round, so the dataset equals the local run's."""
    cfg = tmp_path / "actors.toml"
    cfg.write_text(ACTORS)
    out = tmp_path / "actors.nc"
    p = subprocess.Popen(
        [sys.executable, "-m", "agents.experiments.cli", "run", str(cfg), "--out", str(out), "--quiet"],
        cwd=REPO, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    tree: set[int] = set()
    killed = None
    t0 = time.monotonic()
    try:
        while p.poll() is None:
            assert time.monotonic() - t0 < 300, "the actor sweep did not finish"
            procs = _procs.descendants(p.pid)
            tree |= set(procs)
            if killed is None:
                busy = [q for q in procs if _procs.cmdline(q).startswith("ray::AgentWorker.step")]
                if busy:
                    os.kill(busy[0], signal.SIGKILL)
                    killed = busy[0]
            time.sleep(0.02)
        so, se = p.communicate()
    finally:
        if p.poll() is None:
            _procs.kill_tree(p.pid, list(tree))
            p.wait()
        for q in tree:
            if _procs.cmdline(q):
                _procs.kill_tree(q)
    assert p.returncode == 0, se[-3000:]
    assert killed is not None, "never saw an agent actor stepping"
    ds = open_results(out)
    assert ds["status"].isin(list(PLAYED)).all(), ds["message"].values
    reference = run_experiment(Experiment.from_toml(ACTORS), backend="local", progress=False)
    xr.testing.assert_identical(
        ds.drop_vars("wall_time").drop_attrs(), reference.drop_vars("wall_time").drop_attrs()
    )
