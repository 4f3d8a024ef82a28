"""Constant vs feedback weights on a forecasting task at matched parameter counts (docs/theory.md#forecasting, docs/theory.md#weight-laws).

Prints the comparison table (parameters, widths, test MSE/MAE per law, persistence baseline) and writes
results/forecast_constant_vs_feedback.png with the loss curves. The ranking printed is what was measured on
these seeds; it is not a claim that one law is better in general.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from mftt.compare import compare_weight_laws  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--laws",
        default="constant,feedback",
        help="comma list, e.g. constant,time,feedback,meanfield",
    )
    ap.add_argument(
        "--data", default="multi_seasonal", help="multi_seasonal | regime_ar | lorenz63 | file.csv"
    )
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--out", default="results")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    data_kw = {"n": 240} if a.data in ("multi_seasonal", "regime_ar", "lorenz63") else None
    ds = compare_weight_laws(
        "forecast",
        laws=tuple(a.laws.split(",")),
        seeds=tuple(range(a.seeds)),
        data=a.data,
        data_kw=data_kw,
        steps=a.steps,
        context=12,
        base={
            "d_model": 8,
            "heads": 2,
            "d_ff": 16,
            "depth": 2,
            "law_options": {"order": 1, "rank": 1},
        },
    )
    print(
        f"{'law':<10} {'params':>7} {'gap':>6} {'d_model':>7} {'d_ff':>5} {'test MSE':>10} {'± sd':>8} {'MAE':>8}"
    )
    for law in ds.law.values:
        r = ds.sel(law=law)
        print(
            f"{law:<10} {int(r.n_params):>7} {float(r.param_gap):>6.3f} {int(r.d_model):>7} {int(r.d_ff):>5}"
            f" {float(r.test_mse.mean()):>10.4f} {float(r.test_mse.std()):>8.4f} {float(r.test_mae.mean()):>8.4f}"
        )
    print(f"persistence baseline MSE: {float(ds.baseline_mse.mean()):.4f}")
    print(
        f"measured ranking (mean test MSE): {ds.attrs['ranking']}; separated beyond seed spread: "
        f"{bool(ds.attrs['separated'])}"
    )
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for law in ds.law.values:
        for s in ds.seed.values:
            ax.plot(ds.loss.sel(law=law, seed=s), label=f"{law} (seed {s})")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training MSE")
    ax.set_title("loss curves at matched parameter counts")
    ax.legend(fontsize=7)
    path = out / "forecast_constant_vs_feedback.png"
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
