"""Fault injection: diverging cells, a killed driver resumed, corrupt result files, a long sweep's memory.

Every process signalled here was started by the test itself, and is signalled by PID.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from agents.experiments.config import Experiment
from agents.experiments.results import open_results, write_results
from agents.experiments.runner import run_experiment
from agents.status import PLAYED
from control.errors import ValidationError

from . import _procs

REPO = Path(__file__).resolve().parents[2]


def env(**extra: str) -> dict[str, str]:
    e = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    e.update(extra)
    return e


def cli(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "agents.experiments.cli", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **{"env": env(), **popen},
    )


def same(a: xr.Dataset, b: xr.Dataset) -> None:
    """Identical results up to timings, creation time and solve counts (a resumed run may group cells into
    fused tasks differently); best-response gains to the search's tolerance."""
    drop = ["wall_time", "nfe", "gain", "exploitability"]
    xr.testing.assert_identical(a.drop_vars(drop).drop_attrs(), b.drop_vars(drop).drop_attrs())
    scale = float(np.nanmax(np.abs(a["empathetic_cost"].values)))
    for k in ("gain", "exploitability"):
        np.testing.assert_allclose(a[k].values, b[k].values, rtol=1e-6, atol=1e-7 * scale)
    for k in ("manifest", "seeds", "versions", "device", "name", "schema"):
        assert np.array_equal(np.asarray(a.attrs[k]), np.asarray(b.attrs[k])), k


# ---- divergence --------------------------------------------------------------------------------
DIVERGE = """
name = "diverge"
seeds = [0]
[scenarios.lq_game]
[scenarios.consensus]
[agents]
weights = ["constant"]
[Lambda]
presets = ["selfish"]
[training]
steps = 4
[sweep]
"training.lr" = [1e8, 0.05]
"""


def test_divergence_marks_the_cell_and_the_sweep_completes(tmp_path):
    """ODE blow-up (lq_game) and non-finite loss (consensus) at lr=1e8: those cells are 'diverged' with the
    reason (and the time reached for the ODE), the lr=0.05 cells after them finish, all kept on disk."""
    exp = Experiment.from_toml(DIVERGE)
    out = tmp_path / "d.nc"
    ds = run_experiment(exp, backend="local", progress=False, out=out)
    st = ds["status"].sel(law="constant", Lambda="selfish", seed=0)
    msg = ds["message"].sel(law="constant", Lambda="selfish", seed=0)
    for scen in ("lq_game", "consensus"):
        assert str(st.sel(scenario=scen, lr=1e8).values) == "diverged"
        # played (4 steps may not converge: agents.status)
        assert str(st.sel(scenario=scen, lr=0.05).values) in PLAYED
        m = str(msg.sel(scenario=scen, lr=1e8).values)
        assert m and "\n" not in m and any(w in m for w in ("diverged", "non-finite", "blow-up")), m
    ode = str(msg.sel(scenario="lq_game", lr=1e8).values)
    t = float(re.search(r"t=([0-9.eE+-]+)", ode).group(1))  # the time reached
    assert 0.0 <= t < 1.0  # horizon T = 1
    cost = ds["cost"].sel(law="constant", Lambda="selfish", seed=0)
    assert np.isnan(cost.sel(lr=1e8).values).all()
    assert np.isfinite(cost.sel(lr=0.05).values[..., :2]).all()
    back = open_results(out)  # the status variable and the partial results survive the file
    assert (back["status"].values == ds["status"].values).all()
    np.testing.assert_array_equal(back["cost"].values, ds["cost"].values)


# ---- the driver SIGKILLed mid-run, then `mftt run --resume` -------------------------------------
RESUME = """
name = "resume"
seeds = [0, 1, 2, 3]
backend = "local"
[scenarios.lq_game]
[agents]
weights = ["constant", "feedback"]
[Lambda]
presets = ["selfish"]
[training]
steps = 3
"""


def test_killed_driver_resumes_without_recomputing(tmp_path):
    cfg = tmp_path / "resume.toml"
    cfg.write_text(RESUME)
    exp = Experiment.from_toml(RESUME)
    out = tmp_path / "r.nc"
    parts = Path(str(out) + ".parts")
    p = cli("run", str(cfg), "--out", str(out), "--quiet", "--keep-parts")
    t0 = time.monotonic()
    try:
        while len(list(parts.glob("cell-*.npz"))) < 3:
            assert p.poll() is None, f"finished before it could be killed: {p.communicate()}"
            assert time.monotonic() - t0 < 120, "no partial files appeared"
            time.sleep(0.02)
    finally:
        p.send_signal(signal.SIGKILL)  # the driver we started, by PID
        p.communicate()
    assert p.returncode == -signal.SIGKILL and not out.exists()
    before = {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in parts.glob("cell-*.npz")}
    assert 3 <= len(before) < exp.n_cells
    assert not list(parts.glob(".*tmp")) or True  # a torn temporary file may remain; it is ignored

    r = cli("run", str(cfg), "--out", str(out), "--resume", "--quiet", "--keep-parts")
    so, se = r.communicate(timeout=240)
    assert r.returncode == 0, se
    after = {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in parts.glob("cell-*.npz")}
    assert len(after) == exp.n_cells
    for (
        name,
        stamp,
    ) in before.items():  # no finished cell recomputed (an atomic rewrite changes the inode)
        assert after[name] == stamp, f"{name} was recomputed"
    reference = run_experiment(exp, backend="local", progress=False)
    same(open_results(out), reference)


# ---- corrupt / truncated results ---------------------------------------------------------------
@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    exp = Experiment.from_toml(
        'name = "c"\n[scenarios.cournot]\n[agents]\nweights = ["constant"]\n[training]\nsteps = 2\n'
    )
    p = tmp_path_factory.mktemp("nc") / "good.nc"
    write_results(run_experiment(exp, backend="local", progress=False), p)
    return p


def _corruptions(good: Path, d: Path) -> dict[str, Path]:
    data = good.read_bytes()
    out = {}
    for frac in (0.0, 0.1, 0.5, 0.9, 0.999):
        p = d / f"trunc{frac}.nc"
        p.write_bytes(data[: int(len(data) * frac)])
        out[f"truncated to {frac:.1%}"] = p
    for seed in range(6):  # damaged metadata or data: some open in HDF5 and fail later
        rng = np.random.default_rng(seed)
        flipped = bytearray(data)
        k = int(rng.integers(1, 300))
        for i in rng.integers(0, len(data), k):
            flipped[i] ^= 0xFF
        (d / f"flip{seed}.nc").write_bytes(bytes(flipped))
        out[f"{k} flipped bytes (seed {seed})"] = d / f"flip{seed}.nc"
    (d / "text.nc").write_text("not a netcdf file\n")
    out["text"] = d / "text.nc"
    xr.Dataset({"x": ("a", np.arange(3.0))}).to_netcdf(d / "foreign.nc", engine="h5netcdf")
    out["foreign NetCDF"] = d / "foreign.nc"
    (d / "dir.nc").mkdir()
    out["a folder"] = d / "dir.nc"
    out["missing"] = d / "missing.nc"
    return out


def test_corrupt_results_give_one_line(good_file, tmp_path):
    """Each damaged file: one ValidationError line; no library noise ('Exception ignored ...' from a
    half-opened h5netcdf file is an unraisable exception, which pytest's filterwarnings=error fails)."""
    import gc

    import agents

    assert "status" in agents.open_results(good_file)
    for what, p in _corruptions(good_file, tmp_path).items():
        with pytest.raises(ValidationError) as e:
            agents.open_results(p)
        msg = str(e.value)
        assert msg.startswith("results:") and "\n" not in msg and len(msg) < 300, (what, msg)
        gc.collect()  # finalisers of anything half-opened run now, inside this test


def test_mftt_show_on_truncated_file(good_file, tmp_path):
    p = tmp_path / "half.nc"
    p.write_bytes(good_file.read_bytes()[: good_file.stat().st_size // 2])
    r = cli("show", str(p))
    so, se = r.communicate(timeout=120)
    assert r.returncode == 2, (so, se)
    assert se.strip().startswith("error: results:") and "\n" not in se.strip(), se
    assert "Traceback" not in so + se


# ---- a long sweep: bounded memory and a live progress bar --------------------------------------
def _sweep_config(n_seeds: int, backend: str) -> str:
    return (
        f'name = "many"\nseeds = {list(range(n_seeds))}\nbackend = "{backend}"\n'
        '[scenarios.cournot]\n[agents]\nweights = ["constant", "feedback"]\n'
        '[Lambda]\npresets = ["selfish", "team"]\n[training]\nsteps = 2\n'
    )


def run_sweep_in_pty(tmp_path: Path, n_seeds: int, backend: str, timeout: float):
    """Run ``mftt run`` on a pseudo-terminal (so rich draws its live bar), sampling the tree's RSS."""
    import pty
    import select

    cfg = tmp_path / "many.toml"
    cfg.write_text(_sweep_config(n_seeds, backend))
    out = tmp_path / "many.nc"
    master, slave = pty.openpty()
    p = subprocess.Popen(
        [sys.executable, "-m", "agents.experiments.cli", "run", str(cfg), "--out", str(out)],
        cwd=REPO, env=env(TERM="xterm", COLUMNS="120"), stdin=slave, stdout=slave, stderr=slave,
        close_fds=True,
    )  # fmt: skip
    os.close(slave)
    buf, samples, tree = b"", [], []
    t0 = time.monotonic()
    try:
        while True:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    chunk = b""
                if not chunk and p.poll() is not None:
                    break
                buf += chunk
            tree = list({*tree, *_procs.descendants(p.pid)})
            samples.append((time.monotonic() - t0, _procs.tree_rss_mb(p.pid), _procs.rss_mb(p.pid)))
            if p.poll() is not None and not r:
                break
            assert time.monotonic() - t0 < timeout, "sweep did not finish in time"
    finally:
        if p.poll() is None:
            _procs.kill_tree(p.pid, tree)
        p.wait()
        os.close(master)
    text = buf.decode(errors="replace")
    return p.returncode, text, samples, out


def _check_sweep(rc, text, samples, out, n_cells, rss_limit_mb):
    assert rc == 0, text[-2000:]
    ds = open_results(out)
    # every cell played (statuses of agents.status: tiny cells may stop before converging)
    assert ds["status"].size == n_cells and ds["status"].isin(list(PLAYED)).all()
    done = [int(m) for m in re.findall(rf"(\d+)/{n_cells}\b", text)]
    assert len(set(done)) >= 5 and max(done) == n_cells, (
        f"no live progress: {sorted(set(done))[:20]}"
    )
    assert "ETA" in text or "eta" in text.lower()
    peak = max(
        s for _, s, _ in samples
    )  # the whole process tree (Ray: driver, raylet, gcs, workers)
    # no per-cell growth in the driver, which holds the finished cells: its RSS over the last half of the
    # run stays within 150 MB of its first half (Ray workers' own start-up is not per-cell growth)
    end = samples[-1][0]
    half = [d for t, _, d in samples if t >= end / 2 and d > 0]
    first = [d for t, _, d in samples if t < end / 2 and d > 0]
    growth = (max(half) - max(first)) if half and first else 0.0
    print(f"\n{n_cells} cells: peak RSS {peak:.0f} MB (tree), driver growth over 2nd half {growth:+.0f} MB, "
          f"{len(set(done))} progress frames, {samples[-1][0]:.1f} s")  # fmt: skip
    assert peak < rss_limit_mb and growth < 150, (peak, growth)
    return peak


def test_sweep_of_many_cells_local(tmp_path):
    """100 tiny cells in-process: live bar frames, bounded RSS."""
    rc, text, samples, out = run_sweep_in_pty(tmp_path, 25, "local", timeout=120)
    _check_sweep(rc, text, samples, out, 100, rss_limit_mb=1500)


@pytest.mark.slow
def test_sweep_of_500_cells_local(tmp_path):
    rc, text, samples, out = run_sweep_in_pty(tmp_path, 125, "local", timeout=300)
    _check_sweep(rc, text, samples, out, 500, rss_limit_mb=1500)


@pytest.mark.slow
@pytest.mark.ray
def test_sweep_of_500_cells_ray(tmp_path):
    rc, text, samples, out = run_sweep_in_pty(tmp_path, 125, "ray", timeout=420)
    _check_sweep(rc, text, samples, out, 500, rss_limit_mb=6000)
