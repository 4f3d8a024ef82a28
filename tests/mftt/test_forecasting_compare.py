"""Forecasting windows (docs/theory.md#forecasting), weight-law comparison at matched parameters (docs/theory.md#weight-laws), example smoke."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from control import WEIGHT_LAWS
from control.errors import ValidationError
from mftt import MFTTConfig
from mftt.attention import ATTENTION
from mftt.compare import _count, compare_weight_laws, match_widths
from mftt.forecasting import GENERATORS, load_csv, train_forecaster, windows
from mftt.norms import NORMS

ROOT = Path(__file__).resolve().parents[2]


def test_windows_targets_closed_form():
    y = np.arange(20.0)[:, None] * np.array([1.0, 10.0])
    X, Y = windows(y, context=4, horizon=2, task="forecast")
    assert X.shape == (20 - 4 - 2 + 1, 4, 4)
    np.testing.assert_array_equal(Y[:, 0], X[:, -1, 0] + 2)
    X, Y = windows(y, context=4, horizon=3, task="backcast")
    np.testing.assert_array_equal(Y[:, 0], X[:, 0, 0] - 3)
    X, Y = windows(y, context=4, task="nowcast", horizon=0, targets=(0,))
    np.testing.assert_array_equal(Y[:, 0], X[:, -2, 0] + 1)
    assert (X[:, -1, 0] == 0).all() and (X[:, -1, 1] == 10 * Y[:, 0]).all()
    with pytest.raises(ValidationError, match="task"):
        windows(y, context=4, task="hindcast")


def test_generators_and_csv(tmp_path):
    for name, g in GENERATORS.items():
        y = g(n=50, seed=1)
        assert y.shape[0] == 50 and np.isfinite(y).all(), name
    np.testing.assert_array_equal(
        GENERATORS["multi_seasonal"](n=30, seed=2), GENERATORS["multi_seasonal"](n=30, seed=2)
    )
    p = tmp_path / "s.csv"
    p.write_text("a,b\n1,2\n3,4\n5,6\n")
    np.testing.assert_array_equal(load_csv(p, columns=["b"]), [[2.0], [4.0], [6.0]])


@pytest.mark.slow
def test_forecaster_learns_a_sinusoid_better_than_persistence():
    r = train_forecaster(
        "multi_seasonal",
        data_kw={"n": 160, "periods": (8,), "noise": 0.0, "channels": 1},
        context=8,
        steps=60,
        lr=2e-2,
        cfg={"d_model": 4, "heads": 1, "d_ff": 8},
    )
    assert r.losses[-1] < 0.2 * r.losses[0]
    assert r.mse < r.baseline_mse


def test_match_widths_within_tolerance():
    base = MFTTConfig(d_model=8, heads=2, d_ff=16, d_in=3, d_out=1)
    target = _count(base.replace(weights="feedback", law_options={"order": 1, "rank": 1}))
    for law in ("constant", "time"):
        c, gap = match_widths(base.replace(weights=law), target)
        assert gap <= 0.05 and abs(_count(c) - target) <= 0.05 * target


def test_compare_weight_laws_dataset():
    ds = compare_weight_laws(
        laws=("constant", "feedback"),
        seeds=(0,),
        steps=4,
        data_kw={"n": 80},
        context=6,
        base={
            "d_model": 4,
            "heads": 1,
            "d_ff": 4,
            "depth": 1,
            "law_options": {"order": 1, "rank": 1},
        },
    )
    assert set(ds.law.values) == {"constant", "feedback"}
    assert ds.loss.shape == (2, 1, 4) and np.isfinite(ds.loss).all()
    n = ds.n_params.values
    assert abs(n[0] - n[1]) / max(n) <= 0.05
    assert (ds.param_gap <= 0.05).all()
    assert set(ds.attrs["ranking"].split(" < ")) == {"constant", "feedback"}
    assert ds.attrs["separated"] == 0  # one seed: no spread, no winner claimed


def _example(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_example_transformer_lab():
    rows = _example("transformer_lab").main(["--tokens", "4"])
    # every attention kernel × norm × weight law of the registries
    assert len(rows) == len(ATTENTION) * len(NORMS) * len(WEIGHT_LAWS)
    assert all(np.isfinite(r["gain"]) for r in rows)


@pytest.mark.slow
def test_example_attention_clustering(tmp_path):
    p = _example("attention_clustering").main(["--n", "8", "--out", str(tmp_path)])
    assert p.exists() and p.stat().st_size > 1000


@pytest.mark.slow
def test_example_forecast_constant_vs_feedback(tmp_path):
    p = _example("forecast_constant_vs_feedback").main(
        ["--seeds", "1", "--steps", "5", "--out", str(tmp_path)]
    )
    assert p.exists() and p.stat().st_size > 1000
