"""Nash equilibrium of the Λ-game (docs/theory.md#empathy, docs/theory.md#patterns; team, Berge, spite are Λ choices).

Every game: simultaneous gradient play (``method`` gradient / extragradient / optimistic). Finite games
(``MatrixGame``): an exact equilibrium by default (``method="exact"``, ``agents.finite``: support
enumeration / Lemke–Howson / n-player enumeration), or learned dynamics (``"fictitious_play"``, ``"logit"``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from control.errors import choice, number

from .. import finite
from ..empathy import require_self_regard
from ..equilibrium import Equilibrium
from ..game import Game, MatrixGame
from ..learning import METHODS, POLISH_RTOL, check_options, gradient_play, polished
from ._finish import finish

FINITE_METHODS = ("exact", "fictitious_play", "logit")


def solve_nash(
    game: Game,
    Lambda: np.ndarray,
    *,
    steps: int = 500,
    lr: float = 0.05,
    method: str | None = None,
    tol: float = 1e-8,
    optimizer: str = "sgd",
    progress: bool = False,
    measure_exploitability: bool = False,
    br_steps: int = 300,
    br_lr: float | None = None,
    solver: str = "auto",
    select: str = "welfare",
    polish_rounds: int = 0,
) -> Equilibrium:
    """A Nash equilibrium of the Λ-game: exact for a finite game, else learned by simultaneous gradient play.

    ``method=None`` is ``"exact"`` for a ``MatrixGame`` (``solver`` and ``select`` go to
    ``agents.finite.nash_equilibria``; ``info`` names the solver and counts the equilibria) and
    ``"gradient"`` otherwise: every agent j descends (Λ L)_j in its own variables, simultaneously
    (gradient/extragradient/optimistic). ``"fictitious_play"``/``"logit"`` (finite games) report the time
    average as the profile and the last iterate in ``info``. Games whose own costs are convex in
    unbounded decisions (``game.convex_own_cost``) refuse λ_jj ≤ 0: such an agent would maximise its own
    convex cost (docs/theory.md#self-regard). ``polish_rounds`` > 0 (differential games' default) follows gradient
    play with rounds of own-class best responses (``_play.polish``) until no agent gains.
    """
    br: dict[str, Any] = {
        "measure_exploitability": measure_exploitability,
        "steps": br_steps,
        "lr": br_lr or lr,
    }
    if isinstance(game, MatrixGame):
        method = choice(
            "method", "exact" if method is None else method, [*FINITE_METHODS, *METHODS]
        )
        if method in FINITE_METHODS:
            return _solve_finite(game, Lambda, method, steps, tol, progress, solver, select, br)
    method = "gradient" if method is None else method
    check_options(steps, lr, method, tol, optimizer)
    if game.convex_own_cost:
        require_self_regard(
            Lambda,
            range(game.n_agents),
            "nash in this game needs a convex own cost: with lambda_jj <= 0 the agent maximises "
            "its own convex cost over an unbounded action, so the best response is ill posed "
            "(docs/theory.md#self-regard)",
        )
    rtol = POLISH_RTOL if polish_rounds else None
    opts: dict[str, Any] = dict(
        steps=steps, lr=lr, method=method, tol=tol, optimizer=optimizer, progress=progress
    )
    learned = gradient_play(game, Lambda, rtol=rtol, **opts)
    if polish_rounds and learned.status != "diverged":
        learned = polished(game, Lambda, learned, polish_rounds, steps)
    return finish(game, Lambda, "nash", *learned, **br)


def _solve_finite(
    game: MatrixGame,
    Lambda: np.ndarray,
    method: str,
    steps: int,
    tol: float,
    progress: bool,
    solver: str,
    select: str,
    br: dict,
) -> Equilibrium:
    """An exact equilibrium (selected by ``select``) or the time average of learned dynamics, set into ``game``.

    The residual is the largest gain of a pure deviation in Λ-payoffs (0 at a Nash equilibrium); ``br``: the
    options of ``finish`` (whether and how to measure exploitability).
    """
    number("tol", tol, low=0.0)
    choice("solver", solver, ["auto", *finite.FINITE_SOLVERS])
    choice("select", select, finite.SELECTIONS)
    u = game.payoffs.detach().cpu().numpy().astype(float)
    U = finite.lambda_payoffs(u, Lambda)
    scale = max(1.0, float(np.abs(U).max()))
    if method == "exact":
        res = finite.nash_equilibria(u, Lambda, method=solver, select=select)
        profile, residual = res.profile, float(res.regrets[0])
        ok = residual <= max(tol, 1e-9) * scale
        info = {
            "method": f"exact:{res.method}",
            "n_equilibria": res.count,
            "complete": res.complete,
            "degenerate": res.degenerate,
            "selection": select,
            "equilibria": [[x.copy() for x in p] for p in res.profiles],
        }
        if res.count == 1 and res.complete:
            msg = f"exact equilibrium by {res.method} (the only one)"
        else:
            found = f"{res.count} found" + ("" if res.complete else ", maybe not all")
            msg = f"exact equilibrium by {res.method}, selected by {select} ({found})"
        if res.note:
            msg += f"; {res.note}"
        iterations, hist = 1, -finite.expected_payoffs(U, profile)[None]
    else:
        lp = finite.LEARNED_DYNAMICS[method](U, steps=steps, init=game.strategies(), tol=tol)
        profile, residual = lp.average, lp.regret_average
        ok = residual <= tol * scale
        info = {
            "method": f"learned:{method}",
            "last": [x.copy() for x in lp.last],
            "average": [x.copy() for x in lp.average],
            "regret_last": lp.regret_last,
            "regret_average": lp.regret_average,
        }
        msg = (
            f"{method}: time average (largest deviation gain {lp.regret_average:.2e}) reported; "
            f"last iterate's gain {lp.regret_last:.2e}"
        )
        iterations, hist = lp.iterations, -lp.values
    game.set_strategies(profile)
    if progress:
        print(f"  nash on a finite game: {msg}")
    status = "converged" if ok else "max_steps"
    return finish(
        game, Lambda, "nash", status, iterations, residual, hist, message=msg, info=info, **br
    )
