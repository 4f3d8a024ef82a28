"""N-player LQ mean-field-type game: learned linear-feedback agents vs the coupled-Riccati equilibrium (docs/theory.md#lq-game).

Two players steer one common state. For each empathy matrix Λ (selfish Nash, partial altruism, team), every agent
learns a time-varying feedback u_j = −k_j(t)(x − Ex) − l_j(t)Ex (the ``time`` weight law) by simultaneous gradient
play on its empathetic cost (Λ L)_j; the exact equilibrium comes from ``control.riccati.LQGame``. Prints a table
(learned vs Riccati costs, largest gain error on [0, T/2], exploitability; gains near T act on a
decayed state, so the costs identify them weakly and they converge last — see the figure) and writes ``results/lq_game_gains.png``.

    python examples/lq_game_riccati_vs_learned.py           # ~20 s on one core
    python examples/lq_game_riccati_vs_learned.py --quick   # CI smoke test
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
import numpy as np  # noqa: E402
import torch  # noqa: E402

from agents import exploitability, get_scenario, preset, solve  # noqa: E402

PARAMS = dict(b=[1.0, 0.7], r=[1.0, 0.6], q=1.0, qbar=0.5, a=0.5, T=1.0, m0=1.0, v0=0.5)
LAMBDAS = ("selfish", "altruistic", "team")


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny run for the CI smoke test")
    ap.add_argument("--steps", type=int, default=150, help="gradient-play iterations (Adam)")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--grid", type=int, default=6, help="rk4 steps on [0, T]")
    ap.add_argument("--order", type=int, default=5, help="Legendre order of the time law")
    ap.add_argument("--alpha", type=float, default=0.5, help="altruism strength λ_ji")
    ap.add_argument("--out", type=Path, default=Path("results"))
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.grid, args.order = 5, 4, 2
    return args


def run_one(name: str, args) -> dict:
    """Learn the Λ-equilibrium for one preset and return learned/reference gains and costs."""
    sc = get_scenario("lq_game")(2, order=args.order, n_steps=args.grid, particles=2, **PARAMS)
    L = preset(name, 2, args.alpha)
    game = sc.game(Lambda=L, law="time", policy="linear", seed=0)
    eq = solve(game, "nash", L, steps=args.steps, lr=args.lr, optimizer="adam")
    ex = exploitability(game, L, steps=max(5, args.steps // 5), lr=0.01, optimizer="adam")
    ref = sc.lq(L).solve_nash()
    ts = np.linspace(0, PARAMS["T"], 41)
    G = game.gains(ts)[:, :, :, 0, 0]  # [K, n, (k, l)]
    R = np.stack([ref.k(ts), ref.l(ts)], -1)
    early = (
        ts <= PARAMS["T"] / 2
    )  # late gains act on a decayed state: the costs barely identify them
    return dict(
        name=name, ts=ts, learned=G, riccati=R, costs=eq.costs, ref=sc.reference(L),
        gain_err=float(np.abs(G - R)[early].max() / np.abs(R).max()), nash_conv=ex.nash_conv,
    )  # fmt: skip


def main(argv=None) -> list[dict]:
    args = parse(argv)
    torch.set_num_threads(1)
    names = LAMBDAS[:1] if args.quick else LAMBDAS
    rows = [run_one(n, args) for n in names]
    head = f"{'Λ':<11}{'player':>7}{'learned J':>12}{'Riccati J':>12}{'rel err':>10}"
    print(head + f"{'gain err t≤T/2':>16}{'NashConv':>11}")
    for r in rows:
        for j in range(2):
            rel = abs(r["costs"][j] / r["ref"][j] - 1)
            print(
                f"{r['name']:<11}{j:>7}{r['costs'][j]:>12.5f}{r['ref'][j]:>12.5f}{rel:>10.2e}"
                f"{r['gain_err']:>16.2e}{r['nash_conv']:>11.2e}"
            )
    args.out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 3.4), squeeze=False)
    for ax, r in zip(axes[0], rows, strict=True):
        for j, c in enumerate(("#1f77b4", "#d62728")):
            for g, (lab, ls) in enumerate((("k", "-"), ("l", "--"))):
                ax.plot(r["ts"], r["riccati"][:, j, g], color=c, ls=ls, lw=2, alpha=0.35)
                ax.plot(r["ts"], r["learned"][:, j, g], color=c, ls=ls, lw=1,
                        label=f"{lab}_{j} learned (wide: Riccati)")  # fmt: skip
        ax.set_title(f"Λ = {r['name']}")
        ax.set_xlabel("t")
    axes[0, 0].set_ylabel("feedback gain")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    path = args.out / "lq_game_gains.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
