"""``security`` as the H∞ game (docs/theory.md#hinf): learned saddle vs game Riccati, exact duality gap, γ ≤ γ*, variants."""

import numpy as np
import pytest
import torch
from scipy.interpolate import CubicSpline

import agents
from agents.concepts import solve
from agents.scenarios import get_scenario
from control import ValidationError
from control.hinf import best_response_attacker, best_response_defender

SELFISH, ZERO_SUM = np.eye(2), np.array([[1.0, -1.0], [-1.0, 1.0]])


def _gains(game):
    """The learned linear profile as callables: u = −k(x − Ex) − k̄Ex, w = l(x − Ex) + l̄Ex.

    The time law's gains are cubic polynomials in t, so a not-a-knot cubic spline through 9 points is exact.
    """
    t = np.linspace(0.0, game.T, 9)
    G = game.gains(t)[..., 0, 0]  # [K, agent, (fluctuation, mean)]
    k, kb, ell, ellb = (
        CubicSpline(t, s * G[:, j, i]) for j, s in ((0, 1), (1, -1)) for i in (0, 1)
    )
    return (lambda s: float(k(s))), (lambda s: float(kb(s))), (lambda s: float(ell(s))), (lambda s: float(ellb(s)))  # fmt: skip


@pytest.mark.parametrize("gamma", [1.5])
def test_learned_saddle_matches_the_game_riccati_and_its_exact_gap_is_small(gamma):
    """Default budget, linear policy, time law: minimax converges (residual tolerance), the saddle costs
    match the closed form to 0.5 %, and the duality gap measured with the exact best responses is tiny."""
    sc = get_scenario("security")(gamma=gamma)
    game = sc.game(Lambda=SELFISH, law="time", policy="linear", seed=0)
    eq = solve(game, "minimax", SELFISH, steps=sc.default_steps, lr=sc.default_lr)
    assert eq.status == "converged" and eq.info["method"] == "newton"
    ref = sc.reference(SELFISH)
    np.testing.assert_allclose(eq.costs, ref, rtol=5e-3)
    on_grid = sc.reference_on_grid(SELFISH, game)
    assert abs(on_grid[0] / ref[0] - 1) < 1e-3  # the 4-step RK4 grid's part of the gap
    k, kb, ell, ellb = _gains(game)
    hg = sc.hinf()
    up, down = best_response_attacker(k, hg, kb), best_response_defender(ell, hg, ellb)
    assert down <= ref[0] <= up
    assert (up - down) / ref[
        0
    ] < 1e-3  # the learned profile is an exact ε-saddle of the continuous game


def test_play_reports_the_reference_and_the_saddle():
    out = agents.play("security", law="time")
    assert out.status == "ok", out.message
    np.testing.assert_allclose(out.costs, out.reference_costs, rtol=5e-3)


def test_below_critical_gamma_no_saddle_is_reported():
    sc = get_scenario("security")(gamma=0.5)
    msg = sc.no_equilibrium(SELFISH)
    assert msg and "gamma = 0.5" in msg and "gamma* = 0.640591" in msg and "\n" not in msg
    assert sc.reference(SELFISH) is None
    assert get_scenario("security")().no_equilibrium(SELFISH) is None
    out = agents.play("security", law="time", steps=3, params={"gamma": 0.5})
    assert out.status != "ok"
    assert "gamma" in out.message or "γ" in out.message


def test_lambda_presets_and_the_reference():
    sc = get_scenario("security")()
    ref = sc.reference(SELFISH)
    np.testing.assert_allclose(sc.reference(ZERO_SUM), ref)  # the same saddle
    assert ref[0] == pytest.approx(sc.hinf().solve().value) and ref[1] == -ref[0]
    assert sc.reference(np.ones((2, 2))) is None and sc.no_equilibrium(np.ones((2, 2))) is None
    assert "γ*" in sc.lambda_meaning["selfish"] and "γ*" in sc.description


def test_bounded_observation_attack_runs_and_stays_finite():
    sc = get_scenario("security")(attack="observation", delta_max=0.3)
    assert sc.reference(SELFISH) is None and sc.no_equilibrium(SELFISH) is None
    game = sc.game(Lambda=SELFISH, law="time", policy="linear", seed=0)
    with torch.no_grad():
        game.agents[1].policy.gains.theta0.fill_(
            -1e6
        )  # an enormous attack gain is clipped to δ_max
        obs = game.observe(torch.tensor(0.0, dtype=torch.float64), game.x0)
    assert float((obs[0] - obs[1]).abs().max()) <= 0.3 + 1e-12
    assert np.isfinite(game.costs().detach().numpy()).all()
    game = sc.game(Lambda=SELFISH, law="time", policy="linear", seed=0)
    eq = solve(game, "minimax", SELFISH, steps=5)
    assert eq.status != "diverged" and np.isfinite(eq.costs).all()
    assert eq.costs[0] == pytest.approx(-eq.costs[1])


@pytest.mark.parametrize(
    "kw,field",
    [(dict(attack="input"), "security.attack"), (dict(delta_max=0.0), "security.delta_max"),
     (dict(gamma=-1.0), "security.gamma"), (dict(r=0.0), "security.r")],
)  # fmt: skip
def test_bad_parameters_raise_one_line(kw, field):
    with pytest.raises(ValidationError) as err:
        get_scenario("security")(**kw).hinf()
    assert str(err.value).startswith(field) and "\n" not in str(err.value)
