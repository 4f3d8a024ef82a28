"""Solution concepts: Stackelberg duopoly, zero-sum saddle and the uv growth factors (docs/theory.md#static-games), registry errors."""

import math

import numpy as np
import pytest
import torch

from agents.concepts import SOLUTION_CONCEPTS, solve
from agents.empathy import empathetic_costs
from agents.game import StaticGame
from agents.learning import Adam, Descent, make_optimizer, own_grads
from agents.scenarios import get_scenario
from agents.scenarios._static import QuadraticGame
from control.errors import ValidationError


def cell(name, Lam=None, **params):
    sc = get_scenario(name)(**params)
    n = sc.n
    g = sc.game(Lambda=np.eye(n) if Lam is None else Lam, law="constant", policy="direct",
                mftt=None, seed=0, device="cpu")  # fmt: skip
    return sc, g


@pytest.mark.parametrize("mode, extra", [("implicit", {}), ("unrolled", {"inner_steps": 40})])
def test_stackelberg_duopoly_closed_form(mode, extra):
    a, b, c1, c2 = 10.0, 1.5, 1.0, 2.0
    sc, g = cell("stackelberg", alpha=a, beta=b, c=[c1, c2])
    eq = solve(g, "stackelberg", None, mode=mode, steps=800, lr=0.2, tol=1e-9, **extra)
    q1, q2 = (a - 2 * c1 + c2) / (2 * b), (a + 2 * c1 - 3 * c2) / (4 * b)
    assert np.abs(eq.actions.ravel() - [q1, q2]).max() < 1e-4
    assert np.allclose(sc.equilibrium_actions(np.eye(2)), [q1, q2], atol=1e-10)
    assert np.allclose(eq.costs, sc.reference(np.eye(2)), atol=1e-4)


def test_stackelberg_symmetric_profits_and_leader_advantage():
    a, c = 10.0, 1.0
    sc, g = cell("stackelberg", alpha=a, beta=1.0, c=c)
    eq = solve(g, "stackelberg", None, steps=sc.default_steps, lr=sc.default_lr)
    assert np.allclose(-eq.costs, [(a - c) ** 2 / 8, (a - c) ** 2 / 16], atol=1e-4)
    # a Stackelberg outcome is not a Nash equilibrium: the leader would deviate given a frozen follower
    from agents.exploitability import exploitability

    ex = exploitability(g, None, steps=300, lr=0.2)
    assert ex.gains[0] > 0.1 and ex.gains[1] < 1e-8


def test_regulator_subsidises_to_the_competitive_output():
    a, c = 10.0, 1.0
    sc, g = cell("stackelberg", n_agents=3, leader="regulator", alpha=a, beta=1.0, c=c)
    eq = solve(g, "stackelberg", None, steps=600, lr=0.3, tol=1e-9)
    tau, q = eq.actions[0, 0], eq.actions[1:, 0]
    assert abs(tau + (a - c) / 2) < 1e-4  # τ = −(α−c)/m with m = 2 firms
    assert abs(q.sum() - (a - c)) < 1e-4  # welfare-optimal: price = marginal cost


def test_zero_sum_quadratic_saddle_by_minimax():
    a, c, d, e, f = 2.0, 1.0, 3.0, 0.5, -1.0

    def cost(z):
        u, v = z[0, 0], z[1, 0]
        L = a / 2 * u**2 + c * u * v - d / 2 * v**2 + e * u + f * v
        return torch.stack([L, -L])

    g = StaticGame(cost, 2, init=[1.0, 1.0])
    eq = solve(g, "minimax", None, steps=5000, lr=0.1, tol=1e-12)
    u = -(e * d + c * f) / (a * d + c**2)
    v = (c * u + f) / d
    assert eq.status == "converged"
    assert np.allclose(eq.actions.ravel(), [u, v], atol=1e-8)


@pytest.mark.parametrize("eta", [0.05, 0.2])
def test_bilinear_gda_diverges_and_extragradient_converges(eta):
    def cost(z):
        L = z[0, 0] * z[1, 0]
        return torch.stack([L, -L])

    k = 50
    for method, factor in [("gda", math.sqrt(1 + eta**2)), ("extragradient", math.sqrt(1 - eta**2 + eta**4))]:  # fmt: skip
        g = StaticGame(cost, 2, init=[1.0, 0.5])
        z0 = np.linalg.norm(g.actions())
        solve(g, "minimax", None, method=method, steps=k, lr=eta, tol=0.0)
        ratio = np.linalg.norm(g.actions()) / z0
        assert ratio == pytest.approx(factor**k, rel=1e-9)
    assert math.sqrt(1 + eta**2) > 1 > math.sqrt(1 - eta**2 + eta**4)


def test_nash_variants_agree_on_cournot():
    outs = []
    for method in ["gradient", "extragradient", "optimistic"]:
        _, g = cell("cournot")
        eq = solve(g, "nash", None, method=method, steps=3000, lr=0.1, tol=1e-10)
        assert eq.status == "converged", method
        outs.append(eq.actions.ravel())
    assert np.allclose(outs, 3.0, atol=1e-6)


def test_equilibrium_record():
    Lam = np.array([[1.0, 0.4], [0.2, 1.0]])
    _, g = cell("cournot", Lam)
    eq = solve(g, "nash", Lam, steps=500, lr=0.1, measure_exploitability=True)
    assert eq.history.shape == (eq.iterations, 2)
    assert np.allclose(eq.empathetic_costs, Lam @ eq.costs)
    assert eq.exploitability is not None and eq.exploitability < 1e-8
    # the learned profile solves the Λ first-order conditions of docs/theory.md#static-games
    sc = get_scenario("cournot")()
    assert np.allclose(eq.actions.ravel(), sc.equilibrium_quantities(Lam), atol=1e-6)


def test_own_grads_match_finite_differences():
    rng = np.random.default_rng(3)
    A = rng.normal(size=(3, 3, 3))
    A = A + A.transpose(0, 2, 1) + 6 * np.eye(3)
    b = rng.normal(size=(3, 3))
    Lam = rng.normal(size=(3, 3))
    g = QuadraticGame(A, b, init=rng.normal(size=3))
    E = empathetic_costs(Lam, g.costs())
    got = np.array([x[0].item() for x in own_grads(g, E, range(3))])
    u0, h = g.actions().ravel(), 1e-6
    want = []
    for j in range(3):
        up, dn = u0.copy(), u0.copy()
        up[j] += h
        dn[j] -= h
        want.append((Lam[j] @ (g.material_costs(up) - g.material_costs(dn))) / (2 * h))
    assert np.allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("Lam, expected", [("selfish", 0.0), ("berge", 1.0), ("team", 0.5)])
def test_berge_mutual_support(Lam, expected):
    sc, g = cell("berge", need=1.0, h=1.0, r=1.0)
    eq = solve(g, "nash", Lam, steps=sc.default_steps, lr=sc.default_lr, tol=1e-10)
    # selfish: nobody helps; Berge: u = need/h; team: u = h·need/(r + h²)
    assert np.allclose(eq.actions.ravel(), expected, atol=1e-6)
    from agents.empathy import preset

    assert np.allclose(eq.costs, sc.reference(preset(Lam, 2)), atol=1e-6)


def test_registry_and_bad_names():
    assert set(SOLUTION_CONCEPTS) == {"nash", "stackelberg", "minimax"}
    _, g = cell("cournot")
    with pytest.raises(ValidationError) as e:
        solve(g, "correlated")
    assert str(e.value).startswith("concept") and "minimax, nash, stackelberg" in str(e.value)
    with pytest.raises(ValidationError, match=r"^nash.temperature"):
        solve(g, "nash", temperature=1.0)
    with pytest.raises(ValidationError, match=r"^method.*extragradient"):
        solve(g, "nash", method="newton")
    with pytest.raises(ValidationError, match=r"^concept.*zero-sum"):
        solve(g, "minimax")  # Cournot is not zero-sum
    with pytest.raises(ValidationError, match=r"^Lambda.*3x3"):
        solve(cell("cournot", n_agents=3)[1], "nash", np.eye(2))


def test_one_optimiser_implementation_saves_and_restores_its_state():
    """make_optimizer gives gradient play's own classes (the actors use them too); Adam's saved moments let a
    fresh copy take exactly the step the first one takes."""
    assert isinstance(make_optimizer("sgd", [], 0.1), Descent)
    with pytest.raises(ValidationError, match=r"^optimizer"):
        make_optimizer("rmsprop", [], 0.1)
    g = [torch.tensor([0.3, -1.0], dtype=torch.float64)]
    p = torch.tensor([1.0, 2.0], dtype=torch.float64)
    a = make_optimizer("adam", [p], 0.1)
    assert isinstance(a, Adam) and a.state() is None
    for _ in range(3):
        a.step(g)
    q = p.clone()
    b = Adam([q], 0.1)
    b.load(a.state())
    a.step(g)
    b.step(g)
    assert torch.equal(p, q)
    d = Descent([p], 0.5)
    d.step(g)
    assert torch.equal(p, q - 0.5 * g[0]) and d.state() is None
