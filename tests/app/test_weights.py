"""AppTest (issue 15): the trained model's attention maps, loaded from the weights a run stored, with
labelled query/key axes per head and depth time, said to be trained (run, cell) or initial."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from agents.experiments.config import Experiment
from agents.experiments.runner import run_experiment

APP = "../../app/streamlit_app.py"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A finished 1-cell Cournot run with MFTT firms (about 2 s), written where the app browses."""
    folder = tmp_path_factory.mktemp("results")
    exp = Experiment.from_dict(
        {
            "name": "w",
            "scenarios": {"cournot": {}},
            "agents": {"n": 2, "weights": ["feedback"], "policy": "mftt"},
            "Lambda": {"presets": ["altruistic"]},
            "training": {"steps": 3},
            "seeds": [0],
            "backend": "local",
        }
    )
    run_experiment(exp, out=folder / "trained-run.nc", progress=False)
    return folder


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_lab_shows_the_trained_attention_of_a_finished_run(results, monkeypatch):
    monkeypatch.setenv("MFTT_RESULTS_DIR", str(results))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("views/lab.py").run()
    _ok(at)
    assert at.selectbox(key="lab_trained_run").value.name == "trained-run.nc"
    said = [s.value for s in at.success]
    assert any("Trained weights** from run `trained-run`, cell 0" in s for s in said), said
    assert any("Λ altruistic" in s and "seed 0" in s for s in said), said
    fig = next(c for c in at.get("plotly_chart") if c.key == "lab_trained_tattn")
    spec = fig.proto.spec
    for label in ('"key window step j"', '"query window step i"', '"head 1"', '"head 2"'):
        assert label in spec, label
    at.selectbox(key="lab_trained_tagent").set_value(1).run()  # the second firm's model
    _ok(at)
    assert (
        "firm1"
        in next(c for c in at.get("plotly_chart") if c.key == "lab_trained_tattn").proto.spec
    )


def test_lab_without_trained_runs_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("MFTT_RESULTS_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("views/lab.py").run()
    _ok(at)
    assert any("No run with trained weights yet" in i.value for i in at.info)
