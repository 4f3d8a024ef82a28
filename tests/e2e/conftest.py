"""A real ``streamlit run`` server on a free loopback port and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UPLOAD_CAP_MB = "0.5"  # the server's upload cap in these tests (the app's default is 50 MB)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def results_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("e2e-results")


@pytest.fixture(scope="session")
def server(results_dir) -> str:
    """Start the app with ``streamlit run`` on 127.0.0.1:<free port>; stop it by PID afterwards."""
    port = _free_port()
    env = {
        **os.environ,
        "MFTT_RESULTS_DIR": str(results_dir),
        "MFTT_MAX_UPLOAD_MB": UPLOAD_CAP_MB,
        "OMP_NUM_THREADS": "1",
    }
    # app/serve.py: `streamlit run` with the heavy imports warmed while the server starts (as make app)
    cmd = [
        sys.executable, "app/serve.py", "app/streamlit_app.py", "--server.headless", "true",
        "--server.address", "127.0.0.1", "--server.port", str(port),
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        "--client.toolbarMode", "minimal",
    ]  # fmt: skip
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / "server.log", "w")  # noqa: SIM115 (closed in finally)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() - t0 > 30:
                raise RuntimeError(f"streamlit did not start (exit code {proc.poll()})")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium through the Playwright pip package (no browser download)."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def console_errors() -> list[str]:
    """Every page's console errors and uncaught exceptions over the session (checked by the last test)."""
    return []


@pytest.fixture
def page(browser, server, console_errors):
    """A fresh 1440×1000 page of the served app (each test gets its own session), offline: any request
    that leaves the server is aborted, so a resource fetched from the internet shows up as a console error."""
    ARTIFACTS.mkdir(exist_ok=True)
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
    ctx.route(
        "**/*",
        lambda route: (
            route.continue_()
            if route.request.url.startswith(server) or route.request.url.startswith("data:")
            else route.abort()
        ),
    )
    pg = ctx.new_page()
    pg.on(
        "console",
        lambda m: (
            console_errors.append(f"{pg.url}: {m.text} ({m.location.get('url')})")
            if m.type == "error"
            else None
        ),
    )
    pg.on("pageerror", lambda e: console_errors.append(f"{pg.url}: {e}"))
    pg.set_default_timeout(30_000)
    yield pg
    ctx.close()
