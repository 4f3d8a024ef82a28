"""Runner: local vs Ray tasks give identical datasets, resume skips finished cells, failures stay per cell."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import agents.experiments.runner as runner
from agents.cell import CellSpec
from agents.experiments.config import Experiment, load_experiment
from agents.experiments.results import open_results
from agents.experiments.runner import RunState, run_experiment, submit_experiment
from agents.scenarios import get_scenario
from agents.status import PLAYED
from control.errors import ValidationError

TINY = """
name = "tiny"
seeds = [0]
[scenarios.cournot]
[scenarios.lq_game]
[agents]
weights = ["constant", "feedback"]
[Lambda]
presets = ["selfish", "team"]
[training]
steps = 3
"""


SEARCHED = ("gain", "exploitability")  # best-response searches (L-BFGS-B): equal to its tolerance


def same(a: xr.Dataset, b: xr.Dataset) -> None:
    """Identical results up to timings and creation time; best-response gains to 1e-7 of the cost scale."""
    drop = ["wall_time", *SEARCHED]
    xr.testing.assert_identical(a.drop_vars(drop).drop_attrs(), b.drop_vars(drop).drop_attrs())
    scale = float(np.nanmax(np.abs(a["empathetic_cost"].values)))
    for k in SEARCHED:
        np.testing.assert_allclose(a[k].values, b[k].values, rtol=1e-6, atol=1e-7 * scale)
    for k in ("manifest", "seeds", "versions", "git_commit", "device", "name", "schema"):
        assert np.array_equal(np.asarray(a.attrs[k]), np.asarray(b.attrs[k])), k


@pytest.fixture(scope="session")
def ray_session():
    """One embedded loopback Ray for the session (started here only if nobody else did)."""
    started = runner.init_ray(None, num_cpus=2)
    yield
    if started:
        import ray

        ray.shutdown()


@pytest.fixture(scope="module")
def tiny_local():
    exp = Experiment.from_toml(TINY)
    return exp, run_experiment(exp, backend="local", progress=False)


def test_local_run_is_deterministic(tiny_local):
    exp, ds = tiny_local
    assert ds["status"].isin(list(PLAYED)).all()
    same(ds, run_experiment(exp, backend="local", progress=False))


@pytest.mark.ray
def test_ray_tasks_match_local(ray_session, tiny_local, tmp_path):
    exp, ds = tiny_local
    out = tmp_path / "r.nc"
    got = run_experiment(exp, backend="ray", progress=True, out=out)
    same(got, ds)
    same(open_results(out), ds)
    assert not (tmp_path / "r.nc.parts").exists()  # parts are removed once the file is written


def test_resume_recomputes_no_finished_cell(tiny_local, tmp_path, monkeypatch):
    exp, ds = tiny_local
    out = tmp_path / "r.nc"
    calls: list[int] = []
    real = runner.run_cells

    def counting(kwargs, keys, indices, threads=None):
        calls.append(list(indices))
        if 5 in indices:
            raise KeyboardInterrupt  # the driver dies in the middle of the sweep
        return real(kwargs, keys, indices, threads)

    monkeypatch.setattr(runner, "run_cells", counting)
    with pytest.raises(KeyboardInterrupt):
        run_experiment(exp, backend="local", progress=False, out=out)
    assert not out.exists()
    parts = sorted((tmp_path / "r.nc.parts").iterdir())
    finished = {
        i for task in calls[:-1] for i in task
    }  # the last task (holding cell 5) never ended
    assert 5 in calls[-1] and len(parts) == len(finished) >= 4
    mtimes = {p.name: p.stat().st_mtime_ns for p in parts}
    calls.clear()
    monkeypatch.setattr(runner, "run_cells", lambda *a, **k: (calls.extend(a[2]), real(*a, **k))[1])
    state = RunState()
    got = run_experiment(
        exp, backend="local", progress=False, out=out, keep_parts=True, state=state
    )
    assert sorted(calls) == sorted(set(range(exp.n_cells)) - finished)
    assert state.resumed == len(finished) and state.computed == exp.n_cells - len(finished)
    for p in (tmp_path / "r.nc.parts").iterdir():
        if p.name in mtimes:
            assert p.stat().st_mtime_ns == mtimes[p.name]
    same(got, ds)
    # a changed config never reuses stale parts: different arguments, different keys
    calls.clear()
    run_experiment(exp.with_values({"training.steps": 2}), backend="local", progress=False, out=out)
    assert len(calls) == exp.n_cells
    # --no-resume recomputes everything
    calls.clear()
    run_experiment(exp, backend="local", progress=False, out=out, resume=False)
    assert len(calls) == exp.n_cells


def test_a_diverging_or_invalid_cell_does_not_stop_the_sweep():
    exp = Experiment.from_toml(
        'name = "d"\n[scenarios.lq_game]\n[agents]\nweights = ["constant"]\n'
        '[Lambda]\npresets = ["selfish", "selfless"]\n[training]\nsteps = 10\nlr = 1e8\n'
    )
    ds = run_experiment(exp, backend="local", progress=False)
    status = ds["status"].values.ravel()
    assert set(status) <= {"ok", "diverged", "failed"} and "ok" not in set(status)
    msgs = ds["message"].values.ravel()
    assert all(isinstance(m, str) and m and "\n" not in m for m in msgs)
    assert np.isnan(ds["cost"].values).all()


def test_submit_experiment_polls_and_returns(tiny_local):
    exp, ds = tiny_local
    h = submit_experiment(exp, backend="local")
    p = h.progress()
    assert set(p) == {"done", "failed", "total", "eta"} and p["total"] == exp.n_cells
    got = h.result(timeout=120)
    assert h.done() and h.progress()["done"] == exp.n_cells and h.progress()["failed"] == 0
    same(got, ds)


def test_cancel_stops_a_run(tiny_local):
    exp, _ = tiny_local
    big = exp.with_values({"seeds": list(range(30))})
    h = submit_experiment(big, backend="local")
    h.cancel()
    t0 = time.monotonic()
    with pytest.raises(runner.RunCancelled):
        h.result(timeout=60)
    assert time.monotonic() - t0 < 60 and h.progress()["done"] < big.n_cells


def test_bad_backend_and_experiment_are_validation_errors(tiny_local):
    exp, _ = tiny_local
    with pytest.raises(ValidationError, match="^backend: expected one of ray, local, actors"):
        run_experiment(exp, backend="mpi")
    with pytest.raises(ValidationError, match="^experiment: "):
        submit_experiment({"name": "x"})


CONFIGS = sorted((Path(__file__).resolve().parents[2] / "examples" / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_example_config_smoke_run(path):
    """Every shipped config loads, its cells validate as play's arguments, and the first cell of each N-player
    scenario plays (steps overridden to 2). Population scenarios' cells are played by their own tests
    (tests/agents/test_population.py) and by the report test of tests/agents/test_cli.py."""
    exp = load_experiment(path).with_values({"training.steps": 2, "seeds": [0]})
    firsts = {}
    for c in exp.cells():
        CellSpec.of(c.kwargs)  # every cell's arguments are valid as they stand
        firsts.setdefault(c.coords["scenario"], c)
    for c in firsts.values():
        if get_scenario(c.kwargs["scenario"]).population:
            continue
        ds = runner.run_cell(c.kwargs, c.key, c.index)
        assert ds["status"].item() in PLAYED, (c.label, ds["message"].item())
        assert np.isfinite(ds["cost"].values).all() and ds.sizes["iteration"] >= 1


def test_ray_sweep_example_runs_in_process(tmp_path):
    """examples/ray_sweep.py scripts a sweep from Python (local backend here; the Ray path is tested above)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "ray_sweep", CONFIGS[0].parents[1] / "ray_sweep.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(["--backend", "local", "--steps", "3", "--out", str(tmp_path / "s.nc")])
    ds = open_results(out)
    assert list(ds["n_agents"].values) == [2, 3] and ds["status"].isin(list(PLAYED)).all()
