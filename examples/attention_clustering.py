"""Tokens clustering over depth under self-attention on the sphere (docs/theory.md#sphere): writes a PNG.

Tokens on S² follow ẋ_i = P⊥_{x_i}(Σ_j softmax_j(β⟨x_i, x_j⟩) x_j); the energy E_β rises and the tokens merge.
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

from mftt.dynamics import energy, self_attention_flow  # noqa: E402


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=24, help="number of tokens")
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--T", type=float, default=15.0)
    ap.add_argument("--variant", default="SA", choices=["SA", "USA"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results")
    a = ap.parse_args(argv)
    torch.manual_seed(a.seed)
    x0 = torch.randn(a.n, 3, dtype=torch.float64)
    t = torch.linspace(0, a.T, 7, dtype=torch.float64)
    xs = self_attention_flow(x0, t, beta=a.beta, variant=a.variant, rtol=1e-7, atol=1e-9)
    E = energy(xs, a.beta)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    fig = plt.figure(figsize=(14, 2.6))
    for k in range(len(t)):
        ax = fig.add_subplot(1, len(t), k + 1, projection="3d")
        p = xs[k].numpy()
        ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=12)
        ax.set_xlim(-1, 1), ax.set_ylim(-1, 1), ax.set_zlim(-1, 1)
        ax.set_title(f"t={float(t[k]):.1f}  E={float(E[k]):.3f}", fontsize=8)
        ax.set_axis_off()
    fig.suptitle(
        f"{a.variant} self-attention on S², β={a.beta}, n={a.n}: tokens cluster over depth"
    )
    path = out / "attention_clustering.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    spread = torch.cdist(xs[-1], xs[-1]).max()
    print(
        f"energy {float(E[0]):.4f} -> {float(E[-1]):.4f}; final max pairwise distance {float(spread):.2e}"
    )
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
