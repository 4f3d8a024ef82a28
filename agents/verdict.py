"""The verdict on a learned profile: certified exploitability, the status rules, and the gaps to references.

One function (``measure``) turns a learned game into the numbers an ``Outcome`` reports, for stand-alone and fused
cells alike, so every cell is judged by the same rules (README, "What the numbers mean"):

* ``diverged``: non-finite costs, or costs beyond ``blowup``·(1 + the starting profile's cost scale);
* ``unbounded``: a best response without bound, or a scenario that declares no equilibrium exists here;
* ``not_converged``: the learning stopped at its step budget;
* ``not_equilibrium``: converged, but NashConv exceeds ``exploitability`` × the cost scale;
* ``ok``: converged and NashConv within the tolerance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from control.errors import number

from .best_response import Budget
from .equilibrium import Equilibrium
from .exploitability import Exploitability, exploitability
from .game import Game


@dataclass(frozen=True)
class Tolerance:
    """When a cell is ``ok``: NashConv ≤ ``exploitability`` × cost scale; ``blowup``: the divergence bound."""

    exploitability: float = 1e-3
    blowup: float = 1e6
    worse: float = (
        0.05  # a last Λ-cost this far (relative) above the best seen is reported in the message
    )

    def __post_init__(self):
        number("tolerance.exploitability", self.exploitability, low=0.0, strict_low=True)
        number("tolerance.blowup", self.blowup, low=1.0)
        number("tolerance.worse", self.worse, low=0.0, strict_low=True)


@dataclass(frozen=True)
class Verdict:
    """What ``measure`` concludes about a learned profile."""

    status: str
    message: str
    exploitability: Exploitability | None
    scale: float


def cost_scale(E: np.ndarray) -> float:
    """The cost scale a tolerance is relative to: the largest |Λ-cost| of the learned profile (≥ 1e-9)."""
    vals = np.abs(np.asarray(E, float))
    vals = vals[np.isfinite(vals)]
    return float(max(vals.max() if vals.size else 0.0, 1e-9))


def _worse(history: np.ndarray, tol: Tolerance) -> str:
    """A message when learning ended far above the best total Λ-cost it had visited."""
    if len(history) < 2:
        return ""
    tot = np.asarray(history, float).sum(1)
    ok = np.isfinite(tot)
    if not ok.any():
        return ""
    best_i = int(np.nanargmin(np.where(ok, tot, np.inf)))
    best, last = tot[best_i], tot[-1]
    if math.isfinite(last) and last - best > tol.worse * max(abs(best), 1e-9):
        return (
            f"learning got worse: total Λ-cost {last:.4g} at the end vs {best:.4g} at iteration "
            f"{best_i + 1}"
        )
    return ""


def blown_up(E: np.ndarray, history: np.ndarray, tol: Tolerance) -> str:
    """A message when the costs are non-finite or beyond the blow-up bound of the starting profile."""
    E = np.asarray(E, float)
    if not np.isfinite(E).all():
        return "non-finite costs"
    start = np.abs(np.asarray(history[0], float)) if len(history) else np.zeros(1)
    start = start[np.isfinite(start)]
    bound = tol.blowup * (1.0 + (start.max() if start.size else 0.0))
    if np.abs(E).max() > bound:
        return (
            f"costs {np.abs(E).max():.3g} beyond the blow-up bound {bound:.3g} "
            f"({tol.blowup:g} × (1 + the starting cost scale))"
        )
    return ""


def measure(
    game: Game,
    Lambda: np.ndarray,
    eq: Equilibrium,
    *,
    agents: list[int] | None = None,
    no_equilibrium: str | None = None,
    tol: Tolerance | None = None,
    budget: Budget | None = None,
) -> Verdict:
    """Judge the game's current (learned) profile: certify its exploitability and apply the status rules."""
    tol = tol or Tolerance()
    hist = np.asarray(eq.history, float).reshape(-1, game.n_agents)
    with torch.no_grad():
        E = np.asarray(Lambda, float) @ game.costs().detach().cpu().numpy().astype(float)
    scale = cost_scale(E)
    boom = blown_up(E, hist, tol)
    if eq.status == "diverged" or boom:
        return Verdict("diverged", boom or eq.message or "the learning diverged", None, scale)
    ex = exploitability(game, Lambda, agents=agents, budget=budget)
    notes = [m for m in (_worse(hist, tol),) if m] if eq.status != "converged" else []
    if no_equilibrium:
        return Verdict("unbounded", "; ".join([no_equilibrium, *notes]), ex, scale)
    if not all(ex.bounded):
        return Verdict("unbounded", "; ".join([ex.message, *notes]), ex, scale)
    limit = tol.exploitability * scale
    if eq.status != "converged":
        notes.insert(0, f"stopped at {eq.iterations} steps, residual {eq.residual:.3g}")
        return Verdict("not_converged", "; ".join(notes), ex, scale)
    if ex.nash_conv > limit:
        j = int(np.argmax(ex.gains))
        notes.insert(
            0,
            f"NashConv {ex.nash_conv:.3g} > tolerance {limit:.3g}: agent {j} gains "
            f"{ex.gains[j]:.3g} by deviating ({ex.method[j]})",
        )
        return Verdict("not_equilibrium", "; ".join(notes), ex, scale)
    if not all(ex.converged):
        notes.append("a numerical best-response search stopped before its tolerance")
    return Verdict("ok", "; ".join(notes) or eq.message or "converged", ex, scale)


def method_label(ex: Exploitability | None) -> str:
    """One label for a cell's exploitability: the agents' methods, deduplicated ("exact:action", …)."""
    if ex is None:
        return ""
    seen: list[str] = []
    for m in ex.method:
        if m != "none" and m not in seen:
            seen.append(m)
    return ",".join(seen)
