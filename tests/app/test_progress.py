"""AppTest (issue 15): a running cell's learning step k/K and its live Λ-cost curve, read from the
progress file the runner writes (``<results>/<job>.nc.parts/progress-<cell>.json``)."""

from __future__ import annotations

import json
import os
import time

from streamlit.testing.v1 import AppTest

from agents.experiments.config import Experiment
from agents.experiments.results import CellProgress

APP = "../../app/streamlit_app.py"


def _running_job(folder, steps_done: int) -> str:
    """A job folder as ``submit_job`` writes it, whose worker (this process) is running cell 0."""
    exp = Experiment.from_dict(
        {"name": "explore", "scenarios": {"cournot": {}}, "training": {"steps": 30}, "seeds": [0]}
    )
    jid = "explore-20261127-000000-abcd"
    d = folder / "jobs" / jid
    d.mkdir(parents=True)
    (d / "experiment.toml").write_text(exp.to_toml())
    now, pid = time.time(), os.getpid()
    meta = {"id": jid, "name": "explore", "created": now, "settings": {"scenario": "cournot"},
            "total": 1, "scenarios": ["cournot"], "out": f"{jid}.nc", "pid": pid}  # fmt: skip
    (d / "job.json").write_text(json.dumps(meta))
    status = {"status": "running", "pid": pid, "started": now - 3, "done": 0, "failed": 0,
              "total": 1, "deadline": now + 20}  # fmt: skip
    (d / "status.json").write_text(json.dumps(status))
    hook = CellProgress(folder / f"{jid}.nc.parts", 0, "k")
    for s in range(1, steps_done + 1):
        hook(s, 30, [1.0, 1.0 / s])
    hook.flush()
    return jid


def test_explore_shows_the_running_cells_step_and_cost_curve(tmp_path, monkeypatch):
    monkeypatch.setenv("MFTT_RESULTS_DIR", str(tmp_path))
    jid = _running_job(tmp_path, 12)
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["job"] = jid
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    bars = [e.proto.text for e in at.get("progress")]
    assert any("cell 0: step 12/30" in b for b in bars), bars
    assert any("about" in b and "s left" in b for b in bars), bars  # the job's ETA
    curve = next(c for c in at.get("plotly_chart") if c.key == "explore_cell_0_curve")
    layout = json.loads(curve.proto.spec)["layout"]
    assert layout["yaxis"]["title"]["text"] == "total Λ-cost"
    assert layout["xaxis"]["title"]["text"] == "learning step"
    # the Runs page says it too
    at.switch_page("views/runs.py").run()
    assert not at.exception
    assert any("cell 0: step 12/30" in e.proto.text for e in at.get("progress"))
