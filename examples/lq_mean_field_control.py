"""LQ mean-field-type control: the exact Riccati solution vs four learned weight laws (docs/theory.md#lq-control, docs/theory.md#mean-field).

A population of particles follows dx = (ax + āEx + bu)dt + σdW and pays E∫(qx² + q̄(Ex)² + ru²) + terminal.
The control is u_i = −(θ₁ x_i + θ₀) with θ = law(t, x_i, μ). The optimum u* = −K(t)(x − Ex) − K̄(t)Ex needs the
mean field, so with several initial means only the ``meanfield`` law can reach J*. Prints a table and writes
``results/lq_gains.png`` (learned effective gains vs K(t), K̄(t)).

    python examples/lq_mean_field_control.py            # ~30 s on one core
    python examples/lq_mean_field_control.py --quick    # CI smoke test
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.panel import Panel  # noqa: E402
from rich.table import Table  # noqa: E402

from control import WEIGHT_LAWS, LQProblem, ParticleLQ  # noqa: E402

PROBLEM = dict(A=0.5, Abar=0.3, B=1.0, Sigma=0.5, Q=1.0, Qbar=2.0, R=1.0, QT=1.0, QTbar=1.0, T=1.0)
MEANS = [
    -1.5,
    -0.5,
    0.5,
    1.5,
]  # initial means of the populations (symmetric), each with variance V0
V0 = 0.5
COLORS = {
    "constant": "#7f7f7f",
    "time": "#1f77b4",
    "feedback": "#ff7f0e",
    "meanfield": "#2ca02c",
    "untied": "#9467bd",
}


def parse(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes for the CI smoke test")
    ap.add_argument(
        "--particles", type=int, default=256, help="particles per population (training)"
    )
    ap.add_argument("--steps", type=int, default=25, help="Euler–Maruyama steps on [0, T]")
    ap.add_argument(
        "--iters", type=int, default=6, help="L-BFGS steps (10 line-search iterations each)"
    )
    ap.add_argument(
        "--eval-particles", type=int, default=20_000, help="particles for the evaluation"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("results"))
    a = ap.parse_args(argv)
    if a.quick:
        a.particles, a.steps, a.iters, a.eval_particles = 64, 10, 2, 2000
    return a


def main(argv=None) -> dict:
    args = parse(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    console = Console(width=None if sys.stdout.isatty() else 100)
    t_start = time.perf_counter()
    prob = LQProblem(**PROBLEM)
    pl = ParticleLQ(prob, MEANS, V0, n_particles=args.particles, n_steps=args.steps, seed=args.seed)
    exact, disc = pl.exact(), pl.discrete()
    J_star, J_h = pl.J_star(discrete=False), pl.J_star(discrete=True)
    _, _, J_const = pl.best_constant_gains()
    console.print(
        Panel.fit(
            f"dx = ({prob.A[0, 0]:g}x + {prob.Abar[0, 0]:g}Ex + {prob.B[0, 0]:g}u)dt + "
            f"{prob.Sigma[0, 0]:g}dW,  cost E∫(x² + {prob.Qbar[0, 0]:g}(Ex)² + u²) + terminal,  T = {prob.T:g}\n"
            f"{len(MEANS)} populations, E x0 ∈ {MEANS}, Var x0 = {V0};  {args.particles} particles each, "
            f"{args.steps} Euler–Maruyama steps\n"
            f"exact J* = {J_star:.5f} (continuous)   J*_h = {J_h:.5f} (this discretisation)",
            title="LQ mean-field-type control: feedback weights vs constant weights",
        )
    )

    rows, curves = [], {}
    with console.status("learning...") as status:
        for name in WEIGHT_LAWS:
            status.update(f"learning the [bold]{name}[/] law (L-BFGS, {args.iters} steps)")
            t0 = time.perf_counter()
            law, res = pl.learn(name, steps=args.iters)
            cmp = pl.compare(law, n_particles=args.eval_particles, seed=args.seed + 1000)
            K, Kb, _ = pl.effective_gains(cmp["rollout"])
            curves[name] = (K[:, 0, 0].numpy(), Kb[:, 0, 0].numpy())
            rows.append(
                dict(
                    law=name,
                    n_params=law.n_params,
                    cost=cmp["cost"],
                    gap=cmp["gap"],
                    gap_se=cmp["gap_se"],
                    K_err=float(np.abs(curves[name][0] - disc.arrays["K"][:, 0, 0]).max()),
                    Kbar_err=float(np.abs(curves[name][1] - disc.arrays["Kbar"][:, 0, 0]).max()),
                    seconds=time.perf_counter() - t0,
                    status=res.status,
                )
            )

    table = Table(
        title="Learned weight laws vs the Riccati optimum",
        caption="gap: (J − J*_h)/J*_h on common random numbers ± standard error; "
        "|ΔK|, |ΔK̄|: max over t of the effective-gain error",
    )
    for col in ("law", "params", "cost J", "gap to J*_h", "|ΔK|", "|ΔK̄|", "time"):
        table.add_column(col, justify="left" if col == "law" else "right", no_wrap=True)
    table.add_row("riccati", "—", f"{J_h:.4f}", "0", "0", "0", "exact", style="bold")
    gap_c = (J_const - J_h) / J_h
    table.add_row("best const K,K̄", "2", f"{J_const:.4f}", f"{100 * gap_c:+.2f} %", "—", "—",
                  "exact", style="dim")  # fmt: skip
    for r in rows:
        color = "green" if r["gap"] < 0.005 else ("yellow" if r["gap"] < 0.02 else "red")
        table.add_row(
            r["law"],
            str(r["n_params"]),
            f"{r['cost']:.4f}",
            f"[{color}]{100 * r['gap']:+.2f}[/] ± {100 * r['gap_se']:.2f} %",
            f"{r['K_err']:.3f}",
            f"{r['Kbar_err']:.3f}",
            f"{r['seconds']:.1f} s",
        )
    console.print(table)

    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "lq_gains.png"
    t = np.arange(args.steps) * pl.h
    tt = np.linspace(0, prob.T, 200)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharex=True, constrained_layout=True)
    for ax, (label, ref, dref, idx) in zip(
        axes,
        [
            ("fluctuation gain K(t)", exact.K(tt), disc.arrays["K"][:, 0, 0], 0),
            ("mean gain K̄(t)", exact.Kbar(tt), disc.arrays["Kbar"][:, 0, 0], 1),
        ],  # fmt: skip
        strict=True,
    ):
        ax.plot(tt, ref, color="k", lw=2.5, label="Riccati (continuous)")
        ax.step(t, dref, where="post", color="k", lw=1, ls=":", label="Riccati (discrete)")
        for name, cur in curves.items():
            style = dict(ls="--", marker="s", ms=4, mfc="none") if name == "feedback" else {}
            ax.plot(t, cur[idx], **{"marker": "o", "ms": 3, "lw": 1.2, **style},
                    color=COLORS[name], label=name)  # fmt: skip
        ax.set_title(label)
        ax.set_xlabel("t")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=6, fontsize=8, frameon=False)
    fig.suptitle("Learned effective gains (regression of u on x − Ex, Ex) vs the exact gains")
    fig.savefig(png, dpi=120)
    plt.close(fig)
    total = time.perf_counter() - t_start
    console.print(f"wrote [bold]{png}[/]  ·  total {total:.1f} s")
    return dict(J_star=J_star, J_star_h=J_h, J_best_constant=J_const, rows=rows, png=str(png))


if __name__ == "__main__":
    main()
