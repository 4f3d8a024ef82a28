"""Matrix games in mixed strategies: matching pennies, empathetic prisoner's dilemma thresholds (docs/theory.md#static-games)."""

import numpy as np
import pytest

from agents.concepts import solve
from agents.game import MatrixGame, simplex_projection
from agents.scenarios import get_scenario
from agents.scenarios.matrix import matching_pennies, pd_thresholds, prisoners_dilemma
from control.errors import ValidationError

C, D = 0, 1


def sym(lam):
    return np.array([[1.0, lam], [lam, 1.0]])


def test_simplex_projection_is_a_projection():
    import torch

    x = torch.randn(50, 4, dtype=torch.float64) * 3
    p = simplex_projection(x)
    assert torch.allclose(p.sum(-1), torch.ones(50, dtype=torch.float64)) and (p >= 0).all()
    assert torch.allclose(simplex_projection(p), p)  # idempotent


def test_matching_pennies_mixed_half_half_by_extragradient():
    g = MatrixGame(matching_pennies(), init=[[0.9, 0.1], [0.2, 0.8]])
    eq = solve(g, "nash", method="extragradient", steps=2000, lr=0.25)
    assert eq.status == "converged"
    assert np.allclose(eq.actions, 0.5, atol=1e-3)
    assert np.allclose(eq.costs, 0.0, atol=1e-6)
    # plain simultaneous gradient play circles around it instead of converging
    g2 = MatrixGame(matching_pennies(), init=[[0.9, 0.1], [0.2, 0.8]])
    eq2 = solve(g2, "nash", method="gradient", steps=300, lr=0.25)
    assert np.abs(eq2.actions - 0.5).max() > 0.2


def test_matrix_scenario_matching_pennies_default_method():
    sc = get_scenario("matrix")(game="matching_pennies", init=[[0.8, 0.2], [0.3, 0.7]])
    g = sc.game(Lambda=np.eye(2), law="constant", policy="direct", mftt=None, seed=0, device="cpu")
    eq = solve(g, "nash", np.eye(2), steps=sc.default_steps, lr=0.25)
    assert np.allclose(eq.actions, 0.5, atol=1e-5)
    assert np.allclose(sc.reference(np.eye(2)), 0.0)


def learned_pure_limits(U, lam, steps=400, lr=0.2):
    """Pure profiles that gradient play ends in, started near each pure profile (1 % off the corner)."""
    out = set()
    for a in [(C, C), (C, D), (D, C), (D, D)]:
        init = [[0.99, 0.01] if a[i] == C else [0.01, 0.99] for i in range(2)]
        g = MatrixGame(U, init=init)
        eq = solve(g, "nash", sym(lam), steps=steps, lr=lr, method="gradient")
        x = eq.actions
        if np.all(np.isclose(x, 0) | np.isclose(x, 1)):
            out.add((int(np.argmax(x[0])), int(np.argmax(x[1]))))
    return out


@pytest.mark.parametrize(
    "TRPS, between",
    [((5.0, 3.0, 1.0, 0.0), {(C, D), (D, C)}), ((4.0, 3.0, 1.0, -2.0), {(C, C), (D, D)})],
)
def test_empathetic_pd_equilibria_change_exactly_at_the_thresholds(TRPS, between):
    T, R, P, S = TRPS
    lcc, ldd = pd_thresholds(T, R, P, S)
    lo, hi = min(lcc, ldd), max(lcc, ldd)
    U = prisoners_dilemma(T, R, P, S)
    g = MatrixGame(U)
    eps = 0.02
    cases = {lo - eps: {(D, D)}, lo + eps: between, hi - eps: between, hi + eps: {(C, C)}}
    for lam, expected in cases.items():
        assert set(g.pure_equilibria(sym(lam))) == expected, lam
        assert learned_pure_limits(U, lam) == expected, lam


def test_pd_threshold_values_and_hamilton_rule():
    assert pd_thresholds(5, 3, 1, 0) == pytest.approx((2 / 3, 1 / 4))
    b, c = 3.0, 1.0  # donation game: both thresholds are c/b
    assert pd_thresholds(b, b - c, 0.0, -c) == pytest.approx((c / b, c / b))


@pytest.mark.parametrize("preset", ["berge", "selfless", "self_abnegating", "team"])
def test_selfless_and_self_abnegating_players_cooperate(preset):
    sc = get_scenario("matrix")()
    from agents.empathy import preset as P

    Lam = P(preset, 2)
    g = sc.game(Lambda=Lam, law="constant", policy="direct", mftt=None, seed=0, device="cpu")
    eq = solve(g, "nash", Lam, steps=400, lr=0.2)
    assert np.allclose(eq.actions[:, C], 1.0)
    assert np.allclose(sc.reference(Lam), [-3.0, -3.0])  # −R for both


def test_selfish_pd_defects_and_reference():
    sc = get_scenario("matrix")()
    g = sc.game(Lambda=np.eye(2), law="constant", policy="direct", mftt=None, seed=0, device="cpu")
    eq = solve(g, "nash", None, steps=sc.default_steps, lr=sc.default_lr)
    assert np.allclose(eq.actions[:, D], 1.0)
    assert np.allclose(eq.costs, sc.reference(np.eye(2))) and np.allclose(eq.costs, [-1.0, -1.0])


def test_three_player_payoff_tensor_costs_are_expectations():
    rng = np.random.default_rng(0)
    U = rng.normal(size=(3, 2, 3, 2))
    x = [np.array([0.3, 0.7]), np.array([0.2, 0.5, 0.3]), np.array([0.6, 0.4])]
    g = MatrixGame(U, init=x)
    want = -np.einsum("iabc,a,b,c->i", U, *x)
    assert np.allclose(g.costs().detach().numpy(), want)


def test_bad_strategies_and_payoffs():
    with pytest.raises(ValidationError, match=r"^strategies\[1\]"):
        MatrixGame(matching_pennies(), init=[[0.5, 0.5], [0.7, 0.7]])
    with pytest.raises(ValidationError, match="^payoffs"):
        MatrixGame(np.ones((3, 2, 2)))
    with pytest.raises(ValidationError, match="^matrix.game"):
        get_scenario("matrix")(game="chess").payoffs()
