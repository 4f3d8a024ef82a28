"""Best responses that do not depend on the deviating agent's own parametrisation (docs/theory.md#best-responses).

Agent j's best response minimises its Λ-cost E_j = Σ_i λ_ji L_i over a *deviation class* with every other agent
frozen. Each class is a registered method, chosen by what the game offers:

* ``pure`` (exact): finite games, the best pure action against the others' mixed strategies (E_j is linear in
  j's own mixed strategy, so a pure action attains the minimum);
* ``action`` (exact when the costs are quadratic in the action, numerical otherwise): games that declare an
  ``ActionSpace`` (static quadratic games, Cournot with MFTT firms): the box-constrained minimum over raw actions;
* ``open_loop`` (numerical): differential games, an open-loop control per particle tabulated on the time
  grid's points and interpolated linearly between them (also at the Runge–Kutta stages), within the game's
  action bounds: the standard discretisation of an open-loop control, which converges to every feedback
  deviation of the continuous game as the grid is refined;
* ``linear_feedback`` (numerical): a time-varying affine feedback on j's observation (gains tabulated likewise);
* ``own`` (numerical): j's own policy class, searched by gradient play from the current parameters.

The numerical classes are searched with L-BFGS-B (scipy) to a gradient tolerance, warm-started from the current
play. A cost falling below ``E_j − bound·(1 + |E_j|)`` is reported as an unbounded best response (gain = inf).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor

from control import DivergenceError
from control.errors import ValidationError, number

from .differential import DifferentialGame
from .empathy import empathetic_costs
from .game import ActionSpace, Game, MatrixGame
from .learning import gradient_play


@dataclass(frozen=True)
class Budget:
    """How hard a numerical best response searches: L-BFGS-B iterations and tolerances, own-class steps."""

    max_iter: int = 200
    gtol: float = 1e-9
    ftol: float = 1e-13
    own_steps: int = 0
    own_lr: float = 0.05
    bound: float = 1e3  # a best-response cost below E_j − bound·(1 + |E_j|) counts as unbounded

    def __post_init__(self):
        number("budget.max_iter", self.max_iter, low=1, integer=True)
        number("budget.gtol", self.gtol, low=0.0, strict_low=True)
        number("budget.ftol", self.ftol, low=0.0, strict_low=True)
        number("budget.own_steps", self.own_steps, low=0, integer=True)
        number("budget.own_lr", self.own_lr, low=0.0, strict_low=True)
        number("budget.bound", self.bound, low=0.0, strict_low=True)


@dataclass(frozen=True)
class BestResponse:
    """Agent j's best deviation found by one method: its Λ-cost, the gain over the profile, and how sure it is.

    ``gain`` = E_j(profile) − ``cost`` ≥ 0 (inf when unbounded); ``exact``: the method solves the deviation
    problem in closed form; ``converged``: the numerical search met its tolerance (always True when exact).
    """

    agent: int
    method: str
    cost: float
    gain: float
    exact: bool
    converged: bool
    bounded: bool = True
    message: str = ""


class Unbounded(Exception):
    """A search crossed the unboundedness bound (raised from inside an objective to stop it)."""

    def __init__(self, cost: float):
        self.cost = cost


Method = Callable[[Game, np.ndarray, int, float, Budget], "BestResponse | None"]
BEST_RESPONSES: dict[str, Method] = {}


def register(name: str) -> Callable[[Method], Method]:
    """Decorator: add a best-response method to ``BEST_RESPONSES``."""

    def deco(fn: Method) -> Method:
        BEST_RESPONSES[name] = fn
        return fn

    return deco


def _E(game_costs: Tensor, Lambda: np.ndarray, j: int) -> Tensor:
    return empathetic_costs(Lambda, game_costs)[j]


def _floor(e0: float, budget: Budget) -> float:
    return e0 - budget.bound * (1.0 + abs(e0))


def _result(j, method, e0, cost, exact, converged, budget, message="") -> BestResponse:
    if not math.isfinite(cost) or cost < _floor(e0, budget):
        msg = message or (
            f"agent {j}'s {method} best response lowers its Λ-cost without bound "
            f"(below {_floor(e0, budget):.4g}, from {e0:.4g})"
        )
        return BestResponse(j, method, -math.inf, math.inf, exact, converged, False, msg)
    return BestResponse(j, method, cost, max(0.0, e0 - cost), exact, converged, True, message)


# ---- finite games: the best pure action (exact) ------------------------------------------------
@register("pure")
def pure(game: Game, Lambda: np.ndarray, j: int, e0: float, budget: Budget) -> BestResponse | None:
    """Best pure action of agent j against the others' mixed strategies (exact)."""
    if not isinstance(game, MatrixGame):
        return None
    U = np.tensordot(
        np.asarray(Lambda, float), game.payoffs.detach().cpu().numpy(), axes=([1], [0])
    )
    v = U[j]
    xs = game.strategies()
    for i in reversed(range(game.n_agents)):  # contract the others' axes, last first
        if i != j:
            v = np.tensordot(v, xs[i], axes=([i], [0]))
    return _result(j, "pure", e0, float(-v.max()), True, True, budget)


# ---- raw actions: closed form for quadratic costs, L-BFGS-B otherwise --------------------------
@register("action")
def action(
    game: Game, Lambda: np.ndarray, j: int, e0: float, budget: Budget
) -> BestResponse | None:
    """Box-constrained minimum of E_j over agent j's raw actions (exact when the costs are quadratic)."""
    space = game.action_space(j)
    if space is None:
        return None

    def E(z: Tensor) -> Tensor:
        return _E(space.costs(z), Lambda, j)

    if space.quadratic:
        out = _box_quadratic(E, space)
        if out is not None:
            z, cost = out
            return _result(j, "action", e0, cost, True, True, budget)
    try:
        cost, ok = _lbfgsb(E, space.init, space.low, space.high, e0, budget)
    except Unbounded as u:
        return _result(j, "action", e0, u.cost, False, True, budget)
    return _result(j, "action", e0, cost, False, ok, budget)


def _box_quadratic(
    E: Callable[[Tensor], Tensor], space: ActionSpace
) -> tuple[Tensor, float] | None:
    """Exact minimum of a quadratic E over a box when it separates into scalar problems (diagonal Hessian)."""
    z0 = space.init.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(E(z0), z0, create_graph=True)
    H = torch.stack(
        [torch.autograd.grad(g[k], z0, retain_graph=True)[0] for k in range(z0.numel())]
    ).detach()
    g = g.detach()
    if not torch.allclose(H, torch.diag(torch.diagonal(H)), atol=1e-12 * float(H.abs().max() + 1)):
        return None
    h = torch.diagonal(H)
    low, high = space.low.expand_as(z0), space.high.expand_as(z0)
    # stationary point where convex; otherwise the better end of the interval (-inf/+inf ends: unbounded)
    with torch.no_grad():
        stat = torch.where(h > 0, z0 - g / torch.where(h > 0, h, torch.ones_like(h)), z0)
        cand = [torch.minimum(torch.maximum(stat, low), high)]
        cand += [low, high]
        dq = [(g * (c - z0) + 0.5 * h * (c - z0) ** 2) for c in cand]  # per-coordinate model change
        q = torch.stack(
            [torch.where(torch.isfinite(x), x, torch.full_like(x, -math.inf)) for x in dq]
        )
        q = torch.where(
            torch.stack([torch.isfinite(c) for c in cand]), q, torch.full_like(q, math.inf)
        )
        unbounded_dir = (h < 0) & (~torch.isfinite(low) | ~torch.isfinite(high))
        unbounded_dir |= (h == 0) & (
            ((g > 0) & ~torch.isfinite(low)) | ((g < 0) & ~torch.isfinite(high))
        )
        if bool(unbounded_dir.any()):
            return z0.detach(), -math.inf
        best = torch.stack(cand).gather(0, q.argmin(0, keepdim=True))[0]
        cost = float(E(best))
    return best, cost


# ---- differential games: open-loop controls and affine feedback on the time grid ---------------
def _nodes(game) -> Tensor:
    """The time grid's points (not the Runge–Kutta stage times: free values at the stages would give the
    discretised game deviations the continuous one does not have)."""
    return game.times


def _interp(nodes: Tensor, table: Tensor, t: Tensor) -> Tensor:
    """Piecewise-linear interpolation of ``table [S, ...]`` tabulated at ``nodes [S]`` (clamped at the ends)."""
    S = nodes.shape[0]
    k = torch.searchsorted(nodes, t.reshape(1)).clamp(1, S - 1)[0]
    t0, t1 = nodes[k - 1], nodes[k]
    w = ((t - t0) / (t1 - t0)).clamp(0.0, 1.0)
    return table[k - 1] * (1 - w) + table[k] * w


@contextmanager
def frozen(game: Game) -> Iterator[None]:
    """Every agent's parameters stop requiring gradients inside the block (the others are data)."""
    ps = game.parameters()
    flags = [p.requires_grad for p in ps]
    for p in ps:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(ps, flags, strict=True):
            p.requires_grad_(f)


@contextmanager
def deviating(game, j: int, play: Callable[[Tensor, Tensor, Tensor], Tensor]) -> Iterator[None]:
    """Agent j plays ``play(t, obs_j, x)`` instead of its policy inside the block."""
    old, game.deviation = game.deviation, (j, play)
    try:
        yield
    finally:
        game.deviation = old


def _current_actions(game, j: int, nodes: Tensor) -> Tensor:
    """Agent j's current actions at the stage nodes along the current rollout [S, P_obs, m] (warm start)."""
    seen: dict[float, Tensor] = {}

    def record(t, obs_j, x):
        u = game.stack(t, game.observe(t, x))[j]
        seen.setdefault(round(float(t), 12), u.detach())
        return u

    with torch.no_grad(), deviating(game, j, record):
        game.simulate()
    keys = np.array(sorted(seen))
    rows = []
    for t in nodes.cpu().numpy():
        k = int(np.abs(keys - t).argmin())
        rows.append(seen[float(keys[k])])
    return torch.stack(rows)


def _deviation_search(
    game, Lambda, j, e0, budget, init: Tensor, play_of, bounds
) -> tuple[float, bool]:
    def E(z: Tensor) -> Tensor:
        with deviating(game, j, play_of(z)):
            return _E(game.costs(), Lambda, j)

    lo, hi = bounds
    with frozen(game):
        return _lbfgsb(E, init, lo, hi, e0, budget)


@register("open_loop")
def open_loop(
    game: Game, Lambda: np.ndarray, j: int, e0: float, budget: Budget
) -> BestResponse | None:
    """An open-loop control per particle on the time grid, within the game's action bounds (numerical)."""
    if not isinstance(game, DifferentialGame):  # the games that take a deviation
        return None
    nodes = _nodes(game)
    init = _current_actions(game, j, nodes)
    lo, hi = game.bounds if game.bounds is not None else (-math.inf, math.inf)
    low, high = torch.full_like(init, lo), torch.full_like(init, hi)
    try:
        cost, ok = _deviation_search(
            game,
            Lambda,
            j,
            e0,
            budget,
            init.clamp(lo, hi),
            lambda z: lambda t, obs_j, x: _interp(nodes, z, t),
            (low, high),
        )
    except Unbounded as u:
        return _result(j, "open_loop", e0, u.cost, False, True, budget)
    return _result(j, "open_loop", e0, cost, False, ok, budget)


@register("linear_feedback")
def linear_feedback(
    game: Game, Lambda: np.ndarray, j: int, e0: float, budget: Budget
) -> BestResponse | None:
    """u = c(t) − K(t)(o − Eo) − K̄(t)Eo on agent j's observation o, gains tabulated on the time grid."""
    if not isinstance(game, DifferentialGame):  # the games that take a deviation
        return None
    nodes = _nodes(game)
    with torch.no_grad():
        obs = game.observe(game.times[0], game.x0)[j]  # [P_obs, d_obs]
        u0 = game.controls(game.times[0], game.x0)[j]  # [P_obs, m]
    S, m, d = nodes.shape[0], u0.shape[-1], obs.shape[-1]
    # warm start: the current mean action as the offset, no gains
    init = torch.zeros(S, m * (2 * d + 1), dtype=u0.dtype, device=u0.device)
    init[:, :m] = _current_actions(game, j, nodes).mean(1)

    def play_of(z: Tensor):
        def play(t, o, x):
            row = _interp(nodes, z, t)
            c, K, Kb = row[:m], row[m : m + m * d].reshape(m, d), row[m + m * d :].reshape(m, d)
            mean = o.mean(0, keepdim=True)
            return c - (o - mean) @ K.T - mean @ Kb.T

        return play

    inf = torch.full_like(init, math.inf)
    try:
        cost, ok = _deviation_search(game, Lambda, j, e0, budget, init, play_of, (-inf, inf))
    except Unbounded as u:
        return _result(j, "linear_feedback", e0, u.cost, False, True, budget)
    return _result(j, "linear_feedback", e0, cost, False, ok, budget)


@register("own")
def own(game: Game, Lambda: np.ndarray, j: int, e0: float, budget: Budget) -> BestResponse | None:
    """Agent j's own policy class, searched by Adam from its current parameters (the old measure).

    Not for games whose players are populations: moving a population's shared policy moves its law, which is
    no unilateral deviation of one agent (their deviations come from ``population``).
    """
    if budget.own_steps == 0 or not game.parameters_of(j) or game.players_are_populations:
        return None
    snap = game.state_dict()
    try:
        opt = game.solve_defaults.get("optimizer", "sgd")
        hist = gradient_play(
            game, Lambda, [j], steps=budget.own_steps, lr=budget.own_lr, optimizer=opt
        ).history
        seen = hist[:, j][np.isfinite(hist[:, j])]
        with torch.no_grad():
            last = float(_E(game.costs(), Lambda, j))
        cost = min([last, *seen.tolist()]) if math.isfinite(last) else min(seen.tolist() or [e0])
    except DivergenceError:
        cost = e0
    finally:
        game.load_state_dict(snap)
    return _result(j, "own", e0, cost, False, False, budget)


# ---- the search ------------------------------------------------------------------------------
def _lbfgsb(
    E: Callable[[Tensor], Tensor],
    init: Tensor,
    low: Tensor,
    high: Tensor,
    e0: float,
    budget: Budget,
    best_z: list | None = None,
) -> tuple[float, bool]:
    """min E(z) over the box by scipy's L-BFGS-B with autograd gradients; (best cost seen, converged).

    ``best_z``, when given, receives the minimiser found (a tensor shaped like ``init``).
    """
    shape, dtype, device = init.shape, init.dtype, init.device
    floor = _floor(e0, budget)
    best = [math.inf]

    def fg(v: np.ndarray) -> tuple[float, np.ndarray]:
        z = torch.as_tensor(v, dtype=dtype, device=device).reshape(shape).requires_grad_(True)
        try:
            f = E(z)
        except DivergenceError:
            return math.inf, np.zeros_like(v)
        if not torch.isfinite(f):
            return math.inf, np.zeros_like(v)
        (g,) = torch.autograd.grad(f, z)
        fv = float(f.detach())
        if fv < best[0] and best_z is not None:
            best_z[:] = [z.detach().clone()]
        best[0] = min(best[0], fv)
        if fv < floor:
            raise Unbounded(fv)
        return fv, g.detach().cpu().numpy().reshape(-1).astype(float)

    lo = low.expand(shape).detach().cpu().numpy().reshape(-1)
    hi = high.expand(shape).detach().cpu().numpy().reshape(-1)
    x0 = np.clip(init.detach().cpu().numpy().reshape(-1).astype(float), lo, hi)
    bounds = [
        (a if np.isfinite(a) else None, b if np.isfinite(b) else None)
        for a, b in zip(lo, hi, strict=True)
    ]
    scale = max(1.0, abs(e0))
    res = minimize(
        fg,
        x0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={
            "maxiter": budget.max_iter,
            "gtol": budget.gtol * scale,
            "ftol": budget.ftol,
            "maxcor": 30,
        },
    )
    return best[0], bool(res.success)


# ---- populations: the game's own deviation engine (agents.deviations) ---------------------------
@register("population")
def population(
    game: Game, Lambda: np.ndarray, j: int, e0: float, budget: Budget
) -> BestResponse | None:
    """A population game's deviation of population j (one small agent, or the whole population)."""
    r = game.deviation_response(j, Lambda, e0, budget)
    assert r is None or isinstance(r, BestResponse)  # Game types it as object (no import cycle)
    return r


# open_loop contains every feedback deviation of a deterministic game, so linear_feedback is opt-in (a second
# optimiser path for non-convex games); own joins when the budget gives it steps
DEFAULT_METHODS = ("pure", "action", "open_loop", "population", "own")


def best_response(
    game: Game,
    Lambda: np.ndarray,
    j: int,
    *,
    methods: tuple[str, ...] | None = None,
    budget: Budget | None = None,
) -> tuple[BestResponse, list[BestResponse]]:
    """Agent j's best response over every applicable method: (the best one, all tried).

    Every candidate's cost is evaluated in the game as played, so each gain is achieved, hence a lower bound
    on the true one; an exact method makes it the true one over its class.
    """
    budget = budget or Budget()
    methods = DEFAULT_METHODS if methods is None else tuple(methods)
    for m in methods:
        if m not in BEST_RESPONSES:
            raise ValidationError("best_response.methods", f"names in {sorted(BEST_RESPONSES)}", m)
    with torch.no_grad():
        e0 = float(_E(game.costs(), Lambda, j))
    tried: list[BestResponse] = []
    for m in methods:
        r = BEST_RESPONSES[m](game, Lambda, j, e0, budget)
        if r is not None:
            tried.append(r)
            if r.exact:  # a closed form over a class containing the rest: nothing left to search
                break
    if not tried:
        raise ValidationError("game", "a game offering a best-response class", type(game).__name__)
    # the unbounded one first, then the largest gain; an exact method wins ties
    best = max(tried, key=lambda r: (not r.bounded, r.gain, r.exact))
    return best, tried
