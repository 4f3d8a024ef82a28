"""The result of a solution concept: the learned profile, its costs, the learning history and a status."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class Equilibrium:
    """A (learned) equilibrium of the Λ-game (docs/theory.md#empathy, docs/theory.md#patterns).

    ``actions``: the action profile [n, d] for static/matrix games (None for policy games);
    ``policies``: snapshot of every agent's decision variables (``Game.state_dict``);
    ``costs``: material costs L [n]; ``empathetic_costs``: Λ L [n]; ``history``: [iterations, n]
    empathetic costs over learning; ``status``: "converged" | "max_steps" | "diverged";
    ``exploitability``/``per_agent_gain``: NashConv and each agent's best-response gain when measured.
    """

    concept: str
    Lambda: np.ndarray
    actions: np.ndarray | None
    policies: list[list[torch.Tensor]]
    costs: np.ndarray
    empathetic_costs: np.ndarray
    history: np.ndarray
    status: str
    iterations: int = 0
    residual: float = float("nan")
    exploitability: float | None = None
    per_agent_gain: np.ndarray | None = None
    message: str = ""
    info: dict = field(default_factory=dict)

    @property
    def converged(self) -> bool:
        """True when the stopping tolerance was met."""
        return self.status == "converged"
