"""The H∞ disturbance-attenuation game (docs/theory.md#hinf): game Riccati closed form, γ*, value, exact best responses."""

import math

import numpy as np
import pytest

from control import ValidationError, riccati_closed_form
from control.hinf import (
    HInfGame,
    best_response_attacker,
    best_response_defender,
    duality_gap,
    escape_time,
    game_riccati_closed_form,
    game_riccati_matrix,
    profile_cost,
    scalar_riccati_ode,
)

# (a, s, q, qT): s > 0 (LQ-like), s < 0 with κ² > 0, κ² < 0, κ² = 0, s = 0
CASES = [(0.5, 1.75, 1.0, 1.0), (0.8, -0.3, 1.0, 0.2), (0.2, -1.0, 1.0, 0.5), (0.5, -0.25, 1.0, 0.1),
         (-0.4, 0.0, 2.0, 1.0), (-1.0, -0.5, 1.0, 0.0)]  # fmt: skip


@pytest.mark.parametrize("a,s,q,qT", CASES)
def test_closed_form_matches_ode_and_spec_c1(a, s, q, qT):
    """P(t) of the closed form vs solve_ivp (1e-8); vs docs/theory.md#riccati-closed-form (P₊ − zP₋)/(1 − z) where it applies."""
    T = 0.8 * min(1.0, escape_time(a, s, q, qT))  # stay before any escape
    path = scalar_riccati_ode(a, s, q, qT, T)
    t = np.linspace(0.0, T, 17)
    P = game_riccati_closed_form(a, s, q, qT, T, t)
    np.testing.assert_allclose(P, path.P(t), rtol=1e-8, atol=1e-10)
    if s != 0 and a * a + s * q > 0 and qT != (a - math.sqrt(a * a + s * q)) / s:
        np.testing.assert_allclose(P, riccati_closed_form(a, s, q, qT, T, t), rtol=1e-9)


@pytest.mark.parametrize("a,s,q,qT", [c for c in CASES if escape_time(*c) < 10])
def test_escape_time_formula_matches_the_ode(a, s, q, qT):
    """The ODE blows up at T − τ*: just before τ* from the horizon it does, just after it does not."""
    tau = escape_time(a, s, q, qT)
    assert scalar_riccati_ode(a, s, q, qT, 0.999 * tau).bounded
    path = scalar_riccati_ode(a, s, q, qT, 1.001 * tau)
    assert not path.bounded and path.P0 == math.inf
    assert path.escape == pytest.approx(0.001 * tau, abs=2e-3 * tau)


def test_critical_gamma_by_bisection_is_the_escape_boundary():
    """γ*(T): escape time-to-go of P equals T there; the ODE escapes just below it and not above."""
    g = HInfGame()
    gs = g.critical_gamma()
    assert 0 < gs < math.sqrt(g.r) / g.b  # s ≥ 0 never escapes
    fl = HInfGame(gamma=gs).parts()[0]
    assert escape_time(*fl) == pytest.approx(g.T, rel=1e-8)
    below, above = HInfGame(gamma=0.999 * gs), HInfGame(gamma=1.001 * gs)
    assert not scalar_riccati_ode(*below.parts()[0], g.T).bounded
    assert scalar_riccati_ode(*above.parts()[0], g.T).bounded
    assert not below.exists() and above.exists()
    assert HInfGame(T=2.0).critical_gamma() > gs  # a longer horizon needs more attenuation
    msg = below.no_saddle_message()
    assert "gamma" in msg and f"{gs:.6g}" in msg and "\n" not in msg
    assert above.no_saddle_message() is None
    with pytest.raises(Exception, match="gamma"):
        below.solve()


def test_mean_field_parts_and_the_value():
    """With ā, q̄ the mean part has its own Riccati; closed form and ODE solve agree on the value."""
    g = HInfGame(a=0.3, abar=0.4, q=1.0, qbar=0.5, qTbar=0.5, gamma=1.2, sigma=0.4, m0=0.7, v0=0.3)
    cf, ode = g.solve(), g.solve("ode")
    t = np.linspace(0, 1, 9)
    np.testing.assert_allclose(cf.Pi(t), ode.Pi(t), rtol=1e-8)
    assert cf.value == pytest.approx(ode.value, rel=1e-9)
    assert cf.value == pytest.approx(
        cf.P(0) * 0.3 + cf.Pi(0) * 0.49 + 0.16 * cf.integral, rel=1e-12
    )
    assert not np.allclose(cf.P(t), cf.Pi(t))


def test_value_by_monte_carlo_and_by_particles():
    """The saddle feedback played on simulated paths: Euler–Maruyama (σ > 0) within 3 standard errors;
    deterministic particles (σ = 0, mean field) by RK4 to 1e-6."""
    g = HInfGame(a=0.5, b=1.0, q=1.0, r=0.5, qT=1.0, gamma=1.0, sigma=0.5, m0=0.0, v0=0.5)
    sol = g.solve()
    rng = np.random.default_rng(0)
    n, K = 40000, 400
    h = g.T / K
    x = rng.normal(0.0, math.sqrt(g.v0), n)
    cost = np.zeros(n)
    for i in range(K):
        t = i * h
        u, w = -sol.k(t) * x, sol.ell(t) * x
        cost += h * (g.q * x**2 + g.r * u**2 - g.gamma**2 * w**2)
        x = x + h * (g.a * x + g.b * u + w) + g.sigma * math.sqrt(h) * rng.normal(size=n)
    cost += g.qT * x**2
    assert abs(cost.mean() - sol.value) < 3 * cost.std() / math.sqrt(n) + 2e-3 * sol.value
    # particles with a mean field, RK4 on a fine grid: the mean and fluctuation gains differ
    g = HInfGame(abar=0.3, qbar=0.5, gamma=1.0, m0=1.0, v0=0.5)
    sol = g.solve()
    x0 = np.array([-1.0, 1.0]) * math.sqrt(g.v0) + g.m0

    def f(t, z):
        x = z[:-1]
        m = x.mean()
        u = -sol.k(t) * (x - m) - sol.kbar(t) * m
        w = sol.ell(t) * (x - m) + sol.ellbar(t) * m
        run = np.mean(g.q * x**2 + g.r * u**2 - g.gamma**2 * w**2) + g.qbar * m**2
        return np.append(g.a * x + g.abar * m + g.b * u + w, run)

    z, K = np.append(x0, 0.0), 400
    h = g.T / K
    for i in range(K):
        t = i * h
        k1 = f(t, z)
        k2 = f(t + h / 2, z + h / 2 * k1)
        k3 = f(t + h / 2, z + h / 2 * k2)
        k4 = f(t + h, z + h * k3)
        z = z + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    x = z[:-1]
    J = z[-1] + g.qT * np.mean(x**2) + g.qTbar * x.mean() ** 2
    assert J == pytest.approx(sol.value, rel=1e-6)


def test_best_responses_at_and_off_the_saddle():
    """Exact best responses: both equal the value at the saddle (gap 0), bracket any profile's cost,
    and are unbounded (±inf) where the Riccati ODE escapes."""
    g = HInfGame(abar=0.2, qbar=0.3, gamma=1.0)
    sol = g.solve()
    v = sol.value
    assert best_response_attacker(sol.k, g, sol.kbar) == pytest.approx(v, rel=1e-8)
    assert best_response_defender(sol.ell, g, sol.ellbar) == pytest.approx(v, rel=1e-8)
    assert abs(duality_gap(sol.k, sol.ell, g, sol.kbar, sol.ellbar)) < 1e-8 * v
    assert profile_cost(sol.k, sol.ell, g, sol.kbar, sol.ellbar) == pytest.approx(v, rel=1e-8)
    for k, ell in [(3.0, 0.5), (2.5, 1.0), (lambda t: 2.0 + t, 0.2)]:
        J = profile_cost(k, ell, g)
        assert best_response_defender(ell, g) <= J <= best_response_attacker(k, g)
        assert duality_gap(k, ell, g) > 1e-3
    assert (
        best_response_attacker(1.0, HInfGame(gamma=0.7)) == math.inf
    )  # no constant gain is robust
    assert (
        best_response_defender(5.0, g) == -math.inf
    )  # an attack that pays γ²l² > q: unbounded below


def test_matrix_game_riccati_decouples_to_the_scalar_closed_form():
    A, B, Q, R, QT = (
        np.diag([0.5, -0.2]),
        np.eye(2),
        np.diag([1.0, 2.0]),
        0.5 * np.eye(2),
        np.eye(2),
    )
    P0 = game_riccati_matrix(A, B, Q, R, QT, gamma=1.0, T=1.0)
    for i, (a, q) in enumerate([(0.5, 1.0), (-0.2, 2.0)]):
        assert P0[i, i] == pytest.approx(
            game_riccati_closed_form(a, 2.0 - 1.0, q, 1.0, 1.0, 0.0), rel=1e-8
        )
    assert abs(P0[0, 1]) < 1e-12
    with pytest.raises(Exception, match="gamma"):
        game_riccati_matrix(A, B, Q, R, QT, gamma=0.3, T=1.0)


@pytest.mark.parametrize(
    "kw,field", [(dict(r=0.0), "r"), (dict(gamma=-1.0), "gamma"), (dict(T=float("nan")), "T"),
                 (dict(q=1.0, qbar=-2.0), "qbar"), (dict(sigma=-0.1), "sigma"), (dict(a="x"), "a")],
)  # fmt: skip
def test_config_is_validated_with_one_line_errors(kw, field):
    with pytest.raises(ValidationError) as err:
        HInfGame(**kw)
    assert str(err.value).startswith(field) and "\n" not in str(err.value)
    with pytest.raises(AttributeError):
        HInfGame().gamma = 3.0  # frozen
