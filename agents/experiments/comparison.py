"""The weight-law comparison protocol (docs/theory.md#comparison): tasks with known answers, common seeds, the
metric of the concept, statistics.

A ``Task`` says what is compared and how it is judged: its concept (``control`` → gap to the optimum, ``nash`` →
certified exploitability and gap to the reference equilibrium, ``forecast`` → held-out error), the laws, the
budget rule (stated in the output), and the *expected* sign of each law's difference with ``constant`` (the
known answer). ``run_task`` plays every law on the same seeds, each seed fixing initialisation, data and noise
for all laws alike (common random numbers), and ``TaskResult`` holds per-law means with t-intervals, the paired
tests against ``constant`` (``mftt.stats``) and one conclusion line per law. A law whose metric is the same on
every seed is reported as deterministic. Nothing here ranks laws whose difference is not significant.

The suite (``SUITES``; ``mftt compare --suite quick|full``):

* ``lq_control``: LQ mean-field-type control of several populations (docs/theory.md#lq-control). The optimum
  u* = −K(t)(x − Ex) − K̄(t)Ex needs the mean field: ``meanfield`` reaches it, ``constant`` cannot (even the
  best constant gains (K, K̄), computed exactly, stay above it); ``untied`` (one gain per step) has an exact
  floor too.
* ``lq_noise`` (full suite; its quick size is the tests'): LQ control under additive noise with the law's
  output as the control: open-loop laws (``constant``, ``time``, ``untied``) cannot react to the noise and
  pay at least the exact gap of docs/theory.md#open-loop-gap, which ``feedback`` and ``meanfield`` avoid.
* ``lq_game``: the two-player LQ game with q_T = 0, whose Nash gains k(t), l(t) fall to 0 at T: open-loop
  ``time`` gains reach the equilibrium (certified), constant gains cannot (a best response gains a few %).
* ``forecast`` (full suite only): held-out one-step forecasting error of an MFTT relative to persistence, at
  matched forward FLOPs, with a per-law learning rate chosen on training loss. No sign is known: reported only.
"""

from __future__ import annotations

import base64
import html as _html
import json
import math
import multiprocessing as mp
import textwrap
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from control import LQProblem, ParticleLQ, RiccatiLaw
from control.errors import ValidationError, choice
from control.laws import LAW_OPTIONS
from control.training import fit
from mftt import MFTTConfig
from mftt.compare import compare_weight_laws, flops_counter
from mftt.stats import MIN_SEEDS_FOR_TEST, Interval, Paired, adjust, conclusion, paired, t_interval

from ..status import PLAYED
from ..verdict import cost_scale
from .fusion import play_many

BASELINE = "constant"


@dataclass(frozen=True)
class Task:
    """A comparison with a known answer: ``run(laws, seeds, settings) -> {law: [record per seed]}``.

    Each record holds ``metric`` (the primary value, ``unit``), ``n_params``, ``compute`` (vector-field
    evaluations spent learning) and task-specific extras (``status``, ``gap``…). ``expected[law]`` is the
    known sign of (constant − law) on the metric: ``"better"`` (the law must beat constant), ``"worse"``, or
    ``"any"``.
    """

    name: str
    description: str
    concept: str
    metric: str
    unit: str
    reference: str
    budget: str
    expected: dict
    sizes: dict  # size name -> {"seeds": int, "laws": tuple, ...settings}
    run: Callable[[Sequence[str], Sequence[int], dict], dict]
    lower_is_better: bool = True
    floors: Callable[[dict], dict] | None = None  # settings -> {law: exact floor of the metric}
    compute_unit: str = "field evaluations"


@dataclass
class TaskResult:
    """Per-law values over common seeds, their t-intervals, paired tests against constant, conclusions."""

    task: Task
    size: str
    laws: list[str]
    seeds: list[int]
    records: dict  # law -> list of per-seed dicts
    seconds: float = 0.0
    alpha: float = 0.05
    intervals: dict = field(default_factory=dict)
    comparisons: list = field(default_factory=list)

    def __post_init__(self):
        for law in self.laws:
            self.intervals[law] = t_interval(self.values(law))
        if BASELINE in self.laws:
            raw = [
                paired(self.values(law), self.values(BASELINE), law=law, baseline=BASELINE,
                       lower_is_better=self.task.lower_is_better, alpha=self.alpha)
                for law in self.laws if law != BASELINE
            ]  # fmt: skip
            self.comparisons = adjust(raw)

    def values(self, law: str) -> np.ndarray:
        return np.array([r["metric"] for r in self.records[law]], dtype=float)

    def deterministic(self, law: str) -> bool:
        """The same metric on every seed (to 1e-12 relative): the seed does not reach this law here."""
        v = self.values(law)
        return len(v) > 1 and bool(np.all(np.abs(v - v[0]) <= 1e-12 * max(1.0, abs(v[0]))))

    def mean_of(self, law: str, key: str) -> float:
        vals = [r.get(key) for r in self.records[law]]
        vals = [float(v) for v in vals if isinstance(v, (int, float)) and math.isfinite(v)]
        return float(np.mean(vals)) if vals else float("nan")

    def statuses(self, law: str) -> dict:
        out: dict = {}
        for r in self.records[law]:
            if "status" in r:
                out[r["status"]] = out.get(r["status"], 0) + 1
        return out

    def conclusions(self) -> list[str]:
        return [
            conclusion(c, metric=self.task.metric, unit=self.task.unit) for c in self.comparisons
        ]

    def as_expected(self, c: Paired) -> bool | None:
        """Whether the measured difference has the known sign (None when no sign is known)."""
        want = self.task.expected.get(c.law, "any")
        if want == "better":
            return c.winner == c.law
        if want == "worse":
            return c.winner == c.baseline
        return None

    def budget_match(self) -> dict:
        """Parameter and compute spread across laws: (max − min)/max of the per-law means."""
        out = {}
        for key in ("n_params", "compute"):
            vals = [self.mean_of(law, key) for law in self.laws]
            vals = [v for v in vals if math.isfinite(v) and v > 0]
            out[key] = (max(vals) - min(vals)) / max(vals) if len(vals) > 1 else 0.0
        return out

    def budget_line(self) -> str:
        m = self.budget_match()
        parts = ", ".join(
            f"{law} {self.mean_of(law, 'n_params'):.0f} params / {self.mean_of(law, 'compute'):.0f} "
            f"{self.task.compute_unit}"
            for law in self.laws
        )
        return (
            f"{self.task.budget} Measured: {parts}; parameter spread {100 * m['n_params']:.0f} %, "
            f"compute spread {100 * m['compute']:.0f} %."
        )

    def to_dict(self) -> dict:
        t = self.task
        laws = {}
        for law in self.laws:
            laws[law] = {
                **self.intervals[law].to_dict(),
                "values": self.values(law).tolist(),
                "n_params": self.mean_of(law, "n_params"),
                "compute": self.mean_of(law, "compute"),
                "deterministic": self.deterministic(law),
                "statuses": self.statuses(law),
                "extras": {
                    k: self.mean_of(law, k)
                    for k in sorted({k for r in self.records[law] for k in r})
                    if k not in ("metric", "status", "n_params", "compute")
                    and all(isinstance(r.get(k), (int, float)) for r in self.records[law])
                },
            }
        comps = []
        for c, line in zip(self.comparisons, self.conclusions(), strict=True):
            comps.append(
                {**c.to_dict(), "expected": t.expected.get(c.law, "any"),
                 "as_expected": self.as_expected(c), "conclusion": line}
            )  # fmt: skip
        return {
            "task": t.name, "description": t.description, "concept": t.concept, "metric": t.metric,
            "unit": t.unit, "lower_is_better": t.lower_is_better, "reference": t.reference,
            "size": self.size, "seeds": self.seeds, "alpha": self.alpha, "laws": laws,
            "comparisons": comps, "conclusions": self.conclusions(),
            "budget": self.budget_line(), "budget_match": self.budget_match(),
            "seconds": self.seconds,
        }  # fmt: skip


def run_task(
    task: Task,
    size: str = "quick",
    *,
    seeds: Sequence[int] | None = None,
    laws: Sequence[str] | None = None,
    alpha: float = 0.05,
    overrides: dict | None = None,
) -> TaskResult:
    """Run every law of ``task`` on common seeds at ``size`` and compare them with ``constant``."""
    choice("size", size, task.sizes)
    settings = {**task.sizes[size], **(overrides or {})}
    laws = list(settings["laws"] if laws is None else laws)
    if not laws:
        raise ValidationError("laws", "at least one law", laws)
    seeds = list(range(int(settings["seeds"]))) if seeds is None else [int(s) for s in seeds]
    if not seeds:
        raise ValidationError("seeds", "at least one seed", seeds)
    t0 = time.perf_counter()
    records = task.run(laws, seeds, settings)
    return TaskResult(task, size, laws, seeds, records, time.perf_counter() - t0, alpha)


# ---------------------------------------------------------------------------------------------- lq_control
LQ_PROBLEM = dict(
    A=0.5, Abar=0.3, B=1.0, Sigma=0.5, Q=1.0, Qbar=2.0, R=1.0, QT=1.0, QTbar=1.0, T=1.0
)
LQ_MEANS = (
    -1.5,
    -0.5,
    0.5,
    1.5,
)  # the populations' initial means (symmetric), each with variance LQ_V0
LQ_V0 = 0.5


def _law_options(law: str, s: dict) -> dict:
    """Options of a law in the particle tasks: ``untied`` gets one piece per Euler step (a weight per layer)."""
    return {"layers": s["n_steps"]} if law == "untied" else {}


def _fit_particles(make: Callable, laws: Sequence[str], seeds: Sequence[int], s: dict) -> dict:
    """Every law fitted by L-BFGS on the particles of ``make(seed)`` under a common rollout cap, then its gap
    to the optimum measured on fresh noise shared with the optimal law."""
    out: dict = {law: [] for law in laws}
    for seed in seeds:
        # the seed fixes the training particles and noise, each law's initial perturbation and the
        # evaluation noise: the same for every law (common random numbers)
        pl = make(seed)
        for law in laws:
            torch.manual_seed(seed)
            g = torch.Generator().manual_seed(10_007 * seed + 1)
            init = s["init_noise"] * torch.randn(pl.law_shape, generator=g, dtype=torch.float64)
            calls = [0]
            law_m = pl.make_law(law, init=init, **_law_options(law, s))

            def loss(law_m=law_m, calls=calls, pl=pl):
                calls[0] += 1
                return pl.loss(law_m)

            t1 = time.perf_counter()
            res = fit(law_m, loss, steps=s["iters"], optimizer="lbfgs", tol=1e-6, patience=2,
                      progress=False, callback=lambda *_, c=calls: c[0] >= s["rollouts"])  # fmt: skip
            cmp = pl.compare(law_m, n_particles=s["eval_particles"], seed=seed + 1000)
            out[law].append(
                dict(
                    metric=100 * cmp["gap"], gap_se=100 * cmp["gap_se"], n_params=law_m.n_params,
                    compute=calls[0] * pl.n_steps, rollouts=calls[0],
                    status="ok" if res.converged else "not_converged",
                    seconds=time.perf_counter() - t1,
                )
            )  # fmt: skip
    return out


def _particle_budget(bound: str) -> str:
    """The budget rule of the particle tasks (lq_control, lq_noise); ``bound``: what their exact floors bound."""
    return (
        "Compute budget matched: every law is fitted by L-BFGS (strong-Wolfe line search, no learning rate "
        "to tune) with the same cap on rollouts of the particle system (each n_steps field evaluations), "
        "stopping earlier when the loss improves by less than 1e-6 over 2 steps (status ok); parameters are "
        f"not matched: the law class is the treatment, and the exact floors bound {bound} whatever its size."
    )


def _particle_sizes(quick_laws: tuple[str, ...]) -> dict:
    """The sizes of the particle tasks (lq_control, lq_noise): the same budgets, the quick suite's laws differ."""
    return {
        "quick": dict(seeds=6, laws=quick_laws, particles=64, n_steps=10, iters=6, rollouts=400,
                      eval_particles=4000, init_noise=0.1),
        "full": dict(seeds=10, laws=("constant", "untied", "time", "feedback", "meanfield"),
                     particles=256, n_steps=25, iters=20, rollouts=600, eval_particles=20_000,
                     init_noise=0.1),
    }  # fmt: skip


def _lq_control(laws: Sequence[str], seeds: Sequence[int], s: dict) -> dict:
    prob = LQProblem(**LQ_PROBLEM)

    def make(seed: int) -> ParticleLQ:
        return ParticleLQ(prob, list(LQ_MEANS), LQ_V0, n_particles=s["particles"],
                          n_steps=s["n_steps"], seed=seed)  # fmt: skip

    return _fit_particles(make, laws, seeds, s)


def _lq_control_floors(s: dict) -> dict:
    """Exact gaps (%) to J*_h of the best law of each open-loop class, by the Lyapunov recursion (L-BFGS).

    With symmetric initial means the cost is an even convex quadratic in the offset θ₀, so the best θ₀ is 0
    and a constant law is u = −θ₁x, i.e. K = K̄ = θ₁; an open-loop law has K_l = K̄_l = θ₁(t_l) per step: the
    ``untied`` class with one piece per step is exactly this class (its floor), the ``time`` class a subset
    (Legendre in t; the floor bounds it). The ``meanfield`` class contains the optimum (floor 0).
    """
    pl = ParticleLQ(
        LQProblem(**LQ_PROBLEM), list(LQ_MEANS), LQ_V0, n_particles=2, n_steps=s["n_steps"]
    )
    J = pl.J_star(discrete=True)
    out = {}
    for name, shape in (("constant", (1, 1)), ("time", (pl.n_steps, 1, 1))):
        k = torch.ones(shape, dtype=torch.float64, requires_grad=True)
        fit([k], lambda k=k: pl.linear_policy_cost(k, k), steps=30, optimizer="lbfgs", tol=1e-12,
            patience=2, progress=False)  # fmt: skip
        with torch.no_grad():
            out[name] = 100 * (float(pl.linear_policy_cost(k, k)) - J) / J
    out["untied"] = out["time"]
    out["meanfield"] = 0.0
    return out


LQ_CONTROL = Task(
    name="lq_control",
    description=(
        "LQ mean-field-type control of 4 populations (E x0 = ±0.5, ±1.5, Var 0.5) steered by u = −(θ₁x + θ₀), "
        "θ = law(t, x, μ); the optimum needs the mean field (docs/theory.md#lq-control)"
    ),
    concept="control",
    metric="gap to the optimum",
    unit="%",
    reference=(
        "exact discrete optimum J*_h (Riccati), gap measured on common fresh noise with the optimal law; "
        "exact floors of the classes: best constant law {constant:+.2f} %, best open-loop gains per step "
        "(the untied law's, one piece per step; a floor for the time law) {time:+.2f} %, meanfield 0 %"
    ),
    budget=_particle_budget("every law of a class"),
    expected={"time": "any", "feedback": "any", "meanfield": "better", "untied": "any"},
    sizes=_particle_sizes(("constant", "time", "feedback", "meanfield")),
    run=_lq_control,
    floors=_lq_control_floors,
)


# ------------------------------------------------------------------------------------------------ lq_noise
NOISE_PROBLEM = dict(
    A=1.0, Abar=0.0, B=1.0, Sigma=1.0, Q=1.0, Qbar=1.0, R=1.0, QT=1.0, QTbar=0.0, T=1.0
)
NOISE_M0 = 1.0  # one population started at x0 = 1 exactly (Var x0 = 0): the open-loop gap is all the noise's


def action_particles(problem, m0, cov0, **kw):
    """``control.ParticleLQ`` whose law output is the control itself: u_i = −θ(t, x_i, μ), law shape ``(m,)``.

    A ``constant``, ``time`` or ``untied`` law is then an open-loop control (the same u for every particle,
    blind to the noise), a ``feedback``/``meanfield`` law a state feedback (docs/theory.md#open-loop-gap).
    """

    class _Action(nn.Module):
        """The Riccati optimum u* = −K(x − Ex) − K̄Ex as an action law: θ = K(x − Ex) + K̄Ex."""

        def __init__(self, inner: RiccatiLaw, d: int):
            super().__init__()
            self.inner, self.d = inner, d

        def forward(self, t, x, mu=None):
            th = self.inner(t, x, mu)  # [*lead, 1, m, d + 1]: gain and offset
            return (th[..., : self.d] @ x.unsqueeze(-1)).squeeze(-1) + th[..., self.d]

    class ActionParticleLQ(ParticleLQ):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.law_shape = (self.problem.m,)

        def control(self, theta, x):
            return -theta.expand(x.shape[:-1] + (self.problem.m,))

        def optimal_law(self, discrete: bool = True):
            p = self.problem
            sol = self.discrete() if discrete else self.exact()
            return _Action(RiccatiLaw(sol, (p.m, p.d + 1), p.T), p.d)

    return ActionParticleLQ(problem, m0, cov0, **kw)


def open_loop_floors(problem, m0, cov0, n_steps: int, laws: dict) -> dict:
    """Exact costs of the best open-loop controls of the Euler-discretised LQ problem (docs/theory.md#open-loop-gap).

    ``laws``: name -> an open-loop weight law of shape ``(m,)`` (constant, time, untied) whose value at each
    step is linear in its parameters, θ_l = E_l c (E read off the law at unit parameter vectors). A control
    that is the same for every particle leaves the fluctuation y = x − Ex uncontrolled, so its fluctuation cost
    is tr(M⁰₀ Cov x₀) + Σ_l tr(M⁰_{l+1} W) (M⁰: the Lyapunov recursion with K = 0), and the mean part is a
    quadratic in c minimised exactly. Returns ``J_star_h``, ``noise`` (the gap of the best open-loop control,
    (tr((M⁰₀ − P₀) Cov x₀) + Σ_l tr((M⁰_{l+1} − P_{l+1}) W)) / J*_h) and, per law, its class's relative gap.
    """
    p = problem
    c = p.discretise(n_steps)
    n, h, d = c["n"], c["h"], p.d
    sol = p.solve_discrete(n)
    P = sol.arrays["P"]
    m0 = np.asarray(m0, dtype=float).reshape(d)
    S0 = np.asarray(cov0, dtype=float) * (np.eye(d) if np.ndim(cov0) == 0 else 1.0)
    M0 = np.empty_like(P)
    M0[n] = p.QT
    for l in range(n - 1, -1, -1):
        M0[l] = c["Q"] + c["A"].T @ M0[l + 1] @ c["A"]
    W = c["W"]
    fluct = np.trace(M0[0] @ S0) + sum(np.trace(M0[l + 1] @ W) for l in range(n))
    J = sol.cost(m0, S0)
    Ah, Bh = c["A"] + c["Abar"], c["B"] + c["Bbar"]
    Qh, Rh, QTh = c["Q"] + c["Qbar"], c["R"] + c["Rbar"], p.QT + p.QTbar
    out = {
        "J_star_h": J,
        "noise": float(fluct + m0 @ sol.arrays["Pi"][0] @ m0 - J) / J,
    }
    for name, law in laws.items():
        E = _open_loop_basis(law, n, h, d)  # [n, m, k]
        k = E.shape[-1]
        # m_l = a_l + G_l c; the mean cost Σ_l (m_lᵀQ̂m_l + u_lᵀR̂u_l) + m_nᵀQ̂_T m_n = c0 + 2gᵀc + cᵀHc
        a, G = m0.copy(), np.zeros((d, k))
        H, g, c0 = np.zeros((k, k)), np.zeros(k), 0.0
        for l in range(n):
            c0 += a @ Qh @ a
            g += G.T @ Qh @ a
            H += G.T @ Qh @ G + E[l].T @ Rh @ E[l]
            a, G = Ah @ a, Ah @ G + Bh @ E[l]
        c0 += a @ QTh @ a
        g += G.T @ QTh @ a
        H += G.T @ QTh @ G
        best = -np.linalg.lstsq(H, g, rcond=None)[0]
        mean = c0 + 2 * g @ best + best @ H @ best
        out[name] = float(fluct + mean - J) / J
    return out


def _open_loop_basis(law, n: int, h: float, d: int) -> np.ndarray:
    """E ``[n, m, k]`` with θ(t_l) = E_l c for the law's k parameters c (the law must be linear in them)."""
    params = [q for q in law.parameters() if q.requires_grad]
    keep = torch.nn.utils.parameters_to_vector(params).detach().clone()
    x = torch.zeros(1, d, dtype=keep.dtype)
    cols = []
    with torch.no_grad():
        for j in range(keep.numel()):
            e = torch.zeros_like(keep)
            e[j] = 1.0
            torch.nn.utils.vector_to_parameters(e, params)
            cols.append(torch.stack([law(l * h, x).reshape(-1) for l in range(n)]))  # [n, m]
        torch.nn.utils.vector_to_parameters(keep, params)
    return torch.stack(cols, -1).numpy()


def _lq_noise(laws: Sequence[str], seeds: Sequence[int], s: dict) -> dict:
    prob = LQProblem(**NOISE_PROBLEM)

    def make(seed: int):
        return action_particles(prob, [NOISE_M0], 0.0, n_particles=s["particles"],
                                n_steps=s["n_steps"], seed=seed)  # fmt: skip

    return _fit_particles(make, laws, seeds, s)


def _lq_noise_floors(s: dict) -> dict:
    """Exact gaps (%) of the best constant, time and untied (one piece per step) open-loop controls; ``noise``
    is the untied one's, the price of open loop under noise alone (docs/theory.md#open-loop-gap)."""
    prob = LQProblem(**NOISE_PROBLEM)
    pl = action_particles(prob, [NOISE_M0], 0.0, n_particles=2, n_steps=s["n_steps"])
    laws = {
        law: pl.make_law(law, init=torch.zeros(pl.law_shape, dtype=torch.float64),
                         **_law_options(law, s))
        for law in ("constant", "time", "untied")
    }  # fmt: skip
    f = open_loop_floors(prob, [NOISE_M0], 0.0, s["n_steps"], laws)
    return {k: 100 * v for k, v in f.items() if k != "J_star_h"}


LQ_NOISE = Task(
    name="lq_noise",
    description=(
        "LQ control under additive noise (dx = (x + u)dt + dW, cost E∫(x² + (Ex)² + u²) + x_T², T = 1, x0 = 1) "
        "with the law's output as the control, u_i = −θ(t, x_i, μ): constant, time and untied laws are "
        "open-loop controls that cannot react to the noise, feedback and meanfield laws are state feedback "
        "(docs/theory.md#open-loop-gap)"
    ),
    concept="control",
    metric="gap to the optimum",
    unit="%",
    reference=(
        "exact discrete optimum J*_h (Riccati feedback), gap measured on common fresh noise with the optimal "
        "law; exact floors of the open-loop classes: any open-loop control pays the noise gap "
        "Σ_l tr((M⁰_l+1 − P_l+1) W) / J*_h = {noise:+.2f} % (the untied law's floor, one piece per step); "
        "best constant {constant:+.2f} %, best time {time:+.2f} %; feedback and meanfield contain the "
        "optimum up to their polynomial-in-t gains"
    ),
    budget=_particle_budget("every open-loop law"),
    expected={"time": "better", "untied": "better", "feedback": "better", "meanfield": "better"},
    sizes=_particle_sizes(("constant", "untied", "feedback")),
    run=_lq_noise,
    floors=_lq_noise_floors,
)


# -------------------------------------------------------------------------------------------------- lq_game
LQ_GAME_PARAMS = {"qT": 0.0}


def _lq_game(laws: Sequence[str], seeds: Sequence[int], s: dict) -> dict:
    out: dict = {}
    for law in laws:
        cells = [
            dict(scenario="lq_game", law=law, seed=seed, params=dict(LQ_GAME_PARAMS),
                 Lambda="selfish", init_noise=s["init_noise"])
            for seed in seeds
        ]  # fmt: skip
        recs = []
        for o in play_many(cells):
            scale = cost_scale(o.empathetic_costs)
            ref = None if o.reference_costs is None else float(np.sum(o.reference_costs))
            grid = None if o.reference_grid_costs is None else float(np.sum(o.reference_grid_costs))
            tot = float(np.sum(o.costs))
            recs.append(
                dict(
                    metric=100 * o.exploitability / scale, nash_conv=float(o.exploitability),
                    gap=100 * (tot - ref) / abs(ref) if ref else float("nan"),
                    gap_grid=100 * (tot - grid) / abs(grid) if grid else float("nan"),
                    n_params=float(np.mean(o.n_params)), compute=int(o.nfe), status=o.status,
                    iterations=int(o.iterations), seconds=float(o.wall_time),
                )
            )  # fmt: skip
        out[law] = recs
    return out


LQ_GAME = Task(
    name="lq_game",
    description=(
        "two-player LQ game (a = 0.5, q = 1, q̄ = 0.5, r = 1, q_T = 0, T = 1), Nash (Λ = I), linear policies "
        "u_j = −k_j(x − Ex) − l_j Ex with gains from the law: the Nash gains fall to 0 at T"
    ),
    concept="nash",
    metric="certified exploitability (NashConv / cost scale)",
    unit="%",
    reference=(
        "the coupled-Riccati feedback Nash equilibrium (exact); exploitability is certified by open-loop "
        "best responses on the cell's grid; gap = total cost vs the equilibrium's, never used to rank"
    ),
    budget=(
        "Compute: every law learns by the scenario's Nash gradient play and best-response rounds to its "
        "stopping rule (learning rate 0.1, the scenario's tuned default; no search); parameters are not "
        "matched (2 constant gains per player vs Legendre coefficients): the law class is the treatment."
    ),
    # untied (4 pieces): 0.38 % vs constant's 5.48 % at quick size, not an equilibrium (piecewise-constant
    # gains cannot fall to 0 at T)
    expected={"time": "better", "feedback": "better", "meanfield": "better", "untied": "better"},
    sizes={
        "quick": dict(seeds=6, laws=("constant", "time"), init_noise=0.1),
        "full": dict(
            seeds=10, laws=("constant", "untied", "time", "feedback", "meanfield"), init_noise=0.1
        ),
    },
    run=_lq_game,
)

# ------------------------------------------------------------------------------------------------- forecast
FORECAST_BASE = {
    "d_model": 8,
    "heads": 2,
    "d_ff": 16,
    "depth": 2,
    "law_options": {"order": 1, "rank": 1},
}


def _forecast_target(s: dict) -> int:
    """The common compute budget: the largest forward FLOPs (on ``context`` tokens) of the laws' base widths."""
    base = dict(FORECAST_BASE)
    opts = base.pop("law_options")
    count = flops_counter(s["context"])
    return max(
        count(MFTTConfig(**base, weights=law, d_in=3, d_out=1,
                         law_options={k: v for k, v in opts.items() if k in LAW_OPTIONS[law]}))
        for law in s["all_laws"]
    )  # fmt: skip


def _forecast(laws: Sequence[str], seeds: Sequence[int], s: dict) -> dict:
    goal = _forecast_target(s)
    kw = dict(steps=s["steps"], data_kw={"n": s["n"]}, context=s["context"], base=FORECAST_BASE,
              target=goal, match="flops")  # fmt: skip
    out = {}
    for law in laws:
        # learning rate: the declared grid, chosen on the final *training* loss of a seed outside the test
        # seeds (never on the test metric)
        tried = {}
        for lr in s["lr_grid"]:
            ds = compare_weight_laws(laws=(law,), seeds=(10_000,), lr=lr, **kw)
            last = np.asarray(ds.loss.values[0, 0], float)
            tried[lr] = float(last[np.isfinite(last)][-1]) if np.isfinite(last).any() else math.inf
        lr = min(tried, key=lambda k: tried[k])
        ds = compare_weight_laws(laws=(law,), seeds=list(seeds), lr=lr, **kw)
        mse, base = ds.test_mse.values[0], ds.baseline_mse.values[0]
        # held-out error under a shifted initial law (a fresh series, level + 1 sd), reported beside the metric
        shifted = 100 * ds.shifted_mse.values[0] / ds.shifted_baseline_mse.values[0]
        out[law] = [
            dict(metric=100 * float(m) / float(b), test_mse=float(m), shifted=float(sh), lr=lr,
                 n_params=int(ds.n_params[0]), compute=int(ds.flops[0]), status="ok")
            for m, b, sh in zip(mse, base, shifted, strict=True)
        ]  # fmt: skip
    return out


FORECAST = Task(
    name="forecast",
    description=(
        "one-step forecasting of a generated multi-seasonal series (240 points, context 12) by an MFTT; the "
        "series and the initialisation follow the seed"
    ),
    concept="forecast",
    metric="held-out MSE relative to persistence",
    unit="%",
    reference=(
        "persistence (the last value of the window) = 100 %; also reported per law (extras.shifted): the same "
        "ratio under a shifted initial law, a fresh series whose level is moved by one training sd "
        "(docs/theory.md#comparison)"
    ),
    budget=(
        "Compute matched: widths chosen so that every law's forward FLOPs on the context (model.flops) are "
        "within 5 % of the largest base law's; Adam for the same number of steps, learning rate per law from "
        "a declared grid chosen on the final training loss of a seed outside the test seeds."
    ),
    expected={},  # no known sign: reported, not asserted
    compute_unit="forward FLOPs",
    sizes={
        "quick": dict(
            seeds=6,
            laws=("constant", "feedback"),
            all_laws=("constant", "feedback"),
            steps=30,
            n=160,
            context=8,
            lr_grid=(1e-2,),
        ),
        "full": dict(
            seeds=10,
            laws=("constant", "time", "feedback", "meanfield"),
            all_laws=("constant", "time", "feedback", "meanfield"),
            steps=60,
            n=240,
            context=12,
            lr_grid=(3e-3, 1e-2, 3e-2),
        ),
    },  # fmt: skip
    run=_forecast,
)

TASKS: dict[str, Task] = {t.name: t for t in (LQ_CONTROL, LQ_NOISE, LQ_GAME, FORECAST)}
# lq_noise is full only: it costs ~30 s of job time in the quick suite (measured on 2 loaded cores)
SUITES: dict[str, tuple[str, ...]] = {
    "quick": ("lq_control", "lq_game"),
    "full": ("lq_control", "lq_noise", "lq_game", "forecast"),
}


def run_suite(
    suite: str = "quick",
    *,
    seeds: Sequence[int] | None = None,
    tasks: Sequence[str] | None = None,
    alpha: float = 0.05,
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
) -> list[TaskResult]:
    """Run the tasks of ``suite`` (``quick``: small sizes; ``full``: 10 seeds, all laws) on common seeds.

    Each (task, law) is one job, run ``workers`` at a time in separate processes (one thread each); a law's
    records do not depend on the other laws run beside it, so the numbers are the same for any ``workers``.
    """
    choice("suite", suite, SUITES)
    names = SUITES[suite] if tasks is None else tuple(tasks)
    for n in names:
        choice("task", n, TASKS)
    if seeds is not None and 0 < len(seeds) < MIN_SEEDS_FOR_TEST and progress:
        progress(f"warning: {len(seeds)} seeds: no paired test can reach significance")
    plans = []
    for n in names:
        task = TASKS[n]
        st = task.sizes[suite]
        ss = list(range(int(st["seeds"]))) if seeds is None else [int(x) for x in seeds]
        plans.append((task, list(st["laws"]), ss))
    # one job per (task, law) and one per task's exact floors: small pieces balance over the workers
    jobs = [("law", t.name, suite, law, ss) for t, laws, ss in plans for law in laws]
    jobs += [("floors", t.name, suite, None, None) for t, _, _ in plans if t.floors is not None]
    if progress:
        progress(
            f"comparison suite {suite}: {', '.join(names)} ({len(jobs)} jobs, {max(1, workers)} "
            f"process{'es' if workers > 1 else ''})"
        )
    if workers <= 1:
        done = [_run_job(j) for j in jobs]
    else:
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=mp.get_context("spawn")) as ex:
            done = list(ex.map(_run_job, jobs))
    by = {(j[0], j[1], j[3]): d for j, d in zip(jobs, done, strict=True)}
    out = []
    for task, laws, ss in plans:
        records = {law: by[("law", task.name, law)][0] for law in laws}
        secs = sum(by[("law", task.name, law)][1] for law in laws)
        r = TaskResult(task, suite, laws, ss, records, secs, alpha)
        if task.floors is not None:
            r.__dict__["_floors"] = by[("floors", task.name, None)][0]
        out.append(r)
    return out


def _run_job(job) -> tuple:
    """(records of one law, seconds) or (the task's floors, seconds), in a worker or in-process."""
    kind, name, size, law, seeds = job
    torch.set_num_threads(1)
    task = TASKS[name]
    t0 = time.perf_counter()
    if kind == "floors":
        return task.floors({**task.sizes[size]}), time.perf_counter() - t0
    recs = task.run([law], seeds, {**task.sizes[size]})[law]
    return recs, time.perf_counter() - t0


def floors(r: TaskResult) -> dict:
    """The task's exact lower bounds of the metric per law (empty when it has none)."""
    if r.task.floors is None:
        return {}
    if "_floors" not in r.__dict__:
        r.__dict__["_floors"] = r.task.floors({**r.task.sizes[r.size]})
    return r.__dict__["_floors"]


def reference_text(r: TaskResult) -> str:
    return r.task.reference.format(**floors(r))


def suite_json(results: Sequence[TaskResult], suite: str) -> dict:
    return {
        "suite": suite,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tasks": [
            {**r.to_dict(), "reference": reference_text(r), "floors": floors(r)} for r in results
        ],
    }


def write_json(results: Sequence[TaskResult], suite: str, path) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(suite_json(results, suite), indent=2, default=_jsonable) + "\n")


def _jsonable(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, Interval):
        return v.to_dict()
    raise TypeError(type(v).__name__)


def report_lines(r: TaskResult) -> list[str]:
    """Plain text of one task: header, per-law table (mean ± t-interval), budget, conclusions, expectations."""
    t = r.task
    lines = [
        f"== {t.name} ({t.concept}; {len(r.seeds)} seeds, {r.size}, {r.seconds:.0f} s): {t.description}",
        f"   metric: {t.metric} [{t.unit}], {'lower' if t.lower_is_better else 'higher'} is better; "
        f"reference: {reference_text(r)}",
    ]
    for law in r.laws:
        iv = r.intervals[law]
        half = "n/a" if not math.isfinite(iv.half) else f"{iv.half:.3g}"
        st = ", ".join(f"{k} {v}" for k, v in r.statuses(law).items())
        extra = ""
        if t.concept == "nash":
            extra = f"  gap {r.mean_of(law, 'gap'):+.3f} %"
        det = "  (same value on every seed: deterministic here)" if r.deterministic(law) else ""
        if law in floors(r):
            extra += f"  floor {floors(r)[law]:+.3g} (exact)"
        lines.append(
            f"   {law:<10} {iv.mean:10.4g} ± {half:<9} (95 % t-interval, n = {iv.n})"
            f"  params {r.mean_of(law, 'n_params'):.0f}{extra}  [{st}]{det}"
        )
    lines.append(f"   budget: {r.budget_line()}")
    for c, line in zip(r.comparisons, r.conclusions(), strict=True):
        ok = r.as_expected(c)
        tag = "" if ok is None else ("  [as expected]" if ok else "  [NOT as expected]")
        lines.append(f"   → {line}{tag}")
    return lines


def plot_suite(results: Sequence[TaskResult], suite: str, png) -> tuple:
    """PNG and HTML report: per task, the metric per law (mean, 95 % t-interval, exact floors), the paired
    differences with constant (interval; filled when significant), the budget and the conclusion lines."""
    import matplotlib  # heavy (matplotlib): only for the suite's figures

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # heavy (matplotlib): only for the suite's figures

    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    n = max(1, len(results))
    fig = plt.figure(figsize=(12, 5.6 * n))
    gs = fig.add_gridspec(2 * n, 2, height_ratios=[3, 1.3] * n, hspace=0.45, wspace=0.25)
    axes = [(fig.add_subplot(gs[2 * i, 0]), fig.add_subplot(gs[2 * i, 1])) for i in range(n)]
    notes = [fig.add_subplot(gs[2 * i + 1, :]) for i in range(n)]
    for row, note, r in zip(axes, notes, results, strict=False):
        t, fl = r.task, floors(r)
        x = np.arange(len(r.laws))
        means = [r.intervals[law].mean for law in r.laws]
        halves = [np.nan_to_num(r.intervals[law].half) for law in r.laws]
        row[0].errorbar(
            x, means, yerr=halves, fmt="o", capsize=5, color="k", label="mean ± 95 % t-interval"
        )
        for i, law in enumerate(r.laws):
            row[0].scatter(np.full(len(r.values(law)), i) + 0.12, r.values(law), s=8, alpha=0.5)
            if law in fl:
                row[0].hlines(fl[law], i - 0.3, i + 0.3, colors="tab:red", linestyles=":")
        row[0].set_xticks(x, r.laws)
        row[0].set_ylabel(f"{t.metric.split(' (')[0]} [{t.unit}]")
        row[0].set_title(
            f"{t.name}: {t.metric.split(' (')[0]} per law ({len(r.seeds)} seeds"
            + ("; red: exact floor)" if fl else ")"),
            fontsize=9,
        )
        row[0].grid(alpha=0.3)
        cs = r.comparisons
        if cs:
            xs = np.arange(len(cs))
            for i, c in enumerate(cs):
                color = "tab:green" if c.winner == c.law else "tab:red" if c.winner else "tab:gray"
                row[1].errorbar([i], [c.diff.mean], yerr=[np.nan_to_num(c.diff.half)], fmt="o",
                                capsize=5, color=color, mfc=color if c.significant else "white")  # fmt: skip
            row[1].axhline(0, color="k", lw=0.8)
            row[1].set_xticks(xs, [f"{c.law}\nvs {c.baseline}" for c in cs])
            row[1].set_ylabel(f"paired improvement on constant [{t.unit}]")
            row[1].set_title("paired differences (filled: significant, both tests)", fontsize=9)
            row[1].grid(alpha=0.3)
        else:
            row[1].axis("off")
        lines = [*(f"→ {line}" for line in r.conclusions()), "budget: " + r.budget_line()]
        text = "\n".join(textwrap.fill(line, 150, subsequent_indent="    ") for line in lines)
        note.axis("off")
        note.text(0, 1, text, va="top", ha="left", fontsize=7, family="monospace")
    fig.suptitle(f"Weight-law comparison suite ({suite}): every law on common seeds vs constant")
    fig.savefig(png, dpi=110)
    plt.close(fig)
    page = png.with_suffix(".html")
    img = base64.b64encode(png.read_bytes()).decode()
    body = "\n".join(_html.escape(line) for r in results for line in report_lines(r))
    page.write_text(
        f"<!doctype html><meta charset='utf-8'><title>mftt compare --suite {_html.escape(suite)}</title>"
        f"<h1>Weight-law comparison suite ({_html.escape(suite)})</h1><img src='data:image/png;base64,{img}' "
        f"style='max-width:100%'><pre style='white-space:pre-wrap'>{body}</pre>\n"
    )
    return png, page


LAW_FREE_POLICIES = ("direct",)  # policies on which the weight law has no effect


def from_cells(cell, name: str = "cell", alpha: float = 0.05) -> TaskResult | str:
    """The protocol's statistics for one grid cell of a results Dataset (dims ``law`` × ``seed`` left).

    The metric is the certified exploitability relative to the cost scale (NashConv / max |Λ-cost|, in %), the
    metric of every game concept here; the gap to the reference is carried along, never used to rank. Returns
    a sentence instead when the comparison is meaningless: a policy on which the law has no effect, or no
    ``constant`` law. Cells whose status is not a played profile (diverged/failed) have no metric.
    """
    policies = {str(v) for v in np.asarray(cell["policy"].values).ravel() if str(v)}
    if policies and policies <= set(LAW_FREE_POLICIES):
        return (
            f"the weight law cannot matter with {'/'.join(sorted(policies))} policies (each agent's action is "
            "its own parameter): the laws are the same player, nothing to compare or rank"
        )
    laws = [str(v) for v in cell["law"].values]
    if BASELINE not in laws or len(laws) < 2:
        return "no comparison: the cell needs the constant law and at least one other"
    seeds = [int(v) for v in cell["seed"].values] if "seed" in cell.dims else [0]
    concept = next((str(v) for v in np.asarray(cell["concept"].values).ravel() if str(v)), "nash")
    records = {}
    for law in laws:
        c = cell.sel(law=law)
        recs = []
        for k in range(len(seeds)):
            ck = c.isel(seed=k) if "seed" in c.dims else c
            status = str(np.asarray(ck["status"].values).ravel()[0])
            E = np.asarray(ck["empathetic_cost"].values, float).ravel()
            scale = float(np.nanmax(np.abs(E))) if np.isfinite(E).any() else float("nan")
            ex = float(np.asarray(ck["exploitability"].values, float).ravel()[0])
            ok = status in PLAYED and math.isfinite(scale) and scale > 0
            gap = (
                float(np.asarray(ck["gap"].values, float).ravel()[0])
                if "gap" in ck
                else float("nan")
            )
            recs.append(
                dict(
                    metric=100 * ex / max(scale, 1e-9) if ok else float("nan"),
                    gap=100 * gap if math.isfinite(gap) else float("nan"),
                    n_params=float(np.nanmean(np.asarray(ck["n_params"].values, float))),
                    compute=float(np.asarray(ck["nfe"].values, float).ravel()[0]),
                    status=status,
                )
            )  # fmt: skip
        records[law] = recs
    task = Task(
        name=name, description=f"{concept} cell", concept="nash",
        metric="certified exploitability (NashConv / cost scale)", unit="%",
        reference="the scenario's closed form where it has one (gap, %); exploitability certified by best responses",
        budget="As configured (the scenario's learning rule and step budget for every law).",
        expected={}, sizes={"cell": {"seeds": len(seeds), "laws": tuple(laws)}},
        run=lambda laws, seeds, s: {},
    )  # fmt: skip
    return TaskResult(task, "cell", laws, seeds, records, alpha=alpha)


def readme_markers(suite: str) -> tuple[str, str]:
    """The README markers around a suite's measured block (one pair per suite)."""
    start = (
        f"<!-- compare-suite:{suite}:start (regenerate: mftt compare --suite {suite} --workers 2 "
        "--readme README.md) -->"
    )
    return start, f"<!-- compare-suite:{suite}:end -->"


README_START, README_END = readme_markers("quick")


def readme_block(results: Sequence[TaskResult], suite: str) -> str:
    """Markdown quoting the measured conclusions of a suite run (what ``--readme`` writes)."""
    day = time.strftime("%Y-%m-%d", time.gmtime())
    secs = sum(r.seconds for r in results)
    out = [
        f"Measured {day} by `mftt compare --suite {suite}` ({', '.join(r.task.name for r in results)}; "
        f"{secs:.0f} s of job time summed over the workers):",
        "",
    ]
    for r in results:
        t = r.task
        means = ", ".join(
            f"{law} {r.intervals[law].mean:.3g} ± {r.intervals[law].half:.2g}" for law in r.laws
        )
        out.append(
            f"- **{t.name}** ({t.metric}, {t.unit}, mean ± 95 % t-interval over {len(r.seeds)} common seeds: "
            f"{means}; reference: {reference_text(r)})"
        )
        for c, line in zip(r.comparisons, r.conclusions(), strict=True):
            ok = r.as_expected(c)
            tag = "" if ok is None else (" — as expected" if ok else " — **NOT as expected**")
            out.append(f"  - {line}{tag}")
    return "\n".join(out)


def update_readme(path, results: Sequence[TaskResult], suite: str) -> None:
    """Replace the text between the suite's markers (``readme_markers``) in ``path`` with ``readme_block``."""
    start, end = readme_markers(suite)
    p = Path(path)
    text = p.read_text() if p.exists() else ""
    a, b = text.find(start), text.find(end)
    if a < 0 or b < a:
        raise ValidationError("readme", f"a file holding the markers {start} … {end}", str(p))
    new = text[: a + len(start)] + "\n" + readme_block(results, suite) + "\n" + text[b:]
    p.write_text(new)


__all__ = [
    "BASELINE",
    "SUITES",
    "TASKS",
    "Task",
    "TaskResult",
    "from_cells",
    "plot_suite",
    "report_lines",
    "run_suite",
    "run_task",
    "readme_block",
    "readme_markers",
    "suite_json",
    "update_readme",
    "write_json",
]
