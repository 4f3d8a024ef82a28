"""AppTest of a researcher's workflow (issue 15): Λ editor as one source of truth, refusals before running,
form kept across pages, results headed by their settings and marked stale, runs as jobs listed on Runs."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from app import state
from control.errors import ValidationError

APP = "../../app/streamlit_app.py"


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("MFTT_RESULTS_DIR", str(tmp_path))


def _app(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    if page:
        at.switch_page(f"views/{page}.py").run()
    return at


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def test_typed_lambda_fills_the_grid_and_is_cleared():
    at = _app()
    at.text_input(key="ex_Lambda_text").input("1, 0.25; 0.5, 1").run()
    _ok(at)
    np.testing.assert_allclose(at.session_state["ex_Lambda"], [[1, 0.25], [0.5, 1]])
    assert at.text_input(key="ex_Lambda_text").value == ""
    assert not _errors(at)
    at.button(key="ex_preset_altruistic").click().run()
    assert at.session_state["ex_Lambda_preset"][0] == "altruistic"
    # the strength slider re-applies the chosen preset
    at.slider(key="ex_alpha").set_value(0.25).run()
    np.testing.assert_allclose(at.session_state["ex_Lambda"], [[1, 0.25], [0.25, 1]])


def test_a_lambda_the_scenario_refuses_is_named_before_running():
    at = _app()  # lq_game, nash: berge has λ_jj = 0, which the convex own cost refuses
    at.button(key="ex_preset_berge").click().run()
    _ok(at)
    msgs = _errors(at)
    assert any("lq_game refuses this Λ" in m and "Lambda[1,1]" in m for m in msgs), msgs
    assert at.button(key="ex_run").disabled
    at.button(key="ex_preset_selfish").click().run()
    assert not _errors(at) and not at.button(key="ex_run").disabled


def test_extreme_and_degenerate_lambda_are_warned():
    at = _app()
    at.text_input(key="ex_Lambda_text").input("1, 5000; 0, 1").run()
    assert any("very large" in w.value for w in at.warning)
    at.text_input(key="ex_Lambda_text").input("1, 0; 0, 0").run()
    assert any("row 2 is all zero" in w.value for w in at.warning)


def test_a_new_agent_count_resets_lambda_and_drops_typed_text():
    at = _app()
    at.text_input(key="ex_Lambda_text").input("1, 0; 0").run()  # ragged: refused and kept
    assert at.text_input(key="ex_Lambda_text").value == "1, 0; 0"
    at.number_input(key="ex_n_lq_game").set_value(3).run()
    _ok(at)
    assert at.text_input(key="ex_Lambda_text").value == ""
    np.testing.assert_array_equal(at.session_state["ex_Lambda"], np.eye(3))
    assert not _errors(at)


def test_grid_cells_are_checked_one_by_one():
    names = state.agent_names(2)
    df = state.lambda_frame(np.eye(2), names)
    assert list(df.iloc[0]) == ["1", "0"]
    for value, needle in (
        ("abc", "Lambda[1,2]: expected a number, got 'abc' (non-numeric entry)"),
        ("", "Lambda[1,2]: expected a number, got '' (empty cell)"),
        ("1e308", None),
        ("2e6", "Lambda[1,2]: expected |λ| ≤ 1e+06"),
    ):
        bad = df.copy()
        bad.iat[0, 1] = value
        if needle is None:
            with pytest.raises(ValidationError, match="≤ 1e"):
                state.lambda_from_frame(bad, 2)
            continue
        with pytest.raises(ValidationError) as e:
            state.lambda_from_frame(bad, 2)
        assert needle in str(e.value)


def test_controls_follow_the_policy():
    at = _app()
    at.selectbox(key="ex_scenario").set_value("cournot").run()
    pols = at.selectbox(key="ex_policy_cournot").options
    if "direct" in pols:
        at.selectbox(key="ex_policy_cournot").set_value("direct").run()
        assert not any(s.key == "ex_law" for s in at.selectbox)
    assert not any(s.key == "ex_dmodel" for s in at.selectbox)


def test_the_form_survives_a_visit_to_another_page():
    at = _app()
    at.selectbox(key="ex_scenario").set_value("cournot").run()
    at.number_input(key="ex_steps").set_value(7)
    at.number_input(key="ex_seeds").set_value(3).run()
    at.button(key="ex_preset_altruistic").click().run()
    at.switch_page("views/runs.py").run()
    _ok(at)
    at.switch_page("views/explore.py").run()
    _ok(at)
    assert at.selectbox(key="ex_scenario").value == "cournot"
    assert at.number_input(key="ex_steps").value == 7
    assert at.number_input(key="ex_seeds").value == 3
    assert at.session_state["ex_Lambda_preset"][0] == "altruistic"


def _wait(at: AppTest, key: str, limit: float = 120.0) -> None:
    t0 = time.monotonic()
    while f"{key}:result" not in at.session_state and f"{key}:error" not in at.session_state:
        assert time.monotonic() - t0 < limit, "the job did not finish"
        time.sleep(0.5)
        at.run()
    at.run()


def test_a_run_is_a_job_headed_by_its_settings_marked_stale_and_listed(tmp_path):
    at = _app()
    at.selectbox(key="ex_scenario").set_value("cournot").run()
    at.number_input(key="ex_seeds").set_value(1)
    at.number_input(key="ex_steps").set_value(3).run()
    at.button(key="ex_preset_altruistic").click().run()
    at.button(key="ex_run").click().run()
    _ok(at)
    jid = at.session_state["explore:job"]
    assert (tmp_path / "jobs" / jid / "experiment.toml").exists()  # the manifest from the start
    assert at.query_params["job"] == [jid] or at.query_params["job"] == jid
    _wait(at, "explore")
    _ok(at)
    assert not _errors(at)
    head = next(
        m.value for m in at.markdown if m.value.startswith("**Settings of these results:**")
    )
    for part in ("scenario **cournot**", "Λ **altruistic (α 0.5)**", "steps **3**", "seeds **1**"):
        assert part in head, head
    assert str(at.session_state["explore:result"]["Lambda"].values[0]) == "altruistic"
    assert not any("Stale" in w.value for w in at.warning)
    at.number_input(key="ex_steps").set_value(4).run()
    stale = [w.value for w in at.warning if "Stale" in w.value]
    assert stale and "steps: 3 → 4" in stale[0]
    # the Runs page lists the job with its status and offers its TOML config
    at.switch_page("views/runs.py").run()
    _ok(at)
    jobs = next(d.value for d in at.dataframe if "status" in d.value.columns)
    assert isinstance(jobs, pd.DataFrame)
    row = jobs[jobs["id"] == jid].iloc[0]
    assert row["status"] == "done" and row["scenario"] == "cournot" and row["cells"] == "1/1"
    assert any(b.label == "Download the TOML config" for b in at.get("download_button"))
    at.multiselect(key="runs_overlay").set_value(
        [jid]
    ).run()  # overlay: metrics and learning curves
    _ok(at)
    metrics = next(d.value for d in at.dataframe if "run" in d.value.columns)
    assert list(metrics["run"]) == [jid] and int(metrics["cells"].iloc[0]) == 1
    assert any(c.key == "runs_overlay_fig" for c in at.get("plotly_chart"))
    # a reload (a new session with ?job=<id> in the address) finds the job and its settings again
    again = AppTest.from_file(APP, default_timeout=90)
    again.query_params["job"] = jid
    again.run()
    _ok(again)
    assert again.session_state["explore:job"] == jid
    assert again.selectbox(key="ex_scenario").value == "cournot"
    assert again.number_input(key="ex_steps").value == 3
    assert "explore:result" in again.session_state


def test_runs_page_empty_state():
    at = _app("runs")
    _ok(at)
    assert any("No jobs yet" in i.value for i in at.info)
    assert any("No results yet" in i.value for i in at.info)
