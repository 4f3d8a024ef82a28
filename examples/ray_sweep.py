"""Script a Ray sweep from Python: build an experiment in code, fan it out over Ray, read the Dataset.

python examples/ray_sweep.py            # Cournot, 2 and 3 firms x 3 empathy presets x 2 laws (~20 s)
python examples/ray_sweep.py --address auto   # on a running cluster (ray start --head ...)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from agents.experiments.config import AgentsSpec, Experiment, LambdaSpec, ScenarioSpec, TrainingSpec
from agents.experiments.runner import run_experiment


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--address", default=None, help="Ray cluster address ('auto'); default: embedded local Ray"
    )
    ap.add_argument("--steps", type=int, default=40, help="learning iterations per cell")
    ap.add_argument("--backend", default="ray", choices=["ray", "local", "actors"])
    ap.add_argument("--out", default="results/ray_sweep.nc")
    args = ap.parse_args(argv)

    exp = Experiment(
        name="ray_sweep",
        scenarios=(ScenarioSpec("cournot", {"alpha": 10.0}),),
        agents=AgentsSpec(weights=("constant", "feedback")),
        Lambda=LambdaSpec(presets=("selfish", "altruistic", "spiteful"), alpha=0.5),
        training=TrainingSpec(steps=args.steps),
        seeds=(0,),
        sweep={"agents.n": (2, 3)},  # any dotted field x a list of values adds a dimension
    )
    ds = run_experiment(exp, address=args.address, backend=args.backend, out=args.out)
    # total material cost per (Λ, n): the textbook Cournot result is that altruism lowers output
    # (higher price, lower cost) and spite raises it
    total = ds["cost"].sum("agent", min_count=1).isel(scenario=0, seed=0).sel(law="feedback")
    print(total.to_pandas().round(4).to_string())
    print(f"wrote {args.out}: {dict(ds.sizes)}")
    return Path(args.out)


if __name__ == "__main__":
    main()
