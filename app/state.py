"""Glue between the pages and the public APIs of agents/mftt: input parsing, run handles, upload checks.

No mathematics lives here: the pages call ``agents``/``mftt`` public functions; this module only turns widget
values into their arguments, keeps run handles in the session, and turns bad input into one-line messages.
"""

from __future__ import annotations

import difflib
import io
import math
import os
import re
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

import agents
from agents.experiments.config import Experiment
from agents.experiments.results import (
    attention_maps,
    cell_index,
    load_trained_game,
    open_results,
    weights_index,
)
from agents.experiments.results import (
    population_costs as agent_costs,
)
from app import figures
from control.errors import ValidationError

RESULTS_DIR = Path("results")
MAX_UPLOAD_MB = 50
POLL_SECONDS = 1.0
LAWS = agents.LAWS  # the weight-law registry's names
# default learning steps for runs launched from the app (kept small: the app is interactive)
APP_STEPS = 30
# Λ entries beyond this are refused: the costs they weigh overflow and learning diverges
MAX_ENTRY = 1e6
MAX_AGENTS = 16  # N-player games: Λ is an N×N grid to edit
MAX_POPULATION = 10_000  # agents per population in population scenarios (a step costs O(N))


# ---------------------------------------------------------------- Λ input


def parse_lambda_text(text: str, n: int) -> np.ndarray:
    """Parse Λ typed as rows separated by ``;`` or new lines, entries by ``,`` or spaces; must be n×n numbers."""
    rows = [r for r in (p.strip() for p in text.replace("\n", ";").split(";")) if r]
    values: list[list[float]] = []
    for i, row in enumerate(rows):
        cells = [c for c in row.replace(",", " ").split() if c]
        parsed = []
        for j, c in enumerate(cells):
            try:
                v = float(c)
            except ValueError:
                raise ValidationError(
                    f"Lambda[{i + 1},{j + 1}]", "a number", c, reason="non-numeric entry"
                ) from None
            if not math.isfinite(v):
                raise ValidationError(f"Lambda[{i + 1},{j + 1}]", "a finite number", c)
            parsed.append(v)
        values.append(parsed)
    if len(values) != n:
        raise ValidationError(
            "Lambda", f"{n} rows (one per agent)", f"{len(values)} row{'s' * (len(values) != 1)}"
        )
    for i, r in enumerate(values):
        if len(r) != n:
            raise ValidationError(
                f"Lambda row {i + 1}",
                f"{n} entries (one per agent)",
                f"{len(r)} entr{'ies' if len(r) != 1 else 'y'}",
            )
    return check_magnitude(np.asarray(values, dtype=float))


def check_magnitude(Lambda: np.ndarray) -> np.ndarray:
    """Refuse entries beyond ``MAX_ENTRY`` in absolute value (they overflow the costs), naming the entry."""
    L = np.asarray(Lambda, dtype=float)
    big = np.argwhere(np.abs(L) > MAX_ENTRY)
    if big.size:
        i, j = (int(v) for v in big[0])
        raise ValidationError(
            f"Lambda[{i + 1},{j + 1}]",
            f"|λ| ≤ {MAX_ENTRY:g}",
            f"{L[i, j]:g}",
            reason="costs scaled this much overflow and the run diverges",
        )
    return L


def lambda_from_frame(df: pd.DataFrame, n: int) -> np.ndarray:
    """The edited Λ grid as an n×n float array; empty or non-numeric cells are refused with their position."""
    if df.shape != (n, n):
        raise ValidationError("Lambda", f"a {n}×{n} matrix", f"{df.shape[0]}×{df.shape[1]}")
    out = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            v = df.iat[i, j]
            if v is None or (isinstance(v, str) and not v.strip()):
                raise ValidationError(
                    f"Lambda[{i + 1},{j + 1}]", "a number", "", reason="empty cell"
                )
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise ValidationError(
                    f"Lambda[{i + 1},{j + 1}]", "a number", v, reason="non-numeric entry"
                ) from None
            if not math.isfinite(v):
                raise ValidationError(
                    f"Lambda[{i + 1},{j + 1}]",
                    "a finite number",
                    v,
                    reason="empty cell" if math.isnan(v) else "infinite entry",
                )
            out[i, j] = v
    return check_magnitude(out)


def lambda_frame(Lambda: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Λ as a labelled DataFrame of text cells for the editor (row j = agent j's weights on everyone's cost).

    Text, not float, columns: whatever is typed reaches ``lambda_from_frame``, which names a bad cell.
    """
    L = np.asarray(Lambda, dtype=float)
    return pd.DataFrame([[f"{v:.6g}" for v in row] for row in L], index=names, columns=names)


def n_players(scenario: str, n: int) -> int:
    """The players of ``scenario`` with ``n`` agents (Λ is players × players): the agents, or the populations."""
    cls = agents.SCENARIOS.get(scenario)
    if cls is None or not getattr(cls, "population", False):
        return int(n)
    try:
        return int(cls(int(n)).n_players)
    except (ValidationError, TypeError, ValueError):
        return 1


def agent_names(n: int) -> list[str]:
    """Default agent labels before a run names them."""
    return [f"agent {i + 1}" for i in range(n)]


# ---------------------------------------------------------------- runs


def results_dir() -> Path:
    """Where the app's runs are written and browsed: ``MFTT_RESULTS_DIR`` when set (tests), else ``results/``."""

    return Path(os.environ.get("MFTT_RESULTS_DIR", RESULTS_DIR))


def submit(key: str, experiment: Any, settings: dict[str, Any] | None = None, **kw: Any):
    """Start ``experiment`` as a background job (``agents.submit_job``, written under results/) for page ``key``.

    The job outlives the page and the session: its folder holds the manifest, settings and live status.
    ``settings``: what produced the run, shown over its results (default: a summary of the experiment).
    """
    if kw:
        raise TypeError(f"unexpected options {sorted(kw)}")
    settings = dict(settings) if settings is not None else experiment_settings(experiment)
    job = agents.submit_job(experiment, results_dir(), settings=settings)
    attach(key, job)
    return job


def attach(key: str, job) -> None:
    """Make ``job`` the run shown under ``key`` (a fresh submission, or one found again after a reload)."""
    for k in ("result", "error", "note"):
        st.session_state.pop(f"{key}:{k}", None)
    st.session_state[f"{key}:job"] = job.id
    st.session_state[f"{key}:settings"] = job.settings
    st.session_state[f"{key}:out"] = job.out
    st.session_state[f"{key}:handle"] = job
    if job.done():
        collect(key, job)


def job(key: str):
    """The job last attached under ``key`` (running or not), or None."""
    jid = st.session_state.get(f"{key}:job")
    return agents.get_job(results_dir(), jid) if jid else None


def handle(key: str):
    """The pending job under ``key`` (None when idle)."""
    return st.session_state.get(f"{key}:handle")


def result(key: str):
    """The finished Dataset under ``key`` (None before the first run)."""
    return st.session_state.get(f"{key}:result")


def error(key: str) -> str | None:
    """The message of a failed run under ``key``."""
    return st.session_state.get(f"{key}:error")


def note(key: str) -> str | None:
    """A remark on the finished run under ``key`` (e.g. cancelled with k cells kept)."""
    return st.session_state.get(f"{key}:note")


def ran_settings(key: str) -> dict[str, Any]:
    """The settings of the run under ``key`` (recorded at submission)."""
    return dict(st.session_state.get(f"{key}:settings") or {})


def collect(key: str, job) -> None:
    """Move a finished job's outcome into the session: its Dataset, or its error, and a note."""
    p = job.progress()
    st.session_state.pop(f"{key}:handle", None)
    if p["status"] in ("done", "cancelled") and job.out.exists():
        try:
            st.session_state[f"{key}:result"] = _load(str(job.out), job.out.stat().st_mtime)
        except Exception as exc:  # a damaged file: one line
            st.session_state[f"{key}:error"] = f"{type(exc).__name__}: {exc}"
        if p["status"] == "cancelled":
            st.session_state[f"{key}:note"] = (
                f"Cancelled after {p['elapsed']:.0f} s: {p['done']} of {p['total']} cells finished "
                "and are shown; the others are marked missing."
            )
    elif p["status"] == "cancelled":
        st.session_state[f"{key}:error"] = "cancelled before any cell finished"
    else:
        st.session_state[f"{key}:error"] = p.get("message") or p["status"]


@st.cache_resource(show_spinner=False, max_entries=8)
def _load(path: str, mtime: float):
    ds = open_results(path)
    ds = ds.load()
    ds.close()
    return ds


def progress_text(p: dict[str, Any]) -> str:
    """``Running… 1/2 cells done, 12 s elapsed, about 30 s left`` (the ETA only counts down)."""
    total = max(int(p.get("total") or 0), 1)
    text = (
        f"{'Running' if p['status'] == 'running' else 'Starting'}… {p['done']}/{total} cells done"
    )
    if p.get("failed"):
        text += f" ({p['failed']} failed)"
    text += f", {p.get('elapsed', 0):.0f} s elapsed"
    eta = p.get("eta")
    if eta is not None:
        text += f", about {eta:.0f} s left" if eta >= 1 else ", finishing"
    elif p["status"] == "running":
        text += ", ETA after the first cell"
    return text


def poll(key: str) -> bool:
    """Draw the progress of the pending job with a Cancel button; collect it when done. True when it just finished."""
    h = handle(key)
    if h is None:
        return False
    p = h.progress()
    total = max(int(p.get("total") or 0), 1)
    cols = st.columns([5, 1], vertical_alignment="center")
    cols[0].progress(min(p["done"] / total, 1.0), text=progress_text(p))
    if cancelling(h):
        cols[1].button("Cancelling…", key=f"{key}_cancel", disabled=True, width="stretch")
    elif cols[1].button("Cancel", key=f"{key}_cancel", width="stretch"):
        h.cancel()
        t0 = (
            time.monotonic()
        )  # the worker stops at once; wait (≤ 5 s) for it to save the finished cells
        while not h.done() and time.monotonic() - t0 < 5:
            time.sleep(0.1)
    cell_progress(p.get("cells") or [], key)
    st.caption(f"Job `{h.id}`: it goes on if you leave or reload the page (see **Runs**).")
    if not h.done():
        return False
    collect(key, h)
    return True


def cell_progress_text(c: dict[str, Any]) -> str:
    """``cell 0: step 12/30`` for a running cell's progress (``Job.cells_progress``)."""
    return f"cell {c['cell']}: step {c['step']}/{c['total']}"


def cell_progress(cells: list[dict[str, Any]], key: str) -> None:
    """Each running cell: step k of K and its live Λ-cost curve (written by the runner every ~0.5 s)."""

    for c in cells[:4]:
        total = max(int(c["total"]), 1)
        st.progress(min(c["step"] / total, 1.0), text=cell_progress_text(c))
        if len(c.get("cost") or []) > 1:
            st.plotly_chart(
                figures.step_curve(c["steps"], c["cost"], title=f"cell {c['cell']}: total Λ-cost"),
                width="stretch",
                key=f"{key}_cell_{c['cell']}_curve",
            )


def cancelling(job) -> bool:
    return (job.dir / "cancel").exists()


def progress_fragment(key: str) -> None:
    """Poll the job under ``key`` from a fragment every second; rerun the page once it finishes."""

    @st.fragment(run_every=POLL_SECONDS)
    def _poll() -> None:
        if poll(key):
            st.rerun(scope="app")

    if handle(key) is not None:
        _poll()


def get_job(job_id: str):
    """The job ``job_id`` in the results folder, or None."""
    return agents.get_job(results_dir(), str(job_id))


def results_name(path) -> str:
    return Path(path).name


def precheck(scenario, n, Lambda, law, policy, concept, mftt=None) -> str | None:
    """The one-line refusal ``agents.play`` would raise up front for these inputs (None: accepted)."""
    L = tuple(tuple(float(v) for v in row) for row in np.asarray(Lambda, float))
    opts = tuple(sorted((mftt or {}).items()))
    pols = getattr(agents.SCENARIOS.get(scenario), "policies", ())
    if (
        policy == "mftt" and "linear" in pols
    ):  # the up-front refusals concern Λ and the concept; a linear
        policy, opts = (
            "linear",
            (),
        )  # policy's game builds in ms where an MFTT's one step takes seconds
    return _precheck(scenario, int(n), L, law, policy, concept, opts)


@st.cache_data(show_spinner=False, max_entries=64)
def _precheck(scenario, n, L, law, policy, concept, opts) -> str | None:
    try:
        agents.precheck(
            scenario,
            n_agents=n,
            Lambda=np.asarray(L),
            law=law,
            policy=policy,
            concept=concept,
            mftt=dict(opts) or None,
        )
    except ValidationError as exc:  # the API counts agents from 0, the grid from 1
        return re.sub(
            r"Lambda\[(\d+),(\d+)\]", lambda m: f"Lambda[{int(m[1]) + 1},{int(m[2]) + 1}]", str(exc)
        )
    return None


def job_summary(job) -> dict[str, Any]:
    """Settings of a job submitted without them (e.g. by the Compare page), read from its manifest."""
    try:
        return experiment_settings(job.experiment())
    except Exception:  # noqa: BLE001 (a damaged manifest: show what there is)
        return {}


def jobs_frame(jobs: list) -> pd.DataFrame:
    """One row per job: id, status, cells, settings, date, size (for the Runs table)."""
    rows = []
    for j in jobs:
        p, meta = j.progress(), j.meta
        s = j.settings or {}
        total = max(int(p["total"]), 1)
        rows.append(
            {
                "id": j.id,
                "status": p["status"],
                "done": 100.0 * p["done"] / total,
                "cells": f"{p['done']}/{p['total']}"
                + (f" ({p['failed']} failed)" if p["failed"] else ""),
                "scenario": s.get("scenario") or ", ".join(meta.get("scenarios", [])),
                "Λ": s.get("Λ"),
                "policy": s.get("policy"),
                "law": s.get("law"),
                "steps": s.get("steps"),
                "seeds": s.get("seeds"),
                "cell statuses": ", ".join(f"{v} {k}" for k, v in p.get("statuses", {}).items()),
                "best gap": p.get("best_gap"),
                "time (s)": round(p["elapsed"], 1),
                "created": pd.Timestamp(float(meta.get("created", 0)), unit="s"),
                "size (kB)": j.out.stat().st_size / 1024 if j.out.exists() else None,
                "message": p.get("message", ""),
            }
        )
    return pd.DataFrame(rows)


def filter_jobs(table: pd.DataFrame, statuses: list[str], text: str) -> pd.DataFrame:
    """Rows whose status is among ``statuses`` (all when empty) and whose text contains ``text``."""
    out = table
    if statuses:
        out = out[out["status"].isin(statuses)]
    if text and text.strip():
        needle = text.strip().lower()
        hay = out.astype(str).agg(" ".join, axis=1).str.lower()
        out = out[hay.str.contains(needle, regex=False)]
    return out


def load_job(job):
    """A finished (or cancelled) job's Dataset, cached per file version."""
    return _load(str(job.out), job.out.stat().st_mtime)


def runs_curves(dss: dict[str, Any]) -> dict[str, np.ndarray]:
    """Per run: the total empathetic cost over learning of each of its cells, [cells, iteration]."""
    out = {}
    for name, ds in dss.items():
        if "history" not in ds:
            continue
        h = np.asarray(ds["history"].values, float)
        h = h.reshape(-1, h.shape[-2], h.shape[-1])
        out[name] = np.where(np.isnan(h).all(-1), np.nan, np.nansum(h, -1))
    return out


def runs_metrics(dss: dict[str, Any]) -> pd.DataFrame:
    """One row per run: cells, ok cells, mean total material cost, exploitability and gap (NaN-aware)."""
    rows = []
    for name, ds in dss.items():
        status = (
            np.asarray(ds["status"].values).astype(str).ravel() if "status" in ds else np.array([])
        )
        cost = np.asarray(ds["cost"].values, float) if "cost" in ds else np.full((1, 1), np.nan)
        total = np.where(np.isnan(cost).all(-1), np.nan, np.nansum(cost, -1)).ravel()
        row = {
            "run": name,
            "cells": status.size,
            "ok": int((status == "ok").sum()),
            "missing": int((status == "missing").sum()),
            "total cost": _mean(total),
        }
        for v in ("exploitability", "gap"):
            row[v] = _mean(np.asarray(ds[v].values, float).ravel()) if v in ds else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def config_diff(a, b) -> str:
    """Unified diff of two jobs' TOML configs."""

    return "".join(
        difflib.unified_diff(
            a.manifest.splitlines(keepends=True),
            b.manifest.splitlines(keepends=True),
            fromfile=a.id,
            tofile=b.id,
        )
    )


def running_same(settings: dict[str, Any]) -> Any:
    """A queued or running job (any session) whose recorded settings equal ``settings``, or None."""
    for j in agents.list_jobs(results_dir()):
        if j.settings == settings and j.progress()["status"] in ("queued", "running"):
            return j
    return None


def experiment_settings(exp) -> dict[str, Any]:
    """A summary of an Experiment in the vocabulary of the settings header."""
    d = exp.to_dict()
    return {
        "scenario": ", ".join(d["scenarios"]),
        "n": d["agents"].get("n"),
        "Λ": ", ".join([*d["Lambda"]["presets"], *d["Lambda"].get("matrices", {})]),
        "law": ", ".join(d["agents"]["weights"]),
        "policy": d["agents"].get("policy"),
        "concept": d["concept"].get("name"),
        "steps": d["training"].get("steps"),
        "seeds": len(d["seeds"]),
    }


SETTINGS_ORDER = (
    "scenario",
    "n",
    "Λ",
    "Λ matrix",
    "law",
    "policy",
    "concept",
    "steps",
    "seeds",
    "mftt",
)


def settings_markdown(settings: dict[str, Any]) -> str:
    """One line: ``scenario **lq_game** · n **2** · Λ **altruistic** (α 0.5) · …`` (None fields left out)."""
    parts = []
    for k in SETTINGS_ORDER:
        v = settings.get(k)
        if v is None or v == "" or k == "Λ matrix":
            continue
        if isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items())
        parts.append(f"{k} **{v}**")
    return " · ".join(parts)


def settings_diff(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The settings that differ between a result's and the form's, as ``name: old → new``."""
    out = []
    for k in SETTINGS_ORDER:
        a, b = old.get(k), new.get(k)
        if a != b:
            out.append(k if k == "Λ matrix" else f"{k}: {a} → {b}")
    return out


# ---------------------------------------------------------------- trained weights


def cell_of(ds, one) -> int | None:
    """The flat grid index of the cell ``one`` (a selection of ``ds`` holding its labels as coords)."""

    coords = {}
    for d in grid_dims(ds):
        if d in one.coords and one[d].ndim == 0:
            v = one[d].values
            coords[d] = v.item() if hasattr(v, "item") else v
    try:
        return cell_index(ds, coords)
    except ValidationError:
        return None


def has_weights(ds, cell: int) -> bool:
    """Whether the run stored trained weights for ``cell`` (``attrs['weights']``)."""

    try:
        return int(cell) in weights_index(ds)
    except ValidationError:
        return False


def weights_cells(ds) -> list[int]:
    """The cells of a run that have trained weights."""

    try:
        return sorted(weights_index(ds))
    except ValidationError:
        return []


def cell_label(ds, cell: int) -> str:
    """``scenario lq_game · Λ altruistic · law feedback · seed 0`` for a flat grid index."""
    dims = grid_dims(ds)
    pos = np.unravel_index(int(cell), [ds.sizes[d] for d in dims])
    parts = []
    for d, i in zip(dims, pos, strict=True):
        v = ds[d].values[int(i)]
        parts.append(f"{'Λ' if d == 'Lambda' else d} {v.item() if hasattr(v, 'item') else v}")
    return " · ".join(parts)


def cell_agent_names(ds, cell: int) -> list[str]:
    """The agent names recorded for a cell (padding dropped)."""
    if "agent_name" not in ds:
        return []
    v = np.asarray(ds["agent_name"].values).astype(str)
    v = v.reshape(-1, v.shape[-1])[int(cell)] if v.ndim else v.reshape(1)
    return [x for x in v if x]


def load_path(path):
    """A results file's Dataset, cached per file version."""
    return _load(str(path), Path(path).stat().st_mtime)


def has_weights_dir(path) -> bool:
    """Cheap check (no file opened): a ``<path>.weights`` folder sits beside the results file."""
    return Path(str(path) + ".weights").is_dir()


@st.cache_resource(show_spinner="Rebuilding the trained model…", max_entries=8)
def _trained_game(path: str, mtime: float, cell: int):

    return load_trained_game(path, cell, ds=_load(path, mtime))[0]


def population_costs(path: str, cell: int) -> np.ndarray:
    """Every agent's cost ``[populations, agents]`` of a population cell, its trained policy rebuilt."""
    return _population_costs(str(path), Path(path).stat().st_mtime, int(cell))


@st.cache_data(show_spinner="Computing every agent's cost…", max_entries=16)
def _population_costs(path: str, mtime: float, cell: int) -> np.ndarray:

    return agent_costs(_trained_game(path, mtime, cell))


def is_population(ds) -> bool:
    """Whether the results are of a population scenario (distributions, not per-agent bars)."""
    if "scenario" not in ds.coords:
        return False
    labels = [str(v) for v in np.atleast_1d(ds["scenario"].values)]
    return any(getattr(agents.SCENARIOS.get(s), "population", False) for s in labels)


def trained_attention(path: str, cell: int, agent: int, time_index: int | None) -> dict[str, Any]:
    """``agents.attention_maps`` of the trained game of ``cell`` (rebuilt once per file version)."""
    return _trained_attention(str(path), Path(path).stat().st_mtime, int(cell), agent, time_index)


@st.cache_data(show_spinner=False, max_entries=64)
def _trained_attention(path: str, mtime: float, cell: int, agent: int, time_index: int | None):

    return attention_maps(_trained_game(path, mtime, cell), agent, time_index)


# ---------------------------------------------------------------- results files


def list_results(folder: Path | None = None) -> list[Path]:
    """NetCDF files under ``results/``, newest first."""
    folder = results_dir() if folder is None else folder
    if not folder.is_dir():
        return []
    files = [p for p in folder.glob("**/*.nc") if not p.parent.name.endswith(".parts")]
    return sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)


def open_dataset(path: Path):
    """Open a results file through ``agents.open_results`` (one-line error for a damaged file)."""
    return open_results(path)


def read_upload(name: str, data: bytes, *, max_mb: float = MAX_UPLOAD_MB):
    """Open uploaded bytes as a results Dataset; refuse oversized or non-NetCDF files with one line."""
    size_mb = len(data) / 2**20
    if size_mb > max_mb:
        raise ValidationError("upload", f"a file of at most {max_mb:g} MB", f"{size_mb:.1f} MB")
    if not (data[:4] == b"\x89HDF" or data[:3] == b"CDF"):
        raise ValidationError(
            "upload", "a NetCDF file (.nc, HDF5 or classic)", name, reason="not a NetCDF file"
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "upload.nc"
        path.write_bytes(data)
        try:  # declared sizes capped at 4x the upload (a small file may declare gigabytes)
            ds = open_results(path, max_mb=4 * max_mb).load()
        except ValidationError as exc:
            raise ValidationError("upload", exc.expected, name, reason=exc.reason) from None
        except Exception as exc:
            raise ValidationError(
                "upload", "a readable NetCDF results file", name, reason=str(exc).splitlines()[0]
            ) from None
    return ds


def netcdf_bytes(ds) -> bytes:
    """The Dataset as NetCDF bytes for a download button."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "results.nc"
        ds.to_netcdf(path, engine="h5netcdf")
        return path.read_bytes()


def summary_frame(ds) -> pd.DataFrame:
    """One row per grid cell and agent: material/empathetic costs, exploitability, status (for tables, CSV)."""
    keep = [v for v in ("cost", "empathetic_cost", "reference_cost", "n_params") if v in ds]
    per_agent = ds[keep].to_dataframe().reset_index()
    scal = [v for v in ("exploitability", "gap", "status", "wall_time", "nfe") if v in ds]
    per_cell = ds[scal].to_dataframe().reset_index()
    grid = [c for c in per_cell.columns if c not in scal]
    df = per_agent.merge(per_cell, on=grid, how="left")
    return df.dropna(subset=["cost"]) if "cost" in df else df


def csv_bytes(ds) -> bytes:
    """The summary table as CSV bytes."""
    buf = io.StringIO()
    summary_frame(ds).to_csv(buf, index=False)
    return buf.getvalue().encode()


# ---------------------------------------------------------------- experiments


def make_experiment(
    *,
    scenario: str,
    n_agents: int,
    Lambda: np.ndarray,
    laws: list[str],
    policy: str | None,
    concept: str | None,
    seeds: list[int],
    steps: int | None,
    mftt: dict | None = None,
    name: str = "app",
    Lambda_label: str = "custom",
):
    """An ``agents.experiments.config.Experiment`` for one scenario and one Λ (a named matrix), swept over laws and seeds."""
    d: dict[str, Any] = {
        "name": name,
        "scenarios": {scenario: {}},
        "agents": {"n": int(n_agents), "weights": list(laws), "mftt": dict(mftt or {})},
        "Lambda": {"presets": [], "matrices": {Lambda_label: np.asarray(Lambda, float).tolist()}},
        "concept": {"name": concept} if concept else {},
        "training": {"steps": int(steps)} if steps else {},
        "seeds": [int(s) for s in seeds],
        "backend": "local",
        "fuse": 1,  # cell by cell: progress per cell, and a cancelled run keeps each finished cell
    }
    if policy:
        d["agents"]["policy"] = policy
    return Experiment.from_dict(d)


def grid_dims(ds) -> list[str]:
    """The grid dimensions of a results Dataset (everything but agent/iteration/time/state)."""
    if "status" in ds:
        return list(ds["status"].dims)
    inner = {"agent", "agent_j", "iteration", "time", "state"}
    return [d for d in ds.dims if d not in inner]


def ranked_table(cell) -> pd.DataFrame:
    """Per weight law: total material cost and exploitability, mean ± 95% half-width over seeds, ranked."""
    rows = []
    for law in [str(v) for v in cell["law"].values]:
        c = cell.sel(law=law)
        cost = np.asarray(c["cost"].values, float).reshape(c.sizes.get("seed", 1), -1)
        total = np.where(np.isnan(cost).all(-1), np.nan, np.nansum(cost, -1))
        expl = np.asarray(c["exploitability"].values, float).ravel()
        params = np.asarray(c["n_params"].values, float).reshape(c.sizes.get("seed", 1), -1)
        status = np.asarray(c["status"].values).astype(str).ravel()
        rows.append(
            {
                "law": law,
                "total cost": _mean(total),
                "± CI95": _half_width(total),
                "exploitability": _mean(expl),
                "± CI95 (expl.)": _half_width(expl),
                "parameters / agent": _mean(params[0]) if params.size else np.nan,
                "ok seeds": f"{int((status == 'ok').sum())}/{status.size}",
            }
        )
    df = pd.DataFrame(rows).sort_values("total cost", na_position="last").reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    return df


def _mean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def _half_width(x: np.ndarray) -> float:
    """1.96 · standard error over seeds (0 with a single seed): a display aid, not an estimator of record."""
    x = x[np.isfinite(x)]
    return float(1.96 * x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else 0.0


def max_upload_mb() -> float:
    """Upload cap in MB: ``MFTT_MAX_UPLOAD_MB`` when set (tests lower it), else 50."""

    try:
        return float(os.environ.get("MFTT_MAX_UPLOAD_MB", MAX_UPLOAD_MB))
    except ValueError:
        return float(MAX_UPLOAD_MB)


def experiment_from_manifest(manifest: str, steps: int | None = None):
    """The Experiment recorded in a manifest, run locally, with the learning steps optionally overridden."""

    try:
        data = tomllib.loads(manifest)
    except (tomllib.TOMLDecodeError, TypeError):
        return Experiment.from_toml(manifest)  # raises the one-line config error
    # the manifest's [budget] and output are never honoured: the local defaults apply, so a manifest cannot exhaust this machine
    data.pop("budget", None)
    data.pop("output", None)
    exp = Experiment.from_dict(data)
    values: dict[str, Any] = {"backend": "local"}
    if steps:
        values["training.steps"] = int(steps)
    return exp.with_values(values)


def scenarios() -> dict:
    """The scenario registry ``agents.SCENARIOS``."""
    return dict(agents.SCENARIOS)


def concepts(default: str) -> list[str]:
    """Solution concept names (``agents.SOLUTION_CONCEPTS``), the scenario's default among them."""
    return sorted(set(agents.SOLUTION_CONCEPTS) | {default})


def can_run(key: str, settings: dict[str, Any] | None = None) -> bool:
    """Whether a Run button may be pressed: not while these settings run (any session), and without
    ``settings`` not while any run of ``key`` is pending."""
    h = handle(key)
    if settings is None:
        return h is None
    if h is not None and h.settings == settings and not h.done():
        return False
    return running_same(settings) is None
