"""Empathetic prisoner's dilemma: how the equilibria move as empathy λ sweeps (docs/theory.md#static-games).

U_i = u_i + λ u_j. Pure equilibria are enumerated exactly; learned gradient play is started near each
pure profile and its end points are recorded. The thresholds λ_CC = (T−R)/(R−S), λ_DD = (P−S)/(T−P)
are drawn on the figure (results/empathy_prisoners_dilemma.png).

    python examples/empathy_prisoners_dilemma.py [--quick] [--T 5 --R 3 --P 1 --S 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from agents.concepts import solve
from agents.game import MatrixGame
from agents.scenarios.matrix import pd_thresholds, prisoners_dilemma

NAMES = {(0, 0): "CC", (0, 1): "CD", (1, 0): "DC", (1, 1): "DD"}


def learned(U: np.ndarray, lam: float, steps: int) -> set[str]:
    """Pure profiles reached by gradient play from 1 % off each corner."""
    Lam = np.array([[1.0, lam], [lam, 1.0]])
    out = set()
    for a in NAMES:
        init = [[0.99, 0.01] if a[i] == 0 else [0.01, 0.99] for i in range(2)]
        eq = solve(MatrixGame(U, init=init), "nash", Lam, steps=steps, lr=0.2, method="gradient")
        x = eq.actions
        if np.all(np.isclose(x, 0, atol=1e-6) | np.isclose(x, 1, atol=1e-6)):
            out.add(NAMES[(int(np.argmax(x[0])), int(np.argmax(x[1])))])
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer λ values and steps")
    for k, v in dict(T=5.0, R=3.0, P=1.0, S=0.0).items():
        ap.add_argument(f"--{k}", type=float, default=v)
    ap.add_argument("--out", default="results")
    a = ap.parse_args(argv)
    U = prisoners_dilemma(a.T, a.R, a.P, a.S)
    lcc, ldd = pd_thresholds(a.T, a.R, a.P, a.S)
    near = [t + s for t in (lcc, ldd) for s in (-0.01, 0.01)]  # both sides of each threshold
    lams = np.sort(np.concatenate([np.linspace(-0.5, 1.5, 7 if a.quick else 17), near]))
    steps = 200 if a.quick else 300
    g = MatrixGame(U)
    rows = []
    print(f"λ_CC = (T−R)/(R−S) = {lcc:.4f}    λ_DD = (P−S)/(T−P) = {ldd:.4f}")
    print(f"{'λ':>7}  {'pure NE (enumerated)':<22} learned end points")
    for lam in lams:
        ne = {NAMES[e] for e in g.pure_equilibria(np.array([[1, lam], [lam, 1]]))}
        le = learned(U, lam, steps)
        rows.append((lam, ne, le))
        print(f"{lam:7.3f}  {','.join(sorted(ne)):<22} {','.join(sorted(le))}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    ys = {"CC": 3, "CD": 2, "DC": 1, "DD": 0}
    for lam, ne, le in rows:
        for s in ne:
            ax.plot(lam, ys[s], "s", color="tab:blue", ms=8, alpha=0.5)
        for s in le:
            ax.plot(lam, ys[s], "x", color="k", ms=6)
    for t, name in [(lcc, "λ_CC"), (ldd, "λ_DD")]:
        ax.axvline(t, ls="--", color="tab:red")
        ax.text(t, 3.4, name, color="tab:red", ha="center")
    ax.set_yticks(list(ys.values()), list(ys.keys()))
    ax.set_ylim(-0.5, 3.8)
    ax.set_xlabel("empathy λ  (U_i = u_i + λ u_j)")
    ax.set_title("Prisoner's dilemma equilibria: enumerated (■) and learned (×)")
    fig.tight_layout()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "empathy_prisoners_dilemma.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")
    return {"thresholds": (lcc, ldd), "rows": rows, "png": str(path)}


if __name__ == "__main__":
    main()
