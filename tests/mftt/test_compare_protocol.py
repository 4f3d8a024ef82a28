"""compare_weight_laws under the comparison protocol (issue 14): budget matching, common seeds, statistics."""

import numpy as np
import pytest

from control.errors import ValidationError
from mftt import MFTTConfig
from mftt.compare import _count, compare_weight_laws, flops_counter, match_widths

BASE = {"d_model": 4, "heads": 1, "d_ff": 4, "depth": 1, "law_options": {"order": 1, "rank": 1}}


@pytest.mark.parametrize("law", ["constant", "time", "meanfield"])
def test_flops_and_params_matching_within_5_percent(law):
    base = MFTTConfig(d_model=8, heads=2, d_ff=16, d_in=3, d_out=1)
    fb = base.replace(weights="feedback", law_options={"order": 1, "rank": 1})
    opts = {"order": 1, "rank": 1} if law == "meanfield" else {"order": 1} if law == "time" else {}
    cfg = base.replace(weights=law, law_options=opts)
    count = flops_counter(16)
    c, gap = match_widths(cfg, count(fb), count=count)
    assert gap <= 0.05 and abs(count(c) - count(fb)) <= 0.05 * count(fb)
    c, gap = match_widths(cfg, _count(fb))
    assert gap <= 0.05 and abs(_count(c) - _count(fb)) <= 0.05 * _count(fb)


def test_compare_weight_laws_paired_statistics_on_common_seeds():
    ds = compare_weight_laws(
        laws=("constant", "feedback"), seeds=range(6), steps=3, data_kw={"n": 80}, context=6,
        base=BASE, match="flops",
    )  # fmt: skip
    f = ds.flops.values
    assert abs(f[0] - f[1]) / f.max() <= 0.05 and ds.attrs["match"] == "flops"
    assert ds.attrs["budget"].startswith("flops matched within")
    for law in ds.law.values:  # the seed reaches every law (initialisation and series)
        assert len(set(ds.test_mse.sel(law=law).values.round(12))) == 6
    d = ds.test_mse.sel(law="constant").values - ds.test_mse.sel(law="feedback").values
    assert np.isclose(ds.diff_vs_constant.sel(law="feedback"), d.mean())
    assert np.isnan(ds.p_t.sel(law="constant")) and 0 <= float(ds.p_t.sel(law="feedback")) <= 1
    line = ds.attrs["conclusions"]
    assert "feedback" in line and "constant" in line and "6 paired seeds" in line
    assert line.startswith(("feedback beats", "constant beats", "no significant difference"))
    with pytest.raises(ValidationError, match="match"):
        compare_weight_laws(laws=("constant",), seeds=(0,), steps=1, match="bytes")


def test_one_seed_claims_nothing():
    ds = compare_weight_laws(
        laws=("constant", "feedback"), seeds=(0,), steps=2, data_kw={"n": 60}, context=6, base=BASE
    )
    assert ds.attrs["conclusions"].startswith("no paired test: 1 seed")
