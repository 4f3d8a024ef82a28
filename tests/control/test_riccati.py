"""Exact LQ references (docs/theory.md#lq-control, docs/theory.md#lq-game): closed forms, the CARE, discretisation order, games with Λ."""

import numpy as np
import pytest
import scipy.linalg as sl
import torch

from control import DivergenceError, LQGame, LQProblem, ValidationError, riccati_closed_form

SCALAR = dict(A=0.5, Abar=0.3, B=1.0, Sigma=0.5, Q=1.0, Qbar=2.0, R=1.0, QT=1.0, QTbar=1.0, T=1.0)


def test_scalar_closed_form_matches_ode():
    """P and Π from the ODE vs the closed form of docs/theory.md#riccati-closed-form (≤ 1e-8 relative), with b̄ and r̄ too."""
    prob = LQProblem(0.7, -0.4, 1.3, 0.6, 2.0, 1.5, 0.8, 0.5, 0.7, 2.0, Bbar=0.2, Rbar=0.3)
    sol = prob.solve()
    t = np.linspace(0.0, 2.0, 41)
    P_cf = riccati_closed_form(0.7, 1.3**2 / 0.8, 2.0, 0.5, 2.0, t)
    Pi_cf = riccati_closed_form(0.3, 1.5**2 / 1.1, 3.5, 1.2, 2.0, t)
    np.testing.assert_allclose(sol.P(t), P_cf, rtol=1e-8)
    np.testing.assert_allclose(sol.Pi(t), Pi_cf, rtol=1e-8)
    np.testing.assert_allclose(sol.K(t), 1.3 / 0.8 * P_cf, rtol=1e-8)
    np.testing.assert_allclose(sol.Kbar(t), 1.5 / 1.1 * Pi_cf, rtol=1e-8)
    # J* = P(0)v0 + Π(0)m0² + σ²∫P; ∫P by quadrature of the closed form
    tt = np.linspace(0.0, 2.0, 20001)
    intP = np.trapezoid(riccati_closed_form(0.7, 1.3**2 / 0.8, 2.0, 0.5, 2.0, tt), tt)
    J = P_cf[0] * 0.4 + Pi_cf[0] * 1.5**2 + 0.36 * intP
    assert sol.cost(1.5, 0.4) == pytest.approx(J, rel=1e-8)


def test_matrix_P_long_horizon_is_the_care_solution():
    A = np.array([[0.0, 1.0], [-1.0, 0.2]])
    B = np.array([[0.0], [1.0]])
    Q, R = np.diag([1.0, 0.5]), np.array([[0.7]])
    prob = LQProblem(A, 0 * A, B, 0.3 * np.eye(2), Q, Q, R, 0 * Q, 0 * Q, 40.0)
    P0 = prob.solve().P(0.0)
    np.testing.assert_allclose(P0, sl.solve_continuous_are(A, B, Q, R), rtol=1e-8, atol=1e-10)
    assert P0.shape == (2, 2) and prob.solve().K(np.zeros(3)).shape == (3, 1, 2)


def test_discrete_optimum_converges_at_first_order():
    prob = LQProblem(**SCALAR)
    J = prob.solve().cost(1.0, 0.5)
    errs = [prob.solve_discrete(n).cost(1.0, 0.5) - J for n in (50, 100, 200, 400)]
    ratios = [errs[i] / errs[i + 1] for i in range(3)]
    assert all(abs(r - 2.0) < 0.05 for r in ratios), ratios
    assert abs(errs[-1]) < 1e-2


def test_discrete_optimum_is_optimal_among_linear_policies():
    """The recursion's cost equals the Lyapunov cost of its own gains, and perturbing the gains costs more."""
    from control import ParticleLQ

    prob = LQProblem(**SCALAR)
    pl = ParticleLQ(prob, [1.0], 0.5, n_particles=2, n_steps=20)
    d = pl.discrete()
    K, Kb = torch.tensor(d.arrays["K"]), torch.tensor(d.arrays["Kbar"])
    J = float(pl.linear_policy_cost(K, Kb))
    assert J == pytest.approx(d.cost(1.0, 0.5), rel=1e-12)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        dK = 0.05 * torch.randn(K.shape, generator=g, dtype=K.dtype)
        assert float(pl.linear_policy_cost(K + dK, Kb - dK)) > J


def test_monte_carlo_closed_loop_within_three_standard_errors():
    """10⁵ particles under u* = −K(x − Ex) − K̄Ex (continuous gains on a fine Euler grid) vs J* (docs/theory.md#lq-control)."""
    from control import ParticleLQ

    prob = LQProblem(**SCALAR)
    J = prob.solve().cost(1.0, 0.5)
    pl = ParticleLQ(prob, [1.0], 0.5, n_particles=100_000, n_steps=400, antithetic=False, seed=3)
    with torch.no_grad():
        r = pl.simulate(pl.optimal_law(discrete=False), keep=False)
    se = r.standard_error()
    sol = pl.exact()
    t = np.arange(400) * pl.h
    K, Kb = torch.tensor(sol.K(t)).reshape(-1, 1, 1), torch.tensor(sol.Kbar(t)).reshape(-1, 1, 1)
    J_grid = float(pl.linear_policy_cost(K, Kb))  # exact mean of this Euler–Maruyama closed loop
    assert abs(J_grid - J) < se  # the Euler bias is below the Monte Carlo error at this step
    assert abs(float(r.cost) - J_grid) < 3 * se, (float(r.cost), J_grid, se)
    assert abs(float(r.cost) - J) < 3 * se, (float(r.cost), J, se)


def test_finite_time_blowup_names_the_time():
    prob = LQProblem(1.0, 0.0, 1.0, 0.1, 1.0, -6.0, 1.0, 0.0, 0.0, 5.0)  # q + q̄ < 0: Π → −∞
    with pytest.raises(DivergenceError, match=r"Riccati.*t=\d") as err:
        prob.solve()
    assert 0.0 < err.value.t < 5.0


# ------------------------------------------------------------------------------------------- games
GAME = dict(
    a=0.5,
    abar=0.2,
    sigma=0.4,
    b=[1.0, 1.0, 0.5],
    q=[1.0, 2.0, 1.0],
    qbar=[0.5, 0.0, 1.0],
    r=[1.0, 2.0, 1.0],
    qT=[1.0, 1.0, 1.0],
    qTbar=[0.0, 0.0, 1.0],
    T=1.0,
)
LAMBDA = np.array([[1.0, 0.4, -0.2], [0.3, 1.0, 0.0], [-0.3, 0.5, 2.0]])


def _discrete_costs(game, k, l, m0, v0):
    """Exact material costs [..., n] of per-step gains k, l [..., L, n] in the Euler-discretised game (docs/theory.md#lq-game)."""
    L = k.shape[-2]
    h = game.T / L
    b, q, qb, r = (torch.tensor(getattr(game, s)) for s in ("b", "q", "qbar", "r"))
    v = torch.full(k.shape[:-2] + (1,), v0, dtype=torch.float64)
    m = torch.full(k.shape[:-2] + (1,), m0, dtype=torch.float64)
    J = 0.0
    for i in range(L):
        ki, li = k[..., i, :], l[..., i, :]
        J = J + h * ((q + r * ki**2) * v + (q + qb + r * li**2) * m**2)
        v = (1 + h * (game.a - (ki @ b)[..., None])) ** 2 * v + h * game.sigma**2
        m = (1 + h * (game.a + game.abar - (li @ b)[..., None])) * m
    qT, qTb = torch.tensor(game.qT), torch.tensor(game.qTbar)
    return J + qT * v + (qT + qTb) * m**2


def _best_deviations(game, prof, Lambda, players, m0=1.0, v0=0.5, L=40):
    """Each player j in ``players`` re-optimises its own time-varying gains (k_j, l_j) on L Euler steps with the
    others frozen at ``prof``, by L-BFGS (all deviations batched: the problems are separable).
    Returns the empathetic values Σ_i λ_ji J_i before and after, each ``[len(players)]``."""
    t = (np.arange(L) + 0.5) * game.T / L
    k0, l0 = torch.tensor(prof.k(t)), torch.tensor(prof.l(t))  # [L, n]
    J = len(players)
    mask = torch.zeros(J, 1, game.n, dtype=torch.float64)
    mask[torch.arange(J), 0, torch.tensor(players)] = 1.0
    lam = torch.tensor(Lambda[players])  # [J, n]
    dk = torch.zeros(J, L, 1, dtype=torch.float64, requires_grad=True)
    dl = torch.zeros(J, L, 1, dtype=torch.float64, requires_grad=True)

    def values():
        costs = _discrete_costs(game, k0 + dk * mask, l0 + dl * mask, m0, v0)  # [J, n]
        return (lam * costs).sum(-1)

    before = values().detach()
    opt = torch.optim.LBFGS([dk, dl], lr=1.0, max_iter=25, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        val = values().sum()
        val.backward()
        return val

    opt.step(closure)
    return before.numpy(), values().detach().numpy()


def test_no_profitable_unilateral_deviation():
    game = LQGame(**GAME, Lambda=LAMBDA)
    before, after = _best_deviations(game, game.solve_nash(), LAMBDA, [0, 1, 2])
    # what is left is the O(h) mismatch between the continuous equilibrium and the Euler game
    assert np.all(before - after < 5e-4 * np.abs(before)), (before, after)
    assert np.all(before - after > -1e-12)  # L-BFGS never made it worse
    # the test can fail: at the social optimum a selfish player gains a lot by deviating
    selfish = LQGame(**GAME)
    before, after = _best_deviations(selfish, selfish.solve_social(), np.eye(3), [0, 1, 2])
    assert np.all(before - after > 5e-2 * np.abs(before)), (before, after)


def test_team_lambda_reproduces_the_social_optimum():
    team = LQGame(**GAME, Lambda=np.ones((3, 3)))
    eq, soc = team.solve_nash(), team.solve_social()
    t = np.linspace(0, 1, 11)
    np.testing.assert_allclose(eq.k(t), soc.k(t), rtol=1e-8)
    np.testing.assert_allclose(eq.l(t), soc.l(t), rtol=1e-8)
    np.testing.assert_allclose(eq.costs(1.0, 0.5), soc.costs(1.0, 0.5), rtol=1e-8)
    assert eq.costs(1.0, 0.5).sum() == pytest.approx(soc.value(1.0, 0.5), rel=1e-8)
    # the social optimum beats the selfish Nash equilibrium in total (price of anarchy ≥ 1)
    nash = LQGame(**GAME).solve_nash()
    assert nash.costs(1.0, 0.5).sum() > soc.value(1.0, 0.5)


def test_empathetic_value_identity():
    """Σ_i λ_ji J_i (Lyapunov material costs) equals player j's value P_j(0)v0 + Π_j(0)m0² + σ²∫P_j."""
    eq = LQGame(**GAME, Lambda=LAMBDA).solve_nash()
    for m0, v0 in [(1.0, 0.5), (-2.0, 0.1), (0.0, 1.0)]:
        np.testing.assert_allclose(
            LAMBDA @ eq.costs(m0, v0), eq.empathetic_costs(m0, v0), rtol=1e-8
        )


def test_social_weights_shift_the_burden():
    game = LQGame(**GAME)
    base = game.solve_social().costs(1.0, 0.5)
    heavy = game.solve_social(weights=[5.0, 1.0, 1.0]).costs(1.0, 0.5)
    assert heavy[0] < base[0]


def test_strong_spite_blows_up_with_time():
    game = LQGame(0.5, 0.2, 0.4, [1, 1], [1, 1], [0, 0], [1, 1], [1, 1], [0, 0], 5.0,
                  Lambda=[[1, -3], [-3, 1]])  # fmt: skip
    with pytest.raises(DivergenceError, match=r"t=\d") as err:
        game.solve_nash()
    assert 0.0 < err.value.t < 5.0


# -------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(R=0.0), "R"),
        (dict(R=-1.0), "R"),
        (dict(R=1.0, Rbar=-2.0), "R+Rbar"),
        (dict(T=0.0), "T"),
        (dict(Q=np.eye(2)), "Q"),
        (dict(Sigma=np.ones((3, 1))), "Sigma"),
    ],
)
def test_lq_problem_refuses_bad_input(kw, field):
    with pytest.raises(ValidationError) as err:
        LQProblem(**{**SCALAR, **kw})
    msg = str(err.value)
    assert msg.startswith(f"{field}:") and "\n" not in msg


def test_game_refuses_bad_lambda_and_r():
    with pytest.raises(ValidationError, match=r"^Lambda: .*square"):
        LQGame(**GAME, Lambda=np.ones((3, 2)))
    with pytest.raises(ValidationError, match=r"^Lambda: .*3x3"):
        LQGame(**GAME, Lambda=np.eye(2))
    with pytest.raises(ValidationError, match=r"^Lambda: .*lambda_jj > 0.*#self-regard") as err:
        LQGame(**GAME, Lambda=[[1, 0, 0], [0, 0, 1], [0, 0, 1]])
    assert "\n" not in str(err.value)
    with pytest.raises(ValidationError, match=r"^r: "):
        LQGame(**{**GAME, "r": [1.0, 0.0, 1.0]})
    with pytest.raises(ValidationError, match=r"^q: .*one entry per player"):
        LQGame(**{**GAME, "q": [1.0, 2.0]})
    with pytest.raises(TypeError, match="bogus"):
        LQGame(**GAME, bogus=1)


def test_policy_cost_of_riccati_gains_is_J_star_and_others_cost_more():
    """The Lyapunov cost of u = −K(x − Ex) − K̄Ex (docs/theory.md#lq-policy-cost): J* exactly at the Riccati
    gains, and J* + ∫ r(ΔK)²S + (r+r̄)(ΔK̄)²m² > J* for any other gains."""
    prob = LQProblem(**SCALAR)
    sol = prob.solve()
    J = sol.cost(1.0, 0.5)
    assert prob.policy_cost(sol.K, sol.Kbar, 1.0, 0.5) == pytest.approx(J, rel=1e-8)
    assert prob.policy_cost(lambda t: sol.K(t) + 0.2, sol.Kbar, 1.0, 0.5) > J + 1e-4
    assert prob.policy_cost(sol.K, lambda t: 0.8 * sol.Kbar(t), 1.0, 0.5) > J + 1e-4
