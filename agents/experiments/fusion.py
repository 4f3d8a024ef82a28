"""The fusion plan: C grid cells of one differential game, differing only in seed and Λ, played as one game.

Which cells fuse is decided from the cells' settings alone (``fusion_key``: same scenario, parameters,
concept and options; the scenario declares ``fusable``). The fused game is ``DifferentialGame.fuse`` — the
game side's one simulator with a cell axis: states ``z [C, P·d + n]``, one ``control.solve`` call, one
batched policy call per field evaluation. Learning keeps every cell separate: per-cell Adam states, stopping
rules, statuses and histories (``gradient_play_cells``), so a fused cell reproduces its stand-alone ``play``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import numpy as np
import torch
from scipy.linalg import block_diag

from control import DivergenceError
from control.errors import ValidationError

from ..cell import CellSpec
from ..differential import DifferentialGame, NotFusable  # re-exported: the plan raises it too
from ..empathy import require_self_regard
from ..equilibrium import Equilibrium
from ..learning import POLISH_RTOL, check_options, gradient_play_cells, lambda_costs, polished
from ..play import br_budget, outcome
from ..scenarios import get_scenario

# the play() arguments that may differ between fused cells; everything else must be equal
PER_CELL = ("seed", "Lambda", "Lambda_alpha")


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
        specs = [
            CellSpec.of(kw) for kw in cells
        ]  # validated once; every cell built as play builds it
        spec0 = specs[0]
        cls, policy, concept, steps, lr = (
            spec0.scenario_class,
            spec0.policy,
            spec0.concept,
            spec0.steps,
            spec0.lr,
        )
        scs, Ls, games, seeds = [], [], [], []
        for spec in specs:
            sc, L, game = spec.build()
            scs.append(sc), Ls.append(L), games.append(game), seeds.append(spec.seed)
        fused = DifferentialGame.fuse(games)
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
    except (
        ValidationError,
        DivergenceError,
        RuntimeError,
        ArithmeticError,
        ValueError,
    ) as e:
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
            law=spec0.law,
            policy=policy,
            concept=concept,
            seed=seed,
            agent_names=list(g.agent_names),
            n_params=np.asarray(g.n_params(), dtype=int),
        )
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
    "NotFusable",
    "block_Lambda",
    "fusion_key",
    "plan",
    "play_fused",
    "play_many",
]
