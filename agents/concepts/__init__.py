"""Solution concepts, by name: one entry point ``solve(game, concept, Lambda)`` for every game (docs/theory.md#patterns)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from control.errors import ValidationError, choice, no_unknown

from ..empathy import as_Lambda
from ..equilibrium import Equilibrium
from ..game import Game
from .minimax import solve_minimax
from .nash import solve_nash
from .stackelberg import solve_stackelberg

SOLUTION_CONCEPTS: dict[str, Callable[..., Equilibrium]] = {
    "nash": solve_nash,
    "stackelberg": solve_stackelberg,
    "minimax": solve_minimax,
}


def solve(
    game: Game,
    concept: str = "nash",
    Lambda: str | np.ndarray | None = None,
    *,
    Lambda_alpha: float = 0.5,
    **opts: Any,
) -> Equilibrium:
    """Find the ``concept`` equilibrium of the Λ-game (Λ: None = selfish, a preset name, or an n×n matrix).

    Options go to the concept (``steps``, ``lr``, ``method``, ``tol``, ``progress``, …); unknown ones
    are refused with the allowed list.
    """
    if not isinstance(game, Game):
        raise ValidationError("game", "an agents.Game", type(game).__name__)
    fn = SOLUTION_CONCEPTS[choice("concept", concept, sorted(SOLUTION_CONCEPTS))]
    L = as_Lambda(Lambda, game.n_agents, Lambda_alpha)

    allowed = [p for p in inspect.signature(fn).parameters if p not in ("game", "Lambda")]
    no_unknown(concept, opts, allowed)
    pref = {k: v for k, v in getattr(game, "solve_defaults", {}).items() if k in allowed}
    return fn(game, L, **{**pref, **opts})


__all__ = ["SOLUTION_CONCEPTS", "solve", "solve_minimax", "solve_nash", "solve_stackelberg"]
