"""Smoke tests of the static-game examples (run in-process through their ``main``)."""

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_empathy_prisoners_dilemma_example(tmp_path):
    out = load("empathy_prisoners_dilemma").main(["--quick", "--out", str(tmp_path)])
    assert Path(out["png"]).stat().st_size > 1000
    lcc, ldd = out["thresholds"]
    for lam, ne, learned in out["rows"]:
        assert learned == ne  # the learned end points are exactly the enumerated pure equilibria
        if lam < min(lcc, ldd):
            assert ne == {"DD"}
        elif lam > max(lcc, ldd):
            assert ne == {"CC"}
        else:
            assert ne == {"CD", "DC"}


def test_cournot_market_example():
    rows = load("cournot_market").main(["--quick"])
    assert max(r["err"] for r in rows) < 1e-4
    assert all(r["nash_conv"] < 1e-8 for r in rows)
    lam = np.array([r["lam"] for r in rows])
    assert np.all(np.diff([r["price"] for r in rows]) > 0) and np.all(np.diff(lam) > 0)
