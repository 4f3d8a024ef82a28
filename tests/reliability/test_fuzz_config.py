"""Fuzz the config loader, the CLI, the results reader and the app's input parsers with malformed input.

Each drawn config is a valid base with ONE field made invalid (wrong type or shape, NaN/inf, negative,
unknown name, empty list, bad Λ, absurd size): loading it must raise the validation family with one line
naming that field (absurd sizes may name the ``budget`` field instead, with the estimate).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from agents.experiments.config import Experiment, dumps_toml
from agents.experiments.results import open_results

from ._fuzz import (
    INF,
    NAN,
    absurd,
    bad_matrix,
    expect_family,
    not_name,
    not_nonneg_int,
    not_number,
    not_pos_float,
    not_pos_int,
    text_not_number,
)

huge = st.integers(min_value=10**10, max_value=10**18)  # beyond any memory budget
FAST = settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
BASE = {
    "name": "fuzz",
    "scenarios": {"cournot": {}},
    "agents": {"n": 2, "weights": ["constant"]},
    "Lambda": {"presets": ["selfish"], "alpha": 0.5},
    "training": {"steps": 2},
    "seeds": [0],
    "backend": "local",
}
not_str = st.one_of(st.integers(), st.floats(), st.lists(st.integers(), max_size=2), st.booleans())
BAD: dict[str, st.SearchStrategy] = {
    "name": st.one_of(not_str, st.just(""), st.just("a b"), st.just("../etc/x")),
    "description": not_str,
    "scenarios": st.one_of(
        st.just([]), st.just({}), st.just("nope"), st.just({"nope": {}}), st.integers(),
        st.just({"cournot": 5}),
    ),
    "scenarios.cournot.bogus": st.integers(),
    "scenarios.cournot.alpha": st.sampled_from([NAN, INF, -INF, "x", [1, "a"]]),
    "seeds": st.one_of(
        st.just([]), st.just([-1]), st.just([1.5]), text_not_number, st.just([0, 0]), st.just([True]),
        st.just([NAN]),
    ),
    "agents.n": st.one_of(not_pos_int.filter(lambda v: v is not None), absurd),  # n² Λ per cell
    "agents.policy": st.one_of(st.integers(), st.just(""), not_name(["direct", "mftt"]).filter(lambda v: isinstance(v, str))),
    "agents.weights": st.one_of(st.just([]), st.just(["fedback"]), st.integers(), st.just(["constant", "constant"])),
    "agents.mftt": st.one_of(st.integers(), st.just({"bogus": 1}), st.just({"d_model": -1}), st.just({"d_model": NAN})),
    "agents.bogus": st.integers(),
    "Lambda.presets": st.one_of(st.just(["nope"]), st.integers(), st.just(["selfish", "selfish"])),
    "Lambda.alpha": not_number.filter(lambda v: v is not None),
    "Lambda.matrices": bad_matrix(2).map(lambda m: {"m": m}),
    "concept.name": not_name(["nash", "stackelberg", "minimax"]).filter(lambda v: v is not None),
    "concept.options": st.just({"x": 1}),
    "training.steps": st.one_of(not_pos_int.filter(lambda v: v is not None), huge),
    "training.lr": not_pos_float.filter(lambda v: v is not None),
    "training.bogus": st.integers(),
    "sweep": st.one_of(
        st.just({"agents.n": []}), st.just({"seeds": [1]}), st.just({"bogus.x": [1]}),
        st.just({"agents.n": [0]}), st.just({"agents.n": 5}), st.just({"training.lr": [NAN]}),
        st.just({"agents.n": list(range(2, 10**5))}),
    ),
    "output": st.one_of(st.integers(), st.just("")),
    "backend": not_name(["ray", "local", "actors"]).filter(lambda v: v is not None),
    "device": st.one_of(st.integers(), st.just(""), st.just("banana"), st.just("cuda:99")),
    "ray.address": st.one_of(st.integers(), st.just("")),
    "ray.num_cpus": st.one_of(not_number.filter(lambda v: v is not None), st.floats(max_value=-1e-9)),
    "ray.num_gpus": st.one_of(not_number.filter(lambda v: v is not None), st.floats(max_value=-1e-9)),
    "ray.max_retries": not_nonneg_int.filter(lambda v: v is not None),
    "budget.max_cells": not_pos_int.filter(lambda v: v is not None),
    "budget.max_memory_mb": not_pos_float.filter(lambda v: v is not None),
    "bogus": st.integers(),
}  # fmt: skip


def mutate(path: str, value) -> dict:
    d = copy.deepcopy(BASE)
    *head, last = path.split(".")
    cur = d
    for p in head:
        cur = cur.setdefault(p, {})
    cur[last] = value
    return d


def fields_for(path: str) -> set[str]:
    root = path.split(".")[0]
    out = {path, root, "budget", "sweep", "config"}
    if path.startswith("scenarios"):
        out |= {"scenarios"}
    if path.startswith("agents.mftt"):
        out |= {"agents.mftt"}
    return out


draw = st.one_of(*[s.map(lambda v, k=k: (k, v)) for k, s in BAD.items()])


@FAST
@given(draw)
def test_experiment_from_dict(bad):
    path, v = bad
    expect_family(lambda: Experiment.from_dict(mutate(path, v)), fields_for(path))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(draw)
def test_experiment_from_toml_text(bad):
    """The same mutations written as TOML text (where TOML can hold the value)."""
    path, v = bad
    try:
        text = dumps_toml(mutate(path, v))
    except TypeError:
        assume(False)
    expect_family(lambda: Experiment.from_toml(text), fields_for(path))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(max_size=80))
def test_random_toml_text(text):
    """Arbitrary text is either a valid experiment or one line naming a field (usually ``config``)."""
    fields = {"config", "scenarios", "name", "seeds", "budget", "sweep", "agents", "Lambda"}
    fields |= {"concept", "training", "ray", "output", "backend", "device", "description"}
    fields |= {k for k in BAD}  # an unknown top-level key is named by itself
    expect_family(
        lambda: Experiment.from_toml(text + "\n"),
        fields | {text.split("=")[0].strip()},
        must_raise=False,
    )


# ---- the CLI (in-process CliRunner: exit code 2, one line on stderr) ---------------------------
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(draw)
def test_cli_run_bad_config(tmp_path_factory, bad):
    from agents.experiments.cli import app

    path, v = bad
    try:
        text = dumps_toml(mutate(path, v))
    except TypeError:
        assume(False)
    d = tmp_path_factory.mktemp("cli")
    cfg = d / "bad.toml"
    cfg.write_text(text)
    r = CliRunner().invoke(app, ["run", str(cfg), "--out", str(d / "o.nc"), "--quiet"])
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    err = r.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in r.output, err
    named = err[len("error: ") :].split(":", 1)[0]
    assert any(named == f or named.startswith(f) for f in fields_for(path)), (path, err)
    assert not (d / "o.nc").exists()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from(
        ["agents.n", "training.steps", "Lambda.alpha", "backend", "bogus.key", "seeds"]
    ),
    st.sampled_from(["0", "-1", "nan", "inf", "x", "", "[", "1e400", "2,,", "99999999999"]),
)
def test_cli_set_values(tmp_path_factory, key, value):
    """``--set FIELD=VALUE`` with bad values: exit 2 with one line naming the field."""
    from agents.experiments.cli import app

    d = tmp_path_factory.mktemp("cliset")
    cfg = d / "ok.toml"
    cfg.write_text(dumps_toml(BASE))
    r = CliRunner().invoke(
        app, ["run", str(cfg), "--out", str(d / "o.nc"), "--quiet", "--set", f"{key}={value}"]
    )
    if r.exit_code == 0:  # e.g. seeds=99999999999 is a valid seed: the run must then have worked
        assert (d / "o.nc").exists()
        return
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    err = r.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    named = err[len("error: ") :].split(":", 1)[0]
    assert named.split(".")[0].split("[")[0] in {key.split(".")[0], "budget", "--set", "config"}, (
        err
    )


# ---- results files and the app's parsers -------------------------------------------------------
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=2048), st.sampled_from([b"", b"\x89HDF\r\n\x1a\n", b"CDF\x01"]))
def test_open_results_garbage(tmp_path_factory, data, magic):
    p = tmp_path_factory.mktemp("nc") / "x.nc"
    p.write_bytes(magic + data)
    expect_family(lambda: open_results(p), {"results"})


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.text(max_size=40), st.integers(1, 4))
def test_app_lambda_text(text, n):
    pytest.importorskip("streamlit")
    from app.state import parse_lambda_text

    e = expect_family(lambda: parse_lambda_text(text, n), {"Lambda"}, must_raise=False)
    if e is None:  # accepted: then it really is a finite n×n matrix
        L = parse_lambda_text(text, n)
        assert L.shape == (n, n) and np.isfinite(L).all()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=1024), st.sampled_from([b"", b"\x89HDF\r\n\x1a\n", b"CDF\x01"]))
def test_app_upload_garbage(data, magic):
    pytest.importorskip("streamlit")
    from app.state import read_upload

    expect_family(lambda: read_upload("u.nc", magic + data, max_mb=0.5), {"upload"})


def test_app_upload_size_cap():
    pytest.importorskip("streamlit")
    from app.state import read_upload

    e = expect_family(
        lambda: read_upload("big.nc", b"\x89HDF" + b"0" * 2**20, max_mb=0.5), {"upload"}
    )
    assert "1.0 MB" in str(e)


def test_budget_refusal_has_estimate():
    """An absurd grid is refused up front (no cell runs), the message carries the estimate."""
    d = mutate("agents.n", 10**8)
    e = expect_family(lambda: Experiment.from_dict(d), {"budget"})
    assert "MB" in str(e)
    d = mutate("seeds", list(range(30_000)))
    e = expect_family(lambda: Experiment.from_dict(d), {"budget"})
    assert "30000" in str(e)


def test_config_is_data_never_code(tmp_path):
    """TOML strings that look like code stay strings; nothing is evaluated or unpickled."""
    marker = tmp_path / "pwned"
    evil = f"__import__('pathlib').Path({json.dumps(str(marker))}).touch()"
    d = mutate("description", evil)
    exp = Experiment.from_dict(d)
    assert exp.description == evil and not marker.exists()
    for name in (evil, "!!python/object:os.system", "{{7*7}}"):
        expect_family(lambda n=name: Experiment.from_dict(mutate("name", n)), {"name"})
    assert not marker.exists()
    root = Path(__file__).resolve().parents[2]
    for f in [
        *root.glob("agents/**/*.py"),
        *root.glob("app/**/*.py"),
        *root.glob("control/*.py"),
        *root.glob("mftt/*.py"),
    ]:
        src = f.read_text()
        for bad in (
            "eval(",
            "exec(",
            "pickle.load",
            "yaml.load(",
            "allow_pickle=True",
            "shell=True",
        ):
            assert bad not in src.replace("literal_eval(", ""), f"{f.name} uses {bad}"
        if "torch.load(" in src:
            assert "weights_only=True" in src, f"{f.name}: torch.load without weights_only=True"


# ---- the bigger run (CI's slow step): thousands more malformed configs and cells ---------------
@pytest.mark.slow
@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(draw)
def test_experiment_from_dict_many(bad):
    path, v = bad
    expect_family(lambda: Experiment.from_dict(mutate(path, v)), fields_for(path))


@pytest.mark.slow
@settings(max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_play_many(data):
    from .test_fuzz_api import PLAY_BAD, SCENARIOS, _draw_field, play

    field, v = data.draw(_draw_field(PLAY_BAD))
    scen = data.draw(st.sampled_from(["cournot", "matrix", "berge", "lq_game", "consensus"]))
    kw = {"n_agents": 2, "law": "constant", "steps": 2, field: v}
    if field == "scenario":
        scen = kw.pop("scenario")
    if field == "mftt":
        kw["policy"] = "mftt"
    if field == "params" and isinstance(v, dict) and scen != "cournot":
        kw["params"] = {"bogus": 1.0}
    if scen == "matrix" and field != "n_agents":
        kw["n_agents"] = 2
    names = {field, "scenario", "Lambda", "mftt", "device", "budget", "policy", "params"}
    names |= {f"{s}." for s in SCENARIOS}
    expect_family(lambda: play(scen, **kw), names)
