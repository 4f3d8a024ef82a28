"""Cournot market: learned quantities as symmetric empathy λ moves firms from rivalry to collusion (docs/theory.md#static-games).

Prints, for each λ, the learned Λ-Nash quantity next to the closed form q = (α−c)/(β(3+λ)), the price,
the profits and the exploitability. ``--mftt`` adds firms whose quantity comes from a small mean-field-type
transformer reading the market's price history, with constant against feedback weights (measured).

    python examples/cournot_market.py [--quick] [--mftt]
"""

from __future__ import annotations

import argparse

import numpy as np

from agents.concepts import solve
from agents.exploitability import exploitability
from agents.scenarios import get_scenario


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--mftt", action="store_true", help="also run MFTT firms (slower)")
    ap.add_argument("--alpha", type=float, default=10.0)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--c", type=float, default=1.0)
    a = ap.parse_args(argv)
    sc = get_scenario("cournot")(alpha=a.alpha, beta=a.beta, c=a.c)
    lams = [-0.9, -0.5, 0.0, 0.5, 0.9] if a.quick else [-0.9, -0.6, -0.3, 0.0, 0.3, 0.6, 0.9]
    rows = []
    print(
        f"{'λ':>6} {'q learned':>10} {'q closed':>10} {'|err|':>9} {'price':>7} {'profit':>8} {'NashConv':>9}"
    )
    for lam in lams:
        Lam = np.array([[1.0, lam], [lam, 1.0]])
        g = sc.game(Lambda=Lam, law="constant", policy="direct", mftt=None, seed=0, device="cpu")
        eq = solve(g, "nash", Lam, steps=1000, lr=0.1, tol=1e-10)
        ex = exploitability(g, Lam, steps=300, lr=0.1)
        q = eq.actions.ravel()
        qc = (a.alpha - a.c) / (a.beta * (3 + lam))
        price = a.alpha - a.beta * q.sum()
        row = dict(lam=lam, q=q[0], q_closed=qc, err=float(np.abs(q - qc).max()), price=price,
                   profit=-eq.costs[0], nash_conv=ex.nash_conv)  # fmt: skip
        rows.append(row)
        print(f"{lam:6.2f} {q[0]:10.6f} {qc:10.6f} {row['err']:9.2e} {price:7.3f} {-eq.costs[0]:8.4f} {ex.nash_conv:9.2e}")  # fmt: skip
    if a.mftt:
        print("\nMFTT firms (selfish) against the market-averaged Cournot reference:")
        for law in ["constant", "feedback"]:
            g = sc.game(Lambda=np.eye(2), law=law, policy="mftt", mftt=None, seed=0, device="cpu")
            ref = sc.reference(np.eye(2))
            eq = solve(g, "nash", None, steps=60 if a.quick else 150, lr=0.03)
            ex = exploitability(g, None, steps=50, lr=0.03, optimizer="adam")
            print(f"  {law:9s} params/firm {g.n_params()[0]:6d}  costs {np.round(eq.costs, 4)}  "
                  f"ref {np.round(ref, 4)}  NashConv {ex.nash_conv:.2e}")  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
