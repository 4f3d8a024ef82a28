"""agents — strategic machine intelligence: empathy Λ, games, agents with MFTT/linear policies, scenarios,
solution concepts and exploitability (docs/theory.md#empathy, docs/theory.md#patterns, docs/theory.md#agents, docs/theory.md#lq-game, docs/theory.md#static-games)."""

from . import empathy
from .agent import (
    LAWS,
    POLICIES,
    Agent,
    DirectPolicy,
    LinearPolicy,
    MFTTPolicy,
    Policy,
    make_policy,
)
from .best_response import BEST_RESPONSES, BestResponse, Budget, best_response
from .cell import CellSpec
from .concepts import SOLUTION_CONCEPTS, solve
from .differential import DifferentialGame
from .empathy import PRESETS, classify, preset
from .equilibrium import Equilibrium
from .experiments.background import Job, get_job, list_jobs, submit_job
from .experiments.config import Experiment, load_experiment
from .experiments.fusion import play_fused, play_many
from .experiments.results import (
    attention_maps,
    load_trained_game,
    load_weights,
    open_results,
    write_results,
)
from .experiments.runner import RunHandle, run_experiment, submit_experiment
from .exploitability import Exploitability, exploitability
from .finite import (
    FINITE_SOLVERS,
    LEARNED_DYNAMICS,
    FiniteEquilibria,
    LearnedPlay,
    nash_equilibria,
    regrets,
)
from .game import Game, MatrixGame, StaticGame
from .play import Outcome, play
from .population import Law, LinearPopulationPolicy, PopulationGame, rollout_parts
from .population_mftt import MFTTPopulationPolicy
from .precheck import lambda_warnings, precheck
from .scenarios import SCENARIOS, Scenario, get_scenario
from .status import STATUSES
from .verdict import Tolerance

__all__ = [
    "CellSpec",
    "LAWS",
    "Law",
    "LinearPopulationPolicy",
    "MFTTPopulationPolicy",
    "PopulationGame",
    "rollout_parts",
    "Job",
    "get_job",
    "list_jobs",
    "submit_job",
    "precheck",
    "lambda_warnings",
    "FINITE_SOLVERS",
    "LEARNED_DYNAMICS",
    "FiniteEquilibria",
    "LearnedPlay",
    "nash_equilibria",
    "regrets",
    "BEST_RESPONSES",
    "BestResponse",
    "Budget",
    "STATUSES",
    "Tolerance",
    "best_response",
    "submit_experiment",
    "run_experiment",
    "RunHandle",
    "write_results",
    "open_results",
    "load_weights",
    "load_trained_game",
    "attention_maps",
    "load_experiment",
    "Experiment",
    "Agent",
    "DifferentialGame",
    "DirectPolicy",
    "Equilibrium",
    "Exploitability",
    "Game",
    "LinearPolicy",
    "MFTTPolicy",
    "MatrixGame",
    "Outcome",
    "POLICIES",
    "PRESETS",
    "Policy",
    "SCENARIOS",
    "SOLUTION_CONCEPTS",
    "Scenario",
    "StaticGame",
    "classify",
    "empathy",
    "exploitability",
    "get_scenario",
    "make_policy",
    "play",
    "play_fused",
    "play_many",
    "preset",
    "solve",
]
