"""The benchmark suite: ``python -m benchmarks.run [--quick] [--only ITEM,...] [--device cuda]``.

Runs the items, prints one rich table per item and the targets, writes ``benchmarks/results.json`` and (full
runs) appends the run to ``benchmarks/RESULTS.md``. Every ratio is measured in this process, next to its
comparator. Items: roofline, field, solvers, gradients, sweep, end_to_end, cluster (CUDA: the first four at larger
sizes, chosen by ``--device``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from . import cluster, end_to_end, field, gradients, roofline, solvers, sweep
from .timing import machine

HERE = Path(__file__).resolve().parent
ITEMS: dict[str, Callable[..., dict]] = {
    "roofline": roofline.run,
    "field": field.run,
    "solvers": solvers.run,
    "gradients": gradients.run,
    "sweep": sweep.run,
    "end_to_end": end_to_end.run,
    "cluster": cluster.run,  # driver RSS over 5,000 cells, 2-node vs 1-node (loopback)
}
CUDA_ITEMS = ("roofline", "field", "solvers", "gradients")
# Ray start-up and the demo take minutes on a loaded 2-core machine: --quick runs them only when named
SLOW_ITEMS = ("sweep", "end_to_end", "cluster")


def _get(d: dict, *path, default=None):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def targets(items: dict, device: str) -> list[dict]:
    """The issue's targets evaluated on this run: name, value, bound, met (None where not measured)."""
    out = []

    def add(name: str, value, op: str, bound: float, where: str):
        met = None if value is None else (value >= bound if op == ">=" else value <= bound)
        out.append(
            {"target": name, "where": where, "value": value, "op": op, "bound": bound, "met": met}
        )

    rows = _get(items, "field", "rows", default=[])
    rows = [r for r in rows if r.get("weights", "constant") == "constant"]
    cuda = torch.device(device).type == "cuda"
    counts = sorted({r.get("threads", 1) for r in rows}) or [None]
    for n in counts:
        part = [r for r in rows if r.get("threads", 1) == n]
        th = f", {n} thread{'s' if n != 1 else ''}" if n is not None and not cuda else ""
        if cuda:
            big = max(part, key=lambda r: r["flops"]) if part else None
            where = f"largest size A={big['A']} D={big['D']} d={big['d']}" if big else "not run"
            add("field fraction of fp32 matmul peak", big and big["frac_peak"], ">=", 0.40, where)
            continue
        sel = [r for r in part if r["A"] == 128 and r["D"] >= 32 and r["d"] == 64]
        add("field fraction of fp32 matmul peak", min((r["frac_peak"] for r in sel), default=None),
            ">=", 0.60, "A=128, D>=32, d=64 (worst)" + th)  # fmt: skip
        sel = [r for r in part if (r["A"], r["D"], r["d"]) == (128, 8, 16) and "speedup" in r]
        add("batched field vs per-agent loop", sel[0]["speedup"] if sel else None, ">=", 20.0,
            "A=128, D=8, d=16" + th)  # fmt: skip
    s = items.get("solvers") or {}
    where = f"A={s['A']}, D={s['D']}, d={s['d']}" if "A" in s else "not run"
    full = (s.get("A"), s.get("D"), s.get("d")) == (128, 32, 64) or cuda
    add("solver overhead rk4", _get(s, "rk4", "overhead") if full else None, "<=", 0.10, where)
    add(
        "solver overhead dopri5", _get(s, "dopri5", "overhead") if full else None, "<=", 0.15, where
    )
    add("batched dopri5 speed / torchode",
        _get(s, "torchode", "speedup_vs_torchode_joint") if full else None, ">=", 1.0,
        where + ", same problem (one joint sample)")  # fmt: skip
    g = items.get("gradients") or {}
    where = f"A={g['A']}, D={g['D']}, d={g['d']}, steps {g['steps']}" if "A" in g else "not run"
    add(
        "adjoint saved-memory growth, fewest to most steps",
        g.get("adjoint_mem_ratio"),
        "<=",
        1.2,
        where,
    )
    w = items.get("sweep") or {}
    where = f"{w['cells']} equal {w['scenario']} cells" if "cells" in w else "not run"
    add("Ray sweep 2 workers / 1 worker", w.get("scaling_2_over_1"), ">=", 1.7, where)
    add("fused sweep / one cell per task (cells/s)", w.get("fusion_speedup"), ">=", 1.0,
        where + ", 8 cells per ODE, 2 workers (our check, not an issue target)")  # fmt: skip
    return out


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.3e}"
    return str(v)


def print_tables(res: dict) -> None:
    """One rich table per item (flattened key figures) and the targets."""
    from rich.console import Console
    from rich.table import Table

    con = Console(width=max(100, int(os.environ.get("COLUMNS", "0") or 0)))
    con.print(f"[bold]mftt benchmarks[/] {res['date']}  {machine_line(res['machine'])}")
    items = res["items"]
    for name, r in items.items():
        rows = r.get("rows") if isinstance(r, dict) else None
        if rows:
            cols = list(dict.fromkeys(k for row in rows for k in row))
            t = Table(title=f"{name}" + _scalars_title(r))
            for c in cols:
                t.add_column(c, justify="right")
            for row in rows:
                t.add_row(*(_fmt(row.get(c, "")) for c in cols))
            con.print(t)
            r = {k: v for k, v in r.items() if isinstance(v, dict)}
            if not r:
                continue
            t = Table(title=f"{name} (more)")
            t.add_column("quantity")
            t.add_column("value", justify="right")
            for k, v in _flat(r):
                t.add_row(k, _fmt(v))
        else:
            t = Table(title=name)
            t.add_column("quantity")
            t.add_column("value", justify="right")
            for k, v in _flat(r):
                t.add_row(k, _fmt(v))
        con.print(t)
    t = Table(title="targets")
    for c in ("target", "where", "value", "bound", "met"):
        t.add_column(c)
    for x in res["targets"]:
        met = {True: "[green]yes[/]", False: "[red]NO[/]", None: "n/a"}[x["met"]]
        t.add_row(x["target"], x["where"], _fmt(x["value"]), f"{x['op']} {x['bound']}", met)
    con.print(t)


def _scalars_title(r: dict) -> str:
    sc = [f"{k}={_fmt(v)}" for k, v in r.items() if k != "rows" and not isinstance(v, dict | list)]
    return f" ({', '.join(sc)})" if sc else ""


def _flat(d, prefix=""):
    if not isinstance(d, dict):
        yield prefix or "value", d
        return
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            yield from _flat(v, key)
        else:
            yield key, v


def machine_line(m: dict) -> str:
    """One line: CPU, cores, threads, torch, load average (and GPU)."""
    load = m.get("loadavg")
    load_s = f", load {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}" if load else ""
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
    return (f"{m['cpu']}, {m['cores']} cores, {m['threads']} torch threads, torch {m['torch']}, "
            f"Python {m['python']}{gpu}{load_s}")  # fmt: skip


def markdown(res: dict) -> str:
    """A RESULTS.md section for this run: machine line, date, key figures and targets."""
    lines = [
        f"## Run {res['date']} ({'quick' if res['quick'] else 'full'}, device {res['device']})",
        "",
    ]
    lines.append(f"Machine: {machine_line(res['machine'])}; load average after the run: "
                 f"{'/'.join(f'{x:.1f}' for x in res.get('load_after') or [])}. "
                 f"Wall time of the suite: {res['seconds']:.0f} s.")  # fmt: skip
    lines += ["", "| target | where | value | bound | met |", "|---|---|---|---|---|"]
    for x in res["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[x["met"]]
        lines.append(
            f"| {x['target']} | {x['where']} | {_fmt(x['value'])} | {x['op']} {x['bound']} | {met} |"
        )
    for name, r in res["items"].items():
        lines += ["", f"### {name}", ""]
        rows = r.get("rows") if isinstance(r, dict) else None
        if rows:
            sc = _scalars_title(r)
            if sc:
                lines += [sc.strip(" ()"), ""]
            cols = list(dict.fromkeys(k for row in rows for k in row))
            lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
            lines += ["| " + " | ".join(_fmt(row.get(c, "")) for c in cols) + " |" for row in rows]
            more = {k: v for k, v in r.items() if isinstance(v, dict)}
            if more:
                lines += ["", "| quantity | value |", "|---|---|"]
                lines += [f"| {k} | {_fmt(v)} |" for k, v in _flat(more)]
        else:
            lines += ["| quantity | value |", "|---|---|"]
            lines += [f"| {k} | {_fmt(v)} |" for k, v in _flat(r)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    """Parse arguments, run the chosen items, print, write JSON (and RESULTS.md for full runs)."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--quick", action="store_true", help="tiny sizes (smoke test), no RSS subprocesses"
    )
    ap.add_argument("--only", default="", help=f"comma-separated items out of: {', '.join(ITEMS)}")
    ap.add_argument(
        "--device",
        default="cpu",
        help="cpu or cuda[:i] (CUDA: items " + ", ".join(CUDA_ITEMS) + ")",
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    ap.add_argument("--out", default=str(HERE / "results.json"), help="JSON output path")
    ap.add_argument("--record", default=None, help="append a markdown section to this file "
                    "(default: benchmarks/RESULTS.md for full runs, nothing for --quick)")  # fmt: skip
    ap.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    a = ap.parse_args(argv)
    names = [n.strip() for n in a.only.split(",") if n.strip()]
    if not names:
        names = [n for n in ITEMS if not (a.quick and n in SLOW_ITEMS)]
    for n in names:
        if n not in ITEMS:
            ap.error(f"--only: unknown item {n!r}; expected one of {', '.join(ITEMS)}")
    device = a.device
    if torch.device(device).type == "cuda":
        if not torch.cuda.is_available():
            ap.error("--device cuda: CUDA is not available on this machine")
        torch.set_float32_matmul_precision("highest")  # dense fp32, no TF32
        names = [n for n in names if n in CUDA_ITEMS]
    torch.set_num_threads(a.threads or os.cpu_count() or 1)
    res = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "quick": a.quick,
        "device": device,
        "machine": machine(device),
        "items": {},
    }
    t0 = time.perf_counter()
    for n in names:
        print(f"[bench] {n} …", file=sys.stderr, flush=True)
        t1 = time.perf_counter()
        try:
            res["items"][n] = ITEMS[n](device=device, quick=a.quick)
        except Exception as e:  # one failing item must not lose the others
            res["items"][n] = {"error": f"{type(e).__name__}: {e}"}
        print(f"[bench] {n} done in {time.perf_counter() - t1:.1f} s", file=sys.stderr, flush=True)
    res["seconds"] = time.perf_counter() - t0
    res["load_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    res["targets"] = targets(res["items"], device)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(res, indent=1, default=str) + "\n")
    print_tables(res)
    record = a.record or (None if a.quick else str(HERE / "RESULTS.md"))
    if record and not a.no_record:
        with open(record, "a") as f:
            f.write("\n" + markdown(res))
    return res


if __name__ == "__main__":
    main()
