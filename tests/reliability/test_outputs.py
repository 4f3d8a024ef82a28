"""Outputs: the path is refused before any cell runs, figures never overwrite the NetCDF, one run per
output (lock naming the holder's pid, or --wait), temporary files removed on start and on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from agents.experiments import runner as runner_mod
from agents.experiments.cli import app
from agents.experiments.config import Experiment
from agents.experiments.outputs import (
    OutputLocked,
    check_output,
    clean_stale,
    lock_path,
    output_guard,
)
from agents.experiments.runner import run_experiment
from control.errors import ValidationError

REPO = Path(__file__).resolve().parents[2]
TOML = """
name = "out"
seeds = [0]
backend = "local"
[scenarios.matrix]
[training]
steps = 5
"""


@pytest.fixture
def exp():
    return Experiment.from_toml(TOML)


@pytest.fixture
def no_cells(monkeypatch):
    """Fail the test if any cell starts."""

    def boom(*a, **k):
        raise AssertionError("a cell ran")

    monkeypatch.setattr(runner_mod, "_execute", boom)


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("out:")
    return msg


def _bad_paths(tmp_path: Path) -> list[tuple[object, str]]:
    d = tmp_path / "d.nc"
    d.mkdir()
    (tmp_path / "link_dir.nc").symlink_to(d)
    (tmp_path / "real.nc").write_bytes(b"x")
    (tmp_path / "link_file.nc").symlink_to(tmp_path / "real.nc")
    fifo = tmp_path / "fifo.nc"
    os.mkfifo(fifo)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "p.nc.parts").write_text("not a folder")
    (tmp_path / "l.nc.lock").mkdir()
    return [
        (5, "path to a .nc file"),
        (b"r.nc", "path to a .nc file"),
        (tmp_path, "ending in .nc"),
        (tmp_path / "r.png", "ending in .nc"),
        (tmp_path / "r.html", "ending in .nc"),
        (str(tmp_path / "a\0b.nc"), "NUL"),
        (str(tmp_path / "a\x1b[31m.nc"), "control characters"),
        (tmp_path / ("x" * 240 + ".nc"), "at most 200 bytes"),
        (d, "a regular file"),
        (tmp_path / "link_dir.nc", "symlink"),
        (tmp_path / "link_file.nc", "symlink"),
        (fifo, "FIFO"),
        ("/dev/null", "ending in .nc"),
        (tmp_path / "afile" / "r.nc", "folders are directories"),
        (tmp_path / "p.nc", "parts folder"),
        (tmp_path / "l.nc", "lock file"),
        (".nc", "ending in .nc"),
    ]


def test_bad_outputs_refused_before_any_cell(tmp_path, exp, no_cells):
    for path, words in _bad_paths(tmp_path):
        before = sorted(p.name for p in tmp_path.iterdir())
        with pytest.raises(ValidationError) as e:
            run_experiment(exp, out=path, progress=False)
        assert words in _one_line(e), (path, str(e.value))
        assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    assert not Path("5.parts").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_unwritable_folder_refused(tmp_path, exp, no_cells):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(ValidationError, match="writable folder"):
            run_experiment(exp, out=ro / "sub" / "r.nc", progress=False)
    finally:
        ro.chmod(0o700)


def test_device_node_copy_is_refused(tmp_path):
    """As root a copy of /dev/full made with mknod was replaced by a regular file; now it is refused."""
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    node = tmp_path / "full.nc"
    os.mknod(node, 0o600 | 0o020000, os.makedev(1, 7))
    with pytest.raises(ValidationError, match="character device"):
        check_output(node)
    assert not node.is_file()


def test_config_output_name_checked_at_use(tmp_path, exp, no_cells):
    with pytest.raises(ValidationError, match="ending in .nc"):
        run_experiment(exp.replace(output=str(tmp_path / "r.png")), progress=False)


def test_compare_figures_never_overwrite_the_netcdf(tmp_path, monkeypatch):
    """`compare --out r.png` overwrote the NetCDF and deleted the parts; now --out is the NetCDF only."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(TOML)
    nc = tmp_path / "r.nc"
    nc.write_bytes(b"keep me")
    cli = CliRunner()
    for args in (
        ["--out", str(tmp_path / "r.png")],
        ["--out", str(tmp_path / "r.html")],
        ["--out", str(nc), "--png", str(nc)],
        ["--out", str(nc), "--html", str(nc)],
        ["--out", str(nc), "--png", str(tmp_path / "r.nc.png" / "x")],
        ["--out", str(nc), "--figures", str(nc)],
    ):
        monkeypatch.setattr(runner_mod, "_execute", lambda *a, **k: 1 / 0)
        r = cli.invoke(app, ["compare", str(cfg), "-q", *args])
        assert r.exit_code == 2, (args, r.output)
        assert r.output.startswith("error: ") and r.output.count("\n") == 1
        assert nc.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml", "r.nc"]


@pytest.mark.slow
def test_compare_writes_figures_where_asked(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TOML)
    nc, figs = tmp_path / "r.nc", tmp_path / "figs"
    r = CliRunner().invoke(
        app, ["compare", str(cfg), "-q", "--out", str(nc), "--figures", str(figs)]
    )
    assert r.exit_code == 0, r.output
    assert (figs / "r.png").stat().st_size > 0 and (figs / "r.html").stat().st_size > 0
    assert nc.read_bytes()[:4] == b"\x89HDF"
    r = CliRunner().invoke(app, ["report", str(nc), "--png", str(tmp_path / "x.png")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "x.png").is_file() and (tmp_path / "r.html").is_file()
    r = CliRunner().invoke(app, ["report", str(nc), "--png", str(nc)])
    assert r.exit_code == 2 and nc.read_bytes()[:4] == b"\x89HDF"


def test_second_run_refused_naming_the_holder_then_waits(tmp_path, exp):
    out = tmp_path / "r.nc"
    with output_guard(out):
        assert lock_path(out).read_text().strip() == str(os.getpid())
        with pytest.raises(OutputLocked) as e:
            run_experiment(exp, out=out, progress=False)
        msg = _one_line(e)
        assert f"locked by pid {os.getpid()}" in msg and "--wait" in msg
    assert not lock_path(out).exists()  # released and removed

    done: list = []
    guard = output_guard(out)
    guard.__enter__()
    t = threading.Thread(
        target=lambda: done.append(run_experiment(exp, out=out, progress=False, wait=True))
    )
    t.start()
    time.sleep(0.5)
    assert not done  # waiting on the lock
    guard.__exit__(None, None, None)
    t.join(60)
    assert done and out.is_file() and not lock_path(out).exists()


def test_lock_held_by_another_process(tmp_path, exp):
    out = tmp_path / "r.nc"
    code = (
        "import sys, time; from agents.experiments.outputs import output_guard\n"
        "with output_guard(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        assert p.stdout.readline().strip() == b"held"
        with pytest.raises(OutputLocked, match=f"locked by pid {p.pid}"):
            run_experiment(exp, out=out, progress=False)
        p.send_signal(signal.SIGTERM)  # SIGTERM unwinds the guard: lock released and removed
        assert p.wait(30) != 0
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
    assert not lock_path(out).exists()
    run_experiment(
        exp, out=out, progress=False
    )  # a stale lock never blocks (flock dies with its holder)


def test_stale_temporaries_cleaned_on_start(tmp_path, exp):
    out = tmp_path / "r.nc"
    parts = tmp_path / "r.nc.parts"
    parts.mkdir()
    stale = [
        tmp_path / ".r.nc.k3j2h1.tmp",
        tmp_path / ".r.html.abc.tmp",
        tmp_path / ".r.png.tmp.png",
        parts / ".cell-000000-deadbeef.npz.x1.tmp",
    ]
    for f in stale:
        f.write_bytes(b"\0" * 1000)
    other = tmp_path / ".other.nc.zz.tmp"  # another output's temporary: not ours to remove
    other.write_bytes(b"x")
    run_experiment(exp, out=out, progress=False)
    assert not any(f.exists() for f in stale) and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.nc.zz.tmp", "r.nc"]


@pytest.mark.slow
def test_sigterm_during_final_write_leaves_no_temporary(tmp_path):
    out = tmp_path / "r.nc"
    code = f"""
import os, sys, time
import agents.experiments.results as R
from agents.experiments.config import Experiment
from agents.experiments.outputs import output_guard
from agents.experiments.runner import run_experiment
exp = Experiment.from_toml('''{TOML}''')
ds = run_experiment(exp, progress=False)
real = os.fsync
def slow(fd):
    print('writing', flush=True); time.sleep(60)
os.fsync = slow
with output_guard(sys.argv[1]):
    R.write_results(ds, sys.argv[1])
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen(
        [sys.executable, "-c", code, str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        assert p.stdout.readline().strip() == b"writing"
        assert any(f.name.endswith(".tmp") for f in tmp_path.iterdir())
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) != 0
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
    assert list(tmp_path.iterdir()) == []  # no .r.nc.<random>.tmp, no lock, no output


def test_clean_stale_only_touches_files(tmp_path):
    out = tmp_path / "r.nc"
    (tmp_path / ".r.nc.dir.tmp").mkdir()
    assert clean_stale(out) == 0 and (tmp_path / ".r.nc.dir.tmp").is_dir()


NAMES = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=260
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=NAMES, suffix=st.sampled_from([".nc", ".NC", ".png", "", ".nc/", ".nc\0", ".nc.tmp"]))
def test_fuzz_output_names(tmp_path, name, suffix):
    """Any name: a ValidationError of one line or a path inside the folder; nothing is created."""
    before = set(tmp_path.iterdir())
    try:
        p = check_output(str(tmp_path / name) + suffix)
    except ValidationError as e:
        assert "\n" not in str(e) and str(e).startswith("out:")
    else:
        assert p.suffix.lower() == ".nc" and len(os.fsencode(p.name)) <= 200
        assert "\0" not in str(p)
    assert set(tmp_path.iterdir()) == before


PLANTS = st.sampled_from(
    ["none", "dir", "fifo", "link_dir", "link_file", "file", "parts_file", "lock_dir"]
)


def _plant(d: Path, target: Path, kind: str) -> None:
    if kind == "dir":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "link_dir":
        target.symlink_to(d)
    elif kind == "link_file":
        (d / "f").write_text("x")
        target.symlink_to(d / "f")
    elif kind == "file":
        target.write_bytes(b"old")
    elif kind == "parts_file":
        Path(str(target) + ".parts").write_text("x")
    elif kind == "lock_dir":
        Path(str(target) + ".lock").mkdir()


def _fuzz_planted(tmp_path_factory, name: str, kind: str) -> None:
    d = tmp_path_factory.mktemp("pl")
    target = d / (name + ".nc")
    try:
        _plant(d, target, kind)
    except (OSError, ValueError):
        return  # a name the file system refuses
    before = {p.name: p.lstat().st_mode for p in d.iterdir()}
    try:
        p = check_output(target)
    except ValidationError as e:
        assert "\n" not in str(e) and str(e).startswith("out:")
        odd = any(ord(c) < 32 or ord(c) == 127 for c in name)
        assert kind != "none" or odd or len(os.fsencode(target.name)) > 200
    else:
        assert kind in ("none", "file")  # only a free name or a regular file is ever written
        assert not p.is_symlink()
    assert {p.name: p.lstat().st_mode for p in d.iterdir()} == before


SAFE_NAMES = st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=210)


@settings(max_examples=100, deadline=None)
@given(name=SAFE_NAMES, kind=PLANTS)
def test_fuzz_planted_outputs(tmp_path_factory, name, kind):
    _fuzz_planted(tmp_path_factory, name, kind)


@pytest.mark.slow
@settings(max_examples=1500, deadline=None)
@given(name=NAMES, kind=PLANTS)
def test_fuzz_planted_outputs_slow(tmp_path_factory, name, kind):
    if "/" in name or "\0" in name or name in ("", ".", ".."):
        return
    _fuzz_planted(tmp_path_factory, name, kind)
