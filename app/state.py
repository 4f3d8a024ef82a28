"""Glue between the pages and the public APIs of agents/mftt: input parsing, run handles, upload checks.

No mathematics lives here: the pages call ``agents``/``mftt`` public functions; this module only turns widget
values into their arguments, keeps run handles in the session, and turns bad input into one-line messages.
"""

from __future__ import annotations

import io
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

import agents
from agents.config import Experiment
from agents.results import open_results
from agents.runner import submit_experiment
from control.errors import ValidationError

RESULTS_DIR = Path("results")
MAX_UPLOAD_MB = 50
POLL_SECONDS = 1.0
LAWS = ("constant", "time", "feedback", "meanfield")
# default learning steps for runs launched from the app (kept small: the app is interactive)
APP_STEPS = 30


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
    shape = (len(values), max((len(r) for r in values), default=0))
    if len(values) != n or any(len(r) != n for r in values):
        raise ValidationError(
            "Lambda", f"a {n}×{n} matrix (one row per agent)", f"{shape[0]}×{shape[1]}"
        )
    return np.asarray(values, dtype=float)


def lambda_from_frame(df: pd.DataFrame, n: int) -> np.ndarray:
    """The edited Λ grid as an n×n float array; empty or non-numeric cells are refused with their position."""
    if df.shape != (n, n):
        raise ValidationError("Lambda", f"a {n}×{n} matrix", f"{df.shape[0]}×{df.shape[1]}")
    out = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            v = df.iat[i, j]
            try:
                v = float(v)
            except (TypeError, ValueError):
                raise ValidationError(
                    f"Lambda[{i + 1},{j + 1}]", "a number", v, reason="non-numeric entry"
                ) from None
            if not math.isfinite(v):
                raise ValidationError(
                    f"Lambda[{i + 1},{j + 1}]", "a finite number", v, reason="empty cell"
                )
            out[i, j] = v
    return out


def lambda_frame(Lambda: np.ndarray, names: list[str]) -> pd.DataFrame:
    """Λ as a labelled DataFrame for the editor (row j = agent j's weights on everyone's cost)."""
    return pd.DataFrame(np.asarray(Lambda, dtype=float), index=names, columns=names)


def agent_names(n: int) -> list[str]:
    """Default agent labels before a run names them."""
    return [f"agent {i + 1}" for i in range(n)]


# ---------------------------------------------------------------- runs


def results_dir() -> Path:
    """Where the app's runs are written and browsed: ``MFTT_RESULTS_DIR`` when set (tests), else ``results/``."""
    import os

    return Path(os.environ.get("MFTT_RESULTS_DIR", RESULTS_DIR))


def submit(key: str, experiment: Any, **kw: Any) -> None:
    """Submit an experiment to the runner in the background (written to results/) and keep its handle."""
    import time

    out = (
        results_dir()
        / f"{experiment.name}-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**6:06d}.nc"
    )
    opts = {"backend": "local", "out": out, **kw}
    st.session_state[f"{key}:handle"] = submit_experiment(experiment, **opts)
    st.session_state[f"{key}:out"] = opts["out"]
    st.session_state.pop(f"{key}:result", None)
    st.session_state.pop(f"{key}:error", None)


def handle(key: str):
    """The pending run handle under ``key`` (None when idle)."""
    return st.session_state.get(f"{key}:handle")


def result(key: str):
    """The finished Dataset under ``key`` (None before the first run)."""
    return st.session_state.get(f"{key}:result")


def error(key: str) -> str | None:
    """The message of a failed run under ``key``."""
    return st.session_state.get(f"{key}:error")


def poll(key: str) -> bool:
    """Draw the progress of the pending run; collect its result when done. True when it just finished."""
    h = handle(key)
    if h is None:
        return False
    p = h.progress()
    total = max(int(p.get("total") or 0), 1)
    done = int(p.get("done") or 0)  # finished cells, failed ones included
    failed = int(p.get("failed") or 0)
    eta = p.get("eta")
    text = f"Running… {done}/{total} cells done" + (f" ({failed} failed)" if failed else "")
    text += f", about {eta:.0f} s left" if eta else ""
    st.progress(min(done / total, 1.0), text=text)
    if not h.done():
        return False
    try:
        st.session_state[f"{key}:result"] = h.result()
    except Exception as exc:  # the run's own error, shown inline
        st.session_state[f"{key}:error"] = f"{type(exc).__name__}: {exc}"
    st.session_state.pop(f"{key}:handle", None)
    return True


def progress_fragment(key: str) -> None:
    """Poll the run under ``key`` from a fragment every second; rerun the page once it finishes."""

    @st.fragment(run_every=POLL_SECONDS)
    def _poll() -> None:
        if poll(key):
            st.rerun(scope="app")

    if handle(key) is not None:
        _poll()


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
    """An ``agents.config.Experiment`` for one scenario and one Λ (a named matrix), swept over laws and seeds."""
    d: dict[str, Any] = {
        "name": name,
        "scenarios": {scenario: {}},
        "agents": {"n": int(n_agents), "weights": list(laws), "mftt": dict(mftt or {})},
        "Lambda": {"presets": [], "matrices": {Lambda_label: np.asarray(Lambda, float).tolist()}},
        "concept": {"name": concept} if concept else {},
        "training": {"steps": int(steps)} if steps else {},
        "seeds": [int(s) for s in seeds],
        "backend": "local",
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
    import os

    try:
        return float(os.environ.get("MFTT_MAX_UPLOAD_MB", MAX_UPLOAD_MB))
    except ValueError:
        return float(MAX_UPLOAD_MB)


def experiment_from_manifest(manifest: str, steps: int | None = None):
    """The Experiment recorded in a manifest, run locally, with the learning steps optionally overridden."""
    import tomllib

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


def can_run(key: str) -> bool:
    """Whether a Run button may be pressed: no run is pending under ``key``."""
    return handle(key) is None
