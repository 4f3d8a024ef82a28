"""play(): every scenario through the one-cell entry point; determinism, divergence, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import agents
from agents import Outcome, play
from agents.status import PLAYED
from control import ValidationError

DYNAMIC = ("lq_game", "consensus", "commons", "security")
FIELDS = ("costs", "empathetic_costs", "history", "times", "trajectory", "n_params")


def _check(o: Outcome, n: int) -> None:
    """A played cell: its numbers, and a status consistent with its certified NashConv."""
    assert o.status in PLAYED, o.message
    limit = 1e-3 * max(float(np.abs(o.empathetic_costs).max()), 1e-9)
    if o.status == "ok":
        assert o.exploitability <= limit
    if o.status == "not_equilibrium":
        assert o.exploitability > limit
    assert o.costs.shape == (n,) and o.Lambda.shape == (n, n) and len(o.agent_names) == n
    np.testing.assert_allclose(o.empathetic_costs, o.Lambda @ o.costs, rtol=1e-12)
    assert o.exploitability >= 0 and np.isfinite(o.exploitability)
    assert o.history.shape[1] == n and o.trajectory.shape[0] == o.times.shape[0]
    assert (o.n_params > 0).all()


# population scenarios (default cells of 1,000 to 100,000 agents) are played by their own tests against closed
# forms (tests/agents/test_population.py, N = 10 … 100,000) and their example configs by the runner's smoke test
N_PLAYER = sorted(s for s in agents.SCENARIOS if not agents.SCENARIOS[s].population)


@pytest.mark.parametrize("name", N_PLAYER)
def test_every_scenario_runs_with_defaults(name):
    o = play(name)
    cls = agents.SCENARIOS[name]
    _check(o, cls(None).n_players)
    assert o.policy == cls.default_policy and o.concept == cls.default_concept
    print(f"{name}: wall {o.wall_time:.2f}s costs {o.costs} expl {o.exploitability:.2e}")
    if name == "lq_game":  # the default LQ cell reaches its certified equilibrium
        assert o.status == "ok", o.message


def test_lq_game_default_cell_is_close_to_its_reference():
    o = play("lq_game", law="time")
    np.testing.assert_allclose(o.costs, o.reference_costs, rtol=0.03)
    assert o.times[0] == 0 and o.times[-1] == pytest.approx(1.0)


@pytest.mark.slow
def test_consensus_reference_for_selfish_and_team():
    for L in ("selfish", "team"):
        o = play("consensus", Lambda=L, law="time", steps=60)
        np.testing.assert_allclose(o.costs, o.reference_costs, rtol=0.03, atol=0.01)


@pytest.mark.slow
def test_team_lowers_total_cost_in_commons():
    selfish = play("commons", Lambda="selfish", law="constant", steps=60)
    team = play("commons", Lambda="team", law="constant", steps=60)
    assert team.costs.sum() < selfish.costs.sum()  # the tragedy of the commons
    assert team.trajectory[-1, 0] > selfish.trajectory[-1, 0]  # more stock left


def test_same_seed_same_outcome():
    kw = dict(law="feedback", steps=4, seed=3)
    a, b = play("lq_game", **kw), play("lq_game", **kw)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    assert a.exploitability == b.exploitability
    c = play("lq_game", law="feedback", steps=4, seed=4)
    assert not np.array_equal(a.history, c.history)


def test_diverging_cell_returns_status():
    o = play("lq_game", steps=5, lr=1e8)
    assert o.status == "diverged" and o.message
    o = play("lq_game", steps=3, params=dict(a=1e90))
    assert o.status == "diverged" and "non-finite" in o.message
    assert np.isnan(o.costs).all()


@pytest.mark.parametrize(
    "kw,field",
    [
        (dict(scenario="nope"), "scenario"),
        (dict(scenario="lq_game", law="nope"), "law"),
        (dict(scenario="lq_game", Lambda="nope"), "Lambda"),
        (dict(scenario="lq_game", Lambda=np.eye(3)), "Lambda"),
        (dict(scenario="lq_game", Lambda=np.array([[1.0, np.nan], [0.0, 1.0]])), "Lambda"),
        (dict(scenario="lq_game", Lambda="berge"), "Lambda[0,0]"),
        (dict(scenario="lq_game", policy="direct"), "policy"),
        (dict(scenario="lq_game", concept="nope"), "concept"),
        (dict(scenario="lq_game", steps=0), "steps"),
        (dict(scenario="lq_game", lr=-1.0), "lr"),
        (dict(scenario="lq_game", params=dict(zzz=1)), "lq_game.zzz"),
        (dict(scenario="security", n_agents=3), "security.n_agents"),
    ],
)
def test_bad_input_raises_one_line(kw, field):
    with pytest.raises(ValidationError) as err:
        play(**kw)
    msg = str(err.value)
    assert msg.startswith(field) and "\n" not in msg
