"""AppTest for every page: set widgets, run a tiny scenario in the background, see results; bad input → inline error."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

APP = "../../app/streamlit_app.py"  # relative to this file (AppTest.from_file)


@pytest.fixture(autouse=True)
def _env(tmp_path_factory, monkeypatch):
    """Runs write into a per-session temporary results folder, never the repo's results/."""
    monkeypatch.setenv("MFTT_RESULTS_DIR", str(_results_dir(tmp_path_factory)))


_RESULTS: dict[str, Path] = {}


def _results_dir(factory) -> Path:
    if "dir" not in _RESULTS:
        _RESULTS["dir"] = factory.mktemp("results")
    return _RESULTS["dir"]


def _app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    if page:
        at.switch_page(f"views/{page}.py").run()
    return at


def _wait(at: AppTest, key: str, limit: float = 120.0) -> AppTest:
    """Rerun (as the polling fragment would) until the job under ``key`` has a result or an error (a job is
    a process of its own: its imports alone take seconds on a busy machine)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if f"{key}:result" in at.session_state or f"{key}:error" in at.session_state:
            return at.run()
        time.sleep(0.3)
        at.run()
    raise AssertionError(f"run {key} did not finish in {limit} s")


def _charts(at: AppTest) -> list:
    return [e for e in at.get("plotly_chart")]


def _frame(at: AppTest, column: str):
    """The first dataframe shown with ``column`` (read-only dataframes carry no key in the tree)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


# ---------------------------------------------------------------- Explore


def test_explore_first_visit_shows_what_to_do():
    at = _app()
    _no_exception(at)
    assert at.title[0].value == "Explore a scenario"
    landing = " ".join(m.value for m in at.markdown)
    assert "explore" in landing and "compare weight laws" in landing and "browse runs" in landing
    assert at.button(key="ex_example").label.startswith("Try an example")
    assert at.selectbox(key="ex_scenario").value == "lq_game"
    assert not _charts(at)


def test_explore_runs_a_small_scenario_and_shows_results(tmp_path_factory):
    at = _app()
    at.selectbox(key="ex_scenario").set_value("lq_game").run()
    at.selectbox(key="ex_policy_lq_game").set_value("mftt")
    at.number_input(key="ex_seeds").set_value(1)
    at.number_input(key="ex_steps").set_value(2)
    at.button(key="ex_preset_altruistic").click().run()
    at.button(key="ex_run").click().run()
    _no_exception(at)
    assert "explore:handle" in at.session_state or "explore:result" in at.session_state
    _wait(at, "explore")
    _no_exception(at)
    assert not at.error, [e.value for e in at.error]
    keys = {c.key for c in _charts(at)}
    assert {"res_traj", "res_learn", "res_expl", "res_costs", "res_tattn"} <= keys
    # the attention tab reads the trained weights the run stored, and says so
    said = [s.value for s in at.success]
    assert any("**Trained weights** from run `explore-" in s and "cell 0" in s for s in said), said
    assert not any("Initial weights" in w.value for w in at.warning)
    metrics = {m.label: m.value for m in at.metric}
    assert float(metrics["Exploitability (NashConv)"]) >= 0
    # the Dataset is the runner's: one cell, the altruistic Λ we chose, written to the results folder
    ds = at.session_state["explore:result"]
    L = ds["Lambda_matrix"].values.reshape(-1, 2, 2)[0]
    assert L[0, 0] == 1.0 and L[0, 1] == pytest.approx(0.5)
    assert list(_results_dir(tmp_path_factory).glob("explore-*.nc"))
    assert str(ds["Lambda"].values[0]) == "altruistic"  # the preset's name, not "custom"


def test_lambda_presets_and_labels():
    at = _app()
    at.selectbox(key="ex_scenario").set_value("lq_game").run()
    labels = _frame(at, "attitude")
    assert list(labels["attitude"]) == ["selfish", "selfish"]
    at.button(key="ex_preset_spiteful").click().run()
    assert all("spiteful" in s for s in _frame(at, "attitude")["attitude"])
    np.testing.assert_allclose(at.session_state["ex_Lambda"], [[1, -0.5], [-0.5, 1]])
    _no_exception(at)


@pytest.mark.parametrize(
    "text, needle",
    [
        ("1, x; 0, 1", "Lambda[1,2]: expected a number, got 'x' (non-numeric entry)"),
        ("1, 0, 0; 0, 1, 0; 0, 0, 1", "expected 2 rows (one per agent), got '3 rows'"),
        ("1, 0; 0", "Lambda row 2: expected 2 entries (one per agent), got '1 entry'"),  # ragged
        ("1, nan; 0, 1", "finite"),
        ("1, 1e7; 0, 1", "Lambda[1,2]: expected |λ| ≤ 1e+06"),  # would overflow the costs
    ],
)
def test_bad_lambda_text_shows_inline_error(text, needle):
    at = _app()
    at.selectbox(key="ex_scenario").set_value("lq_game").run()
    at.text_input(key="ex_Lambda_text").input(text).run()
    _no_exception(at)
    assert any(needle in e.value for e in at.error), [e.value for e in at.error]
    # the grid (the one source of truth) is unchanged: the typed text is refused, not silently used
    np.testing.assert_array_equal(at.session_state["ex_Lambda"], np.eye(2))
    assert at.text_input(key="ex_Lambda_text").value == text  # kept, to be corrected
    assert not at.button(key="ex_run").disabled  # the grid itself is valid
    assert "explore:handle" not in at.session_state


def test_bad_transformer_options_show_inline_error():
    at = _app()
    at.selectbox(key="ex_scenario").set_value("lq_game").run()
    assert not any(k == "ex_dmodel" for k in at.session_state)  # hidden unless the policy is mftt
    at.selectbox(key="ex_policy_lq_game").set_value("mftt").run()
    at.selectbox(key="ex_dmodel").set_value(8)
    at.selectbox(key="ex_heads").set_value(3).run()
    _no_exception(at)
    assert any(e.value.startswith("heads: expected a divisor of d_model=8") for e in at.error)
    assert at.button(key="ex_run").disabled
    assert any("Fix Λ or the options first: heads" in c.value for c in at.caption)
    assert "explore:handle" not in at.session_state
    at.selectbox(key="ex_heads").set_value(4).run()
    assert not at.error
    assert not at.button(key="ex_run").disabled


# ---------------------------------------------------------------- Compare


def test_compare_judges_laws_by_the_protocol():
    """Exploitability per law with t-intervals, paired tests vs constant, a conclusion line; never a rank."""
    at = _app("compare")
    _no_exception(at)
    assert any("Nothing compared yet" in i.value for i in at.info)
    at.selectbox(key="cmp_scenario").set_value("lq_game").run()
    at.multiselect(key="cmp_laws").set_value(["constant", "feedback"])
    at.number_input(key="cmp_seeds").set_value(2)
    at.number_input(key="cmp_steps").set_value(3)
    at.button(key="cmp_run").click().run()
    _wait(at, "compare", 240.0)  # 4 certified cells on a shared machine
    _no_exception(at)
    table = _frame(at, "exploitability (%)")
    assert list(table["law"]) == ["constant", "feedback"] and "rank" not in table.columns
    assert (table["exploitability (%)"] >= 0).all()
    # the feedback law adds parameters to the constant one
    p = dict(zip(table["law"], table["parameters / agent"], strict=True))
    assert p["feedback"] > p["constant"]
    text = " ".join(m.value for m in at.markdown)
    assert "no conclusion between feedback and constant" in text and "at least 6" in text
    assert "Seeds" in text and "Reference" in text
    assert {"cmp_bars", "cmp_params", "cmp_curves"} <= {c.key for c in _charts(at)}


def test_compare_refuses_to_rank_direct_policies():
    at = _app("compare")
    at.selectbox(key="cmp_scenario").set_value("cournot").run()
    at.selectbox(key="cmp_policy_cournot").set_value("direct").run()
    _no_exception(at)
    assert any("no effect" in w.value for w in at.warning)


def test_compare_without_laws_shows_error():
    at = _app("compare")
    at.multiselect(key="cmp_laws").set_value([])
    at.button(key="cmp_run").click().run()
    _no_exception(at)
    assert any("laws" in e.value for e in at.error)


# ---------------------------------------------------------------- Transformer lab


def test_lab_draws_tokens_consistency_and_norms():
    at = _app("lab")
    _no_exception(at)
    keys = {c.key for c in _charts(at)}
    assert {
        "lab_sphere_fig",
        "lab_energy",
        "lab_spread",
        "lab_mftt_fig",
        "lab_cons_fig",
        "lab_norm_fig",
    } <= keys
    at.radio(key="lab_d").set_value(2)
    at.selectbox(key="lab_variant").set_value("USA")
    at.number_input(key="lab_n").set_value(5).run()
    _no_exception(at)
    at.selectbox(key="lab_kernel").set_value("sigmoid")
    at.selectbox(key="lab_law").set_value("meanfield")
    at.toggle(key="lab_cont").set_value(True).run()
    _no_exception(at)
    assert "lab_mftt_fig" in {c.key for c in _charts(at)}
    at.multiselect(key="lab_norms").set_value([]).run()
    assert any("Pick at least one norm" in i.value for i in at.info)


# ---------------------------------------------------------------- Runs


@pytest.fixture(scope="module")
def results_file(tmp_path_factory) -> Path:
    """A tiny results NetCDF written by the runner (1 cell, 2 learning steps)."""
    from agents.experiments.config import Experiment
    from agents.experiments.runner import run_experiment

    exp = Experiment.from_dict(
        {
            "name": "tiny",
            "scenarios": {"lq_game": {}},
            "agents": {"weights": ["constant"]},
            "training": {"steps": 2},
            "backend": "local",
        }
    )
    out = _results_dir(tmp_path_factory) / "tiny.nc"
    run_experiment(exp, backend="local", progress=False, out=out)
    return out


def test_runs_empty_state(tmp_path, monkeypatch):
    monkeypatch.setenv("MFTT_RESULTS_DIR", str(tmp_path))
    at = _app("runs")
    _no_exception(at)
    assert any("No results yet" in i.value for i in at.info)


def test_runs_browse_download_and_rerun(results_file):
    at = _app("runs")
    _no_exception(at)
    at.selectbox(key="runs_file").set_value(results_file).run()
    _no_exception(at)
    assert any("lq_game" in c.value for c in at.code)  # the manifest
    labels = {b.label for b in at.get("download_button")}
    assert {"Download NetCDF", "Download CSV", "Download PNG"} <= labels
    at.toggle(key="runs_override").set_value(True).run()
    at.number_input(key="runs_steps").set_value(2)
    at.button(key="runs_rerun").click().run()
    _wait(at, "runs")
    _no_exception(at)
    assert any("Re-run finished" in s.value for s in at.success)
    new = at.session_state["runs:result"]
    assert new.attrs["manifest"].count("steps = 2") == 1


def test_runs_upload_valid_file(results_file):
    at = _app("runs")
    at.radio(key="runs_source").set_value("an uploaded file").run()
    at.file_uploader(key="runs_upload").upload("tiny.nc", results_file.read_bytes()).run()
    _no_exception(at)
    assert not at.error
    assert any("lq_game" in c.value for c in at.code)


@pytest.mark.parametrize(
    "name, data, needle",
    [
        ("notes.txt", b"this is not netcdf", "not a NetCDF file"),
        ("broken.nc", b"\x89HDF\r\n\x1a\n" + b"\0" * 64, "readable"),  # HDF5 magic, truncated body
    ],
)
def test_runs_upload_bad_file_shows_inline_error(name, data, needle):
    at = _app("runs")
    at.radio(key="runs_source").set_value("an uploaded file").run()
    at.file_uploader(key="runs_upload").upload(name, data).run()
    _no_exception(at)
    assert any(needle in e.value for e in at.error), [e.value for e in at.error]


def test_runs_upload_oversized_shows_inline_error(monkeypatch):
    monkeypatch.setenv("MFTT_MAX_UPLOAD_MB", "0.001")  # 1 kB cap for the test
    at = _app("runs")
    at.radio(key="runs_source").set_value("an uploaded file").run()
    at.file_uploader(key="runs_upload").upload("big.nc", b"\x89HDF" + b"\0" * 4096).run()
    _no_exception(at)
    assert any("at most 0.001 MB" in e.value for e in at.error), [e.value for e in at.error]
