"""The ``mftt`` command through real subprocesses: help, runs, sweeps, show/report, config errors, kill + resume."""

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
from control import WEIGHT_LAWS

REPO = Path(__file__).resolve().parents[2]
TINY = """
name = "tiny"
seeds = [0, 1]
[scenarios.cournot]
[agents]
weights = ["constant", "feedback"]
[Lambda]
presets = ["selfish", "team"]
[training]
steps = 3
"""


def mftt(*args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter (as the ``mftt`` console script does)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "COLUMNS": "160"}
    r = subprocess.run(
        [sys.executable, "-m", "agents.experiments.cli", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    if check and r.returncode != 0:
        raise AssertionError(f"exit {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def same(a: xr.Dataset, b: xr.Dataset) -> None:
    xr.testing.assert_identical(
        a.drop_vars("wall_time").drop_attrs(), b.drop_vars("wall_time").drop_attrs()
    )
    assert a.attrs["manifest"] == b.attrs["manifest"]


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    cfg = d / "tiny.toml"
    cfg.write_text(TINY)
    r = mftt("run", str(cfg), "--out", str(d / "tiny.nc"), "--backend", "local")
    assert "wrote" in r.stdout and "cournot" in r.stdout
    return cfg, d / "tiny.nc"


def invoke(*args: str):
    """The CLI in-process (typer's runner): for the many small help/error checks."""
    from typer.testing import CliRunner

    from agents.experiments.cli import app

    return CliRunner().invoke(app, list(args))


def test_help_of_every_command_has_an_example():
    top = mftt("--help").stdout  # one real process; the per-command pages in-process
    for cmd in ("run", "compare", "sweep", "scenarios", "show", "report", "app"):
        assert cmd in top
        r = invoke(cmd, "--help")
        assert r.exit_code == 0
        assert "Example: mftt " + cmd in " ".join(r.stdout.split()), r.stdout


def test_the_console_script_is_installed():
    script = Path(sys.executable).parent / "mftt"
    if not script.exists():
        pytest.skip("mftt console script not installed in this environment")
    r = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert r.returncode == 0 and "compare" in r.stdout, r.stderr


def test_run_writes_the_file_that_another_process_shows_and_reports(tiny_file, tmp_path):
    cfg, nc = tiny_file
    ds = open_results(nc)  # written by the subprocess
    same(ds, run_experiment(Experiment.from_toml(cfg), backend="local", progress=False))
    shown = mftt("show", str(nc)).stdout
    assert "tiny" in shown and "cournot" in shown and "feedback" in shown and "NashConv" in shown
    rep = mftt("report", str(nc), "--out-dir", str(tmp_path)).stdout
    png, html = tmp_path / "tiny.png", tmp_path / "tiny.html"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "plotly" in html.read_text()[:200_000] and "wrote" in rep


def test_compare_writes_nc_png_html(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY.replace("seeds = [0, 1]", "seeds = [0]"))
    out = tmp_path / "res" / "c.nc"
    r = mftt("compare", str(cfg), "--out", str(out), "--backend", "local", "--quiet")
    for suffix in (".nc", ".png", ".html"):
        assert out.with_suffix(suffix).is_file(), r.stdout
    table = r.stdout
    for col in ("scenario", "Lambda", "law", "params", "cost", "NashConv", "gap", "status"):
        assert col in table


def test_sweep_adds_a_dimension(tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text(TINY.replace("seeds = [0, 1]", "seeds = [0]"))
    out = tmp_path / "s.nc"
    mftt("sweep", str(cfg), "--set", "agents.n=2,3", "--out", str(out), "--backend", "local", "-q")
    ds = open_results(out)
    assert list(ds["n_agents"].values) == [2, 3] and ds.sizes["agent"] == 3
    # three firms: the third agent's cost is present only for n = 3
    c = ds["cost"].isel(scenario=0, Lambda=0, law=0, seed=0)
    assert np.isnan(c.sel(n_agents=2).values[2]) and np.isfinite(c.sel(n_agents=3).values).all()


def test_scenarios_and_app_dry_run():
    out = mftt("scenarios").stdout
    from agents.scenarios import SCENARIOS

    for name in SCENARIOS:
        assert name in out
    cmd = mftt("app", "--dry-run").stdout
    assert "streamlit" in cmd and "--server.address 127.0.0.1" in cmd and "streamlit_app.py" in cmd
    scripts = [w for w in cmd.split() if w.endswith(".py")]
    assert len(scripts) == 2 and all(Path(w).is_file() for w in scripts), (
        cmd
    )  # serve.py, streamlit_app.py


@pytest.mark.parametrize(
    "text, field",
    [
        ('[scenarios.cournot]\n[agents]\nweights = "fedback"\n', "agents.weights"),
        ("[scenarios.cournot]\n[agents]\nn = -2\n", "agents.n"),
        ("[scenarios.cournot]\nsurprise = 1\n", "scenarios.cournot.surprise"),
        ("[scenarios.cournot\n", "config"),
    ],
)
def test_config_errors_exit_2_with_one_line(tmp_path, text, field):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    r = invoke("run", str(cfg), "--backend", "local")
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}:"), r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_a_config_error_in_a_real_process_is_one_line_and_code_2(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[scenarios.cournot]\n[agents]\nweights = "fedback"\n')
    r = mftt("run", str(cfg), check=False)
    assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout
    laws = ", ".join(WEIGHT_LAWS)  # the registry's names
    assert r.stderr.strip() == f"error: agents.weights: expected one of {laws}, got 'fedback'"


def test_other_input_errors_exit_2(tmp_path, tiny_file):
    cfg, _ = tiny_file
    bad = tmp_path / "bad.nc"
    bad.write_bytes(b"garbage")
    for args, field in (
        (("run", str(tmp_path / "absent.toml")), "config"),
        (("run", str(cfg), "--backend", "mpi"), "backend"),
        (("run", str(cfg), "--set", "training.steps"), "--set"),
        (("sweep", str(cfg), "--set", "agents.nn=2,3"), "sweep.agents.nn"),
        (("show", str(tmp_path / "absent.nc")), "results"),
        (("report", str(bad)), "results"),
    ):
        r = invoke(*args)
        assert r.exit_code == 2, (args, r.stderr)
        assert (
            r.stderr.strip().splitlines() == [r.stderr.strip()] and f"error: {field}:" in r.stderr
        )


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_same_dataset_without_recomputing(tmp_path):
    cfg = tmp_path / "k.toml"
    cfg.write_text(
        TINY.replace("seeds = [0, 1]", "seeds = [0, 1, 2, 3, 4, 5]").replace(
            "steps = 3", "steps = 60"
        )
    )
    out = tmp_path / "k.nc"
    parts = tmp_path / "k.nc.parts"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "agents.experiments.cli", "run", str(cfg), "--out", str(out), "--backend", "local",
            "--keep-parts", "-q"]  # fmt: skip
    p = subprocess.Popen(
        args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 180:
            n = len(list(parts.glob("cell-*.npz"))) if parts.exists() else 0
            if n >= 3:
                break
            assert p.poll() is None, "the run finished before it could be killed"
            time.sleep(0.05)
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.wait(30)
    assert not out.exists()
    done = {f.name: f.stat().st_mtime_ns for f in parts.glob("cell-*.npz")}
    total = Experiment.from_toml(cfg).n_cells
    assert 3 <= len(done) < total
    r = mftt("run", str(cfg), "--out", str(out), "--backend", "local", "--resume", "--keep-parts")
    assert f"resumed {len(done)} finished cells" in " ".join(r.stderr.split())
    for name, mtime in done.items():
        assert (parts / name).stat().st_mtime_ns == mtime  # finished cells were not recomputed
    assert len(list(parts.glob("cell-*.npz"))) == total
    same(
        open_results(out),
        run_experiment(Experiment.from_toml(cfg), backend="local", progress=False),
    )


def test_report_draws_a_population_scenarios_distribution(tmp_path):
    """A population cell's report panel carries its quantile bands and sampled paths, read from the results."""
    from agents.experiments.cli import _panels, _report

    exp = Experiment.from_toml(
        'name = "p"\nseeds = [0]\n[scenarios.systemic_risk]\nn_steps = 5\nreplicas = 1\n'
        '[scenarios.cournot]\n[agents]\nn = 20\nweights = ["time"]\n[Lambda]\npresets = ["selfish"]\n'
        "[training]\nsteps = 2\n"
    )
    ds = run_experiment(exp, backend="local", progress=False)
    panels = {p["scenario"]: p for p in _panels(ds)}
    b = panels["systemic_risk"]["bands"]
    assert panels["cournot"]["bands"] is None
    traj = ds["trajectory"].sel(scenario="systemic_risk").values.reshape(-1, ds.sizes["state"])
    assert b["stats"].shape == (6, 1, 4) and b["paths"].shape == (6, 1, 8)
    np.testing.assert_array_equal(b["stats"][:, 0, :], traj[:6, :4])
    mean, q5, q50, q95 = b["stats"][:, 0].T
    assert np.all(q5 <= q50) and np.all(q50 <= q95)
    png, html = _report(ds, tmp_path / "p.png", tmp_path / "p.html")
    assert png.stat().st_size > 10_000 and html.is_file()
