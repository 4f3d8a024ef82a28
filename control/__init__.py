"""control — mean-field-type optimal control: weight laws, ODE integration, costs, LQ/Riccati references, training."""

from . import costs, meanfield
from .costs import RISKS, risk
from .errors import DivergenceError, ValidationError
from .fixed_point import FixedPointResult, km_flow, km_iterate, lipschitz_estimate
from .hinf import (
    HInfGame,
    HInfSolution,
    best_response_attacker,
    best_response_defender,
    game_riccati_closed_form,
)
from .integrate import METHODS, Solution, solve
from .laws import WEIGHT_LAWS, WeightLaw, make_law
from .meanfield import MeanField
from .particles import ParticleLQ, RiccatiLaw, Rollout
from .riccati import GameSolution, LQGame, LQProblem, LQSolution, riccati_closed_form
from .training import OPTIMIZERS, FitResult, fit

__all__ = [
    "DivergenceError",
    "FitResult",
    "FixedPointResult",
    "GameSolution",
    "HInfGame",
    "HInfSolution",
    "LQGame",
    "LQProblem",
    "LQSolution",
    "METHODS",
    "MeanField",
    "OPTIMIZERS",
    "ParticleLQ",
    "RISKS",
    "RiccatiLaw",
    "Rollout",
    "Solution",
    "ValidationError",
    "WEIGHT_LAWS",
    "WeightLaw",
    "best_response_attacker",
    "best_response_defender",
    "costs",
    "fit",
    "game_riccati_closed_form",
    "km_flow",
    "km_iterate",
    "lipschitz_estimate",
    "make_law",
    "meanfield",
    "riccati_closed_form",
    "risk",
    "solve",
]
