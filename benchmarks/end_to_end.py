"""Item 6: end to end — wall time and cells per second of ``mftt compare examples/configs/demo.toml`` run as
a user would (a fresh process with its own Ray), writing into a temporary folder."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "examples" / "configs" / "demo.toml"


def run(device="cpu", quick: bool = False, *, config: Path = DEMO, timeout: float = 900) -> dict:
    """Run the demo comparison once; ``unavailable`` when the config or the CLI is missing."""
    if not config.exists():
        return {"unavailable": f"{config} does not exist yet"}
    try:
        from agents.experiments.config import Experiment

        cells = Experiment.from_toml(config).n_cells
    except Exception as e:  # the config or the agents package is not ready
        return {"unavailable": f"{type(e).__name__}: {e}"}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-c", "from agents.experiments.cli import app; app()", "compare", str(config),
               "--out", str(Path(tmp) / "demo.nc"), "--no-resume", "--quiet"]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        wall = time.perf_counter() - t0
    res = {"config": str(config.name), "cells": cells, "wall_s": wall, "cells_per_s": cells / wall}
    if p.returncode != 0:
        res["error"] = (p.stderr.strip().splitlines() or ["?"])[-1][:300]
    return res
