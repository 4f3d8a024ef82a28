"""Runs page: browse results/*.nc or an uploaded NetCDF, show its manifest, download it, re-run its manifest."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import streamlit as st

from agents.experiments.results import summary_table
from app import figures, state
from control.errors import ValidationError

KEY = "runs"


@st.cache_data(show_spinner=False, max_entries=8)
def _png(_ds, label: str, created: str) -> bytes:
    """The summary PNG of a results file, drawn once per (file, creation time)."""
    return figures.summary_png(_ds)


st.title("Runs")
st.caption(
    "Every run started from this app is a job: its folder under `results/jobs/` holds the manifest from "
    "the start and its live status, so it is listed here after a reload or from another tab. Open any "
    "results file, download it as NetCDF/CSV/PNG or the TOML config that reproduces it, or run it again."
)

jobs = state.agents.list_jobs(state.results_dir())
st.subheader("Jobs")
if not jobs:
    st.info("No jobs yet: press **Run** on the **Explore** or **Compare** page.")
else:
    table = state.jobs_frame(jobs)
    counts = table["status"].value_counts()
    m = st.columns(6)
    for col, name in zip(
        m, ("running", "queued", "done", "cancelled", "failed", "lost"), strict=True
    ):
        col.metric(name, int(counts.get(name, 0)))
    f1, f2 = st.columns([2, 3])
    wanted = f1.multiselect(
        "Status",
        sorted(set(table["status"])),
        key="runs_status_filter",
        persist_state="session",
        placeholder="all",
    )
    text = f2.text_input(
        "Filter (id, scenario, Λ, policy…)",
        key="runs_filter",
        persist_state="session",
    )
    shown = state.filter_jobs(table, wanted, text)
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        key="runs_jobs_table",
        column_config={
            "done": st.column_config.ProgressColumn(
                "cells done", format="%.0f%%", min_value=0, max_value=100
            ),
            "created": st.column_config.DatetimeColumn("created", format="YYYY-MM-DD HH:mm:ss"),
            "size (kB)": st.column_config.NumberColumn(format="%.0f"),
            "best gap": st.column_config.NumberColumn(
                format="percent", help="smallest |gap| to the closed form over the run's cells"
            ),
        },
    )
    live = [j for j in jobs if j.progress()["status"] in ("queued", "running")]
    if live:

        @st.fragment(run_every=state.POLL_SECONDS)
        def _live() -> None:
            if all(j.done() for j in live):
                st.rerun(scope="app")  # redraw the table with the final statuses
            for j in live:
                p = j.progress()
                c = st.columns([5, 1], vertical_alignment="center")
                running = "; ".join(state.cell_progress_text(x) for x in p.get("cells") or [])
                c[0].progress(
                    min(p["done"] / max(p["total"], 1), 1.0),
                    text=f"`{j.id}`: {state.progress_text(p)}"
                    + (f" ({running})" if running else ""),
                )
                if p["status"] not in ("queued", "running"):
                    c[1].write(p["status"])
                elif state.cancelling(j):
                    c[1].button("Cancelling…", key=f"runs_cancel_{j.id}", disabled=True)
                elif c[1].button("Cancel", key=f"runs_cancel_{j.id}"):
                    j.cancel()

        _live()
    finished = [j.id for j in jobs if j.out.exists()]
    if finished:
        chosen = st.multiselect(
            "Overlay runs (learning curves and metrics side by side; two: their config diff)",
            finished,
            key="runs_overlay",
            persist_state="session",
            max_selections=8,
        )
        if chosen:
            sel = [state.get_job(i) for i in chosen]
            sel = [j for j in sel if j is not None]
            dss = {j.id: state.load_job(j) for j in sel}
            st.dataframe(
                state.runs_metrics(dss), hide_index=True, width="stretch", key="runs_metrics"
            )
            st.plotly_chart(
                figures.learning_curves(
                    state.runs_curves(dss),
                    title="Total empathetic cost over learning (band: the run's cells)",
                    yaxis="Σ_j (Λ L)_j",
                ),
                width="stretch",
                key="runs_overlay_fig",
            )
            if len(sel) == 2:
                diff = state.config_diff(sel[0], sel[1])
                st.code(diff or "# the two configs are the same", language="diff")
    ids = list(shown["id"])
    if ids:
        jid = st.selectbox("Job", ids, key="runs_job", persist_state="session")
        j = state.get_job(jid)
        if j is not None:
            st.markdown(
                "**Settings:** " + state.settings_markdown(j.settings or state.job_summary(j))
            )
            d = st.columns(3)
            d[0].download_button(
                "Download the TOML config",
                j.manifest,
                f"{j.id}.toml",
                "application/toml",
                key=f"runs_dl_toml_{j.id}",
            )

st.subheader("Results files")

files = state.list_results()
source = st.radio(
    "Open", ["a file in results/", "an uploaded file"], horizontal=True, key="runs_source"
)
ds, label = None, None
if source == "a file in results/":
    if not files:
        st.info(
            "**No results yet.** Run a scenario on the **Explore** or **Compare** page, "
            "`make demo`, or `mftt run <config.toml>`; the NetCDF files land in `results/`. "
            "You can also upload a results file (choose *an uploaded file* above)."
        )
    else:
        path = st.selectbox(
            "Results file",
            files,
            format_func=lambda p: str(p.relative_to(state.results_dir())),
            key="runs_file",
        )
        try:
            ds, label = state.open_dataset(Path(path)), Path(path).stem
        except ValidationError as exc:
            st.error(str(exc))
else:
    cap = state.max_upload_mb()
    up = st.file_uploader(f"Upload a results NetCDF (.nc, at most {cap:g} MB)", key="runs_upload")
    if up is None:
        st.info(
            "Drop an `.nc` file written by `mftt run`, the app, or `agents.experiments.results.write_results`."
        )
    else:
        try:
            ds, label = state.read_upload(up.name, up.getvalue(), max_mb=cap), Path(up.name).stem
        except ValidationError as exc:
            st.error(str(exc))

if ds is not None:
    status = np.asarray(ds["status"].values).astype(str).ravel() if "status" in ds else np.array([])
    c = st.columns(4)
    c[0].metric("Cells", status.size)
    c[1].metric(
        "ok",
        int((status == "ok").sum()),
        help=", ".join(f"{int((status == k).sum())} {k}" for k in dict.fromkeys(status)),
    )
    c[2].metric("Created", str(ds.attrs.get("created", "?"))[:10])
    c[3].metric("Commit", str(ds.attrs.get("git_commit", "?"))[:10])
    tab_sum, tab_man, tab_fig = st.tabs(["Summary", "Manifest", "Figure"])
    with tab_sum:
        st.dataframe(summary_table(ds), width="stretch", key="runs_summary")
        st.dataframe(state.summary_frame(ds), width="stretch", hide_index=True, key="runs_cells")
    with tab_man:
        st.code(ds.attrs.get("manifest", "# no manifest recorded"), language="toml")
        st.json(
            {k: ds.attrs[k] for k in ("device", "seeds", "versions", "schema") if k in ds.attrs},
            expanded=False,
        )
    png = _png(ds, label, str(ds.attrs.get("created", "")))
    with tab_fig:
        # inline (data URI), not a media file: a rerun right after the page loads (a job finishing) would
        # retire the media file while the browser still fetches it (a 404 and a console error)
        b64 = base64.b64encode(png).decode()
        st.markdown(
            f'<img src="data:image/png;base64,{b64}" style="max-width:100%" '
            'alt="Costs per agent and learning curves">',
            unsafe_allow_html=True,
        )
        st.caption("Costs per agent and learning curves (mean over the grid)")
    d = st.columns(3)
    d[0].download_button(
        "Download NetCDF",
        lambda: state.netcdf_bytes(ds),  # deferred: built when clicked
        f"{label}.nc",
        "application/x-netcdf",
        key="runs_dl_nc",
    )
    d[1].download_button(
        "Download CSV", lambda: state.csv_bytes(ds), f"{label}.csv", "text/csv", key="runs_dl_csv"
    )
    d[2].download_button("Download PNG", png, f"{label}.png", "image/png", key="runs_dl_png")
    if "manifest" in ds.attrs:
        st.download_button(
            "Download the TOML config",
            ds.attrs["manifest"],
            f"{label}.toml",
            "application/toml",
            key="runs_dl_toml",
        )

    st.subheader("Re-run this manifest")
    if "manifest" not in ds.attrs:
        st.info("This file has no manifest, so it cannot be re-run.")
    else:
        r = st.columns([1, 1, 2])
        override = r[0].toggle("override learning steps", key="runs_override")
        steps = int(r[1].number_input("steps", 1, 5000, 5, key="runs_steps", disabled=not override))
        if r[2].button("Re-run", type="primary", key="runs_rerun", disabled=not state.can_run(KEY)):
            try:
                exp = state.experiment_from_manifest(
                    ds.attrs["manifest"], steps if override else None
                )
                state.submit(KEY, exp)
            except ValidationError as exc:
                st.error(str(exc))

state.progress_fragment(KEY)
if state.error(KEY):
    st.error(f"The re-run failed: {state.error(KEY)}")
new = state.result(KEY)
if new is not None:
    st.success("Re-run finished.")
    st.dataframe(state.summary_frame(new), width="stretch", hide_index=True, key="runs_rerun_table")
    st.download_button(
        "Download the re-run (NetCDF)",
        lambda: state.netcdf_bytes(new),
        "rerun.nc",
        "application/x-netcdf",
        key="runs_dl_new",
    )
