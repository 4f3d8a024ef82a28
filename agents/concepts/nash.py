"""Nash equilibrium of the Λ-game by simultaneous gradient play (spec §A.1–A.2; team, Berge, spite are Λ choices)."""

from __future__ import annotations

import numpy as np

from ..empathy import require_self_regard
from ..equilibrium import Equilibrium
from ..game import Game
from ._play import check_options, finish, gradient_play


def solve_nash(
    game: Game,
    Lambda: np.ndarray,
    *,
    steps: int = 500,
    lr: float = 0.05,
    method: str = "gradient",
    tol: float = 1e-8,
    optimizer: str = "sgd",
    progress: bool = False,
    measure_exploitability: bool = False,
    br_steps: int = 300,
    br_lr: float | None = None,
) -> Equilibrium:
    """Every agent j descends (Λ L)_j in its own variables, simultaneously (gradient/extragradient/optimistic).

    Games whose own costs are convex in unbounded decisions (``game.convex_own_cost``) refuse λ_jj ≤ 0:
    such an agent would maximise its own convex cost (spec §A.1 remark 3).
    """
    check_options(steps, lr, method, tol, optimizer)
    if game.convex_own_cost:
        require_self_regard(
            Lambda,
            range(game.n_agents),
            "nash in this game needs a convex own cost: with lambda_jj <= 0 the agent maximises "
            "its own convex cost over an unbounded action, so the best response is ill posed "
            "(spec A.1 remark 3)",
        )
    status, it, res, hist = gradient_play(
        game, Lambda, steps=steps, lr=lr, method=method, tol=tol, optimizer=optimizer,
        progress=progress,
    )  # fmt: skip
    return finish(
        game, Lambda, "nash", status, it, res, hist,
        measure_exploitability=measure_exploitability, steps=br_steps, lr=br_lr or lr,
    )  # fmt: skip
