"""Smoke test of examples/lq_mean_field_control.py (make demo's job) with --quick."""

import importlib.util
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "lq_mean_field_control.py"


def test_lq_example_quick(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("lq_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(["--quick", "--out", str(tmp_path)])
    png = tmp_path / "lq_gains.png"
    assert png.exists() and png.stat().st_size > 10_000
    rows = {r["law"]: r for r in out["rows"]}
    assert set(rows) == {"constant", "time", "feedback", "meanfield", "untied"}
    names = ("constant", "time", "feedback", "meanfield", "untied")
    assert [rows[n]["n_params"] for n in names] == [2, 8, 26, 46, 8]  # untied: 4 pieces of 2
    # even the quick run shows the point: only the mean-field law gets close to J*_h
    assert rows["meanfield"]["gap"] < 0.01 < rows["constant"]["gap"]
    assert out["J_star_h"] > out["J_star"] > 0
    printed = capsys.readouterr().out
    assert "meanfield" in printed and "gap to J*_h" in printed
