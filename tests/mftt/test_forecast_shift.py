"""Forecasting under a shifted initial law: the held-out metric of the comparison protocol, also off the
training distribution (docs/theory.md#comparison)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from control.errors import ValidationError
from mftt.compare import compare_weight_laws
from mftt.forecasting import _read, multi_seasonal, train_forecaster, windows

KW = dict(context=8, steps=5, cfg=dict(d_model=8, heads=2, d_ff=16, depth=1), seed=3)


def test_shift_zero_on_given_data_scores_the_test_part_exactly():
    y = multi_seasonal(n=160, seed=5)
    r = train_forecaster(y, shift=0.0, **KW)
    cut = int(len(y) * 0.75)
    mu, sd = y[:cut].mean(0), y[:cut].std(0) + 1e-8
    X, Y = windows((y[cut:] - mu) / sd, context=8)
    with torch.no_grad():
        pred = _read(r.model(torch.as_tensor(X, dtype=torch.get_default_dtype())), "forecast")
    want = float((pred.numpy() - Y).__pow__(2).mean())
    assert r.info["shifted_mse"] == pytest.approx(want, rel=1e-12)


def test_persistence_is_shift_invariant_and_the_model_is_not():
    """Moving the level moves x_t and x_{t+1} alike: persistence's error cannot change; a trained model's does."""
    a = train_forecaster("multi_seasonal", shift=0.0, data_kw=dict(n=160), **KW)
    b = train_forecaster("multi_seasonal", shift=2.5, data_kw=dict(n=160), **KW)
    assert a.mse == b.mse  # the same training and held-out test
    assert a.info["shifted_baseline_mse"] == pytest.approx(b.info["shifted_baseline_mse"], rel=1e-9)
    assert a.info["shifted_mse"] != pytest.approx(b.info["shifted_mse"], rel=1e-3)
    assert a.info["shifted_baseline_mse"] != pytest.approx(
        a.baseline_mse, rel=1e-6
    )  # a fresh series


def test_compare_weight_laws_reports_the_shifted_metric_and_none_skips_it():
    ds = compare_weight_laws(
        laws=("constant", "untied"), seeds=(0,), steps=3, context=8, data_kw=dict(n=120), shift=1.0
    )
    assert np.isfinite(ds["shifted_mse"].values).all() and ds.attrs["shift"] == 1.0
    off = train_forecaster("multi_seasonal", shift=None, data_kw=dict(n=120), **KW)
    assert "shifted_mse" not in off.info
    with pytest.raises(ValidationError, match="^shift:"):
        train_forecaster("multi_seasonal", shift=float("nan"), data_kw=dict(n=120), **KW)
