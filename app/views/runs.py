"""Runs page: browse results/*.nc or an uploaded NetCDF, show its manifest, download it, re-run its manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st

from agents.results import summary_table
from app import figures, state
from control.errors import ValidationError

KEY = "runs"


@st.cache_data(show_spinner=False, max_entries=8)
def _png(_ds, label: str, created: str) -> bytes:
    """The summary PNG of a results file, drawn once per (file, creation time)."""
    return figures.summary_png(_ds)


st.title("Runs")
st.caption(
    "Every experiment writes one NetCDF file with its config (the manifest), seeds, versions and results. "
    "Open one from `results/` or upload it, download it as NetCDF/CSV/PNG, or run its manifest again."
)

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
            "Drop an `.nc` file written by `mftt run`, the app, or `agents.results.write_results`."
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
        "ok", int((status == "ok").sum()),
        help=", ".join(f"{int((status == k).sum())} {k}" for k in dict.fromkeys(status)),
    )  # fmt: skip
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
        st.image(
            png,
            caption="Costs per agent and learning curves (mean over the grid)",
        )
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
