"""A Ray cluster rehearsed on loopback, and what the driver costs.

``LoopbackCluster`` starts a real multi-node Ray cluster on 127.0.0.1 (one ``ray start --block`` process per
node, own temp dir, free ports, every socket on loopback) whose Python cannot import this checkout: it is a
throw-away venv that sees the project venv's site-packages through a ``.pth`` line, so the editable install's
own ``.pth`` hook is never run and ``control``/``mftt``/``agents`` are importable only from what the driver
ships. Every process is stopped by PID. Used by ``tests/agents/test_cluster.py`` and by ``run`` below:

* driver RSS growth over a ``--cells``-cell sweep of trivial cells (embedded Ray, streamed results);
* per-cell overhead (wall per cell on one node − mean in-cell time) and 2-node vs 1-node throughput on
  whole-solve cells. Both nodes share this machine's cores, so the ratio is a rehearsal figure.

``python -m benchmarks.cluster [--quick] [--cells 5000] [--out benchmarks/cluster.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Ray refuses ``ray start --address`` when RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, and with it =1 resolves
# 127.0.0.1 to the machine's external IP. A worker node on loopback therefore starts with the flag off
# (loopback everywhere) and only the CLI's multi-node guard sees it on.
_START = (
    "import sys, types\n"
    "import ray._private.ray_constants as rc\n"
    "import ray.scripts.scripts as s\n"
    "p = types.SimpleNamespace(**vars(rc)); p.ENABLE_RAY_CLUSTER = True; s.ray_constants = p\n"
    "sys.argv = ['ray', *sys.argv[1:]]\n"
    "s.main()\n"
)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for t in Path(f"/proc/{pid}/task").iterdir():
            try:
                out += [int(c) for c in (t / "children").read_text().split()]
            except OSError:
                pass
    except OSError:
        pass
    return out


def descendants(pid: int) -> list[int]:
    """Live descendants of ``pid`` (from /proc)."""
    seen, stack = [], [pid]
    while stack:
        for c in _children(stack.pop()):
            if c not in seen:
                seen.append(c)
                stack.append(c)
    return seen


def shadow_python(where: Path) -> Path:
    """A venv (no pip, ~0.3 s) that imports the project venv's packages but not this checkout."""
    venv = where / "py"
    subprocess.run(
        [sys._base_executable, "-m", "venv", "--without-pip", str(venv)],  # type: ignore[attr-defined]
        check=True,
        capture_output=True,
    )
    site = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (next((venv / "lib").glob("python3*/site-packages")) / "_base.pth").write_text(
        "\n".join(site) + "\n"
    )
    return venv / "bin" / "python"


class LoopbackCluster:
    """A head and ``workers`` worker nodes on 127.0.0.1, ``cpus`` CPUs each, stopped by PID on ``stop``."""

    def __init__(self, workers: int = 1, cpus: int = 1, *, dashboard: bool = False):
        self.tmp = Path(tempfile.mkdtemp(prefix="mftt-cluster-"))
        self.cpus, self.dashboard = cpus, dashboard
        self.python = shadow_python(self.tmp)
        self.gcs, self.dash = free_port(), free_port()
        self.nodes: list[subprocess.Popen] = []
        self.tree: set[int] = set()
        self._watch = threading.Event()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "PYTHON"))}
        self.env.update(
            RAY_USAGE_STATS_ENABLED="0",
            RAY_AUTH_MODE="disabled",
            RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
            OMP_NUM_THREADS="1",
            PYTHONNOUSERSITE="1",
            MFTT_JOB_DIR=str(self.tmp / "jobs"),  # jobs write in the temp dir (removed)
            PATH=f"{self.python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        )
        try:
            self._start_head()
            for _ in range(workers):
                self.add_worker()
        except BaseException:
            self.stop()
            raise
        threading.Thread(target=self._track, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs}"

    @property
    def job_server(self) -> str:
        return f"http://127.0.0.1:{self.dash}"

    def _popen(self, args: list[str], log: str) -> subprocess.Popen:
        with open(self.tmp / log, "wb") as out:  # the child keeps its own descriptor
            p = subprocess.Popen(
                [str(self.python), "-c", _START, "start", "--block", "--node-ip-address=127.0.0.1",
                 f"--num-cpus={self.cpus}", "--disable-usage-stats",
                 f"--dashboard-agent-listen-port={free_port()}",
                 f"--metrics-export-port={free_port()}", *args],
                cwd=self.tmp, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.nodes.append(p)
        self.tree.add(p.pid)
        return p

    def _start_head(self) -> None:
        self._popen(
            ["--head", f"--port={self.gcs}", f"--temp-dir={self.tmp / 'ray'}",
             f"--ray-client-server-port={free_port()}",
             f"--include-dashboard={'true' if self.dashboard else 'false'}",
             "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dash}"],
            "head.log",
        )  # fmt: skip
        self._wait_port(self.gcs, "head.log")

    def add_worker(self) -> subprocess.Popen:
        """Start one more worker node (joins the head)."""
        return self._popen([f"--address={self.address}"], f"worker{len(self.nodes)}.log")

    def _wait_port(self, port: int, log: str, timeout: float = 120.0) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if any(p.poll() is not None for p in self.nodes):
                raise RuntimeError(f"ray start exited: {(self.tmp / log).read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError(f"port {port} not open after {timeout} s")

    def wait_nodes(self, n: int, timeout: float = 120.0) -> None:
        """Wait until ``n`` nodes are alive (asked from a short-lived probe process)."""
        code = (
            f"import ray, logging; ray.init(address={self.address!r}, logging_level=logging.ERROR, "
            "log_to_driver=False); print(sum(nd['Alive'] for nd in ray.nodes()))"
        )
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            r = subprocess.run(
                [str(self.python), "-c", code], env=self.env, cwd=self.tmp,
                capture_output=True, text=True, timeout=timeout,
            )  # fmt: skip
            if r.stdout.strip().isdigit() and int(r.stdout.strip()) >= n:
                return
            time.sleep(1)
        raise TimeoutError(f"fewer than {n} Ray nodes alive after {timeout} s")

    def _track(self) -> None:
        while not self._watch.is_set():
            self.pids()
            time.sleep(0.5)

    def pids(self) -> set[int]:
        """Every process this cluster has started so far (node processes and their descendants)."""
        for p in list(self.nodes):
            self.tree |= set(descendants(p.pid))
        return set(self.tree)

    def kill_node(self, p: subprocess.Popen) -> None:
        """SIGKILL one node: its ``ray start`` process and every descendant, by PID."""
        for q in [*descendants(p.pid), p.pid]:
            try:
                os.kill(q, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        p.wait()

    def stop(self) -> None:
        """SIGKILL every process of the cluster by PID and remove its temp dir."""
        self._watch.set()
        pids = self.pids()
        for q in pids:
            try:
                os.kill(q, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for p in self.nodes:
            p.wait()
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> LoopbackCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# ---- the benchmark -------------------------------------------------------------------------
def _rss_mb(pid: int | None = None) -> float:
    for line in Path(f"/proc/{pid or 'self'}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def trivial_experiment(cells: int, steps: int = 1):
    """``cells`` tiny Cournot cells (~10 ms each): what is measured is the driver, not the cells."""
    from agents.experiments.config import Experiment

    seeds = list(range(cells // 2))
    return Experiment.from_toml(
        f'name = "trivial"\nseeds = {seeds}\nbackend = "ray"\n[scenarios.cournot]\n'
        '[agents]\nweights = ["constant"]\n[Lambda]\npresets = ["selfish", "team"]\n'
        f"[training]\nsteps = {steps}\n[budget]\nmax_cells = {max(cells, 1)}\n"
    )


def whole_solve_experiment(cells: int, seed0: int = 0):
    """``cells`` whole-solve Cournot cells (~0.1–0.3 s each), one per task."""
    from agents.experiments.config import Experiment

    seeds = list(range(seed0, seed0 + cells))
    return Experiment.from_toml(
        f'name = "solve"\nseeds = {seeds}\nbackend = "ray"\nfuse = 1\n[scenarios.cournot]\n'
        '[agents]\nweights = ["feedback"]\n[Lambda]\npresets = ["selfish"]\n[training]\nsteps = 300\n'
    )


def driver_memory(cells: int) -> dict:
    """Driver RSS before, peak and after a ``cells``-cell sweep on an embedded Ray (streamed)."""
    import ray

    from agents.experiments.runner import RunState, init_ray, run_experiment

    exp = trivial_experiment(cells)
    init_ray(None, num_cpus=os.cpu_count())
    try:
        run_experiment(trivial_experiment(8), progress=False)  # workers started, modules imported
        state, samples = RunState(), []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append((state.done, _rss_mb()))
                time.sleep(0.25)

        before = _rss_mb()
        th = threading.Thread(target=sample, daemon=True)
        th.start()
        t0 = time.perf_counter()
        ds = run_experiment(exp, progress=False, state=state)
        wall = time.perf_counter() - t0
        stop.set()
        th.join()
    finally:
        ray.shutdown()
    tenth = [r for d, r in samples if d <= cells // 10] or [before]
    last = [r for d, r in samples if d >= cells * 9 // 10] or [samples[-1][1]]
    return {
        "cells": cells,
        "wall_s": wall,
        "cells_per_s": cells / wall,
        "ok_or_finished": int((ds["status"] != "failed").sum()),
        "rss_before_mb": before,
        "rss_peak_mb": max(r for _, r in samples),
        "rss_growth_mb": max(r for _, r in samples) - before,
        "rss_growth_10_to_90pct_mb": max(last) - max(tenth),
        "final_dataset_mb": ds.nbytes / 2**20,
    }


def _cluster_throughput(workers: int, cells: int) -> dict:
    """Cells/s of whole-solve cells on a loopback cluster of 1 + ``workers`` nodes (1 CPU each)."""
    import ray

    from agents.experiments.runner import init_ray, run_experiment

    with LoopbackCluster(workers=workers, cpus=1) as cl:
        cl.wait_nodes(1 + workers)
        init_ray(cl.address)
        try:
            warm = whole_solve_experiment(4 * (1 + workers), seed0=10_000)
            run_experiment(warm, address=cl.address, progress=False)
            t0 = time.perf_counter()
            ds = run_experiment(whole_solve_experiment(cells), address=cl.address, progress=False)
            wall = time.perf_counter() - t0
        finally:
            ray.shutdown()
    return {
        "nodes": 1 + workers,
        "wall_s": wall,
        "cells_per_s": cells / wall,
        "cell_time_s": float(ds["wall_time"].mean()),
        "nodes_used": len({str(n) for n in ds["node"].values.ravel()}),
        "loadavg_1min": os.getloadavg()[0],
    }


def run(device: str = "cpu", quick: bool = False, cells: int | None = None) -> dict:
    """Driver RSS growth over a large trivial sweep; per-cell overhead and 2-node/1-node throughput."""
    from agents.experiments.runner import ray_env

    ray_env()
    n_mem = cells or (500 if quick else 5000)
    n_solve = 8 if quick else 32
    res: dict = {"cores": os.cpu_count(), "device": device}
    res["driver_memory"] = driver_memory(n_mem)
    one = _cluster_throughput(0, n_solve)
    two = _cluster_throughput(1, n_solve)
    res["one_node"], res["two_nodes"] = one, two
    res["per_cell_overhead_s"] = one["wall_s"] / n_solve - one["cell_time_s"]
    res["throughput_2_over_1"] = two["cells_per_s"] / one["cells_per_s"]
    res["note"] = (
        f"rehearsal: both nodes run on this machine and share its {os.cpu_count()} cores "
        "with everything else running on it"
    )
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cluster")
    p.add_argument("--quick", action="store_true")
    p.add_argument(
        "--cells", type=int, default=None, help="cells of the memory sweep (default 5000)"
    )
    p.add_argument("--out", default=str(REPO / "benchmarks" / "cluster.json"))
    a = p.parse_args(argv)
    res = run(quick=a.quick, cells=a.cells)
    Path(a.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
