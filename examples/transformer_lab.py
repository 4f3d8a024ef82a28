"""Every attention kernel, norm and weight law on one input: a table of outputs and costs (docs/theory.md#norms, docs/theory.md#attention, docs/theory.md#block).

For each combination the same tokens go through a 2-layer mean-field-type transformer; the table lists the
output norm, the parameter count, the FLOPs per forward and the wall time.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

import torch  # noqa: E402

from control import WEIGHT_LAWS  # noqa: E402
from mftt import ATTENTION, NORMS, MeanFieldTypeTransformer, MFTTConfig  # noqa: E402


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=8)
    ap.add_argument(
        "--continuous", action="store_true", help="continuous depth (rk4) instead of layers"
    )
    ap.add_argument("--ff", default="mlp", choices=["mlp", "moe"])
    a = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    x = torch.randn(1, a.tokens, 8)
    rows = []
    print(
        f"{'attention':<11}{'norm':<9}{'law':<10}{'|y|/|x|':>9}{'params':>8}{'MFLOP':>8}{'ms':>7}"
    )
    for kernel, norm, law in itertools.product(ATTENTION, NORMS, WEIGHT_LAWS):
        cfg = MFTTConfig(
            d_model=8,
            heads=2,
            d_ff=16,
            depth=2,
            attention=kernel,
            norm=norm,
            weights=law,
            ff=a.ff,
            continuous=a.continuous,
        )
        torch.manual_seed(0)
        m = MeanFieldTypeTransformer(cfg)
        t0 = time.perf_counter()
        with torch.no_grad():
            y = m(x)
        ms = 1e3 * (time.perf_counter() - t0)
        r = dict(
            attention=kernel,
            norm=norm,
            law=law,
            gain=float(y.norm() / x.norm()),
            params=m.n_params,
            mflop=m.flops(a.tokens) / 1e6,
            ms=ms,
        )
        rows.append(r)
        print(
            f"{kernel:<11}{norm:<9}{law:<10}{r['gain']:>9.3f}{r['params']:>8}{r['mflop']:>8.3f}{ms:>7.1f}"
        )
    return rows


if __name__ == "__main__":
    main()
