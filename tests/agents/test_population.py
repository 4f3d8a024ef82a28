"""Populations: closed forms of the systemic-risk model, one-pass vs exact gradients, noise, best responses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import agents
from agents import exploitability, solve
from agents.population import Law, LinearPopulationPolicy, PopulationGame
from agents.scenarios import get_scenario
from control.errors import ValidationError

# a parameter set of our own (not the scenario's defaults)
SR = dict(a=0.3, q=0.2, eps=0.9, c=0.7, sigma=0.8, rho=0.4, v0=0.6)


def _riccati(p: dict, N: float) -> callable:
    """η of the N-bank equilibrium by numerical integration of its Riccati ODE (independent of the formula)."""
    k = 1.0 - (0.0 if math.isinf(N) else 1.0 / N**2)

    def rhs(t, y):
        return [2 * (p["a"] + p["q"]) * y[0] + k * y[0] ** 2 - (p["eps"] - p["q"] ** 2)]

    s = solve_ivp(rhs, [1.0, 0.0], [p["c"]], rtol=1e-11, atol=1e-12, dense_output=True)
    return lambda t: s.sol(t)[0]


@pytest.mark.parametrize("N", [2, 10, 1000, math.inf])
def test_systemic_risk_explicit_eta_solves_its_riccati_equation(N):
    sc = get_scenario("systemic_risk")(10, **SR)
    ts = np.linspace(0.0, 1.0, 17)
    np.testing.assert_allclose(sc.eta(ts, N=N), _riccati(SR, N)(ts), rtol=1e-9)
    # the mean-field limit is the N → ∞ limit of the finite-N gains, at rate 1/N
    gap = np.abs(sc.gain(ts, N=1e4) - sc.gain(ts, N=math.inf)).max()
    assert 0 < gap < 1e-3


def test_systemic_risk_reference_cost_matches_simulation_of_the_closed_form():
    """E J at the closed-form equilibrium, simulated with many banks (Heun, noise on), against the formula."""
    sc = get_scenario("systemic_risk")(50, **SR, replicas=64, n_steps=60)
    g = sc.game(Lambda=np.eye(1), law="time", policy="linear", seed=3)
    ts = torch.linspace(0, 1, 401, dtype=torch.float64)
    B = torch.stack([g.policy.basis(t) for t in ts])
    coef = torch.linalg.lstsq(B, -torch.as_tensor(sc.gain(ts.numpy()))[:, None]).solution[:, 0]
    with torch.no_grad():
        g.policy.W[0][:, 0, 0] = coef  # u = −φ(t)(x − m): the equilibrium control
        J = float(g.costs())
    assert J == pytest.approx(
        float(sc.reference(np.eye(1))[0]), rel=0.03
    )  # 3,200 paths: MC error ≈ 1 %


def test_one_pass_gradient_approaches_the_exact_own_gradient_like_one_over_n():
    Ns = np.array([4, 8, 16, 32, 64, 128])
    diffs = []
    for N in Ns:
        sc = get_scenario("systemic_risk")(
            int(N), **{**SR, "sigma": 0.0}, replicas=512 // int(N), n_steps=12
        )
        g = sc.game(Lambda=np.eye(1), law="time", policy="linear", seed=1)
        with torch.no_grad():
            g.policy.W[0][0, 0, 0] = -0.3  # any profile, not an equilibrium
        gm = g.mean_field_gradients()[0]
        _, ge = g.own_gradients()
        diffs.append(float((ge.mean(1)[0] - gm).norm() / gm.norm()))
    slope = np.polyfit(np.log(Ns), np.log(diffs), 1)[0]
    assert -1.1 < slope < -0.9, (slope, diffs)


def test_population_gradient_matches_finite_differences():
    """With the law differentiable (one decision-maker per population), ∇J̄ is the derivative of J̄."""
    sc = get_scenario("systemic_risk")(20, **SR, replicas=3, n_steps=10, gradient="population")
    g = sc.game(Lambda=np.eye(1), law="time", policy="linear", seed=2)
    W = g.policy.W[0]
    with torch.no_grad():
        W.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
    (grad,) = torch.autograd.grad(g.costs()[0], W)
    h = 1e-6
    for idx in [(0, 0, 0), (2, 0, 0), (1, 0, 1)]:
        with torch.no_grad():
            W[idx] += h
            up = float(g.costs()[0])
            W[idx] -= 2 * h
            down = float(g.costs()[0])
            W[idx] += h
        assert float(grad[idx]) == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-9)


def test_noise_is_seeded_and_common_noise_moves_every_agent_together():
    def game(seed, sigma, sigma0, R=4000):
        pol = LinearPopulationPolicy(1, 1, 1, T=1.0, order=0)
        x0 = torch.zeros(R, 1, 5, 1, dtype=torch.float64)
        zero = lambda t, x, u, law: torch.zeros_like(x)  # noqa: E731
        cost = lambda t, x, u, law: x[..., 0] ** 2  # noqa: E731
        return PopulationGame(
            ["p"], pol, x0, zero, cost, lambda x, law: x[..., 0] * 0, T=1.0, n_steps=10,
            sigma=sigma, sigma0=sigma0, noise_seed=seed,
        )  # fmt: skip

    a, b, c = game(0, 0.0, 0.7), game(0, 0.0, 0.7), game(1, 0.0, 0.7)
    sa, sc_ = [], []
    a.agent_costs(states=sa)
    b.agent_costs(states=sc_)
    assert torch.equal(sa[-1], sc_[-1])  # same seed, same numbers
    sb = []
    c.agent_costs(states=sb)
    assert not torch.equal(sa[-1], sb[-1])
    xT = sa[-1][:, 0, :, 0]  # [R, N]
    assert float((xT - xT[:, :1]).abs().max()) == 0.0  # common noise only: all agents move as one
    assert float(xT[:, 0].var()) == pytest.approx(0.49, rel=0.08)  # Var W⁰_T σ0² with T = 1
    # ∫ E x² dt = σ0² T²/2 under the trapezoidal rule on 10 steps (0.49 · 0.5)
    assert float(a.costs()) == pytest.approx(0.245, rel=0.08)


def test_law_of_states():
    x = torch.randn(3, 2, 50, 2, dtype=torch.float64)
    lw = Law.of(x)
    torch.testing.assert_close(lw.mean, x.mean(2))
    torch.testing.assert_close(lw.var, x.var(2, unbiased=False))


def test_bad_inputs_are_one_line():
    with pytest.raises(ValidationError, match="systemic_risk.q"):
        get_scenario("systemic_risk")(10, q=2.0, eps=1.0).coefficients()
    with pytest.raises(ValidationError, match="gradient"):
        get_scenario("systemic_risk")(1000, gradient="exact").game(
            Lambda=np.eye(1), law="time", policy="linear", seed=0
        )
    with pytest.raises(ValidationError, match="systemic_risk.n_agents"):
        get_scenario("systemic_risk")(0)


def test_play_systemic_risk_small_is_a_certified_cell():
    o = agents.play(
        "systemic_risk", n_agents=100, steps=60, params=dict(n_steps=10, replicas=4, **SR)
    )
    assert o.status in ("ok", "not_converged"), o.message
    assert o.Lambda.shape == (1, 1) and o.costs.shape == (1,)
    assert o.exploitability_method.startswith("numerical:population")
    # on the cell's own samples and grid, learning reaches the closed form's cost (1 % here, 400 paths)
    assert o.costs[0] == pytest.approx(o.reference_grid_costs[0], rel=0.01)
    assert o.costs[0] == pytest.approx(o.reference_costs[0], rel=0.15)  # sampling: 400 paths
    # mean and three quantiles over time, then the paths of a fixed sample of 8 agents
    assert o.trajectory.shape == (11, 4 + 8)
    mean, q5, q50, q95 = o.trajectory[:, :4].T
    assert np.all(q5 <= q50) and np.all(q50 <= q95) and np.all((q5 <= mean) & (mean <= q95))


def test_rollout_keeps_a_fixed_sample_of_agent_paths_whatever_n():
    """PopulationGame.rollout: per population 4 statistics and the paths of agents 0…7 (exactly theirs)."""
    from agents.population import SAMPLED

    for n in (5, 300):
        game = get_scenario("systemic_risk")(n, **SR).game(
            Lambda=np.eye(1), law="time", policy="linear", seed=1
        )
        times, summary = game.rollout()
        states: list = []
        with torch.no_grad():
            game.agent_costs(states=states)
        xs = torch.stack(states)[:, 0, :, :, 0].numpy()  # [T, K, N], replica 0
        S = min(SAMPLED, n)
        assert summary.shape == (len(times), 4 + S)
        np.testing.assert_array_equal(summary[:, 4:], xs[:, 0, :S])
        np.testing.assert_allclose(summary[:, 0], xs[:, 0].mean(-1), rtol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize(
    "N, replicas, gradient, limit",
    [(10, 400, "exact", False), (1000, 8, "mean_field", False), (10_000, 1, "mean_field", True)],
)
def test_systemic_risk_learns_the_closed_form_equilibrium(N, replicas, gradient, limit):
    # at N = 10 the Heun grid's own equilibrium is 1.2 % from the continuous one at 50 steps, 0.5 % at 100
    n_steps = 100 if N == 10 else 50
    sc = get_scenario("systemic_risk")(
        N, **SR, replicas=replicas, gradient=gradient, n_steps=n_steps
    )
    g = sc.game(Lambda=np.eye(1), law="time", policy="linear", seed=0)
    eq = solve(g, "nash", np.eye(1), steps=400, lr=0.05)
    err = sc.control_error(g, math.inf if limit else None)
    assert err < 0.01, err  # L² over time and states
    if N == 10:  # the finite-N equilibrium is not the mean-field one: the test can tell them apart
        assert sc.control_error(g, math.inf) > 0.03
    ex = exploitability(g, np.eye(1))
    assert ex.nash_conv < 1e-3 * abs(float(eq.costs[0]))


# ---- lq_populations -------------------------------------------------------------------------------
K3 = dict(
    populations=3, a=[0.4, -0.3, 0.2], b=[1.0, 0.7, 1.3], c=[[0, 0.4, -0.2], [0.3, 0, 0.1], [0.2, -0.1, 0]],
    q=[0.8, 0.6, 1.1], s=[0.7, 1.2, 0.4], r=[1.0, 0.5, 0.9], qT=[0.5, 1.0, 0.8], m0=[0.9, -0.6, 0.4],
    v0=[0.4, 0.2, 0.6],
)  # fmt: skip


def test_lq_populations_team_nash_is_the_social_optimum_of_an_independent_riccati():
    lq = get_scenario("lq_populations")(10, **K3).lq()
    np.testing.assert_allclose(lq.costs(np.ones((3, 3))), lq.costs(None), rtol=1e-8)
    # Λ matters: selfish Nash costs more in total than the social optimum
    assert lq.costs(np.eye(3)).sum() > lq.costs(None).sum() + 1e-4


def test_lq_populations_single_population_is_a_scalar_riccati_control_problem():
    """K = 1 without coupling: J = (P(0) + Π(0)) terms of the scalar Riccati equation in closed form."""
    from control.riccati import riccati_closed_form

    p = dict(populations=1, a=0.3, b=1.0, c=0.0, q=0.7, s=0.0, r=1.0, qT=0.4, m0=0.8, v0=0.5)
    lq = get_scenario("lq_populations")(10, **p).lq()
    P0 = float(riccati_closed_form(0.3, 1.0, 0.7, 0.4, 1.0, 0.0))  # ṗ = −2ap + p²/r − q
    assert lq.costs(np.eye(1))[0] == pytest.approx(P0 * (0.8**2 + 0.5), rel=1e-7)


@pytest.mark.slow
def test_lq_populations_nash_and_social_within_half_a_percent():
    sc = get_scenario("lq_populations")(1000, **K3, n_steps=10)
    for Lname in ("selfish", "coopetitive", "team"):
        L = agents.preset(Lname, 3, 0.5)
        g = sc.game(Lambda=L, law="time", policy="linear", seed=0)
        eq = solve(g, "nash", L, steps=200, lr=0.05)
        np.testing.assert_allclose(eq.costs, sc.reference(L), rtol=0.005, err_msg=Lname)
        if Lname == "team":
            np.testing.assert_allclose(eq.costs.sum(), sc.lq().costs(None).sum(), rtol=0.005)


# ---- routing (Wardrop) -----------------------------------------------------------------------------
ROUTES = dict(alpha=[0.5, 0.9, 1.7, 1.1, 4.0], beta=[3.0, 1.5, 0.4, 2.5, 1.0])


def _wardrop_lp(alpha, beta):
    """Wardrop shares by scipy's QP-free route: minimise the Beckmann potential Σ α f + β f²/2 (SLSQP)."""
    from scipy.optimize import minimize

    a, b = np.asarray(alpha), np.asarray(beta)
    P = len(a)
    res = minimize(
        lambda f: float(a @ f + 0.5 * (b * f * f).sum()), np.full(P, 1 / P), jac=lambda f: a + b * f,
        bounds=[(0, 1)] * P, constraints=[{"type": "eq", "fun": lambda f: f.sum() - 1}], method="SLSQP",
        options={"ftol": 1e-15, "maxiter": 500},
    )  # fmt: skip
    return res.x


def test_water_filling_is_the_beckmann_minimiser():
    sc = get_scenario("routing")(10**6, **ROUTES)
    np.testing.assert_allclose(sc.equilibrium(math.inf), _wardrop_lp(**ROUTES), atol=1e-6)
    f = sc.equilibrium(math.inf)
    lat = np.asarray(ROUTES["alpha"]) + np.asarray(ROUTES["beta"]) * f
    used = f > 1e-12
    assert np.ptp(lat[used]) < 1e-12 and (lat[~used] >= lat[used].max() - 1e-12).all()


@pytest.mark.parametrize("gradient", ["mean_field", "population"])
def test_routing_learns_wardrop_and_the_social_optimum(gradient):
    o = agents.play("routing", n_agents=100_000, params=dict(gradient=gradient, **ROUTES))
    sc = get_scenario("routing")(100_000, **ROUTES)
    target = sc.equilibrium(math.inf) if gradient == "mean_field" else sc.social()
    np.testing.assert_allclose(o.trajectory[-1], target, atol=1e-3)  # flows within 1e-3 at large N
    assert o.status == "ok" and o.exploitability < 1e-6
    if (
        gradient == "mean_field"
    ):  # the price of anarchy is visible: Wardrop costs more than the optimum
        a, b = np.asarray(ROUTES["alpha"]), np.asarray(ROUTES["beta"])
        s = sc.social()
        assert o.costs[0] > float((s * (a + b * s)).sum()) + 1e-3


# ---- flocking ------------------------------------------------------------------------------------
def test_flocking_mean_velocity_moves_only_by_the_average_noise():
    sc = get_scenario("flocking")(
        300, n_steps=10, u_max=1e3
    )  # a bound that binds would break the zero sum
    g = sc.game(Lambda=np.eye(1), law="time", policy="linear", seed=4)
    with (
        torch.no_grad()
    ):  # any thrust that reads fluctuations only (mean gains zero), within the bound
        W = g.policy.W[0]
        W.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
        W[:, :, 4:] = 0.0
    states: list = []
    g.agent_costs(states=states)
    v = torch.stack(states)[..., 2:]  # velocities [T, R, K, N, 2]
    noise = (
        g.sigma[0]
        * sum(  # the average idiosyncratic velocity noise, replayed from the game's seed
            (h.sqrt() * dW[..., 2:]).mean(2) for _, h, dW, _ in g._noise(g.x0.shape)
        )
    )
    drift = v[-1].mean(2) - v[0].mean(2)
    assert float(drift.abs().max()) > 1e-4  # the noise does move the mean: the test can fail
    torch.testing.assert_close(drift, noise, atol=1e-10, rtol=0)


@pytest.mark.slow
def test_flocking_learning_narrows_the_velocity_spread():
    o = agents.play("flocking", n_agents=400, steps=80, params=dict(n_steps=12))
    assert o.status in ("ok", "not_converged"), o.message
    assert o.history[-1, 0] < 0.6 * o.history[0, 0]  # learning lowers the cost well below no thrust


def test_mftt_population_policy_attends_to_a_sample_and_learns():
    """An MFTT per population: each agent reads its own token and a fixed sample of 8 agents (O(N·S²))."""
    sc = get_scenario("systemic_risk")(40, **SR, replicas=2, n_steps=6)
    g = sc.game(Lambda=np.eye(1), law="feedback", policy="mftt", mftt=dict(d_model=8), seed=0)
    assert g.policy.kind == "mftt" and g._sample.numel() == 8
    with torch.no_grad():
        J0 = float(g.costs())
    eq = solve(g, "nash", np.eye(1), steps=15, lr=0.02)
    assert (
        np.isfinite(eq.costs).all() and eq.costs[0] < J0
    )  # the shared MFTT lowers the banks' cost
    with pytest.raises(ValidationError, match="gradient"):
        get_scenario("systemic_risk")(40, gradient="exact").game(
            Lambda=np.eye(1), law="feedback", policy="mftt", mftt=dict(d_model=8), seed=0
        )


def test_checkpointed_steps_give_the_same_costs_and_gradients():
    """PopulationGame.checkpoint recomputes each SDE step in the backward pass: bitwise the same numbers."""
    out = []
    for ck in (True, False):
        sc = get_scenario("systemic_risk")(12, replicas=2, n_steps=6, **SR)
        g = sc.game(Lambda=np.eye(1), law="feedback", policy="mftt", mftt={"d_model": 8}, seed=0)
        assert g.checkpoint  # on by default for an MFTT policy
        g.checkpoint = ck
        c = g.costs()
        out.append((c.detach(), torch.autograd.grad(c.sum(), g.parameters_of(0))))
    (c1, g1), (c2, g2) = out
    assert torch.equal(c1, c2) and all(torch.equal(a, b) for a, b in zip(g1, g2, strict=True))


def test_attention_of_a_populations_shared_mftt_reads_the_agent_and_its_sample():
    """agents.attention_maps on a population's MFTT: token 0 is agent 0's (x − m, m, t), then its 8 sampled
    agents; every row of every head is a distribution over those 9 tokens."""
    from agents import attention_maps

    g = get_scenario("systemic_risk")(30, replicas=1, n_steps=5, **SR).game(
        Lambda=np.eye(1), law="feedback", policy="mftt", mftt={"d_model": 8, "heads": 2}, seed=0
    )
    r = attention_maps(g, 0, 2)
    D = 1 + 8
    assert r["maps"].shape[1:] == (2, D, D) and r["token"].startswith("agent")
    np.testing.assert_allclose(r["maps"].sum(-1), 1.0, rtol=1e-10)
    states: list = []
    with torch.no_grad():
        g.agent_costs(states=states)
    x = states[2][0, 0, :, 0].numpy()
    m = x.mean()
    np.testing.assert_allclose(r["tokens"][0], [x[0] - m, m, r["times"][2]], rtol=1e-12)


def test_rollout_parts_splits_statistics_and_paths_and_drops_padding():
    from agents import rollout_parts

    g = get_scenario("lq_populations")(20, **K3, n_steps=4).game(
        Lambda=np.eye(3), law="time", policy="linear", seed=0
    )
    _, summary = g.rollout()  # [T, 4·3 + 8·3]
    stats, paths = rollout_parts(summary, 3)
    T = len(summary)
    assert stats.shape == (T, 3, 4) and paths.shape == (T, 3, 8)
    np.testing.assert_array_equal(stats.reshape(T, -1), summary[:, :12])
    np.testing.assert_array_equal(paths.reshape(T, -1), summary[:, 12:])
    padded = np.concatenate([summary, np.full((T, 5), np.nan)], 1)  # a results file's state padding
    for a, b in zip(rollout_parts(padded, 3), (stats, paths), strict=True):
        np.testing.assert_array_equal(a, b)
    assert rollout_parts(summary[:, :13], 3) is None  # not a whole sample per population
    assert rollout_parts(np.zeros((T, 5)), 2) is None  # routing's flows: no per-agent statistics
