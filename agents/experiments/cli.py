"""The ``mftt`` command: run configs, compare weight laws, sweep, list scenarios, show and report results.

Config errors print one line (field path, expected, got) and exit with code 2, never a traceback.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import itertools
import os
import subprocess
import sys
import typing
import warnings
from collections.abc import Callable
from html import escape as html_escape
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from control.errors import ValidationError, choice, number

from ..population import rollout_parts
from ..scenarios import SCENARIOS
from ..status import FAILED, PLAYED, STATUSES
from . import jobs
from .config import Experiment, parse_value
from .outputs import check_output
from .results import atomic_write_bytes, open_results, plain_text, summary_table
from .runner import run_experiment

app = typer.Typer(
    name="mftt",
    help="Mean-field-type transformers playing empathetic games: run experiments, compare weight laws, "
    "open results.\n\nExample: mftt compare examples/configs/demo.toml",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

REPO = Path(__file__).resolve().parents[2]
_SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override a dotted field, e.g. --set training.steps=5 (repeatable)."
    ),
]


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {plain_text(msg, 2000)}", err=True)  # no terminal escapes from configs
    raise typer.Exit(code)


def _safe(value: Any) -> str:
    """A string from a config or results file, printable and escaped for Rich markup."""
    return escape(plain_text(value))


def guarded(fn: Callable) -> Callable:
    """Turn validation errors into one line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ValidationError as e:
            _fail(str(e), 2)
        except KeyboardInterrupt:
            _fail("interrupted (finished cells are kept: rerun with --resume)", 130)

    return wrapper


def _console():
    return Console(width=max(132, int(os.environ.get("COLUMNS", "0") or 0)))


def _load(config: str, sets: list[str] | None, *, sweep: bool = False):
    with warnings.catch_warnings(record=True) as caught:  # one line each, not a warnings traceback
        warnings.simplefilter("always")
        # a file whatever its name (TOML text with newlines is accepted too, for scripts)
        exp = Experiment.from_toml(Path(config) if "\n" not in config else config)
    for w in caught:
        typer.echo(f"warning: {w.message}", err=True)
    values: dict[str, Any] = {}
    grid: dict[str, list] = {}
    for s in sets or []:
        if "=" not in s:
            raise ValidationError("--set", "FIELD=VALUE (e.g. agents.n=2,4,8)", s)
        k, v = s.split("=", 1)
        k = k.strip()
        if sweep:
            grid[k] = [parse_value(x.strip()) for x in v.split(",") if x.strip()]
        else:
            values[k] = parse_value(v.strip())
    if values:
        exp = exp.with_values(values)
    if grid:
        exp = exp.with_values({"sweep": {**{k: list(v) for k, v in exp.sweep.items()}, **grid}})
    return exp


def _out_for(exp, out: str | None) -> Path:
    return Path(out) if out else Path(exp.output or f"results/{exp.name}.nc")


def _exit_if_failed(ds) -> None:
    """Exit 1 when any cell's status is in ``agents.status.FAILED`` (the summary was printed): scripts notice."""
    n = int(np.isin(np.asarray(ds["status"].values, dtype=str), FAILED).sum())
    if n:
        typer.echo(f"{n} cell(s) {'/'.join(FAILED)}: exit 1", err=True)
        raise typer.Exit(1)


def _figures(
    out: Path, png: str | None, html: str | None, figures: str | None
) -> tuple[Path, Path]:
    """The figure paths of ``out`` (default: beside it): ``.png``/``.html`` names, never the NetCDF itself."""
    if figures is not None:
        d = Path(figures)
        if d.exists() and not d.is_dir() or d.is_symlink():
            raise ValidationError("--figures", "a directory", figures)
        base = d / out.stem
    else:
        base = out.with_suffix("")
    p = check_output(png or f"{base}.png", field="--png", suffixes=(".png",))
    h = check_output(html or f"{base}.html", field="--html", suffixes=(".html", ".htm"))
    return p, h


_Config = Annotated[str, typer.Argument(help="Experiment TOML file.")]
_Out = Annotated[
    str | None,
    typer.Option(help="Output NetCDF (default: the config's output or results/<name>.nc)."),
]
_Address = Annotated[
    str | None, typer.Option(help="Ray cluster: 'auto' or host:port (default: embedded local Ray).")
]
_Resume = Annotated[
    bool, typer.Option("--resume/--no-resume", help="Reuse finished cells of a killed run.")
]
_Backend = Annotated[
    str | None, typer.Option(help="ray | local | actors (default: the config's backend).")
]
_Keep = Annotated[
    bool, typer.Option("--keep-parts", help="Keep the per-cell partial files after writing.")
]
_Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
_Wait = Annotated[
    bool, typer.Option("--wait", help="Wait for another run writing the same output to finish.")
]
_Png = Annotated[str | None, typer.Option("--png", help="PNG figure (default: beside the NetCDF).")]
_Html = Annotated[
    str | None, typer.Option("--html", help="HTML figure (default: beside the NetCDF).")
]
_FigDir = Annotated[
    str | None, typer.Option("--figures", help="Folder for both figures (<name>.png, <name>.html).")
]


@dataclasses.dataclass(frozen=True)
class _Grid:
    """The options of the commands that run a grid of cells (run, compare, sweep): where and how it runs."""

    out: _Out = None
    address: _Address = None
    resume: _Resume = True
    backend: _Backend = None
    keep_parts: _Keep = False
    quiet: _Quiet = False
    wait: _Wait = False

    def run(self, exp, path: Path):
        """Run ``exp`` into the NetCDF ``path`` (a progress bar unless quiet)."""
        return run_experiment(
            exp,
            address=self.address,
            backend=self.backend,
            progress=not self.quiet,
            resume=self.resume,
            out=path,
            keep_parts=self.keep_parts,
            wait=self.wait,
        )

    def run_and_print(self, exp) -> None:
        """Run ``exp`` into its output, print the summary table and exit 1 when a cell failed or diverged."""
        path = _out_for(exp, self.out)
        ds = self.run(exp, path)
        _print_table(ds)
        typer.echo(f"wrote {path}")
        _exit_if_failed(ds)


def grid_options(fn: Callable) -> Callable:
    """Give a command the options of ``_Grid`` in place of its parameter ``grid`` (which receives them).

    Typer reads a command's options from its signature: the wrapper's signature lists ``_Grid``'s fields
    instead of ``grid``, so the three commands declare these options once.
    """
    sig = inspect.signature(fn, eval_str=True)
    hints = typing.get_type_hints(_Grid, include_extras=True)
    params = []
    for p in sig.parameters.values():
        if p.name != "grid":
            params.append(p)
            continue
        for f in dataclasses.fields(_Grid):
            params.append(p.replace(name=f.name, annotation=hints[f.name], default=f.default))
    names = [f.name for f in dataclasses.fields(_Grid)]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        grid = _Grid(**{k: kwargs.pop(k) for k in names if k in kwargs})
        return fn(*args, grid=grid, **kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return wrapper


@app.command()
@guarded
@grid_options
def run(config: _Config, grid: _Grid = _Grid(), set_: _SetOpt = None) -> None:
    """Run an experiment config and write its results NetCDF (exit 1 when a cell failed or diverged).

    Example: mftt run examples/configs/cournot.toml --out results/cournot.nc --set training.steps=50
    """
    grid.run_and_print(_load(config, set_))


@app.command()
@guarded
@grid_options
def compare(
    config: Annotated[
        str | None, typer.Argument(help="Experiment TOML file (may be omitted with --suite).")
    ] = None,
    suite: Annotated[
        str | None,
        typer.Option(
            "--suite",
            help="Run the comparison suite with known answers (quick or full): per-law t-intervals, "
            "paired tests against constant, one conclusion per law.",
        ),
    ] = None,
    json_out: Annotated[
        str | None, typer.Option("--json", help="With --suite: write its statistics as JSON here.")
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option("--seeds", help="With --suite: common seeds per task (quick 6, full 10)."),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", help="With --suite: tasks run at once, one process each.")
    ] = 1,
    readme: Annotated[
        str | None,
        typer.Option(
            "--readme", help="With --suite: rewrite the suite's block of this file (README.md)."
        ),
    ] = None,
    grid: _Grid = _Grid(),
    set_: _SetOpt = None,
    png: _Png = None,
    html: _Html = None,
    figures: _FigDir = None,
) -> None:
    """Constant vs feedback (vs meanfield) weights across scenarios: table, NetCDF, PNG and HTML.

    --out names the NetCDF only (a .nc file); the figures go to --png/--html or --figures DIR.
    --suite quick|full first runs the tasks with known answers (agents.experiments.comparison) and prints their
    conclusions, writing results/compare_<suite>.{png,html} (or into --figures DIR) and --json PATH.
    Example: mftt compare examples/configs/demo.toml --figures results/figs
    Example: mftt compare --suite quick --json results/compare_quick.json
    """
    if config is None and suite is None:
        raise ValidationError("compare", "a config file or --suite quick|full", "neither")
    failed_expectations = 0
    if suite is not None:
        failed_expectations = _compare_suite(
            suite, json_out, seeds, workers, figures, grid.quiet, readme
        )
        if config is None:
            if failed_expectations:
                raise typer.Exit(1)
            return
    exp = _load(config, set_)
    path = check_output(_out_for(exp, grid.out))
    png_path, html_path = _figures(path, png, html, figures)  # checked before any cell runs
    ds = grid.run(exp, path)
    _print_table(ds)
    for line in grid_conclusions(ds):
        typer.echo(line)
    png_path, html_path = _report(ds, png_path, html_path)
    typer.echo(f"wrote {path}, {png_path}, {html_path}")
    _exit_if_failed(ds)
    if failed_expectations:
        raise typer.Exit(1)


def grid_conclusions(ds) -> list[str]:
    """One block per grid cell but law and seed: the protocol's conclusion lines against constant."""
    from .comparison import from_cells  # heavy (scipy.stats): only for comparisons

    dims = [d for d in ds["status"].dims if d not in ("law", "seed")]
    if "law" not in ds["status"].dims:
        return []
    from mftt.stats import MIN_SEEDS_FOR_TEST  # heavy (scipy.stats): only for comparisons

    lines = ["conclusions (certified exploitability / cost scale, paired over seeds vs constant):"]
    seeds = ds.sizes.get("seed", 1)
    if seeds < MIN_SEEDS_FOR_TEST:
        return [
            f"conclusions: none from this grid: {seeds} seed(s) per cell, a paired test needs at least "
            f"{MIN_SEEDS_FOR_TEST} (set seeds and training.init_noise; `mftt compare --suite quick` holds "
            "the statistics)"
        ]
    for idx in itertools.product(*(range(ds.sizes[d]) for d in dims)):
        cell = ds.isel(dict(zip(dims, idx, strict=True)))
        label = " ".join(f"{d}={plain_text(cell[d].values.item())}" for d in dims) or "all"
        r = from_cells(cell, label)
        if isinstance(r, str):
            lines.append(f"  {label}: {r}")
            continue
        for line in r.conclusions():
            lines.append(f"  {label}: {line}")
    return lines


def _compare_suite(suite, json_out, seeds, workers, figures, quiet, readme=None) -> int:
    """Run and print the comparison suite; returns how many known answers were contradicted."""
    from .comparison import (  # heavy (scipy.stats): only for comparisons
        SUITES,
        plot_suite,
        readme_markers,
        report_lines,
        run_suite,
        update_readme,
        write_json,
    )

    choice("suite", suite, SUITES)
    if seeds is not None:
        seeds = int(number("seeds", seeds, low=1, high=1000, integer=True))
    workers = int(number("workers", workers, low=1, high=64, integer=True))
    start, end = readme_markers(suite)
    if readme and not (Path(readme).is_file() and start in Path(readme).read_text()):
        raise ValidationError("--readme", f"a file holding {start} … {end}", readme)
    fig_dir = Path(figures) if figures else Path("results")
    say = None if quiet else (lambda m: typer.echo(m, err=True))
    results = run_suite(
        suite, seeds=None if seeds is None else range(seeds), workers=workers, progress=say
    )
    bad = 0
    for r in results:
        for line in report_lines(r):
            typer.echo(line)
        bad += sum(r.as_expected(c) is False for c in r.comparisons)
    png, html = plot_suite(results, suite, fig_dir / f"compare_{suite}.png")
    wrote = [str(png), str(html)]
    if json_out:
        write_json(results, suite, json_out)
        wrote.append(json_out)
    if readme:
        update_readme(readme, results, suite)
        wrote.append(readme)
    typer.echo(f"wrote {', '.join(wrote)}")
    if bad:
        typer.echo(f"error: {bad} known answer(s) not reproduced (see [NOT as expected])", err=True)
    return bad


@app.command()
@guarded
@grid_options
def sweep(
    config: _Config,
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Sweep a dotted field over comma-separated values (repeatable)."
        ),
    ] = None,
    grid: _Grid = _Grid(),
) -> None:
    """Run a config over a grid of extra values (added to its [sweep]).

    Example: mftt sweep examples/configs/cournot.toml --set agents.n=2,4,8
    """
    grid.run_and_print(_load(config, set_, sweep=True))


@app.command()
@guarded
def scenarios() -> None:
    """List the built-in scenarios with their defaults and what Λ means in each.

    Example: mftt scenarios
    """
    t = Table(title="scenarios", show_lines=True)
    for col in ("name", "agents", "concept", "description", "Λ meaning"):
        t.add_column(col, overflow="fold")
    for name in sorted(SCENARIOS):
        s = SCENARIOS[name]
        meaning = "; ".join(f"{k}: {v}" for k, v in dict(s.lambda_meaning).items())
        t.add_row(name, str(s.n_agents), s.default_concept, s.description, meaning)
    _console().print(t)


@app.command()
@guarded
def show(results: Annotated[str, typer.Argument(help="Results NetCDF file.")]) -> None:
    """Print a results file: its manifest header and the per-cell table (means over seeds).

    Example: mftt show results/demo.nc
    """
    ds = open_results(results)
    a = ds.attrs
    typer.echo(
        plain_text(
            f"{a.get('name', '?')}: created {a.get('created', '?')}, commit {a.get('git_commit') or '-'}, "
            f"device {a.get('device', '?')}, seeds {_list(a.get('seeds', []))}",
            1000,
        )
    )
    _print_table(ds)


@app.command()
@guarded
def report(
    results: Annotated[str, typer.Argument(help="Results NetCDF file.")],
    png: _Png = None,
    html: _Html = None,
    figures: _FigDir = None,
    out_dir: Annotated[
        str | None, typer.Option(help="Same as --figures (kept for old scripts).", hidden=True)
    ] = None,
) -> None:
    """Write the PNG (matplotlib) and HTML (plotly) figures of a results file (never the file itself).

    Example: mftt report results/demo.nc --figures results/figs
    """
    src = Path(results)
    png_path, html_path = _figures(src, png, html, figures if figures is not None else out_dir)
    ds = open_results(results)
    png_path, html_path = _report(ds, png_path, html_path)
    typer.echo(f"wrote {png_path}, {html_path}")


@app.command("app")
@guarded
def app_(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8501,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the command instead of running it.")
    ] = False,
) -> None:
    """Launch the web app (Streamlit) on http://127.0.0.1:PORT.

    Example: mftt app --port 8501
    """
    cmd = [
        # app/serve.py: `streamlit run` with the heavy imports warmed while the server starts
        sys.executable, str(REPO / "app" / "serve.py"), str(REPO / "app" / "streamlit_app.py"),
        "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
        "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
    ]  # fmt: skip
    if dry_run:
        typer.echo(" ".join(cmd))
        return
    raise typer.Exit(subprocess.call(cmd))


# ---- Ray Jobs (agents.experiments.jobs) -----------------------------------------------------------------------
_JobAddress = Annotated[
    str,
    typer.Option(
        "--address",
        envvar="MFTT_JOB_ADDRESS",
        help="Ray job server (the head's dashboard), e.g. http://head:8265.",
    ),
]
_Job = Annotated[str, typer.Argument(help="Job id printed by `mftt submit`.")]
_JOB_DEFAULT = "http://127.0.0.1:8265"


@app.command()
@guarded
def submit(
    config: _Config,
    address: _JobAddress = _JOB_DEFAULT,
    out: Annotated[
        str | None,
        typer.Option(help="NetCDF on the cluster: relative to the job's folder, or a shared path."),
    ] = None,
    set_: _SetOpt = None,
) -> None:
    """Submit a config as a Ray job (config and code travel with it); prints the job id.

    Example: mftt submit examples/configs/demo.toml --address http://head:8265
    """
    exp = _load(config, set_)
    job = jobs.submit(exp, address, out=out)
    typer.echo(job)


@app.command()
@guarded
def status(job: _Job, address: _JobAddress = _JOB_DEFAULT) -> None:
    """Print a job's state (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED) and message.

    Example: mftt status mftt-demo-1a2b3c4d
    """
    info = jobs.status(job, address)
    msg = plain_text(info["message"], 300)
    typer.echo(f"{job}: {info['status']}" + (f" ({msg})" if msg else ""))


@app.command()
@guarded
def logs(job: _Job, address: _JobAddress = _JOB_DEFAULT) -> None:
    """Print a job's driver log (the results it carries folded into one line).

    Example: mftt logs mftt-demo-1a2b3c4d
    """
    typer.echo(jobs.logs(job, address))


@app.command()
@guarded
def stop(job: _Job, address: _JobAddress = _JOB_DEFAULT) -> None:
    """Stop a running job (finished cells stay in its partial files on the cluster).

    Example: mftt stop mftt-demo-1a2b3c4d
    """
    stopped = jobs.stop(job, address)
    typer.echo(f"{job}: {'stop requested' if stopped else 'not running'}")


@app.command()
@guarded
def fetch(
    job: _Job,
    address: _JobAddress = _JOB_DEFAULT,
    out: Annotated[
        str | None, typer.Option(help="Local NetCDF (default: results/<name>.nc).")
    ] = None,
) -> None:
    """Write a finished job's results NetCDF here (checked against its sha256).

    Example: mftt fetch mftt-demo-1a2b3c4d --out results/demo.nc
    """
    typer.echo(f"wrote {jobs.fetch(job, address, out)}")


# ---- tables and figures ----------------------------------------------------------------------
def _list(v: Any) -> list:
    if hasattr(v, "tolist"):
        v = v.tolist()
    return v if isinstance(v, list) else [v]


def _fmt(x: float, pct: bool = False) -> str:
    if x != x:
        return "-"
    return f"{100 * x:+.2f}%" if pct else f"{x:.4g}"


def _print_table(ds) -> None:
    rows = summary_table(ds)
    grid = [d for d in ds["status"].dims if d != "seed"]
    t = Table(
        title=f"{_safe(ds.attrs.get('name', 'results'))} (means over {ds.sizes['seed']} seeds)"
    )
    for d in grid:
        t.add_column(_safe(d))
    for col in ("params", "cost", "per agent", "NashConv", "method", "gap", "gap (grid)", "status"):
        t.add_column(col, justify="right", no_wrap=col != "method")
    short = {
        "ok": "ok",
        "not_converged": "nc",
        "not_equilibrium": "ne",
        "diverged": "div",
        "unbounded": "unb",
        "failed": "fail",
        "missing": "miss",
    }
    for r in rows:
        ac = r["agent_costs"]
        st = r.get("statuses", {})
        t.add_row(
            *[_safe(r[d]) for d in grid],
            _fmt(r["n_params"]) if r["n_params"] == r["n_params"] else "-",
            _fmt(r["cost"]),
            " / ".join(f"{c:.3g}" for c in ac) if 0 < len(ac) <= 4 else ("-" if not ac else "…"),
            _fmt(r["exploitability"]),
            _method(r.get("method", "")),
            _fmt(r["gap"], pct=True),
            _fmt(r.get("gap_grid", float("nan")), pct=True),
            " ".join(f"{v} {short.get(k, _safe(k))}" for k, v in st.items()),
        )
    _console().print(t)
    counts = {k: int((ds["status"] == k).sum()) for k in STATUSES}
    typer.echo(
        "status: "
        + ", ".join(f"{v} {k}" for k, v in counts.items() if v)
        + "  (ok = converged and NashConv within tolerance; see README, What the numbers mean)",
        err=True,
    )
    bad = ds["status"] != "ok"
    if bool(bad.any()):
        msgs = ds["message"].where(bad).values.ravel()
        first = next((m for m in msgs if isinstance(m, str) and m), "")
        typer.echo(f"{int(bad.sum())} cell(s) not ok; first message: {plain_text(first)}", err=True)


def _method(label: str) -> str:
    """A cell's exploitability method in the table: ``exact`` (the true NashConv) or ``bound`` (certified
    lower bound from numerical best responses); the full labels are in the results file."""
    kinds = {m.split(":")[0] for m in str(label).split(",") if m}
    return "bound" if "numerical" in kinds else ("exact" if kinds else "-")


def _panels(ds):
    """Per scenario: Λ labels, laws, mean cost [Λ, law] and its seed spread, reference [Λ], exploitability.

    Swept fields are shown at their first value. The cost is the total material cost Σ_i L_i, except in zero-sum scenarios (totals all ~0), where the
    first agent's cost is shown instead (``ylabel`` says which).
    """
    other = [d for d in ds["status"].dims if d not in ("scenario", "Lambda", "law", "seed")]
    ok = ds["status"].isin(list(PLAYED))  # cells whose numbers are a played profile's
    certified = ds["status"] == "ok"
    out = []
    for s in ds["scenario"].values:
        d = ds.sel(scenario=s)
        if other:  # extra swept fields: the overview shows their first value (the title says which)
            d = d.isel({o: 0 for o in other})
        okd = ok.sel(scenario=s).isel({o: 0 for o in other}) if other else ok.sel(scenario=s)
        total = d["cost"].sum("agent", min_count=1).where(okd)
        ref = d["reference_cost"].sum("agent", min_count=1)
        label = "total material cost Σᵢ Lᵢ"
        if np.nanmax(np.abs(total.values), initial=0.0) < 1e-9 and np.isfinite(total.values).any():
            names = [n for n in d["agent_name"].values.ravel() if n]
            total = d["cost"].isel(agent=0).where(okd)
            ref = d["reference_cost"].isel(agent=0)
            label = f"cost of {names[0] if names else 'agent 0'} (zero-sum)"
        r = ref.transpose("Lambda", "law", "seed").values.reshape(d.sizes["Lambda"], -1)
        out.append(
            {
                "scenario": str(s)
                + (f" ({', '.join(f'{o}={d[o].item()}' for o in other)})" if other else ""),
                "Lambda": [str(x) for x in ds["Lambda"].values],
                "law": [str(x) for x in ds["law"].values],
                "cost": total.mean("seed").transpose("Lambda", "law").values,
                "spread": total.std("seed").transpose("Lambda", "law").values,
                "ref": np.array(
                    [np.nanmean(row) if np.isfinite(row).any() else np.nan for row in r]
                ),
                "expl": d["exploitability"]
                .where(okd)
                .mean("seed")
                .transpose("Lambda", "law")
                .values,
                "n_ok": (
                    certified.sel(scenario=s).isel({o: 0 for o in other})
                    if other
                    else certified.sel(scenario=s)
                )
                .sum("seed")
                .transpose("Lambda", "law")
                .values,
                "n_seeds": d.sizes["seed"],
                "ylabel": label,
                "bands": _bands(d, okd)
                if getattr(SCENARIOS.get(str(s)), "population", False)
                else None,
            }
        )
    return out


def _bands(d, okd) -> dict | None:
    """A population scenario's distribution of states over time in its first played cell: per population the
    mean, 5/50/95 % quantiles and the sampled agents' paths (``PopulationGame.rollout``); None if none played."""
    cells = okd.stack(cell=("Lambda", "law", "seed"))
    played = [i for i, v in enumerate(cells.values) if v]
    if not played:
        return None
    one = d.stack(cell=("Lambda", "law", "seed")).isel(cell=played[0])
    times = np.asarray(one["times"].values, float)
    names = [str(x) for x in one["agent_name"].values if str(x)]
    keep = np.isfinite(times)
    parts = rollout_parts(np.asarray(one["trajectory"].values, float)[keep], len(names))
    if parts is None:
        return None  # e.g. routing's flows: no per-agent states
    lam, law, seed = (str(one[c].item()) for c in ("Lambda", "law", "seed"))
    return {
        "times": times[keep],
        "stats": parts[0],
        "paths": parts[1],
        "names": names,
        "cell": f"Λ {lam}, {law}, seed {seed}",
    }


def _texts(panels: list[dict], f: Callable[[str], str]) -> list[dict]:
    """Panels with their labels (from the results file) passed through ``f`` (made safe for one renderer)."""
    return [
        {
            **p,
            "scenario": f(p["scenario"]),
            "Lambda": [f(x) for x in p["Lambda"]],
            "law": [f(x) for x in p["law"]],
        }
        for p in panels
    ]


def _mpl_text(s: str) -> str:
    """Printable, and no mathtext (a stray ``$`` in a label would make matplotlib raise)."""
    return plain_text(s, 80).replace("$", r"\$")


def _html_text(s: str) -> str:
    """Printable and HTML-escaped (plotly renders label text as HTML)."""
    return html_escape(plain_text(s, 80))


_COLORS = {"constant": "#4C72B0", "time": "#8172B2", "feedback": "#DD8452", "meanfield": "#55A868"}


def _report(ds, png: Path, html: Path) -> tuple[Path, Path]:
    import matplotlib  # heavy: only for reports

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    all_panels = _panels(ds)
    panels = _texts(all_panels, _mpl_text)
    name = _mpl_text(ds.attrs.get("name", "results"))
    n = len(panels)
    rows = (
        3 if any(p["bands"] is not None for p in panels) else 2
    )  # populations: their distributions
    fig, axes = plt.subplots(
        rows, n, figsize=(max(4.2 * n, 6), 3.6 * rows), squeeze=False, constrained_layout=True
    )
    if rows == 3:
        for k, p in enumerate(panels):
            _draw_bands(axes[2, k], p["bands"])
    for k, p in enumerate(panels):
        ax, bx = axes[0, k], axes[1, k]
        nl, nw = len(p["Lambda"]), len(p["law"])
        x = np.arange(nl)
        w = 0.8 / nw
        for j, law in enumerate(p["law"]):
            c = _COLORS.get(law, None)
            off = x - 0.4 + w * (j + 0.5)
            ax.bar(
                off,
                p["cost"][:, j],
                w,
                yerr=np.nan_to_num(p["spread"][:, j]),
                color=c,
                label=law,
                capsize=2,
                edgecolor="white",
                linewidth=0.5,
            )
            bx.bar(
                off,
                np.maximum(p["expl"][:, j], 1e-12),
                w,
                color=c,
                label=law,
                edgecolor="white",
                linewidth=0.5,
            )
            for xi, v, nok in zip(off, p["cost"][:, j], p["n_ok"][:, j], strict=True):
                if np.isfinite(v):  # how many seeds are certified equilibria (status ok)
                    ax.text(
                        xi,
                        v,
                        f"ok {int(nok)}/{p['n_seeds']}",
                        ha="center",
                        va="bottom",
                        fontsize=7,
                        color="#333333" if nok == p["n_seeds"] else "#C44E52",
                    )
                if not np.isfinite(v):  # no played seed: say so instead of leaving a silent gap
                    style = dict(rotation=90, ha="center", va="bottom", fontsize=9, color="#C44E52")
                    ax.text(xi, 0, "failed", **style)
                    bx.text(xi, 1e-12, "failed", **style)
        if np.isfinite(p["ref"]).any():
            ax.hlines(
                p["ref"], x - 0.42, x + 0.42, colors="black", linewidth=2, label="closed form"
            )
        ax.set_title(p["scenario"], fontsize=13, fontweight="bold")
        for a in (ax, bx):
            a.set_xticks(x, p["Lambda"], fontsize=10)
            a.grid(axis="y", alpha=0.3)
            a.set_axisbelow(True)
        if (p["expl"] > 0).any():  # a log axis needs one positive value (all failed: none)
            bx.set_yscale("log")
        bx.set_xlabel("Λ preset", fontsize=10)
        ax.set_ylabel(f"{p['ylabel']}\n(mean ± sd over seeds; ok = certified seeds)", fontsize=10)
        if k == 0:
            bx.set_ylabel("certified NashConv (log;\n0 drawn at 1e-12)", fontsize=10)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    for k in range(1, n):  # gather "closed form" from any panel
        for h, lab in zip(*axes[0, k].get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(
        handles, labels, loc="outside lower center", ncol=len(labels), fontsize=11, frameon=False
    )
    fig.suptitle(
        f"{name}: weight laws across scenarios and empathy Λ",
        fontsize=14,
    )
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(f".{png.name}.tmp.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.chmod(tmp, 0o644)
    os.replace(tmp, png)
    atomic_write_bytes(html, _html(ds, _texts(all_panels, _html_text)).encode())
    return png, html


def _draw_bands(ax, b: dict | None) -> None:
    """Quantile bands (5–95 %), median, mean and sampled agents' paths per population over time."""
    if b is None:
        ax.axis("off")
        note = "no distribution of agents' states\n(not a population game)"
        ax.text(
            0.5,
            0.5,
            note,
            ha="center",
            va="center",
            fontsize=9,
            color="#666",
            transform=ax.transAxes,
        )
        return
    t = b["times"]
    for k, name in enumerate(b["names"]):
        c = f"C{k}"
        mean, q5, q50, q95 = (b["stats"][:, k, i] for i in range(4))
        ax.fill_between(
            t, q5, q95, color=c, alpha=0.2, linewidth=0, label=f"{_mpl_text(name)}: 5–95 %"
        )
        ax.plot(t, q50, color=c, linewidth=1.6, label=f"{_mpl_text(name)}: median")
        ax.plot(t, mean, color=c, linewidth=1.2, linestyle=":", label=f"{_mpl_text(name)}: mean")
        for i in range(b["paths"].shape[2]):
            ax.plot(t, b["paths"][:, k, i], color=c, linewidth=0.5, alpha=0.45)
    ax.set_xlabel("time t", fontsize=10)
    ax.set_ylabel("agents' state x\n(quantiles, sampled paths)", fontsize=10)
    ax.set_title(f"distribution of states ({_mpl_text(b['cell'])})", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False)


def _html(ds, panels) -> str:
    from plotly.subplots import make_subplots  # heavy: only for reports

    n = len(panels)
    fig = make_subplots(
        rows=2,
        cols=n,
        subplot_titles=[p["scenario"] for p in panels] + [""] * n,
        vertical_spacing=0.12,
    )
    shown = set()
    for k, p in enumerate(panels, start=1):
        for j, law in enumerate(p["law"]):
            c = _COLORS.get(law)
            first = law not in shown
            shown.add(law)
            bar = functools.partial(
                fig.add_bar, x=p["Lambda"], name=law, marker_color=c, legendgroup=law, col=k
            )
            spread = {"type": "data", "array": np.nan_to_num(p["spread"][:, j])}
            bar(y=p["cost"][:, j], showlegend=first, error_y=spread, row=1)
            bar(y=p["expl"][:, j], showlegend=False, row=2)
        if np.isfinite(p["ref"]).any():
            fig.add_scatter(
                x=p["Lambda"],
                y=p["ref"],
                mode="markers",
                name="closed form",
                marker={
                    "symbol": "line-ew-open",
                    "size": 30,
                    "color": "black",
                    "line": {"width": 3},
                },
                legendgroup="ref",
                showlegend="ref" not in shown,
                row=1,
                col=k,
            )
            shown.add("ref")
        fig.update_yaxes(type="log", row=2, col=k)
    fig.update_yaxes(title_text="total material cost", row=1, col=1)
    fig.update_yaxes(title_text="exploitability (log)", row=2, col=1)
    fig.update_layout(
        barmode="group",
        title=f"{_html_text(ds.attrs.get('name', 'results'))}: weight laws × Λ",
        height=720,
        width=max(360 * n, 700),
        template="plotly_white",
    )
    return fig.to_html(include_plotlyjs=True, full_html=True)


def main() -> None:  # pragma: no cover - console entry alias
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
