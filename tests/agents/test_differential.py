"""DifferentialGame: rollout costs against closed forms, batched policies against per-agent ones, gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agents import Agent, DifferentialGame, LinearPolicy
from agents.agent import PolicyStack
from agents.differential import NotFusable
from agents.scenarios import get_scenario
from control import DivergenceError, ValidationError

D = torch.float64


def _scalar_game(k, l, *, a=0.3, b=1.0, q=1.0, qbar=0.0, r=0.5, qT=2.0, T=1.0, n_steps=40):
    """One agent, constant gains u = −k(x − Ex) − l Ex, particles ±1 around m0 = 2 (v0 = 1)."""
    pol = LinearPolicy(1, 1, "constant", init=torch.tensor([[[k]], [[l]]], dtype=D), dtype=D)
    x0 = torch.tensor([[1.0], [3.0]], dtype=D)

    def dyn(t, x, u):
        return a * x + b * u[0]

    def run(t, x, u):
        return (q * x.square().mean() + qbar * x.mean().square() + r * u.square().mean()).reshape(1)

    def term(x):
        return (qT * x.square().mean()).reshape(1)

    return DifferentialGame([Agent("a", "solo", pol)], x0, dyn, run, term, T=T, n_steps=n_steps)


def _closed(k, l, *, a=0.3, b=1.0, q=1.0, qbar=0.0, r=0.5, qT=2.0, T=1.0, m0=2.0, v0=1.0):
    """Cost of constant feedback: y, m decay at rates c = a − bk, ĉ = a − bl (docs/theory.md#lq-policy-cost)."""

    def part(c, w, m2):
        integral = T if abs(c) < 1e-12 else (math.exp(2 * c * T) - 1) / (2 * c)
        return m2 * (w * integral + qT * math.exp(2 * c * T))

    return part(a - b * k, q + r * k * k, v0) + part(a - b * l, q + qbar + r * l * l, m0 * m0)


@pytest.mark.parametrize("k,l", [(0.0, 0.0), (1.5, 0.7), (-0.2, 2.0)])
def test_costs_match_closed_form_for_constant_feedback(k, l):
    g = _scalar_game(k, l)
    assert float(g.costs()[0].detach()) == pytest.approx(_closed(k, l), rel=1e-7)


def test_mean_field_cost_term_enters():
    g0, g1 = _scalar_game(1.0, 0.5), _scalar_game(1.0, 0.5, qbar=0.7)
    diff = float((g1.costs()[0] - g0.costs()[0]).detach())
    assert diff == pytest.approx(_closed(1.0, 0.5, qbar=0.7) - _closed(1.0, 0.5), rel=1e-7)
    assert diff > 0


def test_gradient_matches_finite_differences():
    g = _scalar_game(0.8, 0.4)
    th = g.parameters_of(0)[0]
    (grad,) = torch.autograd.grad(g.costs()[0], [th])
    eps = 1e-6
    for idx in [(0, 0, 0), (1, 0, 0)]:
        with torch.no_grad():
            th[idx] += eps
            up = float(g.costs()[0].detach())
            th[idx] -= 2 * eps
            down = float(g.costs()[0].detach())
            th[idx] += eps
        assert float(grad[idx]) == pytest.approx((up - down) / (2 * eps), rel=1e-6)


def _mixed_policies():
    torch.manual_seed(3)
    pols = [
        LinearPolicy(2, 1, "time", init=None, dtype=D),
        LinearPolicy(2, 1, "feedback", init=None, dtype=D),
        LinearPolicy(2, 1, "time", init=None, dtype=D),
        LinearPolicy(2, 1, "meanfield", init=None, dtype=D),
    ]
    with torch.no_grad():
        for p in pols:
            for w in p.parameters():
                w.normal_()
    return pols


@pytest.mark.parametrize("tabulated", [False, True])
def test_stack_equals_per_agent_evaluation_and_routes_gradients(tabulated):
    pols = _mixed_policies()
    stack = PolicyStack(pols)
    assert len(stack.groups) == 3  # time ×2 share one batched call
    obs = torch.randn(4, 5, 2, dtype=D)
    t = torch.tensor(0.4, dtype=D)
    times = torch.tensor([0.0, 0.4, 1.0], dtype=D) if tabulated else None
    out = stack.run(lambda: stack(t, obs), times)
    ref = torch.stack([p(t, obs[j]) for j, p in enumerate(pols)])
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    w = torch.randn_like(out)
    g_stack = torch.autograd.grad((out * w).sum(), [pols[2].gains.coef])[0]
    g_ref = torch.autograd.grad((ref * w).sum(), [pols[2].gains.coef])[0]
    torch.testing.assert_close(g_stack, g_ref)


def test_time_law_tabulation_is_used_and_exact():
    """A rollout on the rk4 stage grid gives the same costs as the untabulated law."""
    pols = [LinearPolicy(1, 1, "time", init=None, dtype=D) for _ in range(2)]
    x0 = torch.linspace(-1, 2, 5, dtype=D).unsqueeze(-1)
    agents = [Agent(f"p{j}", "p", p) for j, p in enumerate(pols)]

    def dyn(t, x, u):
        return -0.2 * x + u.sum(0)

    def run(t, x, u):
        return x.square().mean() + u.square().mean((1, 2))

    g = DifferentialGame(agents, x0, dyn, run, lambda x: x.square().mean().expand(2), n_steps=5)
    c_tab = g.costs()
    g.stage_times = None
    c_plain = g.costs()
    torch.testing.assert_close(c_tab, c_plain, rtol=1e-13, atol=1e-13)


def test_rollout_summary_and_bounds():
    g = _scalar_game(0.0, -5.0, n_steps=10)
    g.bounds = (-1.0, 1.0)  # the mean feedback 5·Ex would exceed the bound: clipped at 1
    t, traj = g.rollout()
    assert t.shape == (11,) and traj.shape == (11, 1)
    # dm/dt = 0.3 m + 1 while the clip is active (m > 0.2): solve exactly
    m_exact = (2.0 + 1 / 0.3) * math.exp(0.3 * 1.0) - 1 / 0.3
    assert traj[-1, 0] == pytest.approx(m_exact, rel=1e-6)


def test_divergence_raises_named_error():
    g = _scalar_game(0.0, 0.0, a=1e90, n_steps=4)
    with pytest.raises(DivergenceError):
        g.costs()


def test_validation_errors_are_one_line():
    pol = LinearPolicy(1, 1, "constant", dtype=D)
    a = Agent("a", "r", pol)
    ok = dict(dynamics=None, running_cost=None, terminal_cost=None)
    cases = [
        (dict(agents=[a], x0=torch.zeros(3, dtype=D)), "x0"),
        (dict(agents=[a, Agent("a", "r", pol)], x0=torch.zeros(3, 1, dtype=D)), "agents"),
        (dict(agents=[a], x0=torch.zeros(3, 1, dtype=D), bounds=(1.0, 0.0)), "bounds"),
        (dict(agents=[a], x0=torch.zeros(3, 1, dtype=D), method="nope"), "method"),
    ]
    for kw, field in cases:
        with pytest.raises(ValidationError) as err:
            DifferentialGame(**{**ok, **kw})
        assert str(err.value).startswith(field) and "\n" not in str(err.value)
    with pytest.raises(ValidationError, match="policy"):
        Agent("b", "r", object())


def test_state_dict_roundtrip_and_n_params():
    g = _scalar_game(0.5, 0.5)
    s = g.state_dict()
    c0 = float(g.costs()[0].detach())
    with torch.no_grad():
        g.parameters_of(0)[0].add_(1.0)
    assert float(g.costs()[0].detach()) != pytest.approx(c0)
    g.load_state_dict(s)
    assert float(g.costs()[0].detach()) == pytest.approx(c0, rel=1e-14)
    assert np.array_equal(g.n_params(), [2])


def test_stacked_cells_are_one_simulation_with_each_cells_numbers():
    """DifferentialGame.fuse: C cells as one game of C·n agents, one ODE per evaluation, each cell's own
    costs, gradients and trajectory; every cell counts the stacked solve's evaluations."""
    sc = get_scenario("consensus")(3)
    games = []
    for seed in (0, 5, 9):
        torch.manual_seed(seed)
        games.append(sc.game(Lambda=np.eye(3), law="feedback", policy="linear", seed=seed))
    alone = [g.costs() for g in games]
    grads = [torch.autograd.grad(c.sum(), games[k].parameters_of(1)) for k, c in enumerate(alone)]
    nfe0 = [g.nfe for g in games]
    stacked = DifferentialGame.fuse(games)
    assert (stacked.n_cells, stacked.n_per_cell, stacked.n_agents) == (3, 3, 9)
    L = stacked.costs()
    assert L.shape == (9,)
    for k in range(3):
        torch.testing.assert_close(L[3 * k : 3 * k + 3], alone[k], rtol=1e-12, atol=1e-12)
        g = torch.autograd.grad(
            L[3 * k : 3 * k + 3].sum(), stacked.parameters_of(3 * k + 1), retain_graph=True
        )
        for a, b in zip(g, grads[k], strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert all(g.nfe - n0 == stacked.nfe > 0 for g, n0 in zip(games, nfe0, strict=True))
    for (t, traj), g in zip(stacked.rollouts(), games, strict=True):
        t1, traj1 = g.rollout()
        np.testing.assert_array_equal(t, t1)
        np.testing.assert_allclose(traj, traj1, rtol=1e-12, atol=1e-12)
    with pytest.raises(NotFusable, match="at least two"):
        DifferentialGame.fuse(games[:1])
