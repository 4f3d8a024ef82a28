"""control — mean-field-type optimal control: weight laws, ODE integration, costs, LQ/Riccati references, training."""

from . import meanfield
from .errors import DivergenceError, ValidationError
from .integrate import METHODS, Solution, solve
from .laws import WEIGHT_LAWS, WeightLaw, make_law
from .meanfield import MeanField

__all__ = [
    "DivergenceError",
    "METHODS",
    "MeanField",
    "Solution",
    "ValidationError",
    "WEIGHT_LAWS",
    "WeightLaw",
    "make_law",
    "meanfield",
    "solve",
]
