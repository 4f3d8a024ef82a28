"""agents — strategic machine intelligence: empathy Λ, games, agents with MFTT/linear policies, scenarios,
solution concepts and exploitability (spec §A.1–A.3, §C.2, §C.4)."""

from . import empathy
from .agent import POLICIES, Agent, DirectPolicy, LinearPolicy, MFTTPolicy, Policy, make_policy
from .concepts import SOLUTION_CONCEPTS, solve
from .dynamic import DifferentialGame
from .empathy import PRESETS, classify, preset
from .equilibrium import Equilibrium
from .exploitability import Exploitability, exploitability
from .game import Game, MatrixGame, StaticGame
from .play import Outcome, play
from .scenarios import SCENARIOS, Scenario, get_scenario

__all__ = [
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
    "preset",
    "solve",
]
