"""Best responses against references written independently: brute-force enumeration, clipped closed forms, and
the Riccati best response of an LQ game (docs/theory.md#best-responses)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import agents
from agents.best_response import Budget, best_response
from agents.empathy import as_Lambda
from agents.equilibrium import Equilibrium
from agents.exploitability import exploitability
from agents.game import MatrixGame, StaticGame
from agents.verdict import Tolerance, measure
from control.errors import ValidationError
from control.riccati import riccati_closed_form


def test_pure_best_response_matches_enumeration():
    rng = np.random.default_rng(3)
    for _ in range(5):
        P = rng.normal(size=(3, 3, 2, 4))
        xs = [rng.dirichlet(np.ones(m)) for m in (3, 2, 4)]
        Lam = np.eye(3) + 0.3 * rng.normal(size=(3, 3))
        g = MatrixGame(P, init=xs)
        ex = exploitability(g, Lam)
        U = np.einsum("ji,iabc->jabc", Lam, P)
        for j, m in enumerate((3, 2, 4)):
            now = np.einsum("abc,a,b,c->", U[j], *xs)
            best = -np.inf
            for a in range(m):
                ys = list(xs)
                ys[j] = np.eye(m)[a]
                best = max(best, np.einsum("abc,a,b,c->", U[j], *ys))
            assert ex.gains[j] == pytest.approx(best - now, abs=1e-12)
            assert ex.method[j] == "exact:pure"


@pytest.mark.parametrize("Lambda", ["selfish", "altruistic"])
def test_cournot_best_response_is_the_clipped_closed_form(Lambda):
    sc = agents.get_scenario("cournot")(3, alpha=10.0, beta=1.0, c=1.0)
    L = as_Lambda(Lambda, 3)
    g = sc.game(Lambda=L, law="constant", policy="direct", seed=0, device="cpu")
    q = np.array([1.0, 2.5, 4.0])
    g.set_actions(q[:, None])
    ex = exploitability(g, L)
    for j in range(3):
        # E_j(q_j) = Σ_i λ_ji L_i with L_i = β q_i Q − (α − c) q_i: a concave-up parabola in q_j
        others = q.sum() - q[j]
        lam = L[j]
        a2 = lam[j]  # coefficient of q_j²: λ_jj β, plus λ_ji β q_i q_j terms are linear in q_j
        a1 = lam[j] * (others - 9.0) + sum(lam[i] * q[i] for i in range(3) if i != j)
        qs = float(np.clip(-a1 / (2 * a2), 0.0, 10.0))
        prof = q.copy()
        prof[j] = qs
        Lmat = prof * prof.sum() - 9.0 * prof
        now = q * q.sum() - 9.0 * q
        assert ex.gains[j] == pytest.approx(lam @ now - lam @ Lmat, rel=1e-10, abs=1e-12)
        assert ex.method[j] == "exact:action"


def test_unbounded_best_response_is_inf():
    g = StaticGame(lambda u: torch.stack([-(u[0, 0] ** 2), u[1, 0] ** 2]), 2, init=[[1.0], [1.0]])
    ex = exploitability(g, None)
    assert ex.nash_conv == math.inf and ex.bounded == [False, True]
    assert "without bound" in ex.message
    eq = Equilibrium(
        "nash", np.eye(2), None, [], np.ones(2), np.ones(2), np.ones((3, 2)), "converged"
    )
    assert measure(g, np.eye(2), eq).status == "unbounded"


def _riccati_best_response(sc, L, k, ell, j) -> float:
    """Agent j's exact best-response Λ-cost against constant gains (k_i, l_i) of the others (docs/theory.md#lq-control)."""
    c = sc.coefficients()
    n = sc.n
    lam = L[j]
    o = [i for i in range(n) if i != j]
    s = c["b"][j] ** 2 / (lam[j] * c["r"][j])
    ay = c["a"] - sum(c["b"][i] * k[i] for i in o)
    qy = lam @ c["q"] + sum(lam[i] * c["r"][i] * k[i] ** 2 for i in o)
    am = c["a"] + c["abar"] - sum(c["b"][i] * ell[i] for i in o)
    qm = lam @ (c["q"] + c["qbar"]) + sum(lam[i] * c["r"][i] * ell[i] ** 2 for i in o)
    P0 = riccati_closed_form(ay, s, qy, lam @ c["qT"], c["T"], 0.0)
    Pi0 = riccati_closed_form(am, s, qm, lam @ (c["qT"] + c["qTbar"]), c["T"], 0.0)
    return float(P0 * c["v0"] + Pi0 * c["m0"] ** 2)


@pytest.mark.parametrize(
    ("n", "Lambda", "j"), [(2, "selfish", 0), (3, "altruistic", 1), (4, "coopetitive", 3)]
)
def test_lq_best_response_matches_riccati(n, Lambda, j):
    """L-BFGS over open-loop controls on a fine grid lands on the Riccati best response."""
    sc = agents.get_scenario("lq_game")(n, n_steps=40, particles=2, a=0.3, qbar=0.2, qTbar=0.1)
    L = as_Lambda(Lambda, n)
    g = sc.game(Lambda=L, law="constant", policy="linear", seed=0, device="cpu")
    rng = np.random.default_rng(n)
    k, ell = rng.uniform(0.3, 1.2, n), rng.uniform(0.2, 1.0, n)
    with torch.no_grad():
        for i, a in enumerate(g.agents):
            a.policy.gains.theta0.copy_(torch.tensor([[[k[i]]], [[ell[i]]]]))
    best, tried = best_response(g, L, j, methods=("open_loop",), budget=Budget(gtol=1e-11))
    exact = _riccati_best_response(sc, L, k, ell, j)
    assert best.converged and best.bounded
    assert best.cost == pytest.approx(exact, rel=1e-6)


def test_status_rules_on_constructed_cases():
    sc = agents.get_scenario("cournot")(2)
    L = np.eye(2)
    g = sc.game(Lambda=L, law="constant", policy="direct", seed=0, device="cpu")
    hist = np.array([[-5.0, -5.0], [-9.0, -9.0]])

    def eq(status, costs=(-9.0, -9.0)):
        c = np.asarray(costs)
        return Equilibrium("nash", L, None, [], c, c, hist, status, iterations=2, residual=0.1)

    g.set_actions([[3.0], [3.0]])  # the Cournot equilibrium (α − c)/3β
    assert measure(g, L, eq("converged")).status == "ok"
    assert measure(g, L, eq("max_steps")).status == "not_converged"
    g.set_actions([[2.25], [2.25]])  # collusive: each firm gains by producing more
    v = measure(g, L, eq("converged"))
    assert v.status == "not_equilibrium" and "agent" in v.message
    assert v.exploitability.nash_conv > 0.1
    assert measure(g, L, eq("converged"), no_equilibrium="no saddle").status == "unbounded"
    huge = StaticGame(lambda u: 1e21 * (1 + u[:, 0] ** 2), 2)
    v = measure(huge, L, eq("converged"))
    assert v.status == "diverged" and "blow-up" in v.message
    with pytest.raises(ValidationError):
        Tolerance(exploitability=-1.0)


def test_perturbed_profiles_are_never_ok():
    """A profile moved off its learned point is exploitable: the certified gain sees it."""
    for name, kw in [("lq_game", {}), ("commons", {}), ("consensus", {})]:
        sc = agents.get_scenario(name)()
        L = as_Lambda("selfish", sc.n)
        g = sc.game(Lambda=L, law="constant", policy="linear", seed=0, device="cpu", **kw)
        eq = agents.solve(g, "nash", L, steps=5, lr=sc.default_lr)
        with torch.no_grad():
            for p in g.parameters_of(0):
                p.add_(0.5)
        c = g.costs().detach().numpy()
        e = Equilibrium("nash", L, None, [], c, L @ c, eq.history, "converged")
        v = measure(g, L, e, budget=Budget(max_iter=60))
        assert v.status == "not_equilibrium", (name, v.message)
        assert v.exploitability.gains[0] > 1e-3


def _effective(sc, L, k, ell, j):
    """Agent j's single-agent LQ problem with the others' constant gains frozen (docs/theory.md#lq-game)."""
    from control.riccati import LQProblem

    c = sc.coefficients()
    lam, o = L[j], [i for i in range(sc.n) if i != j]
    ay = c["a"] - sum(c["b"][i] * k[i] for i in o)
    am = c["a"] + c["abar"] - sum(c["b"][i] * ell[i] for i in o)
    qy = lam @ c["q"] + sum(lam[i] * c["r"][i] * k[i] ** 2 for i in o)
    qm = lam @ (c["q"] + c["qbar"]) + sum(lam[i] * c["r"][i] * ell[i] ** 2 for i in o)
    qT, qTm = lam @ c["qT"], lam @ (c["qT"] + c["qTbar"])
    return LQProblem(
        ay, am - ay, c["b"][j], 0.0, qy, qm - qy, lam[j] * c["r"][j], qT, qTm - qT, c["T"]
    )


@pytest.mark.parametrize(("n", "Lambda"), [(2, "selfish"), (3, "altruistic")])
def test_default_budget_within_ten_percent_of_exact(n, Lambda):
    """On the default grid the platform's NashConv of a linear profile is within 10 % of the exact one."""
    sc = agents.get_scenario("lq_game")(n)
    L = as_Lambda(Lambda, n)
    g = sc.game(Lambda=L, law="constant", policy="linear", seed=0, device="cpu")
    rng = np.random.default_rng(7 + n)
    k, ell = rng.uniform(0.2, 1.5, n), rng.uniform(0.1, 1.2, n)
    with torch.no_grad():
        for i, a in enumerate(g.agents):
            a.policy.gains.theta0.copy_(torch.tensor([[[k[i]]], [[ell[i]]]]))
    ex = exploitability(g, L)
    c = sc.coefficients()
    exact = 0.0
    for j in range(n):
        prob = _effective(sc, L, k, ell, j)
        now = prob.policy_cost(lambda t, j=j: k[j], lambda t, j=j: ell[j], c["m0"], c["v0"])
        exact += now - prob.solve().cost(c["m0"], c["v0"])
    assert exact > 1e-3
    assert ex.nash_conv == pytest.approx(exact, rel=0.10)
