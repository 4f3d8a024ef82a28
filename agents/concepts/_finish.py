"""Package the game's current profile as an ``Equilibrium``, measuring its exploitability on request.

Apart from the learning loop (``agents.learning``) because exploitability needs it (the ``own`` best
response runs gradient play), so ``agents.learning`` must not import exploitability back.
"""

from __future__ import annotations

import numpy as np
import torch

from ..equilibrium import Equilibrium
from ..exploitability import exploitability
from ..game import Game
from ..learning import lambda_costs


def finish(
    game: Game,
    Lambda: np.ndarray,
    concept: str,
    status: str,
    iterations: int,
    residual: float,
    history: np.ndarray,
    *,
    measure_exploitability: bool = False,
    message: str = "",
    info: dict | None = None,
    **br_opts,
) -> Equilibrium:
    """Package the game's current profile as an ``Equilibrium`` (optionally measuring exploitability)."""
    with torch.no_grad():
        L, E = lambda_costs(game, Lambda)
    gain, nc = None, None
    if measure_exploitability and status != "diverged":
        ex = exploitability(game, Lambda, **br_opts)
        gain, nc = ex.gains, ex.nash_conv
    return Equilibrium(
        concept=concept,
        Lambda=np.asarray(Lambda, dtype=float),
        actions=game.actions(),
        policies=game.state_dict(),
        costs=L.detach().cpu().numpy().astype(float),
        empathetic_costs=E.detach().cpu().numpy().astype(float),
        history=history,
        status=status,
        iterations=iterations,
        residual=float(residual),
        exploitability=nc,
        per_agent_gain=gain,
        message=message,
        info=info or {},
    )
