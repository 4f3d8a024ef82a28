"""Populations at mean-field scale: learning-step time per agent as N grows, one-pass vs per-agent gradients.

* One learning step (the population's mean cost and its law-frozen Nash gradient, one backward pass) of
  ``systemic_risk`` with noise for N = 100 … 100,000 banks (one replica, 50 Heun steps): seconds per step and
  per agent, and the ratio of the per-agent time at the largest N to that at N = 1,000 (linear scaling: ≈ 1).
* At N = 256: the one-pass gradient against the N-player own-gradients, computed as one batched backward over
  agents and as a loop of N backward passes.
* The same learning step with an MFTT as the population's policy (d_model 16, each agent attending to a sample
  of 8 agents; SDE steps recomputed in the backward pass, ``PopulationGame.checkpoint``) for N = 100 … 10,000:
  seconds per step and per agent, the per-agent ratio at the largest N to N = 1,000, and the process's peak
  resident memory after each N (N ascending, so the peak so far is that N's).

``python -m benchmarks.populations [--quick] [--mftt-only] [--out benchmarks/populations.json]``. Ratios are measured in one
run; absolute times depend on the machine (2 cores here) and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from agents.scenarios import get_scenario


def _best(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def step_time(N: int, repeats: int) -> float:
    """Seconds of one learning step (costs + one backward) with N banks."""
    sc = get_scenario("systemic_risk")(N, replicas=1)
    g = sc.game(Lambda=np.eye(1), law="time", policy="linear", seed=0)
    return _best(lambda: g.mean_field_gradients(), repeats)


def mftt_step(N: int) -> dict:
    """One learning step with an MFTT population policy (d_model 16) of N banks: time and peak memory."""
    import resource  # POSIX only: the benchmark's memory column

    sc = get_scenario("systemic_risk")(N, replicas=1)
    g = sc.game(Lambda=np.eye(1), law="feedback", policy="mftt", mftt={"d_model": 16}, seed=0)
    t = time.perf_counter()
    g.mean_field_gradients()
    s = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    return {"N": N, "step_s": s, "per_agent_ms": 1e3 * s / N, "peak_rss_mb": rss}


def gradients_at(N: int, repeats: int) -> dict:
    """One-pass vs per-agent own-gradients at N agents (σ = 0: the same deterministic costs for all three)."""
    sc = get_scenario("systemic_risk")(N, replicas=1, sigma=0.0, n_steps=20)
    g = sc.game(Lambda=np.eye(1), law="time", policy="linear", seed=0)

    def loop():
        W = g.per_agent_weights()
        prev, g.gradient = g.gradient, "exact"
        try:
            J = g.agent_costs(W).mean(0)[0]
        finally:
            g.gradient = prev
        for i in range(N):
            torch.autograd.grad(J[i], W, retain_graph=True)

    one = _best(lambda: g.mean_field_gradients(), repeats)
    batched = _best(lambda: g.own_gradients(), 1)
    looped = _best(loop, 1)
    return {"N": N, "one_pass_s": one, "batched_own_s": batched, "loop_own_s": looped,
            "speedup_vs_batched": batched / one, "speedup_vs_loop": looped / one}  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N up to 10,000 and one repeat")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/populations.json"))
    ap.add_argument(
        "--mftt-only", action="store_true", help="only the MFTT policy rows (merged into --out)"
    )
    a = ap.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    mftt_rows = []
    mftt_step(
        10
    )  # warm-up: the first MFTT step pays one-time costs (imports, allocator) that are not per agent
    for N in [100, 1_000] if a.quick else [100, 1_000, 10_000]:
        r = mftt_step(N)
        mftt_rows.append(r)
        print(
            f"MFTT policy, N = {N:>6,}: {r['step_s']:8.1f} s per learning step, "
            f"{r['per_agent_ms']:7.2f} ms per agent, peak RSS {r['peak_rss_mb']:,.0f} MB",
            flush=True,
        )
    base = next(r for r in mftt_rows if r["N"] == 1_000)["per_agent_ms"]
    mftt = {"steps": mftt_rows, "scaling_largest_vs_1000": mftt_rows[-1]["per_agent_ms"] / base}
    print(
        f"MFTT per-agent time at N = {mftt_rows[-1]['N']:,} / at N = 1,000: {mftt['scaling_largest_vs_1000']:.2f}"
    )
    if a.mftt_only:
        out = json.loads(a.out.read_text()) if a.out.exists() else {}
        out["mftt"] = mftt
        a.out.write_text(json.dumps(out, indent=2))
        return out
    Ns = [100, 1_000, 10_000] if a.quick else [100, 1_000, 10_000, 100_000]
    rep = 1 if a.quick else 3
    rows = []
    for N in Ns:
        s = step_time(N, rep)
        rows.append({"N": N, "step_s": s, "per_agent_us": 1e6 * s / N})
        print(
            f"N = {N:>7,}: {s:8.3f} s per learning step, {1e6 * s / N:8.2f} µs per agent",
            flush=True,
        )
    base = next(r for r in rows if r["N"] == 1_000)["per_agent_us"]
    scaling = rows[-1]["per_agent_us"] / base
    print(f"per-agent time at N = {Ns[-1]:,} / at N = 1,000: {scaling:.2f} (target ≤ 1.5)")
    grads = gradients_at(256, rep)
    print(
        f"N = 256: one pass {grads['one_pass_s']:.3f} s; own-gradients batched {grads['batched_own_s']:.2f} s "
        f"({grads['speedup_vs_batched']:.0f}×), looped {grads['loop_own_s']:.2f} s ({grads['speedup_vs_loop']:.0f}×)"
    )
    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "steps": rows, "scaling_largest_vs_1000": scaling, "gradients": grads, "mftt": mftt,
    }  # fmt: skip
    a.out.write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
