"""AppTest (issue 15, populations): N per population beyond the N-player cap, and a population run's results
as distributions (quantile bands of the states over time, a histogram of every agent's cost)."""

from __future__ import annotations

import base64
import json
import time

import pytest
from streamlit.testing.v1 import AppTest

from agents.experiments.config import Experiment
from agents.experiments.runner import run_experiment
from app import state

APP = "../../app/streamlit_app.py"
JID = "explore-20261127-000001-beef"
N = 50


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A finished systemic_risk job (N banks, a few steps) as ``submit_job`` leaves it."""
    folder = tmp_path_factory.mktemp("results")
    exp = Experiment.from_dict(
        {
            "name": "explore",
            "scenarios": {"systemic_risk": {"replicas": 1, "n_steps": 5}},
            "agents": {"n": N, "weights": ["feedback"]},
            "Lambda": {"presets": ["selfish"]},
            "training": {"steps": 3},
            "seeds": [0],
            "backend": "local",
        }
    )
    run_experiment(exp, out=folder / f"{JID}.nc", progress=False)
    d = folder / "jobs" / JID
    d.mkdir(parents=True)
    (d / "experiment.toml").write_text(exp.to_toml())
    settings = {"scenario": "systemic_risk", "n": N, "policy": "linear", "steps": 3, "seeds": 1}
    meta = {"id": JID, "name": "explore", "created": time.time(), "settings": settings,
            "total": 1, "scenarios": ["systemic_risk"], "out": f"{JID}.nc", "pid": None}  # fmt: skip
    (d / "job.json").write_text(json.dumps(meta))
    now = time.time()
    status = {"status": "done", "started": now - 5, "ended": now, "done": 1, "total": 1}
    (d / "status.json").write_text(json.dumps(status))
    return folder


def test_a_population_run_shows_distributions_not_per_agent_bars(results, monkeypatch):
    monkeypatch.setenv("MFTT_RESULTS_DIR", str(results))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["job"] = JID
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.number_input(key="ex_n_systemic_risk").value == N
    charts = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    bands = charts["res_bands"]
    names = [t.get("name") for t in bands["data"]]
    assert any(n and n.endswith("5–95 %") for n in names) and any(
        n and n.endswith("median") for n in names
    )
    hist = charts["res_hist"]
    x = hist["data"][0]["x"]  # plotly sends arrays as base64 typed arrays
    n_x = len(base64.b64decode(x["bdata"])) // 8 if isinstance(x, dict) else len(x)
    assert hist["data"][0]["type"] == "histogram" and n_x == N  # every bank
    assert f"{N:,} per population" in hist["layout"]["title"]["text"]
    assert "res_traj" not in charts  # no per-agent trajectory panel


def test_population_scenarios_lift_the_agent_cap():
    assert state.MAX_AGENTS == 16 and state.MAX_POPULATION == 10_000
    assert state.n_players("systemic_risk", 5000) == 1 and state.n_players("lq_game", 3) == 3
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.selectbox(key="ex_scenario").set_value("systemic_risk").run()
    assert not at.exception
    box = at.number_input(key="ex_n_systemic_risk")
    assert box.max == 10_000 and box.label == "Agents per population"
    box.set_value(5000).run()
    assert not at.exception and not [e.value for e in at.error]
    assert at.session_state["ex_Lambda"].shape == (1, 1)  # Λ over the populations, not the agents
    at.selectbox(key="ex_scenario").set_value("lq_game").run()
    assert at.number_input(key="ex_n_lq_game").max == 16
