"""The GPU check — what runs on CUDA, and how close the MFTT field gets to the card's matmul rate.

One script for a lent GPU machine (about 6 minutes on an H100), from a fresh checkout:

    python -m pip install -q -e ".[dev]" && python -m benchmarks.gpu --out $OUT/gpu.md

pip takes torch from PyPI (a CUDA build; a torch already installed is kept); ``make gpu-check`` runs the
same with the project venv. Steps, each timed, each failure recorded rather than fatal:

1. the card: name, capability, memory, torch and CUDA versions;
2. the ``gpu``-marked tests (``pytest -m gpu``; skipped without CUDA);
3. small games on the device: ``agents.play("lq_game")`` (linear feedback, particles), a cell with MFTT
   policies (``cournot``, feedback weights), each against the same cell on the CPU (subprocesses, 90 s each),
   and a population game (``systemic_risk``, 1,000–100,000 banks): cost and Nash gradient against the CPU;
4. the card's matmul rate: a large dense ``torch.matmul`` in fp32 (TF32 off) and in TF32;
5. the batched field and solver benchmarks (``benchmarks.field``, ``benchmarks.solvers``) with ``--device``;
6. the fraction of the fp32 (and TF32) matmul rate the field reaches at its largest batch.

Writes Markdown to ``--out`` (default ``benchmarks/GPU.md``) and JSON beside it (``.json``).
``python -m benchmarks.gpu --device cpu --quick`` is the CPU smoke test of the script itself.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]


def _step(res: dict, name: str, fn: Callable[[], Any]) -> Any:
    """Run one step, storing its result (or its error) and its seconds under ``res[name]``."""
    print(f"[gpu] {name} …", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        out = fn()
        res[name] = {"result": out}
    except Exception as e:  # a failing step must not lose the others
        out = None
        res[name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-1500:]}
    res[name]["seconds"] = round(time.perf_counter() - t0, 2)
    print(f"[gpu] {name} done in {res[name]['seconds']} s", file=sys.stderr, flush=True)
    return out


def card(device: str) -> dict:
    """The device and the software stack."""
    info: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "python": platform.python_version(),
        "device": device,
    }
    if torch.device(device).type == "cuda":
        p = torch.cuda.get_device_properties(torch.device(device))
        info.update(
            name=p.name,
            capability=f"{p.major}.{p.minor}",
            memory_gib=round(p.total_memory / 2**30, 1),
            multiprocessors=p.multi_processor_count,
        )
    else:
        info["name"] = f"cpu ({platform.machine()}, {os.cpu_count()} cores)"
    return info


def gpu_tests(timeout: float) -> dict:
    """``pytest -m gpu`` on the test suite: counts of passed/skipped/failed and the summary line."""
    files = sorted(
        str(f.relative_to(REPO))
        for f in (REPO / "tests").rglob("test_*.py")
        if "mark.gpu" in f.read_text(errors="replace")
    )  # only the files that hold gpu tests: no app/browser test collection
    log = (
        REPO / "benchmarks" / "gpu_tests.log"
    )  # streamed: a hang leaves its output and stack dump here
    with open(log, "w") as fh:
        try:
            r = subprocess.run(
                [sys.executable, "-m", "pytest", "-v", "-m", "gpu", "-p", "no:cacheprovider",
                 "-o", "faulthandler_timeout=60", *files],
                cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )  # fmt: skip
            rc = r.returncode
        except subprocess.TimeoutExpired:
            rc = None
    tail = log.read_text(errors="replace").strip().splitlines()
    if rc is None:
        return {"returncode": None, "summary": f"timed out after {timeout:.0f} s (see {log.name})",
                "last_lines": tail[-40:]}  # fmt: skip
    summary = next((s for s in reversed(tail) if re.search(r"\d+ (passed|skipped|failed)", s)), "")
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|skipped|failed|error)", summary)}
    return {"returncode": rc, "summary": summary.strip("= "), **counts,
            "failures": [s for s in tail if s.startswith(("FAILED", "ERROR"))][:10]}  # fmt: skip


_CELL = """
import json, sys, time
import numpy as np
from agents import play
kw = json.loads(sys.argv[1])
t0 = time.perf_counter()
o = play(**kw)
print(json.dumps({"status": o.status, "costs": [float(c) for c in np.asarray(o.costs).ravel()],
                  "seconds": round(time.perf_counter() - t0, 3), "nfe": getattr(o, "nfe", None)}))
"""


def _cell(scenario: str, device: str, timeout: float = 90.0, **kw) -> dict:
    """One ``agents.play`` cell on ``device`` and on the CPU, each in a subprocess bounded by ``timeout``:
    status, costs, seconds and the largest relative difference of the costs."""
    import numpy as np

    out = {}
    for dev in dict.fromkeys([device, "cpu"]):
        args = json.dumps({"scenario": scenario, "device": dev, **kw})
        try:
            r = subprocess.run(
                [sys.executable, "-c", _CELL, args], cwd=REPO, capture_output=True, text=True,
                timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)},
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            out[dev] = {"error": f"over {timeout:.0f} s"}
            continue
        lines = r.stdout.strip().splitlines()
        out[dev] = json.loads(lines[-1]) if r.returncode == 0 and lines else {
            "error": (r.stderr.strip().splitlines() or ["?"])[-1][:300]
        }  # fmt: skip
    a = np.array(out[device].get("costs", []))
    b = np.array(out["cpu"].get("costs", []))
    rel = (
        float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))
        if a.size and a.shape == b.shape
        else None
    )
    return {"scenario": scenario, **kw, "runs": out, "max_rel_diff_vs_cpu": rel}


def population(device: str, quick: bool) -> dict:
    """A population game (systemic risk, noise on) on ``device`` and on the CPU: the mean cost and its one-pass
    Nash gradient must agree (weights and noise are drawn on the CPU), and a learning step's time per size."""
    import numpy as np

    from agents.scenarios import get_scenario

    out: dict[str, Any] = {}
    for N in (1_000, 10_000) if quick else (1_000, 10_000, 100_000):
        row = {}
        for dev in dict.fromkeys([device, "cpu"]):
            g = get_scenario("systemic_risk")(N, replicas=1).game(
                Lambda=np.eye(1), law="time", policy="linear", seed=0, device=dev
            )
            grad = g.mean_field_gradients()[0]  # warm-up, then timed
            if dev.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            grad = g.mean_field_gradients()[0]
            cost = float(g.costs())
            if dev.startswith("cuda"):
                torch.cuda.synchronize()
            row[dev] = {
                "step_s": round(time.perf_counter() - t0, 4),
                "cost": cost,
                "grad": grad.cpu(),
            }
        a, b = row[device], row["cpu"]
        out[f"N={N}"] = {
            "step_s": {k: v["step_s"] for k, v in row.items()},
            "cost_rel_diff": abs(a["cost"] - b["cost"]) / abs(b["cost"]),
            "grad_rel_diff": float((a["grad"] - b["grad"]).norm() / b["grad"].norm()),
        }
    return out


def matmul_peaks(device: str, quick: bool) -> dict:
    """Dense matmul GFLOP/s at the largest size that fits: fp32 (TF32 off) and, on CUDA, TF32."""
    from .roofline import matmul_gflops

    cuda = torch.device(device).type == "cuda"
    sizes = [256] if quick else ([4096, 8192] if cuda else [1024, 2048])
    out: dict[str, Any] = {"sizes": sizes}
    precisions = ("highest", "high") if cuda else ("highest",)
    for prec in precisions:
        torch.set_float32_matmul_precision(prec)
        key = "fp32" if prec == "highest" else "tf32"
        out[f"{key}_gflops"] = max(matmul_gflops(n, device=device) for n in sizes)
    torch.set_float32_matmul_precision("highest")
    return out


def field_fraction(field_res: dict, peaks: dict, device: str, quick: bool) -> dict:
    """The field's GFLOP/s at its largest batch against the fp32 peak, and again under TF32 (CUDA)."""
    from .field import measure

    rows = [r for r in field_res.get("rows", []) if r.get("weights", "constant") == "constant"]
    if not rows:
        return {"error": "no field rows"}
    big = max(rows, key=lambda r: r["flops"])
    out = {
        "A": big["A"], "D": big["D"], "d": big["d"],
        "field_gflops_fp32": big["gflops"],
        "fraction_of_fp32_matmul": big["gflops"] / peaks["fp32_gflops"],
    }  # fmt: skip
    if "tf32_gflops" in peaks:
        torch.set_float32_matmul_precision("high")
        try:
            row = measure(big["A"], big["D"], big["d"], device=device, peak=peaks["tf32_gflops"], loop=False)  # fmt: skip
        finally:
            torch.set_float32_matmul_precision("highest")
        out["field_gflops_tf32"] = row["gflops"]
        out["fraction_of_tf32_matmul"] = row["gflops"] / peaks["tf32_gflops"]
    return out


def run(device: str = "cuda", quick: bool = False, test_timeout: float = 180.0) -> dict:
    """Every step of the check; the returned dict is what ``--out`` records."""
    from . import field, solvers

    torch.set_float32_matmul_precision("highest")  # the benchmarks measure dense fp32
    res: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "device": device,
        "quick": quick,
    }
    steps: dict[str, Any] = {}
    res["steps"] = steps
    _step(steps, "card", lambda: card(device))
    _step(steps, "gpu_tests", lambda: gpu_tests(test_timeout))
    n = 2  # learning steps: a check that the cell runs on the device, not a converged equilibrium
    _step(steps, "lq_game", lambda: _cell("lq_game", device, seed=0, steps=n))
    _step(
        steps,
        "mftt_cell",
        lambda: _cell("cournot", device, policy="mftt", law="feedback", seed=0, steps=n),
    )
    _step(steps, "population", lambda: population(device, quick))
    peaks = _step(steps, "matmul_peak", lambda: matmul_peaks(device, quick))
    fres = _step(steps, "field", lambda: field.run(device=device, quick=quick))
    _step(steps, "solvers", lambda: solvers.run(device=device, quick=quick))
    if fres and peaks:
        _step(steps, "field_fraction", lambda: field_fraction(fres, peaks, device, quick))
    res["seconds"] = round(sum(s.get("seconds", 0) for s in steps.values()), 1)
    res["errors"] = [k for k, s in steps.items() if "error" in s]
    return res


# ---- the summary -----------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def markdown(res: dict) -> str:
    """The summary: card, tests, games, peaks and the field's fraction of them."""
    s = res["steps"]
    get = lambda k: s.get(k, {}).get("result") or {}  # noqa: E731
    c = get("card")
    lines = [
        f"# GPU check — {c.get('name', res['device'])}, {res['date']}",
        "",
        f"Device `{res['device']}`, torch {c.get('torch')} (CUDA {c.get('cuda_runtime')}), "
        f"capability {c.get('capability', '-')}, {c.get('memory_gib', '-')} GiB; "
        f"{res['seconds']} s in all{' (quick)' if res['quick'] else ''}.",
        "",
        "| step | seconds | outcome |",
        "|---|---|---|",
    ]
    t, ff, pk = get("gpu_tests"), get("field_fraction"), get("matmul_peak")
    outcome = {
        "gpu_tests": t.get("summary", ""),
        "lq_game": _game(get("lq_game"), res["device"]),
        "mftt_cell": _game(get("mftt_cell"), res["device"]),
        "population": "; ".join(
            f"{k}: step {v['step_s']}, cost/grad rel. diff vs CPU {v['cost_rel_diff']:.1e}/{v['grad_rel_diff']:.1e}"
            for k, v in get("population").items()
        ),
        "matmul_peak": ", ".join(f"{k} {_fmt(v)}" for k, v in pk.items() if k.endswith("gflops")),
        "field_fraction": ", ".join(f"{k} {_fmt(v)}" for k, v in ff.items()),
    }
    for k, v in s.items():
        text = v["error"].splitlines()[0][:200] if "error" in v else outcome.get(k, "ok")
        lines.append(f"| {k} | {v.get('seconds', '-')} | {text} |")
    if ff:
        lines += [
            "",
            f"**Field at the largest batch (A={ff.get('A')}, D={ff.get('D')}, d={ff.get('d')}): "
            f"{_fmt(ff.get('field_gflops_fp32'))} GFLOP/s = "
            f"{100 * ff.get('fraction_of_fp32_matmul', float('nan')):.1f} % of the dense fp32 matmul rate"
            + (
                f"; under TF32 {_fmt(ff['field_gflops_tf32'])} GFLOP/s = "
                f"{100 * ff['fraction_of_tf32_matmul']:.1f} % of the TF32 matmul rate"
                if "fraction_of_tf32_matmul" in ff
                else ""
            )
            + ".**",
        ]
    rows = get("field").get("rows", [])
    if rows:
        cols = ["weights", "A", "D", "d", "batched_ms", "gflops", "frac_peak", "speedup"]
        lines += ["", "Field rows:", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_fmt(r.get(k, "")) for k in cols) + " |" for r in rows]
    sv = get("solvers")
    if sv:
        lines += ["", "Solvers (overhead = solve time / (nfe × field time) − 1):", ""]
        for m in ("rk4", "dopri5", "dopri5_torchdiffeq"):
            if isinstance(sv.get(m), dict):
                lines.append(f"- {m}: overhead {_fmt(sv[m].get('overhead'))}")
    return "\n".join(lines) + "\n"


def _game(g: dict, device: str) -> str:
    if not g:
        return ""
    runs = g.get("runs", {})
    d = runs.get(device, {})
    cpu = runs.get("cpu", {})
    if "error" in d:
        return f"error: {d['error']}"
    return (
        f"{d.get('status')} in {d.get('seconds')} s (cpu {cpu.get('seconds') or cpu.get('error')} s), "
        f"max rel diff vs cpu {_fmt(g.get('max_rel_diff_vs_cpu'))}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--device", default="cuda", help="cuda[:i] (default) or cpu (smoke test)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the script")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "GPU.md"), help="Markdown summary")
    ap.add_argument("--test-timeout", type=float, default=180.0, help="seconds for pytest -m gpu")
    a = ap.parse_args(argv)
    if torch.device(a.device).type == "cuda" and not torch.cuda.is_available():
        ap.error(
            "--device cuda: CUDA is not available here (use --device cpu --quick to smoke-test)"
        )
    res = run(a.device, a.quick, a.test_timeout)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown(res))
    out.with_suffix(".json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(markdown(res))
    print(f"wrote {out} and {out.with_suffix('.json')}", file=sys.stderr)
    return 1 if res["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
