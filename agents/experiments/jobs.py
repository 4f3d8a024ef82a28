"""Ray Jobs: submit an experiment to a cluster's job server, watch it, stop it and fetch its results.

``mftt submit`` sends the validated config and the driver's packages (``agents.experiments.cluster``) with the job; the
job's driver (``python -m agents.experiments.jobs``, on the head) runs it with ``address="auto"``, writes the NetCDF in
the job's working folder (or an absolute shared path) and prints it, compressed and checksummed, between
two marker lines of its log, from which ``mftt fetch`` rebuilds the file through the same HTTP API.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import os
import re
import shlex
import socket
import ssl
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

from control.errors import ValidationError

from . import cluster
from .results import atomic_write_bytes, open_results

BEGIN, END = "MFTT-RESULT-BEGIN", "MFTT-RESULT-END"
CONFIG_NAME = "experiment.toml"
LINE = 4096  # base64 characters per log line
MAX_FETCH_MB = float(os.environ.get("MFTT_FETCH_MAX_MB", "256"))
ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


# ---- the job server ------------------------------------------------------------------------
def job_server(address: str, timeout: float = 5.0) -> str:
    """The job server's base URL, checked to answer like Ray's (``GET /api/version``) within ``timeout``."""
    if not isinstance(address, str) or not address.strip():
        raise ValidationError("address", "a Ray job server http://host:port (8265)", address)
    url = address.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    scheme, _, rest = url.partition("://")
    host, _, port = rest.rpartition(":")
    bad_port = not port.isdigit() or not 0 < int(port) < 65536
    if scheme not in ("http", "https") or not host or bad_port or "/" in rest:
        raise ValidationError("address", "a Ray job server http://host:port (8265)", address)
    try:
        info = _get_json(scheme, host.strip("[]"), int(port), "/api/version", timeout)
        if not isinstance(info, dict) or "ray_version" not in info:
            raise ValueError("not a Ray job server")
    except (OSError, ValueError) as e:
        reason = str(e) if isinstance(e, ValueError) else type(e).__name__
        raise ValidationError(
            "address", "a Ray job server http://host:port (8265)", address, reason=reason
        ) from None
    return url


def _get_json(scheme: str, host: str, port: int, path: str, timeout: float) -> Any:
    """``GET`` a small JSON document over one socket that is always closed (HTTP/1.0, 64 KB cap)."""
    with socket.create_connection((host, port), timeout=timeout) as raw:
        sock = (
            ssl.create_default_context().wrap_socket(raw, server_hostname=host)
            if scheme == "https"
            else raw
        )
        try:
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
            data = b""
            while len(data) < 65536 and (chunk := sock.recv(65536)):
                data += chunk
        finally:
            if sock is not raw:
                sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1:2]
    if not head.startswith(b"HTTP/") or status != [b"200"]:
        raise ValueError(
            f"HTTP {(status or [b'?'])[0].decode(errors='replace')}, not a Ray job server"
        )
    return json.loads(body.decode())


def client(address: str):
    """A ``JobSubmissionClient`` for a checked job server (Ray's own client; needs ``ray[default]``)."""
    url = job_server(address)

    # heavy (seconds): imported only when a job is talked to
    from ray.job_submission import JobSubmissionClient

    logging.getLogger("ray").setLevel(
        logging.WARNING
    )  # no "Uploading package …" lines on the terminal

    return JobSubmissionClient(url)


def _check_id(job: str) -> str:
    if not isinstance(job, str) or not ID_RE.match(job):
        raise ValidationError("job", "a job id (letters, digits, _ . : -)", job)
    return job


def _info(c, job: str, address: str):
    """The job's details; an unknown id gives one line."""
    try:
        return c.get_job_info(_check_id(job))
    except RuntimeError as e:
        if "404" in str(e) or "does not exist" in str(e):
            raise ValidationError("job", f"a job known to {address}", job) from None
        reason = (str(e).splitlines() or [type(e).__name__])[0][:160]
        raise ValidationError("job", "a readable job", job, reason=reason) from None


# ---- submit --------------------------------------------------------------------------------
def submit(exp, address: str, *, out: str | None = None, job_id: str | None = None) -> str:
    """Submit ``exp`` (a validated ``Experiment``) as a Ray job and return its id.

    ``out``: where the job's driver writes the NetCDF (default ``results/<name>.nc`` in the job's
    working folder; an absolute path on storage shared with the head is kept there too).
    """
    c = client(address)
    name = re.sub(r"[^A-Za-z0-9_-]", "_", exp.name)[:40] or "run"
    out = out or f"results/{name}.nc"
    if "\x00" in out or not out.endswith(".nc"):
        raise ValidationError("out", "a .nc path", out)
    job_id = _check_id(job_id) if job_id else f"mftt-{name}-{os.urandom(4).hex()}"
    with tempfile.TemporaryDirectory(prefix="mftt-job-") as stage:
        Path(stage, CONFIG_NAME).write_text(exp.to_toml())
        env = cluster.runtime_env(max(1, int(exp.ray.num_cpus)))
        env["working_dir"] = stage
        try:
            return c.submit_job(
                entrypoint=f"python -m agents.experiments.jobs {CONFIG_NAME} --out {_quote(out)} --job {job_id}",
                runtime_env=env,
                submission_id=job_id,
                metadata={"mftt": "1", "name": exp.name, "out": out, **cluster.code_version()},
            )
        except RuntimeError as e:
            raise ValidationError(
                "submit", "a job the server accepts", job_id, reason=str(e).splitlines()[0][:200]
            ) from None


def _quote(s: str) -> str:
    return shlex.quote(s)


# ---- watch ---------------------------------------------------------------------------------
def status(job: str, address: str) -> dict[str, Any]:
    """``{"job", "status", "message", "start_time", "end_time", "metadata"}`` of a job."""
    info = _info(client(address), job, address)
    return {
        "job": job,
        "status": str(getattr(info.status, "value", info.status)),
        "message": " ".join(str(info.message or "").split()),
        "start_time": info.start_time,
        "end_time": info.end_time,
        "metadata": dict(info.metadata or {}),
    }


def logs(job: str, address: str) -> str:
    """The job's driver log, with the result payload folded into one line."""
    c = client(address)
    _info(c, job, address)
    return fold_payload(c.get_job_logs(job))


def stop(job: str, address: str) -> bool:
    """Ask the job server to stop a job; True if it was running."""
    c = client(address)
    _info(c, job, address)
    return bool(c.stop_job(job))


def fold_payload(text: str) -> str:
    """Replace the base64 block between the markers by one line saying how to fetch it."""
    out, inside = [], False
    for line in text.splitlines():
        if line.startswith(BEGIN):
            inside = True
            parts = line.split()
            size = parts[3] if len(parts) > 3 else "?"
            out.append(f"[results: {size} bytes in this log; `mftt fetch JOB` writes them]")
        elif line.startswith(END):
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


# ---- fetch ---------------------------------------------------------------------------------
def fetch(job: str, address: str, out: str | Path | None = None) -> Path:
    """Write a finished job's results NetCDF to ``out`` (default ``results/<name>.nc``); checks its sha256."""
    c = client(address)
    info = _info(c, job, address)
    state = str(getattr(info.status, "value", info.status))
    if state != "SUCCEEDED":
        raise ValidationError(
            "job", "a job that SUCCEEDED (see `mftt status` / `mftt logs`)", job, reason=state
        )
    name, blob = decode_payload(c.get_job_logs(job), job)
    path = Path(out) if out else Path("results") / f"{re.sub(r'[^A-Za-z0-9_-]', '_', name)}.nc"

    atomic_write_bytes(path, blob)
    open_results(path)  # a readable results file, or one line
    return path


def decode_payload(text: str, job: str = "") -> tuple[str, bytes]:
    """``(name, bytes)`` of the results printed by the job's driver; one line when absent or damaged."""
    lines = text.splitlines()
    try:
        i = max(k for k, line in enumerate(lines) if line.startswith(BEGIN))
    except ValueError:
        shared = [line for line in lines if line.startswith("MFTT-RESULT-AT ")]
        reason = (
            f"written to {shared[-1].split(' ', 1)[1]} on the cluster" if shared else "no results"
        )
        raise ValidationError(
            "job", "a job whose log carries its results", job, reason=reason
        ) from None
    head = lines[i].split()
    if len(head) != 5:
        raise ValidationError("job", "a well-formed results block", job, reason="bad header")
    _, name, digest, size, _zsize = head
    try:
        j = next(k for k in range(i + 1, len(lines)) if lines[k].startswith(END))
    except StopIteration:
        raise ValidationError("job", "a complete results block", job, reason="truncated") from None
    try:
        blob = zlib.decompress(base64.b64decode("".join(lines[i + 1 : j]), validate=True))
    except (ValueError, zlib.error):
        raise ValidationError("job", "a readable results block", job, reason="corrupt") from None
    if hashlib.sha256(blob).hexdigest() != digest or str(len(blob)) != size:
        raise ValidationError("job", "results matching their checksum", job, reason="mismatch")
    return name, blob


def encode_payload(path: Path, name: str) -> list[str]:
    """The marker lines and base64 lines that carry ``path`` in the job's log."""
    blob = path.read_bytes()
    z = base64.b64encode(zlib.compress(blob, 6)).decode()
    head = f"{BEGIN} {name} {hashlib.sha256(blob).hexdigest()} {len(blob)} {len(z)}"
    return [head, *(z[k : k + LINE] for k in range(0, len(z), LINE)), END]


# ---- the job's driver ----------------------------------------------------------------------
def job_dir(job: str) -> Path:
    """Where a job's relative outputs go on the head: ``$MFTT_JOB_DIR`` or ``<tmp>/mftt-jobs/<job id>``."""
    base = os.environ.get("MFTT_JOB_DIR") or str(Path(tempfile.gettempdir()) / "mftt-jobs")
    return Path(base) / re.sub(r"[^A-Za-z0-9_.-]", "_", job)


def main(argv: list[str] | None = None) -> int:
    """Entry point of a submitted job: run the config on this cluster, write and print the results."""
    p = argparse.ArgumentParser(prog="python -m agents.experiments.jobs")
    p.add_argument("config")
    p.add_argument("--out", required=True)
    p.add_argument("--job", default="job")
    a = p.parse_args(argv)
    # the job's entry point: the orchestration modules are imported when the job runs, not when the CLI
    # imports this module to submit one
    from . import fusion  # noqa: F401  (imported now: the job's unpacked folders are Ray's cache)
    from .config import Experiment
    from .runner import run_experiment

    try:
        exp = Experiment.from_toml(Path(a.config))
        out = Path(a.out)
        if not out.is_absolute():  # not in the job's working folder, which Ray may clean up
            out = job_dir(a.job) / out
        ds = run_experiment(exp, address="auto", out=out, progress=False)
    except ValidationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    n_ok = int((ds["status"] == "ok").sum())
    print(f"mftt job: {ds['status'].size} cells ({n_ok} ok), code {cluster.source_hash()}")
    print(f"wrote {out.resolve()}")
    if Path(a.out).is_absolute() or out.stat().st_size > MAX_FETCH_MB * 2**20:
        print(f"MFTT-RESULT-AT {out.resolve()}")
    else:
        sys.stdout.write("\n".join(encode_payload(out, exp.name)) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover - the job's entrypoint
    raise SystemExit(main())
