"""Run an experiment's grid: one Ray task per cell or fused group (or in-process, or one Ray actor per agent).

Cells that differ only in seed and Λ in a fusable scenario share a task and one ODE per evaluation
(``agents.experiments.fusion``; up to ``Experiment.fuse`` cells); every cell still gets its own Dataset.

Ray lives only here and in the other orchestration modules (docs/architecture.md). By default an embedded local Ray bound to 127.0.0.1,
quiet, without dashboard; ``address="auto"`` or ``"host:port"`` joins an existing cluster. Every finished
cell is written to ``<out>.parts/`` at once, so a killed run resumes without recomputing it.
"""

from __future__ import annotations

import contextvars
import logging
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import xarray as xr
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from control.errors import ValidationError, choice, number

from ..cell import CellSpec
from ..learning import reporting
from ..status import FAILED
from . import cluster
from .actors import ActorPool, run_cell_actors
from .budget import check_resources
from .cluster import node_label, probe_gcs
from .config import BACKENDS, Cell, Experiment
from .fusion import plan, play_fused
from .outputs import RunCancelled, check_output, output_guard
from .results import (
    CellProgress,
    assemble,
    attach_weights,
    failed_dataset,
    outcome_dataset,
    progress_path,
    read_parts,
    weights_dir_for,
    weights_path,
    write_part,
    write_results,
    write_weights,
)

RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
}


@dataclass
class RunState:
    """Live counters of a run (read by progress bars and ``RunHandle.progress``)."""

    total: int = 0
    done: int = 0
    failed: int = 0
    resumed: int = 0
    computed: int = 0
    discarded: dict[str, int] = field(default_factory=dict)  # saved parts not reused, by reason
    started: float = field(default_factory=time.monotonic)
    cancel: threading.Event = field(default_factory=threading.Event)

    def eta(self) -> float | None:
        """Seconds left, from the mean time of the cells computed so far (None before the first)."""
        if self.computed == 0:
            return None
        left = self.total - self.done
        return (time.monotonic() - self.started) / self.computed * left


# ---- one cell ------------------------------------------------------------------------------
def run_cell(
    kwargs: dict[str, Any],
    key: str = "",
    index: int = -1,
    threads: int | None = None,
    progress_dir: str | None = None,
) -> xr.Dataset:
    """Play one cell with ``agents.play`` and return its Dataset; never raises (status failed + message).

    ``progress_dir``: report the learning steps in ``<progress_dir>/progress-<index>.json`` while it runs
    (``agents.experiments.results.CellProgress``, at most every 0.5 s; removed when the cell ends).
    """
    if threads:
        torch.set_num_threads(max(1, int(threads)))
    # looked up when the cell runs, so that a substituted agents.play.play (tests inject failures) is used
    from ..play import play

    hook = CellProgress(progress_dir, index, key) if progress_dir else None
    try:
        out = play(**kwargs, progress=hook or False)
    except ValidationError as e:
        return failed_dataset(str(e), key=key, index=index)
    except Exception as e:  # a cell must not kill the sweep
        return failed_dataset(f"{type(e).__name__}: {e}", key=key, index=index)
    finally:
        if hook is not None:
            hook.close()
    return outcome_dataset(out, key=key, index=index)


def run_cells(
    kwargs: list[dict[str, Any]],
    keys: list[str],
    indices: list[int],
    threads: int | None = None,
    node: bool = False,
    progress_dir: str | None = None,
) -> list[xr.Dataset]:
    """Play cells that may be fused (``agents.experiments.fusion``) and return one Dataset per cell; never raises.

    A group that cannot be fused, or fails in any cell, is played cell by cell (each cell then gets the
    status and message of its own ``play``). ``node``: record the Ray node it ran on (cluster runs).
    ``progress_dir``: where running cells report their learning steps (``run_cell``).
    """
    dss = _run_cells(kwargs, keys, indices, threads, progress_dir or _PROGRESS_DIR.get())
    if node:
        label = node_label()
        for ds in dss:
            ds["node"] = ((), label)
    return dss


def _run_cells(
    kwargs: list[dict[str, Any]],
    keys: list[str],
    indices: list[int],
    threads: int | None,
    progress_dir: str | None = None,
) -> list[xr.Dataset]:
    if threads:
        torch.set_num_threads(max(1, int(threads)))
    if len(kwargs) > 1:
        hooks = (
            [CellProgress(progress_dir, i, k) for k, i in zip(keys, indices, strict=True)]
            if progress_dir
            else []
        )

        def fused_progress(step: int, total: int, costs: Any) -> None:
            if getattr(costs, "ndim", 0) == 2:  # the fused learning: one row per cell
                for h, c in zip(hooks, costs, strict=False):
                    h(step, total, c)

        try:
            with reporting(fused_progress if progress_dir else None, _steps(kwargs[0])):
                outs = play_fused(kwargs)
        except (
            Exception
        ):  # NotFusable, or anything unexpected: the cells are played one by one below
            pass
        else:
            return [
                outcome_dataset(o, key=k, index=i)
                for o, k, i in zip(outs, keys, indices, strict=True)
            ]
        finally:
            for h in hooks:
                h.close()
    return [
        run_cell(kw, k, i, progress_dir=progress_dir)
        for kw, k, i in zip(kwargs, keys, indices, strict=True)
    ]


# where in-process cells report their learning steps (set around the local backend's run_cells calls, so
# that run_cells keeps its positional signature for callers and tests that substitute it)
_PROGRESS_DIR: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "mftt_progress_dir", default=None
)


def _local_cells(t: list[Cell], progress_dir: Path | None) -> list[xr.Dataset]:
    token = _PROGRESS_DIR.set(None if progress_dir is None else str(progress_dir))
    try:
        return run_cells([c.kwargs for c in t], [c.key for c in t], [c.index for c in t])
    finally:
        _PROGRESS_DIR.reset(token)


def _steps(kwargs: dict[str, Any]) -> int:
    """The learning step budget of a cell (its scenario's default when unset)."""
    try:
        return CellSpec.of(kwargs).steps
    except Exception:  # a bad cell fails on its own later
        return 0


# ---- Ray -----------------------------------------------------------------------------------
def ray_env() -> None:
    """Quiet, loopback-only, no token auth (setup notes); existing settings win."""
    for k, v in RAY_ENV.items():
        os.environ.setdefault(k, v)


def init_ray(address: str | None = None, *, num_cpus: int | None = None, threads: int = 1) -> bool:
    """Start (or join) Ray unless it is up; returns True when this call started it.

    ``address`` None/"local": an embedded Ray on 127.0.0.1 with this machine's CPUs and no dashboard;
    ``"auto"`` or ``"host:port"``: an existing cluster, which receives the driver's packages and thread pins
    (``agents.experiments.cluster.runtime_env``; ``threads`` per task) unless ``MFTT_WORKER_CODE=installed``, when the
    workers' own copy is used and checked against the driver's source hash.
    """
    ray_env()
    import ray  # heavy (seconds): imported when first needed, after ray_env has set its environment

    if ray.is_initialized():
        # an address that is no Ray cluster is refused even when a Ray is already up in this process
        if address not in (None, "", "local", "auto"):
            check_address(address)
        return False
    common = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address in (None, "", "local"):
        # workers of the embedded Ray inherit this environment: make sure they import this checkout
        root = str(Path(__file__).resolve().parents[2])
        paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        if root not in paths:
            os.environ["PYTHONPATH"] = os.pathsep.join([root, *paths])
        ray.init(
            address="local",
            num_cpus=num_cpus or os.cpu_count(),
            include_dashboard=False,
            **common,
        )
        return True

    check_address(address)
    mode = cluster.worker_code_mode()
    if not cluster.in_ray_job():  # a job's driver inherits the job's runtime_env (``mftt submit``)
        common["runtime_env"] = cluster.runtime_env(threads, ship=mode == "ship")
    try:
        ray.init(address=address, **common)
    except Exception as e:  # ConnectionError, a refused runtime_env upload, a version mismatch, ...
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise ValidationError(
            "address", "a running Ray cluster ('auto' or host:port)", address, reason=first
        ) from None
    if mode == "installed":
        try:
            cluster.verify_workers()
        except BaseException:
            ray.shutdown()
            raise
    return True


def check_address(address: str, timeout: float = 3.0) -> None:
    """Refuse a malformed or unreachable ``host:port`` at once (Ray itself retries for minutes)."""
    if not isinstance(address, str) or not address.strip():
        raise ValidationError("address", "'auto', 'local' or host:port", address)
    if address == "auto":
        return
    scheme, sep, target = address.partition("://")
    if sep and scheme.lower() in ("http", "https"):
        raise ValidationError(
            "address",
            "a Ray GCS address host:port (a job server http://…:8265 is for `mftt submit`)",
            address,
        )
    target = target if sep else address
    host, _, port = target.rpartition(":")
    if (
        not host
        or not port.isdigit()
        or not 0 < int(port) < 65536
        or any(c.isspace() for c in host)
    ):
        raise ValidationError("address", "'auto', 'local' or host:port", address)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ValidationError(
            "address", "a reachable Ray head (host:port)", address, reason=type(e).__name__
        ) from None

    why = probe_gcs(host.strip("[]"), int(port), timeout=timeout)
    if why is not None:  # e.g. an HTTP server: Ray would retry it for minutes
        raise ValidationError("address", "a Ray GCS (host:port)", address, reason=why)


def _check_backend(backend: str) -> str:
    return choice("backend", backend, BACKENDS)


def _progress_bar(state: RunState, title: str):
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed [red]{task.fields[failed]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        transient=False,
        redirect_stdout=False,
        redirect_stderr=False,
        console=_stderr_console(),
    )


def _stderr_console():
    return Console(stderr=True)


def _execute(
    cells: list[Cell],
    backend: str,
    exp: Experiment,
    address: str | None,
    on_result: Callable[[Cell, xr.Dataset], None],
    state: RunState,
    fuse: int = 1,
    grid: list[Cell] | None = None,
    progress_dir: Path | None = None,
) -> None:
    """Run the cells, calling ``on_result`` as each finishes (Ray: submit all tasks, then ``ray.wait``).

    A task is one cell, or up to ``fuse`` cells that differ only in seed and Λ solved as one ODE.
    ``grid``: all the experiment's cells (default ``exp.cells()``), over which the tasks are planned.
    ``progress_dir``: running cells report their learning steps there (local backend and a local Ray).
    """
    if not cells:
        return
    grid = exp.cells() if grid is None else grid
    # the plan covers the whole grid, so a resumed run re-forms exactly the groups it had not finished
    tasks = [[grid[i] for i in t] for t in plan([c.kwargs for c in grid], fuse)]
    todo = {c.index for c in cells}
    tasks = [[c for c in t if c.index in todo] for t in tasks]
    tasks = [t for t in tasks if t]
    if backend == "local":
        for t in tasks:
            if state.cancel.is_set():
                raise RunCancelled("run cancelled")
            for c, ds in zip(
                t,
                _local_cells(t, progress_dir),
                strict=True,
            ):
                on_result(c, ds)
        return
    address = address or exp.ray.address
    on_cluster = address not in (None, "", "local")
    init_ray(address, threads=max(1, int(exp.ray.num_cpus)))
    import ray  # heavy (seconds): imported when first needed, after ray_env has set its environment

    if backend == "actors":
        pool = ActorPool(num_gpus=exp.ray.num_gpus, max_restarts=exp.ray.max_retries)
        try:
            for c in cells:
                if state.cancel.is_set():
                    raise RunCancelled("run cancelled")
                on_result(c, run_cell_actors(c.kwargs, key=c.key, index=c.index, pool=pool))
        finally:
            pool.close()
        return
    task = ray.remote(run_cells).options(
        num_cpus=exp.ray.num_cpus,
        num_gpus=exp.ray.num_gpus,
        max_retries=exp.ray.max_retries,
        retry_exceptions=False,
    )
    threads = max(1, int(exp.ray.num_cpus))
    # stream: at most ``window`` tasks in flight, results consumed as they finish (ray.wait), so the driver
    # holds O(window) futures however large the sweep, so the driver's memory stays bounded
    window = in_flight_window(exp.ray.num_cpus)
    queue = iter(tasks)
    pending: dict[Any, list[Cell]] = {}

    def submit() -> None:
        while len(pending) < window and (t := next(queue, None)) is not None:
            ref = task.remote(
                [c.kwargs for c in t],
                [c.key for c in t],
                [c.index for c in t],
                threads,
                on_cluster,
                None if on_cluster or progress_dir is None else str(progress_dir),
            )
            pending[ref] = t

    try:
        submit()
        while pending:
            if state.cancel.is_set():
                raise RunCancelled("run cancelled")
            refs = list(pending)
            ready, rest = ray.wait(refs, num_returns=1, timeout=0.5)
            if ready and rest:  # take every other finished task too, without waiting
                ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
            for ref in ready:
                t = pending.pop(ref)
                try:
                    # copied: arrays deserialized from Ray are views that would pin each task's buffer
                    dss = [ds.copy(deep=True) for ds in ray.get(ref)]
                except Exception as e:  # worker died beyond max_retries, or Ray itself failed
                    msg = " ".join(str(e).split())[:300]
                    dss = [
                        failed_dataset(f"{type(e).__name__}: {msg}", key=c.key, index=c.index)
                        for c in t
                    ]
                del ref
                for c, ds in zip(t, dss, strict=True):
                    on_result(c, ds)
            submit()
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)


def in_flight_window(num_cpus: float, *, floor: int = 4, per_slot: int = 2) -> int:
    """Tasks kept in flight: ``per_slot`` per task slot of the cluster (CPUs / ``num_cpus``), at least ``floor``."""
    import ray  # heavy (seconds): imported when first needed, after ray_env has set its environment

    cpus = float(ray.cluster_resources().get("CPU", 1.0))
    slots = int(cpus / max(float(num_cpus), 1e-3))
    return max(floor, per_slot * slots)


# ---- the public API ------------------------------------------------------------------------
def parts_dir_for(out: str | Path) -> Path:
    """Where the partial files of the run writing ``out`` live: ``<out>.parts/``."""
    return Path(str(out) + ".parts")


def run_experiment(
    experiment: Experiment,
    *,
    address: str | None = None,
    backend: str | None = None,
    progress: bool = True,
    resume: bool = True,
    out: str | Path | None = None,
    keep_parts: bool = False,
    state: RunState | None = None,
    fuse: int | None = None,
    wait: bool = False,
) -> xr.Dataset:
    """Run every cell of ``experiment`` and return the results Dataset (schema: ``agents.experiments.results``).

    Args:
        experiment: the validated experiment.
        address: Ray cluster (None: ``experiment.ray.address``, else an embedded local Ray).
        backend: ``"ray"`` (one task per cell or fused group), ``"local"`` (in-process), ``"actors"`` (one
            actor per agent, no fusion);
            None: ``experiment.backend``.
        progress: show a live progress bar (done, failed, ETA) on stderr.
        resume: reuse finished cells found in ``<out>.parts/`` (only those whose arguments are unchanged).
        out: NetCDF path (None: ``experiment.output``; both None: nothing is written, no resume).
        keep_parts: keep the partial files after the final file is written.
        state: a ``RunState`` to update (for ``submit_experiment``).
        fuse: solve up to this many cells that differ only in seed and Λ as one ODE per task (1: off;
            None: ``experiment.fuse``). Fused cells give the numbers of their stand-alone runs (to rounding).
        wait: when another run holds ``<out>.lock``, wait for it instead of refusing.

    Returns:
        The Dataset; also written atomically to ``out`` when there is one.

    Raises:
        ValidationError: bad backend, output or resources; ``OutputLocked`` when another run writes
            ``out``. RunCancelled: ``state.cancel`` was set.
    """
    if not isinstance(experiment, Experiment):
        raise ValidationError(
            "experiment", "an agents.experiments.config.Experiment", type(experiment).__name__
        )
    backend = _check_backend(backend or experiment.backend)
    fuse = experiment.fuse if fuse is None else int(number("fuse", fuse, low=1, integer=True))
    out = out if out is not None else experiment.output
    if out is not None:  # refused now, not after every cell has run
        out = check_output(out)
    check_resources(experiment, backend=backend, address=address or experiment.ray.address)
    state = state or RunState()
    if out is None:
        return _run_grid(
            experiment, backend, address, progress, resume, None, keep_parts, state, fuse
        )
    with output_guard(out, wait=wait, cancel=state.cancel):
        return _run_grid(
            experiment, backend, address, progress, resume, out, keep_parts, state, fuse
        )


def _run_grid(
    experiment: Experiment,
    backend: str,
    address: str | None,
    progress: bool,
    resume: bool,
    out: Path | None,
    keep_parts: bool,
    state: RunState,
    fuse: int,
) -> xr.Dataset:
    """The body of ``run_experiment`` once its inputs are checked and the output is locked."""
    cells = experiment.cells()
    parts_dir = parts_dir_for(out) if out is not None else None
    parts: dict[int, xr.Dataset] = {}
    discarded: dict[str, int] = {}
    if parts_dir is not None:
        if resume:
            parts = read_parts(parts_dir, cells, discarded)
        elif parts_dir.exists():
            shutil.rmtree(parts_dir)
        if not resume and weights_dir_for(out).exists():  # out is set with parts_dir
            shutil.rmtree(weights_dir_for(out))
    state.discarded = discarded
    if discarded:  # say how many finished cells are recomputed, and why
        why = ", ".join(f"{n} {k}" for k, n in sorted(discarded.items()))
        log(
            f"discarded {sum(discarded.values())} saved cells of {parts_dir} ({why}): recomputing them"
        )
    todo = [c for c in cells if c.index not in parts]
    state.total, state.resumed = len(cells), len(parts)
    state.done = len(parts)
    state.failed = sum(str(p["status"].values) in FAILED for p in parts.values())
    state.started = time.monotonic()
    bar = _progress_bar(state, experiment.name) if progress else None
    task_id = None
    if bar is not None:
        bar.start()
        task_id = bar.add_task(
            experiment.name, total=len(cells), completed=len(parts), failed=state.failed
        )
        if parts:
            bar.console.print(
                f"resumed {len(parts)} finished cells from {escape(str(parts_dir))}", markup=True
            )

    def on_result(c: Cell, ds: xr.Dataset) -> None:
        parts[c.index] = ds
        weights = ds.attrs.pop("weights", None)
        if parts_dir is not None and out is not None:
            wdir = weights_dir_for(out)
            if weights:  # before the part: a resumed cell always has the weights it had
                write_weights(wdir, c.index, c.key, weights, kwargs=c.kwargs)
            else:  # a recomputed cell without weights leaves none of an earlier run behind
                weights_path(wdir, c.index, c.key).unlink(missing_ok=True)
            write_part(parts_dir, c.index, c.key, ds, kwargs=c.kwargs)
            progress_path(parts_dir, c.index).unlink(missing_ok=True)
        state.done += 1
        state.computed += 1
        if str(ds["status"].values) in FAILED:
            state.failed += 1
        if bar is not None:
            bar.update(task_id, completed=state.done, failed=state.failed)

    try:
        _execute(
            todo,
            backend,
            experiment,
            address,
            on_result,
            state,
            fuse=fuse,
            grid=cells,
            progress_dir=parts_dir,
        )
    finally:
        if bar is not None:
            bar.stop()
    ds = assemble(experiment, parts)
    if out is not None:
        attach_weights(ds, experiment, out)
        write_results(ds, out)
        if not keep_parts and parts_dir is not None and parts_dir.exists():
            shutil.rmtree(parts_dir, ignore_errors=True)
    return ds


class RunHandle:
    """A run going on in a background thread (for the web app): poll it, never block on it."""

    def __init__(self, experiment: Experiment, **kwargs: Any):
        self.experiment = experiment
        self.state = RunState(total=experiment.n_cells)
        self._result: xr.Dataset | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, kwargs=kwargs, daemon=True, name="mftt-run"
        )
        self._thread.start()

    def _run(self, **kwargs: Any) -> None:
        try:
            self._result = run_experiment(
                self.experiment, progress=False, state=self.state, **kwargs
            )
        except BaseException as e:  # handed to result()
            self._error = e

    def progress(self) -> dict[str, Any]:
        """``dict(done, failed, total, eta)``: cells finished (incl. resumed), failed, all, seconds left."""
        s = self.state
        return {"done": s.done, "failed": s.failed, "total": s.total, "eta": s.eta()}

    def done(self) -> bool:
        """True once the run has finished, failed or been cancelled."""
        return not self._thread.is_alive()

    def result(self, timeout: float | None = None) -> xr.Dataset:
        """The Dataset (waits up to ``timeout``); raises the run's error, or TimeoutError."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("run still in progress")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def cancel(self) -> None:
        """Ask the run to stop: pending Ray tasks are cancelled, finished cells stay in the partial files."""
        self.state.cancel.set()


def submit_experiment(
    experiment: Experiment,
    *,
    backend: str | None = None,
    address: str | None = None,
    out: str | Path | None = None,
    resume: bool = True,
    wait: bool = False,
) -> RunHandle:
    """Start ``run_experiment`` in a background thread and return its handle at once."""
    if not isinstance(experiment, Experiment):
        raise ValidationError(
            "experiment", "an agents.experiments.config.Experiment", type(experiment).__name__
        )
    _check_backend(backend or experiment.backend)
    if out is not None:  # a bad output is refused here, not in the background thread
        out = check_output(out)
    return RunHandle(
        experiment, backend=backend, address=address, out=out, resume=resume, wait=wait
    )


def log(msg: str) -> None:
    print(msg, file=sys.stderr)
