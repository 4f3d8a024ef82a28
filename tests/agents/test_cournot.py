"""Cournot with linear demand: Λ-Nash quantities against the closed forms of docs/theory.md#static-games."""

import numpy as np
import pytest

from agents.concepts import solve
from agents.exploitability import exploitability
from agents.scenarios import get_scenario
from control.errors import ValidationError

ALPHA, BETA, COST = 12.0, 2.0, 2.0


def build(Lam, policy="direct", law="constant", **params):
    sc = get_scenario("cournot")(**{"alpha": ALPHA, "beta": BETA, "c": COST, **params})
    g = sc.game(Lambda=Lam, law=law, policy=policy, mftt=None, seed=0, device="cpu")
    return sc, g


@pytest.mark.parametrize("lam", [-0.8, -0.5, 0.0, 0.3, 0.6, 0.9])
def test_symmetric_empathy_closed_form(lam):
    Lam = np.array([[1.0, lam], [lam, 1.0]])
    sc, g = build(Lam)
    eq = solve(g, "nash", Lam, steps=2000, lr=0.1, tol=1e-10)
    q = (ALPHA - COST) / (BETA * (3 + lam))
    assert eq.status == "converged"
    assert np.abs(eq.actions.ravel() - q).max() < 1e-4
    assert np.allclose(sc.equilibrium_quantities(Lam), q, atol=1e-12)
    price = ALPHA - BETA * 2 * q
    assert np.allclose(eq.costs, -(price - COST) * q, atol=1e-4)
    assert np.allclose(sc.reference(Lam), eq.costs, atol=1e-4)
    assert np.allclose(eq.empathetic_costs, Lam @ eq.costs)


def test_asymmetric_costs_selfish_closed_form():
    c = np.array([1.0, 3.0])
    sc, g = build(np.eye(2), c=c.tolist())
    eq = solve(g, "nash", None, steps=2000, lr=0.1, tol=1e-10)
    want = (ALPHA - 2 * c + c[::-1]) / (3 * BETA)
    assert np.abs(eq.actions.ravel() - want).max() < 1e-4


def test_monopoly_and_competitive_limits():
    _, g = build("team")
    eq = solve(g, "nash", "team", steps=2000, lr=0.1, tol=1e-10)  # λ = 1: monopoly total
    assert abs(eq.actions.sum() - (ALPHA - COST) / (2 * BETA)) < 1e-4
    Lz = np.array([[1.0, -1.0], [-1.0, 1.0]])  # λ = −1: price = marginal cost
    _, g = build(Lz)
    eq = solve(g, "nash", Lz, steps=2000, lr=0.1, tol=1e-10)
    assert abs(ALPHA - BETA * eq.actions.sum() - COST) < 1e-4


def test_n_firm_cournot():
    sc = get_scenario("cournot")(n_agents=4, alpha=ALPHA, beta=BETA, c=COST)
    g = sc.game(Lambda=np.eye(4), law="constant", policy="direct", mftt=None, seed=0, device="cpu")
    eq = solve(g, "nash", None, steps=2000, lr=0.05, tol=1e-10)
    assert np.abs(eq.actions.ravel() - (ALPHA - COST) / (5 * BETA)).max() < 1e-4


def test_default_cell_runs_fast_and_converges():
    import time

    sc = get_scenario("cournot")()
    t = time.perf_counter()
    g = sc.game(Lambda=np.eye(2), law="feedback", policy="direct", mftt=None, seed=0, device="cpu")
    eq = solve(g, sc.default_concept, None, steps=sc.default_steps, lr=sc.default_lr)
    ex = exploitability(g, None, steps=sc.default_steps, lr=sc.default_lr)
    assert time.perf_counter() - t < 3.0
    assert eq.status == "converged" and ex.nash_conv < 1e-8
    assert np.allclose(eq.costs, sc.reference(np.eye(2)), atol=1e-6)


def test_quantities_outside_bounds_are_refused():
    _, g = build(np.eye(2))
    with pytest.raises(ValidationError, match=r"^actions\[1\].*outside its bounds"):
        g.set_actions([1.0, -0.5])
    with pytest.raises(ValidationError, match=r"^cournot.c"):
        build(np.eye(2), c=[1.0, 2.0, 3.0])[0].quadratic()
    with pytest.raises(ValidationError, match=r"^cournot.nonsense"):
        get_scenario("cournot")(nonsense=1)


def test_mftt_firm_smoke():
    sc, g = build(np.eye(2), policy="mftt", law="constant")
    e0 = g.costs().detach().numpy()
    eq = solve(g, "nash", None, steps=25, lr=0.05)
    assert np.isfinite(eq.costs).all() and (g.n_params() > 0).all()
    ref = sc.reference(np.eye(2))  # averaged over the game's markets
    assert np.abs(eq.costs - ref).sum() < np.abs(e0 - ref).sum()


@pytest.mark.slow
@pytest.mark.parametrize("law", ["constant", "feedback"])
def test_mftt_firms_approach_the_market_averaged_cournot(law):
    sc, g = build(np.eye(2), policy="mftt", law=law)
    eq = solve(g, "nash", None, steps=150, lr=0.03)
    ref = sc.reference(np.eye(2))
    ex = exploitability(g, None, steps=100, lr=0.03, optimizer="adam")
    print(law, g.n_params(), eq.costs, ref, ex.gains)
    assert np.abs(eq.costs - ref).max() < 0.05 * np.abs(ref).max()
