"""Two-player zero-sum saddle point min_u max_v L by extragradient; plain GDA kept to show why it fails (spec §C.4)."""

from __future__ import annotations

import numpy as np
import torch

from control.errors import ValidationError

from ..empathy import require_self_regard
from ..equilibrium import Equilibrium
from ..game import Game
from ._play import check_options, finish, gradient_play, lambda_costs

ALIASES = {"gda": "gradient", "extragradient": "extragradient", "optimistic": "optimistic",
           "gradient": "gradient"}  # fmt: skip


def solve_minimax(
    game: Game,
    Lambda: np.ndarray,
    *,
    steps: int = 2000,
    lr: float = 0.05,
    method: str = "extragradient",
    tol: float = 1e-8,
    progress: bool = False,
    measure_exploitability: bool = False,
    br_steps: int = 300,
    br_lr: float | None = None,
) -> Equilibrium:
    """Saddle of a two-player game whose Λ-costs sum to zero: player 0 minimises L, player 1 maximises it.

    ``method``: "extragradient" (default, converges on monotone games incl. the bilinear L = uv),
    "optimistic", or "gda" / "gradient" (simultaneous gradient descent-ascent; rotates outward on uv).
    """
    if game.n_agents != 2:
        raise ValidationError("concept", "a two-player game for minimax", f"{game.n_agents} agents")
    m = ALIASES.get(method, method)
    check_options(steps, lr, m, tol, "sgd")
    require_self_regard(
        Lambda, range(2),
        "minimax needs each player to minimise its own convex(-concave) cost: lambda_jj <= 0 "
        "turns the minimiser into a maximiser of its own cost (spec A.1 remark 3)",
    )  # fmt: skip
    with torch.no_grad():
        _, E = lambda_costs(game, Lambda)
    s, scale = float(E.sum()), float(E.abs().max()) + 1.0
    if abs(s) > 1e-8 * scale:
        raise ValidationError(
            "concept", "a zero-sum game for minimax (Λ-costs summing to 0)", f"sum {s:.3g}",
            reason="use concept='nash' for general-sum games",
        )  # fmt: skip
    status, it, res, hist = gradient_play(
        game, Lambda, steps=steps, lr=lr, method=m, tol=tol, progress=progress
    )
    return finish(
        game, Lambda, "minimax", status, it, res, hist,
        measure_exploitability=measure_exploitability, steps=br_steps, lr=br_lr or lr,
    )  # fmt: skip
