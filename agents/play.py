"""One grid cell: build a scenario's game, solve it with a concept, measure it (the runner's entry point).

``play(scenario, Lambda=..., law=..., ...) -> Outcome`` never raises on a numerical failure (status
"diverged"/"failed" with the message); bad input raises a one-line ``ValidationError`` (docs/theory.md#empathy, docs/theory.md#patterns, docs/theory.md#agents).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from control.errors import DivergenceError, ValidationError

from .best_response import Budget
from .cell import FIELDS as CELL_FIELDS
from .cell import CellSpec
from .concepts import solve as _solve
from .learning import reporting
from .verdict import Tolerance, Verdict, measure, method_label


@dataclass(frozen=True)
class Outcome:
    """The measured result of one cell (scenario, Λ, law, policy, concept, seed)."""

    scenario: str
    Lambda: np.ndarray
    law: str
    policy: str
    concept: str
    seed: int
    agent_names: list[str]
    costs: np.ndarray
    empathetic_costs: np.ndarray
    exploitability: float
    reference_costs: np.ndarray | None
    history: np.ndarray
    times: np.ndarray
    trajectory: np.ndarray
    n_params: np.ndarray
    status: str
    message: str = ""
    wall_time: float = 0.0
    nfe: int = (
        0  # vector-field evaluations of the cell's ODE solves (learning, exploitability, rollout)
    )
    gains: np.ndarray | None = None  # per-agent best-response gains [n] (inf: unbounded)
    exploitability_method: str = (
        ""  # "exact:<class>" or "numerical:<classes>", per distinct agent method
    )
    reference_grid_costs: np.ndarray | None = (
        None  # the closed-form profile played on the cell's grid
    )
    iterations: int = 0  # learning steps taken
    # the learned parameters of MFTT policies and of populations' shared policies, ``"agent.<j>.<k>"`` ->
    # the k-th parameter of agent (population) j (``game.parameters_of(j)`` order, CPU copies); else None
    weights: dict[str, np.ndarray] | None = None

    @classmethod
    def failed(cls, status: str, message: str) -> Outcome:
        """A cell that produced no numbers (it raised before measuring): its status and message, all else empty."""
        e1, e2 = np.zeros(0), np.zeros((0, 0))
        return cls(
            scenario="", Lambda=e2, law="", policy="", concept="", seed=0, agent_names=[], costs=e1,
            empathetic_costs=e1, exploitability=float("nan"), reference_costs=None, history=e2, times=e1,
            trajectory=e2, n_params=np.zeros(0, dtype=int), status=status, message=message,
        )  # fmt: skip


def check_play_kwargs(kw: dict):
    """(scenario class, policy, concept, steps, lr, seed) of a dict of ``play`` keyword arguments, validated
    with ``play``'s defaults (``CellSpec.of``)."""
    spec = CellSpec.of(kw)
    return spec.scenario_class, spec.policy, spec.concept, spec.steps, spec.lr, spec.seed


def play(
    scenario: str,
    *,
    n_agents: int | None = None,
    Lambda: str | np.ndarray = "selfish",
    Lambda_alpha: float = 0.5,
    law: str = "feedback",
    policy: str | None = None,
    concept: str | None = None,
    steps: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    params: dict | None = None,
    mftt: dict | None = None,
    device: str = "cpu",
    progress: bool | Callable[[int, int, np.ndarray], None] = False,
    solver=None,
    tolerance: Tolerance | None = None,
    init_noise: float = 0.0,
) -> Outcome:
    """Play one cell: ``scenario`` with empathy ``Lambda`` solved by ``concept`` with ``policy``/``law`` agents.

    None means the scenario's declared default. The learned profile is measured: material and empathetic
    costs, certified exploitability (``agents.best_response``), the status rules of ``agents.verdict`` under
    ``tolerance``, the closed-form reference where the scenario has one (and that profile played on the
    cell's grid), the learning history and the rollout. ``solver`` replaces
    ``agents.concepts.solve`` for the learning (same signature), e.g. the per-agent Ray actors' solver.
    ``init_noise`` > 0 adds a seeded Gaussian perturbation to every agent's initial parameters (``perturb``),
    so that the seed reaches laws whose initialisation is otherwise deterministic (linear gains start at 0).
    ``progress``: True prints the learning's progress; a callable ``progress(step, total, costs)`` is called
    at every learning step instead (``total`` = ``steps``, ``costs`` the Λ-costs [n]; it only observes).
    """
    given = dict(locals())  # play's arguments, before any other name is bound
    if solver is not None and not callable(solver):
        raise ValidationError(
            "solver", "None or a callable like agents.solve", type(solver).__name__
        )
    solve = _solve if solver is None else solver
    t0 = time.perf_counter()
    spec = CellSpec.of({k: v for k, v in given.items() if k in CELL_FIELDS})
    cls, policy, concept, steps, lr, seed = (
        spec.scenario_class,
        spec.policy,
        spec.concept,
        spec.steps,
        spec.lr,
        spec.seed,
    )
    sc, L, game = spec.build()
    names, n = list(game.agent_names), game.n_agents
    nan = np.full(n, np.nan)
    base: dict[str, Any] = dict(
        scenario=cls.name,
        Lambda=L,
        law=law,
        policy=policy,
        concept=concept,
        seed=seed,
        agent_names=names,
        n_params=np.asarray(game.n_params(), dtype=int),
    )

    def failed(status: str, msg: str, hist=None) -> Outcome:
        h = np.zeros((0, n)) if hist is None else hist
        return Outcome(
            **base,
            costs=nan,
            empathetic_costs=nan,
            exploitability=float("nan"),
            reference_costs=_reference(sc, L),
            history=h,
            times=np.zeros(1),
            trajectory=np.full((1, 1), np.nan),
            status=status,
            message=msg.splitlines()[0][:300],
            wall_time=time.perf_counter() - t0,
            nfe=int(getattr(game, "nfe", 0)),
        )

    hook = progress if callable(progress) else None
    try:
        with reporting(hook, steps):
            eq = solve(game, concept, L, steps=steps, lr=lr, progress=bool(progress) and not hook)
    except ValidationError:
        raise
    except (DivergenceError, FloatingPointError, OverflowError) as err:
        return failed("diverged", str(err))
    except (RuntimeError, ArithmeticError, ValueError) as err:
        return failed("failed", f"{type(err).__name__}: {err}")
    return outcome(
        game, sc, L, eq, base, t0=t0, tolerance=tolerance, budget=br_budget(sc, game, steps, lr)
    )


def br_budget(sc, game, steps: int, lr: float) -> Budget:
    """The best-response budget of a cell: L-BFGS defaults, the agent's own class searched briefly.

    Games learned with best-response rounds (``polish_rounds``) end certified in their own class already,
    so their own-class search is skipped.
    """
    own = 0 if game.solve_defaults.get("polish_rounds") else max(10, steps // 10)
    return Budget(own_steps=own, own_lr=lr)


def measured_agents(concept: str, n: int) -> list[int]:
    """Whose best responses certify the concept: everyone (Nash, minimax) or the followers (Stackelberg)."""
    return list(range(1, n)) if concept == "stackelberg" else list(range(n))


def outcome(
    game,
    sc,
    L: np.ndarray,
    eq,
    base: dict[str, Any],
    *,
    t0: float,
    tolerance: Tolerance | None,
    budget,
) -> Outcome:
    """Measure a learned game (certified exploitability, status rules, rollout) as an ``Outcome``."""
    n = game.n_agents
    nan = np.full(n, np.nan)
    ref = _reference(sc, L)
    hist = np.asarray(eq.history, dtype=float).reshape(-1, n)
    common: dict[str, Any] = dict(
        reference_costs=ref,
        history=hist,
        iterations=int(eq.iterations),
        reference_grid_costs=_reference_grid(sc, L, game),
    )
    try:
        v = measure(
            game,
            L,
            eq,
            agents=measured_agents(base["concept"], n),
            tol=tolerance,
            budget=budget,
            no_equilibrium=_no_equilibrium(sc, L),
        )
        times, traj = game.rollout() if v.status != "diverged" else (np.zeros(1), None)
    except (DivergenceError, FloatingPointError, OverflowError) as err:
        v, times, traj = Verdict("diverged", str(err), None, float("nan")), np.zeros(1), None
    except (RuntimeError, ArithmeticError) as err:
        v = Verdict("failed", f"{type(err).__name__}: {err}", None, float("nan"))
        times, traj = np.zeros(1), None
    ex = v.exploitability
    costs = np.asarray(eq.costs, dtype=float)
    if v.status in ("diverged", "failed"):
        costs = nan
    nash_conv = float("nan") if ex is None else float(ex.nash_conv)
    return Outcome(
        **base,
        costs=costs,
        empathetic_costs=np.asarray(L @ costs, dtype=float),
        exploitability=nash_conv,
        times=np.asarray(times, dtype=float),
        trajectory=(
            np.full((1, 1), np.nan)
            if traj is None
            else np.asarray(traj, dtype=float).reshape(len(times), -1)
        ),
        status=v.status,
        message=v.message.splitlines()[0][:300] if v.message else "",
        wall_time=time.perf_counter() - t0,
        nfe=int(getattr(game, "nfe", 0)),
        gains=None if ex is None else np.asarray(ex.gains, dtype=float),
        exploitability_method=method_label(ex),
        weights=(
            trained_weights(game)
            if base.get("policy") == "mftt" or getattr(sc, "population", False)
            else None
        ),
        **common,
    )


def trained_weights(game) -> dict[str, np.ndarray]:
    """Every agent's parameters as CPU arrays, ``"agent.<j>.<k>"`` for the k-th of ``game.parameters_of(j)``."""
    out = {}
    for j in range(game.n_agents):
        for k, p in enumerate(game.parameters_of(j)):
            out[f"agent.{j}.{k}"] = p.detach().cpu().numpy().copy()
    return out


def _no_equilibrium(sc, L: np.ndarray) -> str | None:
    """The scenario's statement that no equilibrium exists for this Λ (e.g. H∞ below the critical γ)."""
    fn = getattr(sc, "no_equilibrium", None)
    return fn(L) if fn is not None else None


def _reference_grid(sc, L: np.ndarray, game) -> np.ndarray | None:
    """Material costs of the closed-form profile played on the cell's own grid (None where not offered)."""
    fn = getattr(sc, "reference_on_grid", None)
    if fn is None:
        return None
    try:
        with torch.no_grad():
            out = fn(L, game)
    except (ValidationError, RuntimeError, ArithmeticError, ValueError):
        return None
    return None if out is None or not np.all(np.isfinite(out)) else np.asarray(out, dtype=float)


def _reference(sc, L: np.ndarray) -> np.ndarray | None:
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            ref = sc.reference(L)
    except (ValidationError, RuntimeError, ArithmeticError, ValueError):
        return None
    if ref is None or not np.all(np.isfinite(ref)):
        return None
    return None if ref is None else np.asarray(ref, dtype=float)
