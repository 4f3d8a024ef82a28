"""Background jobs (agents.experiments.background): manifest first, status on disk, cancel within seconds keeping finished cells."""

from __future__ import annotations

import time

import numpy as np
import pytest

from agents.experiments.background import get_job, list_jobs, submit_job
from agents.experiments.config import Experiment
from agents.precheck import lambda_warnings, precheck
from control.errors import ValidationError


def _exp(**kw) -> Experiment:
    d = {
        "name": "bg",
        "scenarios": {"cournot": {}},
        "agents": {"weights": ["constant"]},
        "Lambda": {"presets": ["selfish"]},
        "training": {"steps": 3},
        "seeds": [0],
        "fuse": 1,
    }
    d.update(kw)
    return Experiment.from_dict(d)


def _wait(job, limit=90.0):
    t0 = time.monotonic()
    while not job.done():
        assert time.monotonic() - t0 < limit, job.progress()
        time.sleep(0.2)
    return job.progress()


def test_a_job_writes_its_manifest_first_and_its_results_at_the_end(tmp_path):
    job = submit_job(_exp(), tmp_path, settings={"scenario": "cournot"})
    assert (job.dir / "experiment.toml").exists() and "cournot" in job.manifest
    assert job.settings == {"scenario": "cournot"}
    assert list_jobs(tmp_path) == [job] and get_job(tmp_path, job.id) == job
    assert get_job(tmp_path, "../x") is None
    p = _wait(job)
    assert p["status"] == "done", p
    assert (p["done"], p["total"]) == (1, 1)
    assert sum(p["statuses"].values()) == 1  # the runs table's summary, without opening the file
    ds = job.result()
    assert str(ds["status"].values.ravel()[0]) != "missing"


def test_cancel_stops_a_running_cell_within_seconds_and_keeps_finished_cells(tmp_path):
    # cell 0 takes 2 steps, cell 1 a budget it cannot finish: cancel while cell 1 runs
    exp = _exp(
        scenarios={"lq_game": {}},
        agents={"weights": ["feedback"]},
        training={"steps": 2},
        sweep={"training.steps": [2, 100000]},
    )
    job = submit_job(exp, tmp_path)
    t0 = time.monotonic()
    while job.progress()["done"] < 1:
        assert time.monotonic() - t0 < 120 and not job.done(), job.progress()
        time.sleep(0.2)
    time.sleep(1.0)
    t1 = time.monotonic()
    job.cancel()
    p = _wait(job, 30)
    latency = time.monotonic() - t1
    assert p["status"] == "cancelled", p
    assert latency < 5, latency
    status = np.asarray(job.result()["status"].values).astype(str).ravel()
    assert list(status).count("missing") == 1 and status[0] != "missing", status
    assert p["statuses"]["missing"] == 1


def test_precheck_refuses_what_play_refuses_naming_the_entry():
    with pytest.raises(ValidationError, match=r"Lambda\[0,0\]"):
        precheck("lq_game", Lambda="berge")
    precheck("lq_game", Lambda="altruistic")
    assert any("very large" in w for w in lambda_warnings(np.array([[1.0, 1e7], [0.0, 1.0]])))
    assert any("all zero" in w for w in lambda_warnings(np.array([[1.0, 0.0], [0.0, 0.0]])))
    assert lambda_warnings(np.eye(2)) == []


def test_a_running_cell_reports_its_learning_steps_and_the_eta_counts_down(tmp_path):
    # one cell that cannot converge in time (tiny rate, huge budget): its progress file must advance
    exp = _exp(
        scenarios={"lq_game": {}},
        agents={"weights": ["feedback"]},
        training={"steps": 100000, "lr": 1e-7},
    )
    job = submit_job(exp, tmp_path)
    seen, etas = [], []
    t0 = time.monotonic()
    try:
        while len({s for s in seen}) < 3:
            assert time.monotonic() - t0 < 60 and not job.done(), job.progress()
            p = job.progress()
            for c in p["cells"]:
                assert c["cell"] == 0 and c["total"] == 100000 and len(c["cost"]) == len(c["steps"])
                seen.append(c["step"])
            if p["eta"] is not None:
                etas.append(p["eta"])
            time.sleep(0.6)
    finally:
        job.cancel()
    assert seen == sorted(seen) and seen[-1] > seen[0] > 0, seen  # it advances
    assert etas and all(b <= a for a, b in zip(etas, etas[1:], strict=False)), etas  # only down
    _wait(job, 30)
    assert job.progress()["cells"] == []
