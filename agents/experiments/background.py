"""Background jobs on this machine: an experiment run in its own process, kept on disk under a results folder.

A job is a folder ``<results>/jobs/<id>/`` written before anything runs: ``experiment.toml`` (the manifest
that reproduces the run), ``job.json`` (id, name, creation time, process id, the caller's settings, the
output path) and ``status.json`` (written by the worker about twice a second: status, cells done/failed/total,
an ETA that only counts down, elapsed time, message). A running cell reports its learning step k of K and
its Λ-cost curve in ``<results>/<id>.nc.parts/progress-<cell>.json`` (``Job.cells_progress``), which also
refines the ETA within a cell. The results go to ``<results>/<id>.nc``; finished cells
are saved at once under ``<results>/<id>.nc.parts/`` (``agents.experiments.runner``), so a cancelled job keeps them:
the worker assembles them into ``<id>.nc`` (unfinished cells ``missing``) before it exits.

Any process can list, watch and cancel jobs from the files alone (the web app after a reload, another tab);
``cancel`` writes a ``cancel`` file and sends SIGTERM, which interrupts the running cell at once.
The worker (``agents.experiments.background.main(<job dir>)``, a process of its own) runs ``agents.experiments.runner.run_experiment`` in-process (backend ``local``).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from control.errors import ValidationError

from .config import Experiment
from .results import (
    assemble,
    attach_weights,
    open_results,
    read_parts,
    read_progress,
    write_results,
)
from .runner import RunCancelled, RunState, parts_dir_for, run_experiment

JOBS = "jobs"
ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled", "lost")
STATUSES = ACTIVE + FINISHED
_CHILDREN: dict[int, subprocess.Popen] = {}  # workers started by this process (reaped on poll)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic JSON write (readers never see half a file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _alive(pid: int | None) -> bool:
    """Whether process ``pid`` runs (a zombie child is reaped and counts as ended)."""
    if not pid:
        return False
    child = _CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not running
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


class Job:
    """A job folder: read its manifest, settings and live status; cancel it; open its results."""

    def __init__(self, folder: str | Path):
        self.dir = Path(folder)
        self.id = self.dir.name

    def __repr__(self) -> str:
        return f"Job({self.id!r}, {self.status!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.dir == self.dir

    def __hash__(self) -> int:
        return hash(self.dir)

    @property
    def meta(self) -> dict[str, Any]:
        """``job.json``: id, name, created (epoch s), pid, settings, out, total."""
        return _read_json(self.dir / "job.json")

    @property
    def settings(self) -> dict[str, Any]:
        """The caller's settings recorded at submission (what the app shows over the results)."""
        return dict(self.meta.get("settings") or {})

    @property
    def out(self) -> Path:
        """The job's NetCDF results file (exists once the job has finished or been cancelled)."""
        return self.dir.parent.parent / f"{self.id}.nc"

    @property
    def manifest(self) -> str:
        """The TOML config that reproduces this run."""
        try:
            return (self.dir / "experiment.toml").read_text()
        except OSError:
            return ""

    def progress(self) -> dict[str, Any]:
        """Status and counters: ``status``, ``done``, ``failed``, ``total``, ``eta`` (s, counts down or None),
        ``elapsed`` (s), ``message``. A job whose worker died without a final word is ``lost``."""
        meta = self.meta
        st = _read_json(self.dir / "status.json")
        p = {
            "status": st.get("status", "queued"),
            "done": int(st.get("done", 0)),
            "failed": int(st.get("failed", 0)),
            "total": int(st.get("total", meta.get("total", 0))),
            "message": st.get("message", ""),
            "eta": None,
            "statuses": st.get("statuses") or {},
            "best_gap": st.get("best_gap"),
            "cells": [],
        }
        now = time.time()
        started = st.get("started") or meta.get("created") or now
        ended = st.get("ended")
        p["elapsed"] = float((ended or now) - started)
        if p["status"] in ACTIVE:
            if st.get("deadline") is not None:
                p["eta"] = max(0.0, float(st["deadline"]) - now)
            pid = st.get("pid") or meta.get("pid")
            if pid and not _alive(pid):  # the worker died without writing its final status
                p["status"] = "lost"
                p["message"] = p["message"] or "the worker process ended without a final status"
            else:
                p["cells"] = self.cells_progress()
        return p

    def cells_progress(self) -> list[dict[str, Any]]:
        """The running cells' learning progress: ``cell`` (grid index), ``step`` k of ``total`` K, ``steps`` and
        ``cost`` (the total Λ-cost per step, thinned), ``started``/``updated`` (epoch s)."""
        return read_progress(Path(str(self.out) + ".parts"))

    @property
    def status(self) -> str:
        return self.progress()["status"]

    def done(self) -> bool:
        """True once the job has finished, failed, been cancelled or lost its worker."""
        return self.status in FINISHED

    def cancel(self) -> None:
        """Stop the job: the running cell is interrupted (SIGTERM); finished cells are kept in ``out``."""
        (self.dir / "cancel").write_text(str(time.time()))
        st = _read_json(self.dir / "status.json")
        pid = st.get("pid") or self.meta.get("pid")
        if st.get("status", "queued") in ACTIVE and _alive(pid):
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass

    def result(self):
        """The results Dataset (``agents.experiments.results.open_results``); ValidationError before there is one."""
        if not self.out.exists():
            raise ValidationError("job", "a finished job", f"{self.id} ({self.status})")
        return open_results(self.out)

    def experiment(self) -> Experiment:
        return Experiment.from_toml(self.manifest)


def jobs_dir(results: str | Path) -> Path:
    return Path(results) / JOBS


def new_id(name: str) -> str:
    """``<name>-<UTC date>-<time>-<4 hex>``: sortable by time, unique."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(name))[:40] or "run"
    return f"{safe}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(2)}"


def submit_job(
    experiment: Experiment,
    results: str | Path,
    *,
    settings: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> Job:
    """Write the job folder (manifest first) and start its worker process; return at once."""
    if not isinstance(experiment, Experiment):
        raise ValidationError(
            "experiment", "an agents.experiments.config.Experiment", type(experiment).__name__
        )
    folder = jobs_dir(results).resolve()  # the worker runs from the repository root
    folder.mkdir(parents=True, exist_ok=True)
    jid = new_id(experiment.name)
    d = folder / jid
    d.mkdir()
    (d / "experiment.toml").write_text(experiment.to_toml())
    meta = {
        "id": jid,
        "name": experiment.name,
        "created": time.time(),
        "settings": settings or {},
        "total": experiment.n_cells,
        "scenarios": [s.name for s in experiment.scenarios],
        "out": f"{jid}.nc",
        "pid": None,
    }
    _write_json(d / "job.json", meta)
    root = str(Path(__file__).resolve().parents[2])
    penv = {**os.environ, **(env or {})}
    penv["PYTHONPATH"] = root + (os.pathsep + penv["PYTHONPATH"] if penv.get("PYTHONPATH") else "")
    penv.setdefault("OMP_NUM_THREADS", "1")
    log = open(d / "worker.log", "w")  # noqa: SIM115 (handed to the child)
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from agents.experiments.background import main; sys.exit(main(sys.argv[1]))",
                str(d),
            ],
            cwd=root,
            env=penv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        log.close()
    _CHILDREN[proc.pid] = proc
    meta["pid"] = proc.pid
    _write_json(d / "job.json", meta)
    return Job(d)


def list_jobs(results: str | Path) -> list[Job]:
    """Every job under ``<results>/jobs/``, newest first."""
    folder = jobs_dir(results)
    if not folder.is_dir():
        return []
    jobs = [Job(p) for p in folder.iterdir() if (p / "job.json").exists()]
    return sorted(jobs, key=lambda j: float(j.meta.get("created", 0)), reverse=True)


def get_job(results: str | Path, job_id: str) -> Job | None:
    """The job ``job_id`` under ``results`` (None if there is none; ids are checked, never paths)."""
    if not job_id or any(c in str(job_id) for c in "/\\\0") or str(job_id).startswith("."):
        return None
    d = jobs_dir(results) / str(job_id)
    return Job(d) if (d / "job.json").exists() else None


# ---- the worker ----------------------------------------------------------------------------
def _worker(folder: Path) -> int:

    job = Job(folder)
    out = job.out
    status_path = folder / "status.json"
    state = RunState()
    info: dict[str, Any] = {"status": "running", "pid": os.getpid(), "started": time.time()}
    deadline: list[float | None] = [None]
    lock = threading.Lock()

    def write(final: dict[str, Any] | None = None) -> None:
        with lock:
            if info.get("status") != "running" and final is None:
                return
            eta = state.eta()
            # within a cell: its learning steps done (progress files) count as a fraction of a cell
            running = read_progress(parts_dir_for(out)) if final is None else []
            frac = sum(min(1.0, p["step"] / p["total"]) for p in running if p["total"] > 0)
            if frac > 0 and state.total:
                spent = time.monotonic() - state.started
                eta = spent / (state.computed + frac) * max(0.0, state.total - state.done - frac)
            if eta is not None:  # the shown ETA only counts down
                d = time.time() + eta
                deadline[0] = d if deadline[0] is None else min(deadline[0], d)
            info.update(
                done=state.done,
                failed=state.failed,
                total=state.total or job.meta.get("total", 0),
                deadline=deadline[0],
                updated=time.time(),
            )
            if final:
                info.update(final)
            _write_json(status_path, info)

    def cancelled(*_: Any) -> None:
        raise RunCancelled("cancelled")

    write()
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(0.5):
            write()

    threading.Thread(target=beat, daemon=True).start()
    if (folder / "cancel").exists():
        write({"status": "cancelled", "ended": time.time(), "message": "cancelled before start"})
        return 0
    signal.signal(signal.SIGTERM, cancelled)
    try:
        exp = job.experiment()
        ds = run_experiment(exp, backend="local", progress=False, out=out, state=state, resume=True)
    except (RunCancelled, KeyboardInterrupt) as e:
        # agents.experiments.outputs turns SIGTERM into KeyboardInterrupt while the output is locked
        if isinstance(e, KeyboardInterrupt) and not (folder / "cancel").exists():
            stop.set()
            write({"status": "failed", "ended": time.time(), "message": f"interrupted: {e}"})
            raise
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop.set()
        t_stop = time.time()
        exp = job.experiment()
        parts_dir = parts_dir_for(out)
        parts = read_parts(parts_dir, exp.cells()) if parts_dir.exists() else {}
        summary = {}
        if parts:
            ds = assemble(exp, parts)
            attach_weights(ds, exp, out)
            write_results(ds, out)
            summary = _summary(ds)
        print(
            f"cancelled: computing stopped at {t_stop:.3f}, {len(parts)} cells saved in {time.time() - t_stop:.2f} s",
            flush=True,
        )
        write(
            {
                "status": "cancelled",
                "ended": time.time(),
                "done": len(parts),
                "message": f"cancelled: {len(parts)} finished cells kept",
                **summary,
            }
        )
        return 0
    except BaseException as e:  # noqa: BLE001 (recorded for the app, then re-raised in the log)
        stop.set()
        msg = " ".join(f"{type(e).__name__}: {e}".split())[:500]
        write({"status": "failed", "ended": time.time(), "message": msg})
        raise
    stop.set()
    write({"status": "done", "ended": time.time(), "done": state.total, **_summary(ds)})
    return 0


def _summary(ds) -> dict[str, Any]:
    """What the runs table shows without opening the file: cells per status, the best gap to the closed form."""
    out: dict[str, Any] = {}
    if "status" in ds:
        st = np.asarray(ds["status"].values).astype(str).ravel()
        out["statuses"] = {k: int((st == k).sum()) for k in sorted(set(st))}
    if "gap" in ds:
        g = np.abs(np.asarray(ds["gap"].values, dtype=float)).ravel()
        g = g[np.isfinite(g)]
        out["best_gap"] = float(g.min()) if g.size else None
    return out


def main(folder: str) -> int:
    """The worker's entry point: run the job in ``folder`` (started by ``submit_job``)."""
    return _worker(Path(folder))
