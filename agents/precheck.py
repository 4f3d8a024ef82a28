"""Check one cell's inputs the way ``agents.play`` will, without learning: for forms that must refuse before running.

``precheck`` resolves the scenario, policy, law, concept and Λ exactly as ``play`` does, builds the game and
asks the solution concept for one learning step, so every refusal that ``play`` raises up front (a Λ that
the concept cannot use in this game, e.g. λ_jj ≤ 0 where the own cost must be convex,
docs/theory.md#self-regard) comes back as the same one-line ``ValidationError`` naming the entry. It costs one
game build and one step (≤ 1 s for the built-in scenarios).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from control.errors import ValidationError

from .cell import CellSpec
from .concepts import solve


def precheck(
    scenario: str,
    *,
    n_agents: int | None = None,
    Lambda: Any = "selfish",
    Lambda_alpha: float = 0.5,
    law: str = "feedback",
    policy: str | None = None,
    concept: str | None = None,
    params: dict | None = None,
    mftt: dict | None = None,
) -> None:
    """Raise the ``ValidationError`` that ``agents.play`` would raise for these inputs before learning; else None."""
    spec = CellSpec.of(dict(locals()))  # the arguments, as play takes them
    _, L, game = spec.build()
    try:
        solve(game, spec.concept, L, steps=1, lr=spec.lr)
    except ValidationError:
        raise
    except Exception:  # noqa: BLE001 (numerical trouble in one step is the run's business, not a refusal)
        return


def lambda_warnings(Lambda: Any, *, big: float = 1e3) -> list[str]:
    """Plain-language warnings for a valid but extreme or degenerate Λ (entries are weights on costs)."""
    L = np.asarray(Lambda, dtype=float)
    out = []
    n = L.shape[0]
    peak = float(np.abs(L).max()) if L.size else 0.0
    if peak > big:
        i, k = np.unravel_index(int(np.abs(L).argmax()), L.shape)
        out.append(
            f"Lambda[{i + 1},{k + 1}] = {L[i, k]:g} is very large (|λ| > {big:g}): costs are scaled by it, "
            "so learning steps grow alike and the run may diverge."
        )
    for j in range(n):
        if not np.any(L[j]):
            out.append(
                f"row {j + 1} is all zero: agent {j + 1} weighs no cost, so any action is optimal."
            )
    if n > 1 and peak > 0 and abs(np.linalg.det(L / peak)) < 1e-12:
        out.append("Λ is singular: some agents' objectives are combinations of the others'.")
    return out
