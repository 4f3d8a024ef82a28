"""Untrusted results files: HDF5 features that read other files are refused by name, declared sizes
are capped before any read, only the schema's variables are read, strings reach the terminal escaped, and an
uploaded manifest's [budget] is never honoured."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from agents.experiments import results as R
from agents.experiments.cli import app
from agents.experiments.config import Experiment
from agents.experiments.results import open_results, write_results
from agents.experiments.runner import run_experiment
from control.errors import ValidationError

REPO = Path(__file__).resolve().parents[2]
SECRET = b"root:x:0:0:SECRET-LINE:/root:/bin/bash\n" * 4
TOML = """
name = "untrusted"
seeds = [0]
backend = "local"
[scenarios.matrix]
[Lambda]
presets = ["selfish", "team"]
[training]
steps = 5
"""
HOSTILE = [
    "[/]",
    "[bold red]x",
    "\x1b]0;pwned\x07",
    "\x1b[2J",
    "$\\frac{$",
    "<script>x</script>",
    "\u202eevil",
]


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("good")
    run_experiment(Experiment.from_toml(TOML), out=d / "good.nc", progress=False)
    (d / "secret.txt").write_bytes(SECRET)
    return d / "good.nc"


def _copy(good: Path, tmp: Path, name: str, edit) -> Path:
    p = tmp / name
    shutil.copy(good, p)
    with h5py.File(p, "r+") as f:
        edit(f)
    return p


def _external(secret: Path):
    def edit(f):
        del f["message"]
        f.create_dataset(
            "message", shape=(len(SECRET),), dtype="u1", external=[(str(secret), 0, len(SECRET))]
        )

    return edit


def _vds(secret: Path):
    def edit(f):
        layout = h5py.VirtualLayout(shape=(4,), dtype="f8")
        layout[:] = h5py.VirtualSource(str(secret), "x", shape=(4,))
        f.create_virtual_dataset("virtual", layout)

    return edit


def _bomb(elements: int):
    def edit(f):
        f.create_dataset(
            "bomb",
            shape=(elements,),
            dtype="f8",
            chunks=(2**16,),
            compression="gzip",
            fillvalue=1.0,
        )

    return edit


FEATURES = {
    "external": (lambda s: _external(s), "HDF5 external storage"),
    "vds": (lambda s: _vds(s), "virtual dataset"),
    "elink": (
        lambda s: lambda f: f.__setitem__("el", h5py.ExternalLink(str(s), "/x")),
        "external link",
    ),
    "softlink": (lambda s: lambda f: f.__setitem__("sl", h5py.SoftLink("/cost")), "soft link"),
    "bomb2g": (lambda s: _bomb(2**28), "declaring at most"),
    "bomb16g": (lambda s: _bomb(2**31), "declaring at most"),
}


@pytest.mark.parametrize("feature", sorted(FEATURES))
def test_crafted_features_refused_by_name(good, tmp_path, feature):
    make, words = FEATURES[feature]
    p = _copy(good, tmp_path, f"{feature}.nc", make(good.parent / "secret.txt"))
    assert p.stat().st_size < 200_000  # the bombs are small files
    with pytest.raises(ValidationError) as e:
        open_results(p)
    msg = str(e.value)
    assert msg.startswith("results: ") and "\n" not in msg and words in msg
    assert "SECRET" not in msg and "corrupt or truncated" not in msg
    r = CliRunner().invoke(app, ["show", str(p)])
    assert r.exit_code == 2 and words in r.output and "SECRET" not in r.output
    assert "Traceback" not in r.output


def test_app_upload_refuses_external_storage_and_ignores_manifest_budget(good, tmp_path):
    from app import state

    p = _copy(good, tmp_path, "ext.nc", _external(good.parent / "secret.txt"))
    with pytest.raises(ValidationError) as e:
        state.read_upload("ext.nc", p.read_bytes())
    assert str(e.value).startswith("upload: ") and "external storage" in str(e.value)
    bomb = _copy(good, tmp_path, "bomb.nc", _bomb(2**24))  # 128 MB declared in a small upload
    with pytest.raises(ValidationError, match="declaring at most"):
        state.read_upload("bomb.nc", bomb.read_bytes(), max_mb=5)
    manifest = Experiment.from_toml(TOML).to_toml()
    assert "max_cells = 20000" in manifest
    manifest = 'output = "/etc/x.nc"\n' + manifest.replace(
        "max_cells = 20000", "max_cells = 400000"
    )
    exp = state.experiment_from_manifest(manifest)
    assert exp.budget.max_cells == 20_000 and exp.output is None and exp.backend == "local"


def test_size_bombs_refused_under_500_mb_rss(good, tmp_path):
    paths = [
        _copy(good, tmp_path, f"b{i}.nc", _bomb(n)) for i, n in enumerate((2**28, 2**31, 2**34))
    ]
    code = (
        "import resource, sys\nfrom agents.experiments.results import open_results\nfrom control.errors import ValidationError\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024\n"
        "for p in sys.argv[1:]:\n    try:\n        open_results(p)\n        print('OPENED')\n"
        "    except ValidationError as e:\n        print('refused')\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024 - base)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, *map(str, paths)], capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)}, check=False,
    )  # fmt: skip
    lines = r.stdout.split()
    assert lines[:3] == ["refused"] * 3, r.stdout + r.stderr
    # what refusing costs above the imports (torch alone is ~350 MB, more under a loaded test run)
    assert int(lines[3]) < 100, f"refusing raised the peak RSS by {lines[3]} MB"


def _rewrite(good: Path, tmp: Path, name: str, change) -> Path:
    ds = open_results(good)
    ds = change(ds)
    p = tmp / name
    write_results(ds, p)
    return p


WRONG = {
    "status_numeric": lambda ds: ds.assign(
        status=(ds["status"].dims, np.zeros(ds["status"].shape))
    ),
    "cost_dims": lambda ds: ds.assign(cost=ds["cost"].isel(agent=0)),
    "missing_gap": lambda ds: ds.drop_vars("gap"),
    "no_seed_dim": lambda ds: ds.isel(seed=0),
    "message_numbers": lambda ds: ds.assign(
        message=(ds["message"].dims, np.ones(ds["message"].shape))
    ),
}


@pytest.mark.parametrize("kind", sorted(WRONG))
def test_wrong_schemas_refused(good, tmp_path, kind):
    p = _rewrite(good, tmp_path, f"{kind}.nc", WRONG[kind])
    with pytest.raises(ValidationError, match="^results: expected an mftt results file"):
        open_results(p)
    r = CliRunner().invoke(app, ["show", str(p)])
    assert r.exit_code == 2 and r.output.startswith("error: results:")


def test_only_schema_variables_are_read(good, tmp_path):
    p = _rewrite(good, tmp_path, "extra.nc", lambda ds: ds.assign(junk=("x", np.arange(1000.0))))
    ds = open_results(p)
    assert "junk" not in ds and "x" not in ds.dims and "cost" in ds


def _hostile(ds):
    ds = ds.assign_coords(Lambda=[HOSTILE[0], HOSTILE[2]], scenario=[HOSTILE[4]])
    msg = np.full(ds["message"].shape, " ".join(HOSTILE), dtype=object)
    ds = ds.assign(message=(ds["message"].dims, msg))
    status = np.full(ds["status"].shape, "failed", dtype=object)
    ds = ds.assign(status=(ds["status"].dims, status))
    ds.attrs["name"] = HOSTILE[1] + HOSTILE[2]
    ds.attrs["device"] = HOSTILE[3]
    return ds


def test_markup_and_escapes_reach_the_terminal_inert(good, tmp_path):
    p = _rewrite(good, tmp_path, "hostile.nc", _hostile)
    r = CliRunner().invoke(app, ["show", str(p)], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.output and "\u202e" not in r.output and "\x07" not in r.output
    assert "[/]" in r.output and "[bold red]x" in r.output  # shown literally, not interpreted
    r = CliRunner().invoke(app, ["report", str(p), "--figures", str(tmp_path / "f")])
    assert r.exit_code == 0, r.output
    html = (tmp_path / "f" / "hostile.html").read_text()
    assert "<script>x</script>" not in html


# ---- fuzz: crafted files combining features ---------------------------------------------------
EDITS = st.sampled_from(
    [
        "none",
        "external",
        "vds",
        "elink",
        "softlink",
        "bomb",
        "drop",
        "retype",
        "junk_attr",
        "hostile_attr",
        "group",
    ]
)


def _edit(f, kind: str, secret: Path, r: int) -> None:
    names = sorted(k for k in f if isinstance(f[k], h5py.Dataset))
    target = names[r % len(names)] if names else None
    if kind == "external":
        f.create_dataset(f"e{r}", shape=(8,), dtype="u1", external=[(str(secret), 0, 8)])
    elif kind == "vds":
        _vds(secret)(f) if "virtual" not in f else None
    elif kind == "elink":
        f[f"el{r}"] = h5py.ExternalLink(str(secret), "/x")
    elif kind == "softlink" and target:
        f[f"sl{r}"] = h5py.SoftLink(f"/{target}")
    elif kind == "bomb":
        f.create_dataset(
            f"b{r}", shape=(2**20 + r % 2**34,), dtype="f8", chunks=True, compression="gzip"
        )
    elif kind == "drop" and target:
        del f[target]
    elif kind == "retype" and target and f[target].dtype.kind == "f":
        data = f[target][()]
        attrs = dict(f[target].attrs)
        del f[target]
        f.create_dataset(
            target, data=np.asarray(data).astype("i8") if np.isfinite(data).all() else data
        )
        for k, v in attrs.items():
            if k not in ("DIMENSION_LIST", "REFERENCE_LIST"):
                f[target].attrs[k] = v
    elif kind == "junk_attr":
        f.attrs[f"j{r}"] = np.arange(r % 1000)
    elif kind == "hostile_attr":
        f.attrs["name"] = HOSTILE[r % len(HOSTILE)]
        f.attrs["manifest"] = HOSTILE[(r + 1) % len(HOSTILE)]
    elif kind == "group":
        f.create_group(f"g{r}").create_dataset("x", data=np.arange(3))


def _fuzz_crafted(good, tmp_path_factory, edits):
    """0 tracebacks; refused files name what they are; the secret never appears; nothing is written."""
    d = tmp_path_factory.mktemp("cf")
    secret = good.parent / "secret.txt"
    p = d / "c.nc"
    shutil.copy(good, p)
    try:
        with h5py.File(p, "r+") as f:
            for kind, r in edits:
                _edit(f, kind, secret, r)
    except (ValueError, KeyError, OSError, TypeError):
        return  # h5py refused to build this combination
    before = sorted(x.name for x in d.iterdir())
    try:
        ds = open_results(p)
    except ValidationError as e:
        assert "\n" not in str(e) and str(e).startswith("results: ")
    else:
        assert set(ds.data_vars) <= set(R._SCHEMA_VARS)  # only the schema was read
        r = CliRunner().invoke(app, ["show", str(p)])
        assert r.exception is None or isinstance(r.exception, SystemExit), r.output
        assert "\x1b" not in r.output and "Traceback" not in r.output
    assert sorted(x.name for x in d.iterdir()) == before


_FUZZ = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_EDITS = st.lists(st.tuples(EDITS, st.integers(0, 2**40)), min_size=1, max_size=4)


@settings(max_examples=12, **_FUZZ)
@given(edits=_EDITS)
def test_fuzz_crafted_files(good, tmp_path_factory, edits):
    _fuzz_crafted(good, tmp_path_factory, edits)


@pytest.mark.slow
@settings(max_examples=100, **_FUZZ)
@given(edits=_EDITS)
def test_fuzz_crafted_files_slow(good, tmp_path_factory, edits):
    _fuzz_crafted(good, tmp_path_factory, edits)
