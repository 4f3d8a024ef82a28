"""The empathy (co-opetition) matrix Λ: presets, validation, classification and L^Λ = Λ L (docs/theory.md#empathy, docs/theory.md#patterns).

Agent j minimises L^Λ_j = λ_jj L_j + Σ_{i≠j} λ_ji L_i. λ_ji > 0: j wants i to do well (altruism);
λ_ji < 0: spite; λ_jj = 0: selfless; λ_jj < 0: self-abnegating. Every simultaneous-move interaction
pattern is the Nash equilibrium of the Λ-game for some Λ (architecture "One knob for all interaction
patterns").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from control.errors import ValidationError, choice, number
from control.limits import check_size


def _n(n: Any, least: int = 1) -> int:
    n = int(number("n_agents", n, low=least, integer=True))
    check_size("n_agents", (n, n))  # an n×n Λ that cannot fit is refused, not allocated
    return n


def _off(n: int) -> np.ndarray:
    return np.ones((n, n)) - np.eye(n)


def selfish(n: int, alpha: float = 0.5) -> np.ndarray:
    """Λ = I: the standard non-cooperative game (alpha unused)."""
    return np.eye(_n(n))


def altruistic(n: int, alpha: float = 0.5) -> np.ndarray:
    """λ_jj = 1, λ_ji = alpha > 0: partial altruism (alpha = 1 is the team game)."""
    return np.eye(_n(n)) + number("Lambda_alpha", alpha) * _off(n)


def spiteful(n: int, alpha: float = 0.5) -> np.ndarray:
    """λ_jj = 1, λ_ji = −alpha: partial spite (alpha = 1 for two players is the zero-sum game of differences)."""
    return np.eye(_n(n)) - number("Lambda_alpha", alpha) * _off(n)


def team(n: int, alpha: float = 0.5) -> np.ndarray:
    """Λ = 11ᵀ: everyone minimises the social cost Σ_i L_i (team / Pareto with equal weights)."""
    return np.ones((_n(n), _n(n)))


def berge(n: int, alpha: float = 0.5) -> np.ndarray:
    """λ_jj = 0, λ_ji = 1/(n−1): each agent serves the others only (Berge mutual support, docs/theory.md#patterns)."""
    n = _n(n, least=2)
    return _off(n) / (n - 1)


def zero_sum(n: int, alpha: float = 0.5) -> np.ndarray:
    """λ_jj = 1, λ_ji = −1/(n−1): the empathetic costs sum to zero (two players: the adversarial case)."""
    n = _n(n, least=2)
    return np.eye(n) - _off(n) / (n - 1)


def coopetitive(
    n: int,
    alpha: float = 0.5,
    *,
    groups: Sequence[int] | None = None,
    beta: float | None = None,
) -> np.ndarray:
    """λ_jj = 1, λ_ji = alpha inside j's group and −beta across groups (help your group, hurt the others).

    ``groups``: one group label per agent (default: first ⌈n/2⌉ agents vs the rest); ``beta``
    defaults to ``alpha``.
    """
    n = _n(n)
    a = number("Lambda_alpha", alpha)
    b = a if beta is None else number("beta", beta)
    g = np.asarray(groups if groups is not None else [0] * ((n + 1) // 2) + [1] * (n // 2))
    if g.shape != (n,):
        raise ValidationError("groups", f"{n} group labels (one per agent)", groups)
    same = g[:, None] == g[None, :]
    L = np.where(same, a, -b)
    np.fill_diagonal(L, 1.0)
    return L.astype(float)


def self_abnegating(n: int, alpha: float = 0.5) -> np.ndarray:
    """λ_jj = −alpha < 0, λ_ji = 1/(n−1): agents work against their own cost and for the others'."""
    n = _n(n, least=2)
    return -number("Lambda_alpha", alpha) * np.eye(n) + _off(n) / (n - 1)


def selfless(n: int, alpha: float = 0.5) -> np.ndarray:
    """λ_jj = 0, λ_ji = 1: agents weigh only the others' costs (unnormalised Berge)."""
    return _off(_n(n, least=2))


PRESETS: dict[str, Callable[..., np.ndarray]] = {
    "selfish": selfish,
    "altruistic": altruistic,
    "spiteful": spiteful,
    "team": team,
    "berge": berge,
    "zero_sum": zero_sum,
    "coopetitive": coopetitive,
    "self_abnegating": self_abnegating,
    "selfless": selfless,
}


def preset(name: str, n: int, alpha: float = 0.5, **kw: Any) -> np.ndarray:
    """The n×n Λ of preset ``name`` (one of ``PRESETS``) with strength ``alpha``."""
    fn = PRESETS[choice("Lambda", name, sorted(PRESETS))]
    if kw and fn is not coopetitive:
        raise ValidationError(f"Lambda.{next(iter(kw))}", f"no options for preset {name}", kw)
    return fn(n, alpha, **kw)


def validate_Lambda(Lambda: Any, n: int, field: str = "Lambda") -> np.ndarray:
    """Check Λ is a finite real n×n matrix; returns it as float64 numpy."""
    try:
        L = np.asarray(
            Lambda.detach().cpu().numpy() if isinstance(Lambda, torch.Tensor) else Lambda,
            dtype=float,
        )
    except (TypeError, ValueError):
        raise ValidationError(field, f"a real {n}x{n} matrix", Lambda) from None
    if L.ndim != 2 or L.shape[0] != L.shape[1]:
        raise ValidationError(field, f"a square {n}x{n} matrix", f"shape {L.shape}")
    if L.shape[0] != n:
        raise ValidationError(
            field,
            f"a {n}x{n} matrix (one row per agent)",
            f"shape {L.shape}",
            reason=f"the game has {n} agents",
        )
    if not np.isfinite(L).all():
        raise ValidationError(field, "finite entries", "NaN or inf")
    return L


def as_Lambda(Lambda: Any, n: int, alpha: float = 0.5, field: str = "Lambda") -> np.ndarray:
    """Resolve Λ given as None (selfish), a preset name or a matrix, and validate it."""
    if Lambda is None:
        return np.eye(n)
    if isinstance(Lambda, str):
        return preset(Lambda, n, alpha)
    return validate_Lambda(Lambda, n, field)


def require_self_regard(Lambda: np.ndarray, agents: Sequence[int], why: str) -> None:
    """Refuse λ_jj ≤ 0 for the listed agents: their own convex cost would be maximised (docs/theory.md#self-regard)."""
    for j in agents:
        if not Lambda[j, j] > 0:
            raise ValidationError(f"Lambda[{j},{j}]", "> 0", float(Lambda[j, j]), reason=why)


def _self_label(v: float) -> str:
    return "partially selfish" if v > 0 else ("selfless" if v == 0 else "self-abnegating")


def classify(Lambda: Any) -> list[str]:
    """One label per agent by the table of docs/theory.md#empathy: self-regard (λ_jj) and other-regard (λ_ji, i ∈ N_j)."""
    try:
        shape = np.shape(Lambda)
    except ValueError:  # ragged rows
        shape = ()
    L = validate_Lambda(Lambda, shape[0] if len(shape) == 2 else -1)
    out = []
    for j in range(L.shape[0]):
        others = np.delete(L[j], j)
        idx = [i for i in range(L.shape[0]) if i != j]
        pos = [i for i, v in zip(idx, others, strict=True) if v > 0]
        neg = [i for i, v in zip(idx, others, strict=True) if v < 0]
        if not pos and not neg:
            out.append("selfish" if L[j, j] > 0 else _self_label(L[j, j]) + ", indifferent")
            continue
        if pos and neg:
            other = f"coopetitive (altruistic to {pos}, spiteful to {neg})"
        else:
            other = "altruistic" if pos else "spiteful"
        out.append(f"{_self_label(L[j, j])}, {other}")
    return out


def empathetic_costs(Lambda: Any, costs: Any) -> Any:
    """L^Λ = Λ L (torch in, torch out on the costs' device/dtype; numpy otherwise)."""
    if isinstance(costs, torch.Tensor):
        Lt = torch.as_tensor(
            np.asarray(Lambda, dtype=float), dtype=costs.dtype, device=costs.device
        )
        return Lt @ costs
    return np.asarray(Lambda, dtype=float) @ np.asarray(costs, dtype=float)
