"""Cross-cell fusion: C grid cells of one differential game, differing only in seed and Λ, as one ODE.

The cells' states are stacked ``z [C, P·d + n]`` and integrated by one ``control.solve`` call; the C·n policies
form one ``PolicyStack`` (one batched call per field evaluation) and the scenario's dynamics and costs are
``torch.func.vmap``-ed over the cell axis. Learning keeps every cell separate: per-cell Adam states, stopping
rules, statuses and histories (``gradient_play_cells``), so a fused cell reproduces its stand-alone ``play``.
"""

from __future__ import annotations

import json
import time
import types
from collections.abc import Sequence

import numpy as np
import torch
from scipy.linalg import block_diag
from torch import Tensor
from torch.func import vmap

from control import DivergenceError, limits, solve
from control.errors import ValidationError

from ..agent import PolicyStack
from ..differential import DifferentialGame
from ..empathy import as_Lambda, require_self_regard
from ..equilibrium import Equilibrium
from ..game import Game
from ..learning import POLISH_RTOL, check_options, gradient_play_cells, lambda_costs, polished
from ..play import _check_mftt, br_budget, check_play_kwargs, outcome, perturb
from ..scenarios import get_scenario

# the play() arguments that may differ between fused cells; everything else must be equal
PER_CELL = ("seed", "Lambda", "Lambda_alpha")


class NotFusable(Exception):
    """These cells cannot be solved as one ODE (different structure, a non-Nash concept, a divergence…)."""


def fusion_key(kwargs: dict) -> str | None:
    """Cells with equal keys may be fused; None when this cell's scenario/concept never fuses."""
    try:
        cls = get_scenario(kwargs["scenario"])
    except (KeyError, ValidationError):
        return None
    concept = kwargs.get("concept") or cls.default_concept
    if not getattr(cls, "fusable", False) or concept != "nash" or kwargs.get("solver"):
        return None
    rest = {k: v for k, v in kwargs.items() if k not in PER_CELL}
    return json.dumps(rest, sort_keys=True, default=str)


def plan(kwargs: Sequence[dict], max_cells: int) -> list[list[int]]:
    """Group cell indices into tasks: fusable cells with equal keys, in chunks of at most ``max_cells``.

    The plan depends on the cells only (not on workers), so every backend fuses the same way.
    """
    groups: dict[str, list[int]] = {}
    tasks: list[list[int]] = []
    for i, kw in enumerate(kwargs):
        key = fusion_key(kw) if max_cells > 1 else None
        if key is None:
            tasks.append([i])
        else:
            groups.setdefault(key, []).append(i)
    for g in groups.values():
        k = -(-len(g) // max_cells)  # chunks whose sizes differ by at most one
        tasks.extend(g[len(g) * i // k : len(g) * (i + 1) // k] for i in range(k))
    return sorted(tasks)


def _same(a, b, depth: int = 0) -> bool:
    """Structural equality of two closures' contents (code, captured numbers, tensors, nested closures)."""
    if depth > 6:
        return False
    if a is b:
        return True
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.shape == b.shape and bool(np.array_equal(a, b))
    if isinstance(a, types.FunctionType) and isinstance(b, types.FunctionType):
        if a.__code__ is not b.__code__ or (a.__defaults__ or ()) != (b.__defaults__ or ()):
            return False
        ca, cb = a.__closure__ or (), b.__closure__ or ()
        return len(ca) == len(cb) and all(
            _same(x.cell_contents, y.cell_contents, depth + 1) for x, y in zip(ca, cb, strict=True)
        )
    if isinstance(a, int | float | str | bool | complex | type(None)):
        return type(a) is type(b) and a == b
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(_same(x, y, depth + 1) for x, y in zip(a, b, strict=True))
        )
    return False


class FusedGame(Game):
    """C copies of a ``DifferentialGame`` (same dynamics and costs, own initial states and policies) as one
    game of C·n agents, agent ``c·n + j`` being agent j of cell c; ``costs()`` solves one ODE ``[C, ·]``."""

    solve_defaults: dict = {}

    def __init__(self, games: Sequence[DifferentialGame]):
        games = list(games)
        if len(games) < 2 or not all(type(g) is DifferentialGame for g in games):
            raise NotFusable("fusion needs at least two DifferentialGame cells")
        g0 = games[0]
        for g in games[1:]:
            same = (
                g.x0.shape == g0.x0.shape
                and g.x0.dtype == g0.x0.dtype
                and g.x0.device == g0.x0.device
                and g.n_agents == g0.n_agents
                and g.method == g0.method
                and g.bounds == g0.bounds
                and torch.equal(g.times, g0.times)
                and g.stack.groups == g0.stack.groups
                and [p.signature() for p in g.stack.policies]
                == [p.signature() for p in g0.stack.policies]
                and all(
                    _same(getattr(g, k), getattr(g0, k))
                    for k in ("dynamics", "running_cost", "terminal_cost", "summarize")
                )
                and (
                    _same(g.observe, g0.observe)
                    or (g.observe.__func__ is g0.observe.__func__ is DifferentialGame._observe_all)
                )
            )
            if not same:
                raise NotFusable("the cells' games differ in structure, dynamics or costs")
        self.games, self.base = games, g0
        self.n_cells, self.n_per_cell = len(games), g0.n_agents
        self.n_agents = self.n_cells * self.n_per_cell
        self.agents = [a for g in games for a in g.agents]
        self.agent_names = [f"{c}:{n}" for c, g in enumerate(games) for n in g.agent_names]
        self.device = g0.device
        self.convex_own_cost = g0.convex_own_cost
        self.solve_defaults = dict(g0.solve_defaults)
        self.x0 = torch.stack([g.x0 for g in games])
        self.stack = PolicyStack([a.policy for a in self.agents])
        self.times, self.stage_times = g0.times, g0.stage_times
        default_obs = getattr(g0.observe, "__func__", None) is DifferentialGame._observe_all
        n = self.n_per_cell
        if default_obs:  # every agent sees all particles: no vmap needed
            self._observe = lambda t, x: x.unsqueeze(1).expand((x.shape[0], n) + tuple(x.shape[1:]))
        else:
            self._observe = vmap(g0.observe, in_dims=(None, 0))
        dyn, run = g0.dynamics, g0.running_cost
        # one vmap for both (its per-call input handling is most of the fused field's Python overhead)
        self._rates = vmap(lambda t, x, u: (dyn(t, x, u), run(t, x, u)), in_dims=(None, 0, 0))
        self._terminal = vmap(g0.terminal_cost)

    def parameters_of(self, k: int) -> list[Tensor]:
        return self.agents[k].parameters()

    def costs(self) -> Tensor:
        """Material costs [C·n] (cell-major) of every cell, from one solve."""
        return self.simulate()[1].reshape(-1)

    def simulate(self, return_states: bool = False):
        """(xs [K, C, P, d] or None, costs [C, n]) from one ODE over all cells."""
        return self.stack.run(lambda: self._simulate(return_states), self.stage_times)

    def _simulate(self, return_states: bool):
        C, n = self.n_cells, self.n_per_cell
        _, P, d = self.x0.shape
        nx = P * d
        lo_hi = self.base.bounds

        def field(t: Tensor, z: Tensor) -> Tensor:
            x = z[:, :nx].reshape(C, P, d)
            o = self._observe(t, x)
            u = self.stack(t, o.reshape((C * n,) + tuple(o.shape[2:])))
            if lo_hi is not None:
                u = u.clamp(*lo_hi)
            u = u.reshape((C, n) + tuple(u.shape[1:]))
            dx, cost_rate = self._rates(t, x, u)
            return torch.cat([dx.reshape(C, nx), cost_rate], 1)

        z0 = torch.cat([self.x0.reshape(C, nx), self.x0.new_zeros(C, n)], 1)
        sol = solve(field, z0, self.times, method=self.base.method)
        self.nfe += sol.nfe  # every cell takes part in every solve
        zT = sol.xs[-1]
        costs = zT[:, nx:] + self._terminal(zT[:, :nx].reshape(C, P, d))
        if not torch.isfinite(costs).all():
            raise DivergenceError(self.base.T, "cost")
        xs = sol.xs[:, :, :nx].reshape(-1, C, P, d) if return_states else None
        return xs, costs

    def rollouts(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every cell's (times [K], state summary [K, k]) at the current policies."""
        with torch.no_grad():
            xs, _ = self.simulate(return_states=True)
        times = self.times.cpu().numpy()
        out = []
        for c, g in enumerate(self.games):
            traj = g.summarize(xs[:, c])
            out.append((times, traj.reshape(len(times), -1).cpu().numpy()))
        return out


def block_Lambda(Lambdas: Sequence[np.ndarray]) -> np.ndarray:
    """The fused game's empathy matrix: the cells' Λ on the diagonal blocks (cells do not see each other)."""
    return block_diag(*(np.asarray(L, dtype=float) for L in Lambdas))


def play_fused(cells: Sequence[dict]) -> list:
    """Play cells that differ only in seed and Λ as one fused game; one ``Outcome`` per cell.

    Raises ``NotFusable`` when they cannot be (different settings, a non-Nash concept, a scenario without
    ``fusable``, bad input, or a numerical failure in any cell): ``play_many`` then plays them one by one.
    """

    t0 = time.perf_counter()
    cells = [dict(kw) for kw in cells]
    keys = {fusion_key(kw) for kw in cells}
    if len(cells) < 2 or None in keys or len(keys) != 1:
        raise NotFusable("the cells differ in more than seed and Λ, or do not fuse")
    kw0 = cells[0]
    try:
        cls, policy, concept, steps, lr, _ = check_play_kwargs(kw0)
        _check_mftt(kw0.get("mftt"))
        device = str(limits.device("device", kw0.get("device", "cpu")))
        scs, Ls, games, seeds = [], [], [], []
        for kw in cells:
            seed = int(kw.get("seed", 0))
            sc = cls(kw.get("n_agents"), **(kw.get("params") or {}))
            L = as_Lambda(kw.get("Lambda", "selfish"), sc.n_players, kw.get("Lambda_alpha", 0.5))
            torch.manual_seed(seed)
            np.random.seed(seed)
            game = sc.game(
                Lambda=L,
                law=kw0.get("law", "feedback"),
                policy=policy,
                mftt=kw0.get("mftt"),
                seed=seed,
                device=device,
            )
            perturb(game, seed, float(kw0.get("init_noise", 0.0)))
            scs.append(sc), Ls.append(L), games.append(game), seeds.append(seed)
        fused = FusedGame(games)
        n = fused.n_per_cell
        Lb = block_Lambda(Ls)
        opts = {"method": "gradient", "tol": 1e-8, "optimizer": "sgd", **fused.solve_defaults}
        opts = {k: opts[k] for k in ("method", "tol", "optimizer")}
        check_options(steps, lr, **opts)
        if fused.convex_own_cost:
            require_self_regard(Lb, range(fused.n_agents), "nash needs lambda_jj > 0 here")
        rng = torch.get_rng_state()
        rounds = int(fused.solve_defaults.get("polish_rounds", 0))
        learned = gradient_play_cells(
            fused, Lb, steps=steps, lr=lr, **opts, rtol=POLISH_RTOL if rounds else None
        )
        if not torch.equal(rng, torch.get_rng_state()):
            raise NotFusable("the game draws random numbers while it is played")
        if any(r[0] == "diverged" for r in learned):
            raise NotFusable("a cell diverged")
        rounds = int(fused.solve_defaults.get("polish_rounds", 0))
        if (
            rounds
        ):  # best-response rounds per cell, on the cell's own game (its agents are the fused ones)
            learned = [
                polished(g, L, r, rounds, steps) for g, L, r in zip(games, Ls, learned, strict=True)
            ]
        with torch.no_grad():
            costs, _ = lambda_costs(fused, Lb)
        costs = costs.detach().cpu().numpy().astype(float).reshape(len(cells), n)
        if not np.isfinite(costs).all():
            raise NotFusable("a cell diverged")
    except (ValidationError, DivergenceError, RuntimeError, ArithmeticError, ValueError) as e:
        raise NotFusable(f"{type(e).__name__}: {e}") from e
    # every cell is measured on its own game (its agents are the fused game's): one set of status rules
    share = (time.perf_counter() - t0) / len(cells)
    out = []
    for c, (sc, L, g, seed) in enumerate(zip(scs, Ls, games, seeds, strict=True)):
        status, its, res, hist = learned[c]
        eq = Equilibrium(
            concept=concept,
            Lambda=L,
            actions=None,
            policies=[],
            costs=costs[c],
            empathetic_costs=L @ costs[c],
            history=hist,
            status=status,
            iterations=its,
            residual=res,
        )
        base = dict(
            scenario=cls.name,
            Lambda=L,
            law=kw0.get("law", "feedback"),
            policy=policy,
            concept=concept,
            seed=seed,
            agent_names=list(g.agent_names),
            n_params=np.asarray(g.n_params(), dtype=int),
        )
        g.nfe += fused.nfe  # the cell took part in every fused solve
        out.append(
            outcome(
                g,
                sc,
                L,
                eq,
                base,
                t0=time.perf_counter() - share,
                tolerance=kw0.get("tolerance"),
                budget=br_budget(sc, g, steps, lr),
            )
        )
    return out


def play_many(cells: Sequence[dict]) -> list:
    """``[play(**kw) for kw in cells]``, fusing the cells that can share one ODE (same numbers, fewer solves).

    Cells that cannot be fused, or a fused group that fails in any cell, are played one by one, so every
    cell gets the status, message and numbers its stand-alone ``play`` gives.
    """
    # looked up when called, so that a substituted agents.play.play (tests inject failures) is used
    from ..play import play

    cells = list(cells)
    results: list = [None] * len(cells)
    for task in plan(cells, max_cells=len(cells) or 1):
        try:
            outs = play_fused([cells[i] for i in task])
        except NotFusable:
            outs = [play(**cells[i]) for i in task]
        for i, o in zip(task, outs, strict=True):
            results[i] = o
    return results


__all__ = [
    "FusedGame",
    "NotFusable",
    "block_Lambda",
    "fusion_key",
    "plan",
    "play_fused",
    "play_many",
]
