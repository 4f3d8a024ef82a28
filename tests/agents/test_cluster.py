"""The driver's code shipped to a Ray cluster, a two-node rehearsal on loopback, Ray Jobs.

The slow tests start a real cluster (``benchmarks.cluster.LoopbackCluster``): a head and a worker node on
127.0.0.1 whose Python cannot import this checkout, every process stopped by PID at the end.
"""

from __future__ import annotations

import http.server
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from agents.experiments import cluster, jobs
from agents.experiments.cli import app
from agents.experiments.config import Experiment
from agents.experiments.results import open_results, outcome_dataset, read_part
from agents.experiments.runner import check_address, run_experiment
from agents.play import Outcome
from control.errors import ValidationError

REPO = Path(__file__).resolve().parents[2]
SWEEP = """
name = "twonode"
seeds = [0, 1, 2, 3]
backend = "ray"
fuse = 1
[scenarios.cournot]
[agents]
weights = ["constant", "feedback"]
[Lambda]
presets = ["selfish", "team"]
[training]
steps = 300
[ray]
num_cpus = 1
max_retries = 3
"""


# ---- fast: code version, runtime env, addresses, job payloads --------------------------------
def test_source_hash_follows_the_code_and_ignores_caches(tmp_path):
    for p in cluster.PACKAGES:
        shutil.copytree(REPO / p, tmp_path / p, ignore=shutil.ignore_patterns("__pycache__"))
    dirs = [str(tmp_path / p) for p in cluster.PACKAGES]
    h = cluster._hasher()
    assert h(dirs) == cluster.source_hash() and len(cluster.source_hash()) == 16
    (tmp_path / "agents" / "__pycache__").mkdir(exist_ok=True)
    (tmp_path / "agents" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert h(dirs) == cluster.source_hash()
    with open(tmp_path / "agents" / "play.py", "a") as f:
        f.write("\n# a change\n")
    assert h(dirs) != cluster.source_hash()


def test_runtime_env_ships_the_packages_and_pins_threads(monkeypatch):
    env = cluster.runtime_env(2)
    assert [Path(p).name for p in env["py_modules"]] == ["control", "mftt", "agents"]
    assert (
        all(Path(p).parent == REPO for p in env["py_modules"]) and "__pycache__" in env["excludes"]
    )
    assert env["env_vars"]["OMP_NUM_THREADS"] == "2" and env["env_vars"]["MKL_NUM_THREADS"] == "2"
    assert env["env_vars"][cluster.SOURCE_HASH_VAR] == cluster.source_hash()
    assert "py_modules" not in cluster.runtime_env(1, ship=False)
    monkeypatch.setenv(cluster.WORKER_CODE_VAR, "pinned")
    with pytest.raises(
        ValidationError, match=r"^MFTT_WORKER_CODE: expected one of ship, installed"
    ):
        cluster.worker_code_mode()


def test_a_pinned_worker_environment_with_other_code_is_refused(monkeypatch):
    other = {
        "node": "10.0.0.2 ab12cd34ef56",
        "source_hash": "0" * 16,
        "agents_file": "x",
        "error": "",
    }
    monkeypatch.setattr(cluster, "probe_workers", lambda: [other])
    with pytest.raises(ValidationError) as e:
        cluster.verify_workers()
    msg = str(e.value)
    assert msg.startswith("MFTT_WORKER_CODE: expected workers running the driver's code (source ")
    assert "0000000000000000 on node 10.0.0.2" in msg and "\n" not in msg
    same = {**other, "source_hash": cluster.source_hash()}
    monkeypatch.setattr(cluster, "probe_workers", lambda: [same])
    cluster.verify_workers()  # the same code: accepted


def test_cells_and_manifest_record_node_and_code_version():
    ds = outcome_dataset(Outcome.failed("ok", ""), key="k", index=0)
    assert str(ds["node"].values) == ""
    exp = Experiment.from_toml(
        'name = "n"\nseeds = [0]\n[scenarios.cournot]\n[agents]\nweights = ["constant"]\n'
        '[Lambda]\npresets = ["selfish"]\n[training]\nsteps = 2\n'
    )
    got = run_experiment(exp, backend="local", progress=False)
    assert (got["node"] == "").all()  # local runs: no node
    assert got.attrs["source_hash"] == cluster.source_hash()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a) -> None:  # keep pytest's output clean
        pass


@pytest.fixture
def http_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def silent_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


def test_an_address_that_is_not_a_ray_gcs_is_refused_within_seconds(http_server, silent_port):
    for addr, why in (
        (f"127.0.0.1:{http_server}", "an HTTP server"),
        (f"127.0.0.1:{silent_port}", "no answer"),
        (f"http://127.0.0.1:{http_server}", "job server"),
    ):
        t0 = time.monotonic()
        with pytest.raises(ValidationError, match=why) as e:
            check_address(addr)
        assert time.monotonic() - t0 < 30 and "\n" not in str(e.value)
        assert str(e.value).startswith("address: ")


def test_mftt_run_refuses_an_http_address_in_one_line(http_server, tmp_path):
    cfg = tmp_path / "s.toml"
    cfg.write_text(SWEEP)
    out = tmp_path / "r.nc"
    t0 = time.monotonic()
    res = CliRunner().invoke(
        app, ["run", str(cfg), "--address", f"127.0.0.1:{http_server}", "--out", str(out), "-q"]
    )
    assert time.monotonic() - t0 < 30, "an HTTP server as --address hung (not refused in 30 s)"
    assert res.exit_code == 2, res.output
    assert res.output.strip().startswith("error: address: ") and "HTTP server" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not out.exists()


def test_job_payload_round_trip_and_damage(tmp_path):
    f = tmp_path / "r.nc"
    f.write_bytes(os.urandom(20000))
    lines = jobs.encode_payload(f, "demo")
    log = "\n".join(["starting", *lines, "done"])
    assert jobs.decode_payload(log) == ("demo", f.read_bytes())
    assert jobs.fold_payload(log).splitlines()[1].startswith("[results: 20000 bytes")
    assert len(jobs.fold_payload(log).splitlines()) == 3
    bad = log.replace(lines[1][:8], "AAAAAAAA")
    with pytest.raises(ValidationError, match="^job: "):
        jobs.decode_payload(bad, "j")
    with pytest.raises(ValidationError, match="truncated"):
        jobs.decode_payload("\n".join(lines[:-1]), "j")
    with pytest.raises(ValidationError, match="no results"):
        jobs.decode_payload("nothing here", "j")


def test_job_commands_refuse_bad_addresses_with_one_line(http_server, silent_port):
    r = CliRunner()
    for args in (
        ["status", "j1", "--address", f"http://127.0.0.1:{silent_port}"],
        ["logs", "j1", "--address", f"127.0.0.1:{http_server}"],  # an HTTP server, not Ray's
        ["stop", "j1", "--address", "ftp://x:1"],
        ["stop", "j1", "--address", "http://127.0.0.1:99999"],
        ["fetch", "j1", "--address", "http://127.0.0.1:1"],
        ["status", "bad id!", "--address", "http://127.0.0.1:1"],
    ):
        t0 = time.monotonic()
        res = r.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, res.output)
        assert time.monotonic() - t0 < 15


# ---- slow: a real two-node cluster on loopback ---------------------------------------------
def _driver_env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    e.update(
        RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled",
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", PYTHONPATH=str(REPO), OMP_NUM_THREADS="1",
    )  # fmt: skip
    return e


def _mftt(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "agents.experiments.cli", *args], cwd=cwd, env=_driver_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _parts(out: Path) -> dict[str, tuple[int, int, str]]:
    """Finished parts: name -> (inode, mtime_ns, node)."""
    d = Path(str(out) + ".parts")
    got = {}
    for p in d.glob("cell-*.npz") if d.is_dir() else []:
        try:
            st = p.stat()
            got[p.name] = (st.st_ino, st.st_mtime_ns, str(read_part(p)["node"].values))
        except (OSError, ValueError, KeyError):
            pass
    return got


def _same(a: xr.Dataset, b: xr.Dataset) -> None:
    drop = ["wall_time", "node"]
    xr.testing.assert_identical(a.drop_vars(drop).drop_attrs(), b.drop_vars(drop).drop_attrs())
    for k in ("manifest", "source_hash", "git_commit"):
        assert a.attrs[k] == b.attrs[k], k


def _listening(pids) -> list[str]:
    from tests.reliability import _procs

    return [s[2] for s in _procs.listening(list(pids))]


@pytest.fixture(scope="module")
def loopback_cluster():
    from benchmarks.cluster import LoopbackCluster

    cl = LoopbackCluster(workers=1, cpus=1, dashboard=True)
    try:
        cl.wait_nodes(2)
        yield cl
    finally:
        cl.stop()
        alive = [p for p in cl.tree if Path(f"/proc/{p}").exists() and _state(p) != "Z"]
        assert not alive, f"cluster processes left: {alive}"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"


@pytest.mark.slow
@pytest.mark.ray
def test_workers_cannot_import_the_checkout_and_get_the_drivers_code(loopback_cluster, tmp_path):
    code = (
        "import sys\ntry:\n import agents; print('SEES', agents.__file__)\n"
        "except ImportError:\n print('no agents')\n"
    )
    r = subprocess.run(
        [str(loopback_cluster.python), "-c", code], env=loopback_cluster.env,
        cwd=loopback_cluster.tmp, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert r.stdout.strip() == "no agents", r.stdout
    probe = (
        "from agents.experiments.runner import init_ray\nfrom agents.experiments import cluster\nimport json\n"
        f"init_ray({loopback_cluster.address!r})\nprint(json.dumps(cluster.probe_workers()))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=_driver_env(), capture_output=True,
        text=True, timeout=240,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    import json

    reports = json.loads(r.stdout.strip().splitlines()[-1])
    assert len({x["node"] for x in reports}) == 2, reports
    for x in reports:  # the shipped copy (runtime_env py_modules), never the checkout
        assert "runtime_resources" in x["agents_file"] and str(REPO) not in x["agents_file"], x
        assert x["source_hash"] == cluster.source_hash(), x
    # without shipping, the workers' own (absent) installation is refused in one line
    env = {**_driver_env(), cluster.WORKER_CODE_VAR: "installed"}
    cfg = tmp_path / "s.toml"
    cfg.write_text(SWEEP)
    r = subprocess.run(
        [sys.executable, "-m", "agents.experiments.cli", "run", str(cfg), "--address", loopback_cluster.address,
         "--out", str(tmp_path / "x.nc"), "-q"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert r.returncode == 2, (r.stdout, r.stderr[-2000:])
    assert r.stderr.strip().startswith("error: MFTT_WORKER_CODE:") and "\n" not in r.stderr.strip()
    assert "ModuleNotFoundError" in r.stderr and not (tmp_path / "x.nc").exists()


@pytest.mark.slow
@pytest.mark.ray
def test_two_node_sweep_resumes_and_survives_a_killed_worker_node(loopback_cluster, tmp_path):
    cl = loopback_cluster
    cfg = tmp_path / "s.toml"
    cfg.write_text(SWEEP)
    out = tmp_path / "two.nc"
    args = ("run", str(cfg), "--address", cl.address, "--out", str(out), "--keep-parts", "-q")
    # 1. the driver is SIGKILLed after a few cells
    p = _mftt(*args, cwd=tmp_path)
    t0 = time.monotonic()
    while len(_parts(out)) < 3:
        assert p.poll() is None, p.communicate()[1][-2000:]
        assert time.monotonic() - t0 < 150, "no cells finished"
        time.sleep(0.1)
    os.kill(p.pid, signal.SIGKILL)
    p.communicate()  # reaps it and closes its pipes
    before = _parts(out)
    assert 3 <= len(before) < 16
    # 2. resume; the worker node is SIGKILLed while it holds cells
    p = _mftt(*args, cwd=tmp_path)
    worker = cl.nodes[1]
    killed_at = None
    while p.poll() is None:
        assert time.monotonic() - t0 < 300, "the resumed sweep did not finish"
        now = _parts(out)
        nodes = {n for *_, n in now.values()}
        if killed_at is None and len(nodes) == 2 and len(now) >= len(before) + 2:
            cl.kill_node(worker)
            killed_at = len(now)
        time.sleep(0.1)
    so, se = p.communicate()
    assert p.returncode == 0, se[-3000:]
    assert killed_at is not None and killed_at < 16, "the worker node was not killed mid-sweep"
    after = _parts(out)
    for name, (ino, mtime, _) in before.items():  # finished cells were not recomputed
        assert after[name][:2] == (ino, mtime), name
    ds = open_results(out)
    assert ds["status"].size == 16 and (ds["status"] != "failed").all(), ds["message"].values
    nodes = {str(n) for n in ds["node"].values.ravel()}
    assert len(nodes) == 2 and all(n.startswith("127.0.0.1 ") for n in nodes), nodes
    reference = run_experiment(Experiment.from_toml(SWEEP), backend="local", progress=False)
    _same(ds, reference)
    np.testing.assert_array_equal(ds["cost"].values, reference["cost"].values)
    socks = _listening(cl.pids())
    assert socks and all(s.startswith(("127.", "::ffff:127.")) for s in socks), socks
    print(f"\n{len(before)} cells before the driver kill, worker node killed at {killed_at}/16, "
          f"{len(socks)} sockets on loopback, {time.monotonic() - t0:.0f} s")  # fmt: skip


JOB = """
name = "jobrun"
seeds = [0, 1]
backend = "ray"
[scenarios.cournot]
[agents]
weights = ["constant"]
[Lambda]
presets = ["selfish", "team"]
[training]
steps = 50
"""


@pytest.mark.slow
@pytest.mark.ray
def test_ray_jobs_submit_status_logs_fetch_stop(loopback_cluster, tmp_path):
    cl = loopback_cluster
    addr = cl.job_server
    r = CliRunner()
    cfg = tmp_path / "job.toml"
    cfg.write_text(JOB)
    res = r.invoke(app, ["submit", str(cfg), "--address", addr])
    assert res.exit_code == 0, res.output
    job = re.findall(r"mftt-jobrun-[0-9a-f]{8}", res.output)[-1]
    t0 = time.monotonic()
    while True:
        res = r.invoke(app, ["status", job, "--address", addr])
        assert res.exit_code == 0, res.output
        if any(s in res.output for s in ("SUCCEEDED", "FAILED", "STOPPED")):
            break
        assert time.monotonic() - t0 < 180, res.output
        time.sleep(1)
    logs = r.invoke(app, ["logs", job, "--address", addr]).output
    assert "SUCCEEDED" in res.output, logs[-3000:]
    assert "[results:" in logs and jobs.BEGIN not in logs and "wrote " in logs
    out = tmp_path / "fetched.nc"
    res = r.invoke(app, ["fetch", job, "--address", addr, "--out", str(out)])
    assert res.exit_code == 0, res.output
    ds = open_results(out)
    assert len({str(n) for n in ds["node"].values.ravel()} - {""}) >= 1
    _same(ds, run_experiment(Experiment.from_toml(JOB), backend="local", progress=False))
    # unknown ids and bad ids: one line, exit 2
    for args in (["status", "mftt-nope-0000"], ["logs", "mftt-nope-0000"], ["fetch", "nope"]):
        res = r.invoke(app, [*args, "--address", addr])
        assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1, res.output
        assert res.output.startswith("error: job: "), res.output
    # a long job is stopped
    res = r.invoke(app, ["submit", str(cfg), "--address", addr, "--set", "training.steps=100000"])
    assert res.exit_code == 0, res.output
    long_job = re.findall(r"mftt-jobrun-[0-9a-f]{8}", res.output)[-1]
    time.sleep(2)
    res = r.invoke(app, ["stop", long_job, "--address", addr])
    assert res.exit_code == 0, res.output
    while "STOPPED" not in (res := r.invoke(app, ["status", long_job, "--address", addr])).output:
        assert time.monotonic() - t0 < 300, res.output
        time.sleep(1)
    res = r.invoke(app, ["fetch", long_job, "--address", addr])
    assert res.exit_code == 2 and "STOPPED" in res.output
