"""Saved parts are verified, not trusted: key, arguments, code version, checksum and finite values of
an ``ok`` cell are checked on resume; anything else is recomputed, and the run says how many and why."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.experiments import results as R
from agents.experiments.config import Experiment
from agents.experiments.results import (
    PART_PROBLEMS,
    outcome_dataset,
    part_path,
    part_problem,
    read_part,
    read_parts,
    write_part,
)
from agents.experiments.runner import RunState, parts_dir_for, run_experiment
from agents.play import Outcome

TOML = """
name = "parts"
seeds = [0, 1]
backend = "local"
[scenarios.matrix]
[Lambda]
presets = ["selfish", "team"]
[training]
steps = 5
"""


# a two-agent outcome with known numbers (written and read back as a part)
BASE = Outcome(
    scenario="cournot", Lambda=np.eye(2), law="constant", policy="direct", concept="nash", seed=0,
    agent_names=["a", "b"], costs=np.array([1.0, 2.0]), empathetic_costs=np.array([1.5, 2.5]),
    exploitability=0.25, reference_costs=None, history=np.ones((4, 2)), times=np.linspace(0, 1, 3),
    trajectory=np.zeros((3, 2)), n_params=np.array([3, 3]), status="ok", message="converged", wall_time=0.5,
)  # fmt: skip


@pytest.fixture(scope="module")
def exp():
    return Experiment.from_toml(TOML)


@pytest.fixture(scope="module")
def cells(exp):
    return exp.cells()


def _fake(**changes) -> xr.Dataset:
    return outcome_dataset(dataclasses.replace(BASE, **changes))


def _read(tmp_path, cells):
    why: dict[str, int] = {}
    return read_parts(tmp_path, cells, why), why


def test_valid_part_is_reused(tmp_path, cells):
    c = cells[0]
    write_part(tmp_path, c.index, c.key, _fake(), kwargs=c.kwargs)
    got, why = _read(tmp_path, cells)
    assert list(got) == [c.index] and why == {}
    assert part_problem(got[c.index], c) is None


def test_part_copied_from_another_cell_is_discarded(tmp_path, cells):
    a, b = cells[0], cells[1]
    src = write_part(tmp_path, a.index, a.key, _fake(), kwargs=a.kwargs)
    shutil.copy(src, part_path(tmp_path, b.index, b.key))
    src.unlink()
    got, why = _read(tmp_path, cells)
    assert got == {} and why == {"another cell's part": 1}
    assert not any(tmp_path.iterdir())  # deleted, to be recomputed


def test_part_from_another_config_is_discarded(tmp_path, cells):
    c = cells[0]
    write_part(tmp_path, c.index, c.key, _fake(), kwargs={**c.kwargs, "steps": 999})
    assert _read(tmp_path, cells) == ({}, {"arguments changed": 1})


def test_forged_ok_part_with_nan_inf_costs_is_discarded(tmp_path, cells):
    c = cells[0]
    write_part(tmp_path, c.index, c.key, _fake(costs=np.array([np.nan, np.inf])), kwargs=c.kwargs)
    assert _read(tmp_path, cells) == ({}, {"non-finite values in an ok cell": 1})
    # the same numbers are fine in a diverged cell (its NaNs are what it reports)
    write_part(
        tmp_path, c.index, c.key, _fake(status="diverged", costs=np.array([np.nan, np.inf])),
        kwargs=c.kwargs,
    )  # fmt: skip
    got, why = _read(tmp_path, cells)
    assert list(got) == [c.index] and why == {}


def test_unknown_status_is_discarded(tmp_path, cells):
    c = cells[0]
    write_part(tmp_path, c.index, c.key, _fake(status="great"), kwargs=c.kwargs)
    assert _read(tmp_path, cells) == ({}, {"unknown status": 1})


def test_code_change_discards_every_part(tmp_path, cells, monkeypatch):
    for c in cells:
        write_part(tmp_path, c.index, c.key, _fake(), kwargs=c.kwargs)
    monkeypatch.setattr(R, "code_version", lambda: "0123456789abcdef")
    assert _read(tmp_path, cells) == ({}, {"code changed": len(cells)})


def test_code_version_hashes_the_packages_source():
    v = R.code_version()
    assert len(v) == 16 and int(v, 16) >= 0 and v == R.code_version()
    assert v != hashlib.sha256().hexdigest()[:16]  # not the hash of no files (a wrong package root)


def _rewrite(path, edit) -> None:
    with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    edit(arrays)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def test_checksum_mismatch_and_legacy_and_garbage(tmp_path, cells):
    c0, c1, c2 = cells[:3]
    p0 = write_part(tmp_path, c0.index, c0.key, _fake(), kwargs=c0.kwargs)
    _rewrite(p0, lambda a: a.__setitem__("cost", a["cost"] * 2))  # data edited, checksum kept
    p1 = write_part(tmp_path, c1.index, c1.key, _fake(), kwargs=c1.kwargs)

    def legacy(a):  # a part from before verification: no format, args, code or checksum
        meta = json.loads(a["_meta"].tobytes())
        meta = {k: meta[k] for k in ("strings", "dims", "key")}
        a["_meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)

    _rewrite(p1, legacy)
    assert read_part(p1)["cost"].values.tolist() == [1.0, 2.0]  # still readable as data
    part_path(tmp_path, c2.index, c2.key).write_bytes(b"PK\x03\x04 not really a zip")
    got, why = _read(tmp_path, cells)
    assert got == {}
    assert why == {
        "checksum mismatch": 1,
        "written before parts were verified": 1,
        "unreadable": 1,
    }
    assert set(why) <= set(PART_PROBLEMS)


def test_resume_recomputes_discarded_parts_and_says_why(tmp_path, exp, cells, capsys):
    out = tmp_path / "r.nc"
    first = run_experiment(exp, out=out, progress=False, keep_parts=True)
    parts = parts_dir_for(out)
    p = part_path(parts, cells[0].index, cells[0].key)
    shutil.copy(part_path(parts, cells[1].index, cells[1].key), p)  # planted from another cell
    _rewrite(
        part_path(parts, cells[2].index, cells[2].key),
        lambda a: a.__setitem__("cost", a["cost"] + 1),
    )
    state = RunState()
    capsys.readouterr()
    again = run_experiment(exp, out=out, progress=False, keep_parts=True, state=state)
    err = capsys.readouterr().err
    assert state.discarded == {"another cell's part": 1, "checksum mismatch": 1}
    assert state.resumed == len(cells) - 2 and state.computed == 2
    assert "discarded 2 saved cells" in err and "another cell's part" in err
    for k in ("cost", "status", "exploitability"):
        xr.testing.assert_equal(first[k], again[k])


MUTATIONS = st.sampled_from(["flip", "truncate", "swap", "empty", "meta", "nan", "drop_key"])


def _fuzz_parts(tmp_path_factory, cells, which, code_changed):
    """Planted and damaged parts: read_parts never raises, never returns a part that fails part_problem,
    and counts every part it drops."""
    d = tmp_path_factory.mktemp("fz")
    for c in cells:
        write_part(d, c.index, c.key, _fake(), kwargs=c.kwargs)
    for i, kind, r in which:
        c = cells[i % len(cells)]
        p = part_path(d, c.index, c.key)
        if not p.exists():
            continue
        b = bytearray(p.read_bytes())
        if not b:
            continue
        try:  # a part damaged by an earlier mutation may not load any more
            _mutate(d, cells, i, p, b, kind, r)
        except Exception:
            continue
    _check(d, cells, code_changed)


def _mutate(d, cells, i, p, b, kind, r) -> None:
    """Apply one mutation to the part at ``p`` (bytes ``b``)."""
    if kind == "flip":
        b[r % len(b)] ^= 1 << (r % 8)
        p.write_bytes(bytes(b))
    elif kind == "truncate":
        p.write_bytes(bytes(b[: r % len(b)]))
    elif kind == "swap":
        o = cells[(i + 1) % len(cells)]
        shutil.copy(p, part_path(d, o.index, o.key))
    elif kind == "empty":
        p.write_bytes(b"")
    elif kind == "meta":
        _rewrite(p, lambda a: a.__setitem__("_meta", np.frombuffer(b"{}", dtype=np.uint8)))
    elif kind == "nan":
        _rewrite(p, lambda a: a.__setitem__("cost", a["cost"] * np.nan))
    elif kind == "drop_key":
        _rewrite(p, lambda a: a.pop("cost"))


def _check(d, cells, code_changed) -> None:
    before = {p.name for p in d.iterdir()}
    old = R.code_version
    if code_changed:
        R.code_version = lambda: "ffffffffffffffff"
    try:
        why: dict[str, int] = {}
        got = read_parts(d, cells, why)
    finally:
        R.code_version = old
    if not code_changed:
        for i, ds in got.items():
            assert part_problem(ds, cells[i]) is None
    else:
        assert got == {}
    assert len(got) + sum(why.values()) == len(before)
    assert set(why) <= set(PART_PROBLEMS)
    assert {p.name for p in d.iterdir()} == {
        part_path(d, cells[i].index, cells[i].key).name for i in got
    }


_FUZZ = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_WHICH = st.lists(st.tuples(st.integers(0, 7), MUTATIONS, st.integers(0, 10**6)), max_size=6)


@settings(max_examples=60, **_FUZZ)
@given(which=_WHICH, code_changed=st.booleans())
def test_fuzz_parts(tmp_path_factory, cells, which, code_changed):
    _fuzz_parts(tmp_path_factory, cells, which, code_changed)


@pytest.mark.slow
@settings(max_examples=300, **_FUZZ)
@given(which=_WHICH, code_changed=st.booleans())
def test_fuzz_parts_slow(tmp_path_factory, cells, which, code_changed):
    _fuzz_parts(tmp_path_factory, cells, which, code_changed)
