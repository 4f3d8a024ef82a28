"""Resource bounds of an experiment: cell count and memory estimated before anything runs.

``estimate(exp)`` sizes the grid without building a game: the results Dataset (every variable of the schema in
``agents.experiments.results``, padded to the largest cell, held twice while assembling) plus the working set of the
cells running at once (Λ, and for MFTT policies the weights with their optimiser state, per agent).
``check(exp)`` refuses an experiment over its ``[budget]`` (``max_cells``, ``max_memory_mb``) with a one-line
``ValidationError`` that carries the estimate and names what dominates it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch

from control.errors import ValidationError
from control.limits import check_size, max_memory_mb

from ..scenarios import SCENARIOS

__all__ = ["Estimate", "check", "check_agents", "estimate"]

MB = 2**20
DEFAULT_STEPS = (
    300  # iterations assumed when neither the config nor the scenario says (largest default: 600)
)
DEFAULT_AGENTS = 8
TIME_POINTS = 256  # rollout grid points assumed per cell (times, trajectory rows)
STATE_DIM = 8
LAW_FACTOR = {
    "constant": 1,
    "time": 4,
    "feedback": 6,
    "meanfield": 8,
}  # weights per law vs constant


@dataclass(frozen=True)
class Estimate:
    """What an experiment will need: cells, the largest cell, and memory in MB."""

    cells: int
    agents: int
    iterations: int
    result_mb: float
    cell_mb: float
    parallel: int

    @property
    def memory_mb(self) -> float:
        """Results plus the working set of the cells that run at once."""
        return self.result_mb + self.parallel * self.cell_mb

    def __str__(self) -> str:
        return (
            f"{self.cells} cells, up to {self.agents} agents x {self.iterations} iterations: "
            f"~{self.memory_mb:.3g} MB ({self.result_mb:.3g} MB of results + {self.parallel} x "
            f"{self.cell_mb:.3g} MB per running cell)"
        )


def _ints(values: Any) -> list[int]:
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool)]


def _population_names(exp: Any) -> set[str]:
    """The config's population scenarios: their ``n`` counts agents per population, not players."""
    return {s.name for s in exp.scenarios if s.name in SCENARIOS and SCENARIOS[s.name].population}


def _population_floats(exp: Any) -> float:
    """Floats a population cell holds for the backward pass: replicas × populations × agents × stages × steps."""
    names = _population_names(exp)
    if not names:
        return 0.0

    agents_n = _ints([exp.agents.n, *exp.sweep.get("agents.n", ())])
    agents_n += [int(SCENARIOS[s].n_agents) for s in names]
    K = max(_param_max(exp, "populations"), 1.0)
    R = max(_param_max(exp, "replicas"), 1.0)
    steps = max(_param_max(exp, "n_steps"), 1.0)
    per_agent = 40.0
    if _uses_mftt(
        exp
    ):  # each agent's tokens (itself and 8 sampled agents) through the MFTT, kept for backward
        opts = _mftt_max(exp)
        d, depth = opts.get("d_model", 8), opts.get("depth", 1)
        d = d if isinstance(d, int) and d > 0 else 8
        depth = depth if isinstance(depth, int) and depth > 0 else 1
        per_agent += 2 * 9 * d * depth * 30.0  # two Heun stages per step
    return per_agent * max(agents_n) * K * R * (steps + 1)


def _largest_agents(exp: Any) -> int:
    if _population_names(exp) and _population_names(exp) == {s.name for s in exp.scenarios}:
        return int(max(_param_max(exp, "populations"), 1.0))  # the players are the populations
    ns = _ints([exp.agents.n, *exp.sweep.get("agents.n", ())])
    ns += [len(m) for m in exp.Lambda.matrices.values()]
    if not ns or exp.agents.n is None:  # some cells use the scenario default
        try:
            ns += [int(SCENARIOS[s.name].n_agents) for s in exp.scenarios if s.name in SCENARIOS]
        except ImportError:  # pragma: no cover - scenarios are part of the package
            ns.append(DEFAULT_AGENTS)
    return max(ns or [DEFAULT_AGENTS])


def _options(exp: Any, key: str) -> list:
    """Per-scenario overrides (``[scenarios.<name>] policy/steps/lr``) where the config has them."""
    return [getattr(s, "options", {}).get(key) for s in exp.scenarios]


def _largest_steps(exp: Any) -> int:
    steps = _ints(
        [exp.training.steps, *exp.sweep.get("training.steps", ()), *_options(exp, "steps")]
    )
    if not steps or exp.training.steps is None:
        try:
            steps += [
                int(SCENARIOS[s.name].default_steps) for s in exp.scenarios if s.name in SCENARIOS
            ]
        except ImportError:  # pragma: no cover
            steps.append(DEFAULT_STEPS)
    return max(steps or [DEFAULT_STEPS])


def _mftt_weights(opts: dict, laws: tuple[str, ...]) -> int:
    """Rough trainable scalars of one agent's MFTT (attention 4d², feed-forward 2·d·d_ff per expert)."""

    def num(k: str, default: int) -> int:
        v = opts.get(k, default)
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else default

    d, dff = num("d_model", 8), num("d_ff", 16)
    experts = num("experts", 4) if opts.get("ff") == "moe" else 1
    per_layer = 4 * d * d + 2 * d * dff * experts
    return per_layer * max(LAW_FACTOR.get(law, 8) for law in laws)


def _param_max(exp: Any, name: str) -> float:
    """The largest value of scenario parameter ``name`` over the scenarios that have it (their override,
    their default, and every swept ``scenarios.<s>.<name>`` value); 0 when none has it."""
    vals: list[Any] = []
    for s in exp.scenarios:
        cls = SCENARIOS.get(s.name)
        if cls is None or name not in cls.defaults:
            continue
        vals.append(s.params.get(name, cls.defaults[name]))
        vals += list(exp.sweep.get(f"scenarios.{s.name}.{name}", ()))
    nums = [abs(float(v)) for v in vals if isinstance(v, int | float) and not isinstance(v, bool)]
    return max((v for v in nums if math.isfinite(v)), default=0.0)


def _mftt_max(exp: Any) -> dict[str, Any]:
    """The MFTT options with each swept ``agents.mftt.<k>`` at its largest value."""
    opts = dict(exp.agents.mftt)
    for path, vals in exp.sweep.items():
        if path.startswith("agents.mftt."):
            k = path.split(".", 2)[2]
            nums = [v for v in vals if isinstance(v, int) and not isinstance(v, bool)]
            if nums:
                opts[k] = max(nums)
    return opts


def _uses_mftt(exp: Any) -> bool:
    return (
        "mftt" in (exp.agents.policy, *_options(exp, "policy"))
        or bool(exp.agents.mftt)
        or "mftt" in exp.sweep.get("agents.policy", ())
    )


def _scenario_floats(exp: Any, n: int, iters: int) -> float:
    """Floats a running cell holds for its scenario's sizes: Cournot markets × window tokens (and the MFTT
    activations over them), particles × time steps of the differential games (kept for backprop)."""
    opts = _mftt_max(exp)

    def num(k: str, default: int) -> int:
        v = opts.get(k, default)
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else default

    d, dff, depth, heads = num("d_model", 8), num("d_ff", 16), num("depth", 2), num("heads", 2)
    mftt = _uses_mftt(exp)
    markets, window = _param_max(exp, "markets"), _param_max(exp, "window")
    tokens = markets * window
    floats = 2 * tokens
    if mftt and tokens:  # activations of every firm's MFTT over every token, forward and backward
        floats += 3 * n * tokens * depth * (6 * d + dff + heads * window)
    particles, steps = _param_max(exp, "particles"), _param_max(exp, "n_steps")
    dim = max(_param_max(exp, "dim"), 1.0)
    if particles or steps:  # states at every stage of every step, kept for the backward pass
        width = (d * depth * 6) if mftt else 4
        floats += 3 * (steps + 1) * 4 * max(particles, 1) * (dim + n) * width
    return floats


# seconds per unit of horizon of the closed-form Riccati reference (scipy, measured ~2.1e-3 on one core)
RICCATI_S_PER_T = 3e-3
EVAL_S = 5e-5  # one vector-field evaluation of a small differential game (measured 2-5e-5)
STEP_S = 5e-4  # one learning iteration of a small static game (Cournot with MFTT firms: 0.3-1 ms)
MAX_CELL_SECONDS = 1800.0  # a cell estimated longer is refused: half an hour


def cell_seconds(exp: Any) -> tuple[float, str]:
    """Rough seconds of the slowest cell and what drives it: the closed form over the horizon ``T`` and the
    learning's ODE solves (iterations × time steps × 4 stages × forward and backward)."""
    horizon = (
        _param_max(exp, "T") if _param_max(exp, "particles") or _param_max(exp, "dim") else 0.0
    )
    iters = _largest_steps(exp) + 1
    steps = _param_max(exp, "n_steps")
    particles = max(_param_max(exp, "particles"), 1.0)
    n = _largest_agents(exp)
    learn = iters * 2 * steps * 4 * 2 * EVAL_S * (1 + particles * n / 1000) if steps else 0.0
    learn += iters * STEP_S * (1 + n / 100)  # the optimiser step and the cost of a static game
    ref = horizon * RICCATI_S_PER_T
    if ref >= learn:
        return ref + learn, f"the closed form over the horizon T = {horizon:g}"
    if not steps:
        return ref + learn, f"{iters - 1} learning iterations"
    return ref + learn, f"{iters - 1} iterations x {steps:g} time steps x {particles:g} particles"


def estimate(exp: Any, *, parallel: int | None = None) -> Estimate:
    """Size ``exp`` (an ``agents.experiments.config.Experiment``) without running it; ``parallel``: cells at once."""
    cells = math.prod(len(v) for v in exp.coords.values())
    n, iters = _largest_agents(exp), _largest_steps(exp) + 1
    # results: cost, empathetic, reference, n_params (4n), history (iters·n), Λ (n²), times+trajectory,
    # scalars; float64; the per-cell parts and the assembled grid are both held while assembling
    per_cell = 4 * n + iters * n + n * n + TIME_POINTS * (1 + STATE_DIM) + 8
    result_mb = cells * per_cell * 8 * 2 / MB
    weights = 0
    if _uses_mftt(exp):
        weights = _mftt_weights(_mftt_max(exp), tuple(exp.agents.weights))
    # a running cell: Λ and the learning history, plus weights, gradients and two Adam moments per agent,
    # plus what the scenario's own sizes (markets, window, particles, time steps) hold
    cell_mb = n * n + iters * n + 4 * n * weights + _scenario_floats(exp, n, iters)
    cell_mb = (cell_mb + _population_floats(exp)) * 8 / MB
    if parallel is None:
        cpus = float(getattr(exp.ray, "num_cpus", 1.0) or 1.0)
        parallel = 1 if exp.backend == "local" else max(1, int((os.cpu_count() or 1) / cpus))
    return Estimate(cells, n, iters, result_mb, cell_mb, max(1, min(parallel, cells)))


def _dominant(exp: Any, est: Estimate) -> str:
    dims = {k: len(v) for k, v in exp.coords.items() if len(v) > 1}
    big = max(dims, key=dims.get) if dims else "scenario"
    if est.agents**2 >= est.iterations * est.agents and est.agents > 1000:
        return f"agents.n = {est.agents} (Λ alone is {est.agents**2 * 8 / MB:.3g} MB per cell)"
    if est.iterations > 100_000:
        return f"training.steps = {est.iterations - 1}"
    sizes = {k: _param_max(exp, k) for k in ("markets", "window", "particles", "n_steps")}
    k = max(sizes, key=sizes.get)
    if sizes[k] > 10_000:
        return f"scenario parameter {k} = {sizes[k]:g}"
    d = _mftt_max(exp)
    big_opt = max(
        (o for o in ("d_model", "d_ff", "depth") if isinstance(d.get(o), int)),
        key=lambda o: d[o],
        default=None,
    )
    if big_opt and d[big_opt] > 1000:
        return f"agents.mftt.{big_opt} = {d[big_opt]}"
    return (
        f"the grid ({' x '.join(f'{k}={v}' for k, v in dims.items()) or '1 cell'}; largest: {big})"
    )


def check(
    exp: Any, *, max_cells: int | None = None, max_memory_mb: float | None = None
) -> Estimate:
    """Refuse ``exp`` when its cells or estimated memory exceed the budget; returns the estimate.

    The limits default to ``exp.budget`` (``[budget]`` in the TOML), falling back to 20,000 cells and
    ``control.limits.max_memory_mb()``.
    """
    budget = getattr(exp, "budget", None)
    max_cells = max_cells if max_cells is not None else getattr(budget, "max_cells", 20_000)
    limit = max_memory_mb if max_memory_mb is not None else getattr(budget, "max_memory_mb", None)
    limit = float(limit) if limit is not None else _default_memory()
    est = estimate(exp)
    if est.cells > max_cells:
        raise ValidationError(
            "budget.max_cells",
            f"at most {max_cells} cells",
            est.cells,
            reason=f"{_dominant(exp, est)}; raise budget.max_cells or shrink the grid",
        )
    if est.memory_mb > limit:
        raise ValidationError(
            "budget.max_memory_mb",
            f"an estimate <= {limit:g} MB",
            f"~{est.memory_mb:.3g} MB",
            reason=f"{est}; driven by {_dominant(exp, est)}; raise budget.max_memory_mb",
        )
    secs, why = cell_seconds(exp)
    if secs > MAX_CELL_SECONDS:
        raise ValidationError(
            "budget",
            f"cells of at most {MAX_CELL_SECONDS:g} s",
            f"~{secs:.3g} s per cell",
            reason=f"driven by {why}; shorten it",
        )
    return est


def _default_memory() -> float:
    return max_memory_mb()


def check_agents(n: Any, field: str = "n_agents", *, budget_mb: float | None = None) -> int:
    """Refuse an agent count whose n×n Λ (and n×n per-agent tables) cannot fit the memory budget."""
    check_size(field, (n, n), copies=4, budget_mb=budget_mb)
    return int(n)


def check_resources(exp: Any, *, backend: str, address: str | None = None) -> None:
    """Refuse Ray resources this machine cannot give (an embedded Ray would wait forever): one line each.

    ``num_cpus`` above this machine's CPUs, ``num_gpus`` without (enough) GPUs. Only for the embedded Ray;
    a cluster's resources are checked by the runner once it has joined.
    """
    if backend == "local" or address not in (None, "", "local"):
        return
    cpus = os.cpu_count() or 1
    need = float(exp.ray.num_cpus)
    if need <= 0:
        raise ValidationError("ray.num_cpus", "a number > 0 (CPUs per task)", need)
    if need > cpus:
        raise ValidationError(
            "ray.num_cpus",
            f"at most {cpus} (the CPUs of this machine)",
            need,
            reason="a task asking for more would wait forever",
        )
    gpus = float(exp.ray.num_gpus)
    if gpus > 0:
        try:
            have = torch.cuda.device_count() if torch.cuda.is_available() else 0
        except ImportError:  # pragma: no cover - torch is a dependency
            have = 0
        if gpus > have:
            raise ValidationError(
                "ray.num_gpus",
                f"at most {have} (the GPUs of this machine)",
                gpus,
                reason="a task asking for more would wait forever",
            )
