"""Security defaults: nothing from the home folder or the environment leaks into results or logs; the web
app and Ray bind to 127.0.0.1 unless told otherwise; no Ray dashboard unless asked."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from . import _procs

REPO = Path(__file__).resolve().parents[2]
SECRET = "sk-test-9f8e7d6c5b4a"


def test_no_home_paths_or_secrets_in_results_or_logs(tmp_path):
    home = tmp_path / "home" / "alice-reliability"
    home.mkdir(parents=True)
    out = home / "runs" / "r.nc"
    cfg = home / "c.toml"
    cfg.write_text(
        f'name = "sec"\noutput = "{out}"\nbackend = "local"\n[scenarios.cournot]\n'
        '[agents]\nweights = ["constant"]\n[Lambda]\npresets = ["selfish", "selfless"]\n'
        "[training]\nsteps = 2\n"
    )
    env = {
        **os.environ, "HOME": str(home), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
        "MFTT_API_TOKEN": SECRET, "AWS_SECRET_ACCESS_KEY": SECRET, "GITHUB_TOKEN": SECRET,
    }  # fmt: skip
    r = subprocess.run(
        [sys.executable, "-m", "agents.experiments.cli", "run", str(cfg)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    from agents.experiments.results import open_results

    ds = open_results(out)
    text = "\n".join(str(v) for v in ds.attrs.values())
    text += "\n".join(str(m) for m in ds["message"].values.ravel())
    logs = r.stdout + r.stderr
    for where, blob in (("attrs/messages", text), ("stdout/stderr", logs)):
        assert SECRET not in blob, f"secret leaked into {where}"
    assert str(home) not in text and "alice-reliability" not in text, "home path in the manifest"
    assert "~/runs/r.nc" in ds.attrs["manifest"]  # the output path is kept, relative to ~
    raw = out.read_bytes()
    assert SECRET.encode() not in raw and b"alice-reliability" not in raw


def test_streamlit_and_cli_default_to_loopback():
    r = subprocess.run(
        [sys.executable, "-m", "agents.experiments.cli", "app", "--dry-run"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
        timeout=120, check=True,
    )  # fmt: skip
    assert "--server.address 127.0.0.1" in r.stdout
    assert "--browser.gatherUsageStats false" in r.stdout
    make = (REPO / "Makefile").read_text()
    app_rule = make.split("\napp:", 1)[1].split("\n\n", 1)[0]
    assert "--server.address 127.0.0.1" in app_rule
    src = (REPO / "agents" / "experiments" / "runner.py").read_text()
    assert "include_dashboard=False" in src and "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" in src


@pytest.mark.slow
def test_streamlit_server_listens_on_loopback_only():
    """A real ``mftt app`` server: every listening socket of its process tree is on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    p = subprocess.Popen(
        [sys.executable, "-m", "agents.experiments.cli", "app", "--port", str(port)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    tree: list[int] = []
    try:
        t0 = time.monotonic()
        while True:
            assert p.poll() is None and time.monotonic() - t0 < 90, "streamlit did not come up"
            tree = list({*tree, *_procs.descendants(p.pid)})
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/_stcore/health", timeout=2
                ) as u:
                    if u.status == 200:
                        break
            except OSError:
                time.sleep(0.3)
        tree = list({*tree, *_procs.descendants(p.pid)})
        socks = _procs.listening([p.pid, *tree])
        assert any(a.endswith(f":{port}") for _, _, a in socks), socks
        public = [s for s in socks if not _procs.is_loopback(s[2])]
        assert not public, f"streamlit listens beyond loopback: {public}"
    finally:
        _procs.kill_tree(p.pid, tree)
        p.wait()


def test_bad_or_unreachable_ray_address_is_one_line(tmp_path):
    """``--address`` that is malformed or has no Ray head behind it: exit 2 with one line, at once."""
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    cfg = 'name = "a"\nbackend = "ray"\n[scenarios.cournot]\n[agents]\nweights = ["constant"]\n'
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    for address in ("not an address", dead):
        t0 = time.monotonic()
        r = subprocess.run(
            [sys.executable, "-m", "agents.experiments.cli", "run", cfg, "--address", address, "--quiet",
             "--out", str(tmp_path / "a.nc")],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        err = r.stderr.strip()
        assert r.returncode == 2, (address, r.returncode, err[-2000:])
        assert err.startswith("error: address:") and "\n" not in err, err
        assert time.monotonic() - t0 < 60 and not (tmp_path / "a.nc").exists()
