"""The scenario abstraction: a named game family with declared defaults, Λ meanings and a closed form if known."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from control.errors import ValidationError, choice, number
from control.limits import check_size, real_array

SCENARIOS: dict[str, type[Scenario]] = {}


def register(cls: type[Scenario]) -> type[Scenario]:
    """Class decorator: add a scenario to ``SCENARIOS`` under ``cls.name``."""
    SCENARIOS[cls.name] = cls
    return cls


def get_scenario(name: str) -> type[Scenario]:
    """The scenario class called ``name``; the error lists the known ones."""
    return SCENARIOS[choice("scenario", name, sorted(SCENARIOS))]


def _check_param(field: str, value: Any, default: Any) -> None:
    """A parameter has the kind of its default: flag, name, integer, finite number(s)."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValidationError(field, "true or false", value)
    elif isinstance(default, str):
        if not isinstance(value, str):
            raise ValidationError(field, "a name", value)
    elif isinstance(default, int):
        number(field, value, low=0, integer=True)
    elif isinstance(default, float) or (default is None and not isinstance(value, str)):
        if value is not None:
            real_array(field, value)


class Scenario:
    """A game family. Subclasses declare the class attributes once and implement ``game``/``reference``."""

    name: ClassVar[str] = "?"
    description: ClassVar[str] = ""
    n_agents: ClassVar[int] = 2
    defaults: ClassVar[dict[str, Any]] = {}
    lambda_meaning: ClassVar[dict[str, str]] = {}
    default_concept: ClassVar[str] = "nash"
    default_policy: ClassVar[str] = "linear"
    policies: ClassVar[tuple[str, ...]] = ("linear",)
    default_steps: ClassVar[int] = 200
    default_lr: ClassVar[float] = 0.05
    # cells differing only in seed and Λ may be solved as one ODE (agents.experiments.fusion): a DifferentialGame whose
    # dynamics and costs depend on the scenario's parameters only, not on the seed or Λ
    fusable: ClassVar[bool] = False
    # population scenarios (agents.population): ``n_agents`` counts the agents of each population and the
    # players (Λ's rows) are the populations
    population: ClassVar[bool] = False

    def __init__(self, n_agents: int | None = None, **params: Any):
        n = self.n_agents if n_agents is None else n_agents
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValidationError(f"{self.name}.n_agents", "a positive integer", n_agents)
        self.n = int(n)
        if not self.population:
            check_size(f"{self.name}.n_agents", (self.n, self.n), copies=4)  # Λ and n×n tables
        for k, v in params.items():
            if k not in self.defaults:
                allowed = ", ".join(sorted(self.defaults)) or "none"
                raise ValidationError(
                    f"{self.name}.{k}",
                    f"a parameter of {self.name} ({allowed})",
                    "unknown parameter",
                )
            _check_param(f"{self.name}.{k}", v, self.defaults[k])
        self.params = {**self.defaults, **params}

    @property
    def n_players(self) -> int:
        """The players of the game (Λ is n_players × n_players): the agents, or the populations."""
        return self.n

    def game(
        self,
        *,
        Lambda: np.ndarray,
        law: str,
        policy: str,
        mftt: dict | None,
        seed: int,
        device: str,
    ):
        """Build the game (an ``agents.game.Game``) for this cell."""
        raise NotImplementedError

    def reference(self, Lambda: np.ndarray) -> np.ndarray | None:
        """Closed-form material costs at the equilibrium for this Λ, or None where none is known."""
        return None
