"""Running on a Ray cluster: ship the driver's code, pin thread counts, check the code version and the address.

A cluster's nodes need not have this project installed: ``runtime_env`` carries the packages ``control``,
``mftt`` and ``agents`` from the driver (``py_modules``), so every task imports exactly the driver's code.
With ``MFTT_WORKER_CODE=installed`` the code is not shipped (the workers' own installation is used) and the
run is refused unless that installation has the driver's source hash. Ray is imported lazily, after
``agents.experiments.runner.ray_env`` has set its environment.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import socket
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from control.errors import ValidationError

PACKAGES = ("control", "mftt", "agents")
EXCLUDES = ["__pycache__", "*.pyc", "*.pyo", ".pytest_cache", ".ruff_cache"]
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
WORKER_CODE_VAR = "MFTT_WORKER_CODE"  # "ship" (default) | "installed"
SOURCE_HASH_VAR = "MFTT_SOURCE_HASH"  # set on shipped workers: the hash of the code they received
COMMIT_VAR = "MFTT_GIT_COMMIT"  # set on shipped workers and jobs: the driver's git commit
JOB_CONFIG_VAR = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # set by Ray in a job's driver


# ---- the code version ----------------------------------------------------------------------
def _hasher() -> Callable[[list[str]], str]:
    """The source hash as a self-contained function (pickled by value, so a worker without the project
    can run it too): sha256 over each package's files (relative path + bytes), caches excluded."""

    def source_hash_of(dirs: list[str]) -> str:
        import hashlib as _h
        import os as _os

        h = _h.sha256()
        for d in sorted(dirs, key=lambda d: _os.path.basename(d.rstrip("/"))):  # by package name
            base = _os.path.dirname(d.rstrip("/"))
            for root, subdirs, files in _os.walk(d):
                subdirs[:] = sorted(s for s in subdirs if s not in ("__pycache__", ".pytest_cache"))
                for f in sorted(files):
                    if f.endswith((".pyc", ".pyo")):
                        continue
                    p = _os.path.join(root, f)
                    rel = _os.path.relpath(p, base).replace(_os.sep, "/")
                    with open(p, "rb") as fh:
                        data = fh.read()
                    h.update(rel.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
        return h.hexdigest()[:16]

    return source_hash_of


def package_dirs() -> list[str]:
    """The driver's package folders that a cluster receives (``control``, ``mftt``, ``agents``), where they
    were imported from (a checkout, an installation, or the separate folders a Ray job unpacked)."""
    return [str(Path(importlib.import_module(p).__file__).parent) for p in PACKAGES]


def git_commit() -> str:
    """The project's git commit when it is a checkout; in a Ray job or worker, the driver's (else "")."""
    shipped = os.environ.get(COMMIT_VAR, "").strip().lower()
    if shipped and len(shipped) <= 64 and all(c in "0123456789abcdef" for c in shipped):
        return shipped
    root = Path(__file__).resolve().parents[2]
    try:
        r = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return r.stdout.strip() if r.returncode == 0 else ""


@functools.lru_cache(maxsize=1)
def source_hash() -> str:
    """16 hex digits of sha256 over the shipped packages' files: equal hashes, equal code."""
    return _hasher()(package_dirs())


def code_version() -> dict[str, str]:
    """``{"git_commit": …, "source_hash": …}`` of the driver's code (commit "" outside a checkout)."""
    return {"git_commit": git_commit(), "source_hash": source_hash()}


# ---- runtime environment -------------------------------------------------------------------
def thread_env(threads: int = 1) -> dict[str, str]:
    """Environment variables pinning BLAS/OpenMP threads to the CPUs a task holds (no oversubscription)."""
    n = str(max(1, int(threads)))
    return dict.fromkeys(THREAD_VARS, n)


def worker_code_mode() -> str:
    """``ship`` (default: send the driver's packages) or ``installed`` (use the workers' own copy, checked)."""
    mode = os.environ.get(WORKER_CODE_VAR, "ship").strip().lower() or "ship"
    if mode not in ("ship", "installed"):
        raise ValidationError(WORKER_CODE_VAR, "one of ship, installed", mode)
    return mode


def runtime_env(threads: int = 1, *, ship: bool = True) -> dict[str, Any]:
    """The ``runtime_env`` of a cluster run: the driver's packages (``py_modules``) and pinned threads."""
    pinned = {SOURCE_HASH_VAR: source_hash(), COMMIT_VAR: git_commit()}
    env: dict[str, Any] = {"env_vars": {**thread_env(threads), **pinned}}
    if ship:
        env["py_modules"] = package_dirs()
        env["excludes"] = list(EXCLUDES)
    return env


def in_ray_job() -> bool:
    """True in the driver of a Ray job (``mftt submit``): the job's runtime_env already carries the code."""
    return JOB_CONFIG_VAR in os.environ


# ---- worker-side probes --------------------------------------------------------------------
def node_label() -> str:
    """Where this process runs: ``"<node ip> <node id, 12 hex>"`` inside Ray, "" outside."""
    try:
        import ray  # heavy (seconds): imported lazily, after agents.experiments.runner.ray_env set its environment

        if not ray.is_initialized():
            return ""
        ctx = ray.get_runtime_context()
        ip = ray.util.get_node_ip_address()
        return f"{ip} {ctx.get_node_id()[:12]}"
    except Exception:  # outside a worker, or an old Ray: the label is informative only
        return ""


def _probe_fn() -> Callable[[], dict[str, str]]:
    """A task body, pickled by value, that reports which mftt code a worker imports and from where."""
    hasher = _hasher()

    def probe() -> dict[str, str]:
        # self-contained (pickled by value and run on a worker): its own imports
        import importlib
        import os as _os

        import ray as _ray

        out = {"node": "", "source_hash": "", "agents_file": "", "error": ""}
        try:
            ctx = _ray.get_runtime_context()
            out["node"] = f"{_ray.util.get_node_ip_address()} {ctx.get_node_id()[:12]}"
        except Exception:
            pass
        try:
            mods = [importlib.import_module(p) for p in ("control", "mftt", "agents")]
        except ImportError as e:
            out["error"] = f"{type(e).__name__}: {e}"
            return out
        out["agents_file"] = str(mods[2].__file__)
        out["source_hash"] = hasher([_os.path.dirname(str(m.__file__)) for m in mods])
        return out

    return probe


def probe_workers(n: int | None = None, timeout: float = 120.0) -> list[dict[str, str]]:
    """Run the probe on up to ``n`` tasks (default: one per alive node, spread) and return their reports."""
    # heavy (seconds): imported lazily, after agents.experiments.runner.ray_env set its environment
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = [nd["NodeID"] for nd in ray.nodes() if nd.get("Alive")]
    fn = ray.remote(num_cpus=0.01, max_retries=1)(_probe_fn())
    refs = [
        fn.options(scheduling_strategy=NodeAffinitySchedulingStrategy(nid, soft=True)).remote()
        for nid in nodes[: n or len(nodes)]
    ]
    return ray.get(refs, timeout=timeout)


def verify_workers(expected: str | None = None) -> None:
    """Refuse a cluster whose workers (not shipped the code) import a different mftt than the driver's."""
    expected = expected or source_hash()
    for r in probe_workers():
        if r["error"]:
            raise ValidationError(
                WORKER_CODE_VAR,
                "workers that can import control, mftt, agents (unset it to ship the driver's code)",
                "installed",
                reason=f"node {r['node']}: {r['error']}",
            )
        if r["source_hash"] != expected:
            raise ValidationError(
                WORKER_CODE_VAR,
                f"workers running the driver's code (source {expected})",
                f"source {r['source_hash']} on node {r['node']}",
                reason="unset it to ship the driver's code, or install the same version on the cluster",
            )


# ---- the address ---------------------------------------------------------------------------
_H2_PREFACE = (
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + struct.pack(">I", 0)[1:] + b"\x04\x00" + b"\0" * 4
)


def probe_gcs(host: str, port: int, timeout: float = 3.0) -> str | None:
    """None if ``host:port`` answers like a Ray GCS (a gRPC/HTTP2 server), else a short reason.

    Ray itself retries a wrong address for minutes; this sends the HTTP/2 preface and reads the first frame
    header, so an HTTP/1 server (the Ray dashboard, a web server) or a silent port is told apart in seconds.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(_H2_PREFACE)
            head = b""
            while len(head) < 9:
                chunk = s.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except TimeoutError:
        return "no answer to the gRPC handshake (not a Ray GCS)"
    except OSError as e:
        return type(e).__name__
    if head.startswith((b"HTTP/", b"<", b"\n<")) or b"html" in head.lower():
        return "an HTTP server, not a Ray GCS (a dashboard/job server address belongs to `mftt submit`)"
    if len(head) == 9 and head[3] == 0x04:  # a SETTINGS frame: an HTTP/2 (gRPC) server
        return None
    return "not a Ray GCS (unexpected answer to the gRPC handshake)"


def digest(path: str | Path) -> str:
    """sha256 of a file (hex), for checking a fetched result."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
