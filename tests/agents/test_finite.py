"""Exact equilibria of finite games, checked against nashpy and linear programming (docs/theory.md#static-games)."""

import functools
import warnings

import numpy as np
import pytest
from scipy.optimize import linprog

import agents
from agents import finite
from agents.concepts import solve
from agents.game import MatrixGame
from agents.scenarios import get_scenario
from agents.scenarios.matrix import matching_pennies, pd_thresholds, prisoners_dilemma
from control.errors import ValidationError

nashpy = pytest.importorskip("nashpy")

RPS = np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])


def nashpy_equilibria(A, B):
    """Every extreme equilibrium by nashpy's vertex enumeration (its support enumeration misses some)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [(np.asarray(x), np.asarray(y)) for x, y in nashpy.Game(A, B).vertex_enumeration()]


def unique_mixed_games(m, zero_sum, count, seed):
    """Seeded random m×m games whose only equilibrium (by nashpy) is mixed: (A, B, x*, y*)."""
    rng, out = np.random.default_rng(seed), []
    while len(out) < count:
        A = rng.normal(size=(m, m))
        B = -A if zero_sum else rng.normal(size=(m, m))
        mine = finite.support_enumeration(np.stack([A, B]))
        if mine.count != 1 or max(mine.profile[0].max(), mine.profile[1].max()) == 1:
            continue  # a quick pre-filter; the equilibrium itself comes from nashpy
        eqs = nashpy_equilibria(A, B)
        if len(eqs) == 1 and max(eqs[0][0].max(), eqs[0][1].max()) < 1 - 1e-6:
            out.append((A, B, *eqs[0]))
    return out


@functools.cache
def games():
    """24 games: 6 each of 2×2 general-sum, 2×2 zero-sum, 3×3 general-sum, 3×3 zero-sum."""
    return [
        g
        for k, (m, zs) in enumerate([(2, False), (2, True), (3, False), (3, True)])
        for g in unique_mixed_games(m, zs, 6, seed=100 + k)
    ]


def test_random_games_with_a_unique_mixed_equilibrium_match_nashpy():
    assert len(games()) >= 20
    for A, B, x, y in games():
        eq = solve(MatrixGame(np.stack([A, B])), "nash")
        assert eq.status == "converged" and eq.residual < 1e-10
        assert np.allclose(eq.actions[0], x, atol=1e-4) and np.allclose(eq.actions[1], y, atol=1e-4)
        assert eq.info["n_equilibria"] == 1 and eq.info["method"] == "exact:support_enumeration"
        for name in ("lemke_howson", "vertex_enumeration"):
            p = finite.FINITE_SOLVERS[name](np.stack([A, B])).profile
            assert np.allclose(p[0], x, atol=1e-9) and np.allclose(p[1], y, atol=1e-9), name
    for A, B, x, y in games()[::3]:  # the logit homotopy (the n-player fallback) on a third of them
        p = finite.logit_homotopy(np.stack([A, B])).profile
        assert np.allclose(p[0], x, atol=1e-9) and np.allclose(p[1], y, atol=1e-9)


def zero_sum_value(A):
    """max_x min_y xᵀAy by linear programming: maximise v subject to Aᵀx ≥ v, Σx = 1, x ≥ 0."""
    m, n = A.shape
    res = linprog(
        np.r_[np.zeros(m), -1.0],
        A_ub=np.c_[-A.T, np.ones(n)],
        b_ub=np.zeros(n),
        A_eq=np.r_[np.ones(m), 0.0][None],
        b_eq=[1.0],
        bounds=[(0, None)] * m + [(None, None)],
    )
    return -res.fun


def test_zero_sum_value_matches_linear_programming():
    zs = [g for g in games() if np.allclose(g[1], -g[0])]
    assert len(zs) >= 10
    for A, _, _, _ in zs:
        eq = solve(MatrixGame(np.stack([A, -A])), "nash")
        assert -eq.costs[0] == pytest.approx(zero_sum_value(A), abs=1e-8)


@pytest.mark.parametrize("A", [RPS, matching_pennies()[0]], ids=["rps", "matching_pennies"])
def test_rock_paper_scissors_and_matching_pennies_to_1e6(A):
    m = A.shape[0]
    out = agents.play("matrix", params={"game": "custom", "payoffs": np.stack([A, -A]).tolist()})
    assert out.status == "ok" and out.message.startswith("exact equilibrium")
    assert np.abs(out.trajectory - 1 / m).max() < 1e-6
    assert np.allclose(out.costs, 0.0, atol=1e-6) and np.allclose(out.reference_costs, 0.0)


def test_issue_example_lands_on_the_mixed_equilibrium():
    A = np.array([[2.0, -1.0], [-1.0, 1.0]])
    out = agents.play("matrix", params={"game": "custom", "payoffs": np.stack([A, -A]).tolist()})
    assert np.allclose(out.trajectory.reshape(2, 2), [[0.4, 0.6], [0.4, 0.6]], atol=1e-12)
    assert np.allclose(out.costs, out.reference_costs) and np.allclose(out.costs, [-0.2, 0.2])
    eq = agents.solve(MatrixGame(np.stack([A, -A])), "nash", None)
    assert eq.converged and eq.info["n_equilibria"] == 1
    assert eq.message == "exact equilibrium by support_enumeration (the only one)"
    # gradient play stays selectable, labelled, and still misses it
    g = MatrixGame(np.stack([A, -A]))
    eq = agents.solve(g, "nash", None, method="gradient", steps=300, lr=0.25)
    assert np.abs(eq.actions - 0.4).min() > 0.1 and "method" not in eq.info


def test_pd_exact_equilibria_at_the_thresholds():
    T, R, P, S = 5.0, 3.0, 1.0, 0.0
    lcc, ldd = pd_thresholds(T, R, P, S)
    u = prisoners_dilemma(T, R, P, S)
    sc = get_scenario("matrix")()
    for lam in (ldd - 0.02, ldd + 0.02, lcc - 0.02, lcc + 0.02):
        L = np.array([[1.0, lam], [lam, 1.0]])
        res = finite.nash_equilibria(u, L, select="first")
        pure = [
            tuple(int(np.argmax(x)) for x in p)
            for p in res.profiles
            if all(x.max() == 1 for x in p)
        ]
        assert set(pure) == set(MatrixGame(u).pure_equilibria(L)) and res.complete
        # anti-coordination between the thresholds: CD, DC and one mixed equilibrium
        assert res.count == (3 if ldd < lam < lcc else 1)
        eq = solve(sc.game(Lambda=L), "nash", L)
        assert eq.converged and np.allclose(eq.costs, sc.reference(L))


def test_welfare_selection_and_all_equilibria():
    sh = get_scenario("matrix")(game="stag_hunt")
    eq = solve(sh.game(), "nash", np.eye(2))
    assert np.allclose(eq.actions, [[1, 0], [1, 0]]) and eq.info["n_equilibria"] == 3
    assert len(eq.info["equilibria"]) == 3 and eq.info["selection"] == "welfare"
    assert np.allclose(sh.reference(np.eye(2)), [-4.0, -4.0])  # payoff dominance: (stag, stag)
    mixed = [p for p in eq.info["equilibria"] if 0 < p[0][0] < 1]
    assert len(mixed) == 1 and np.allclose(mixed[0][0], [0.75, 0.25])  # 4p = 3
    # the logit homotopy's limit selects the risk-dominant (hare, hare); "first": pure ones first
    eq = solve(sh.game(), "nash", np.eye(2), select="logit")
    assert np.allclose(eq.actions, [[0, 1], [0, 1]]) and eq.info["selection"] == "logit"
    res = finite.nash_equilibria(sh.payoffs(), select="first")
    assert [max(map(max, p)) for p in res.profiles] == [1.0, 1.0, 0.75]


def test_degenerate_game_is_flagged_and_handled():
    # team play of matching pennies: U_1 = U_2 = u_1 + u_2 = 0, every profile is an equilibrium
    eq = solve(MatrixGame(matching_pennies()), "nash", "team")
    assert (
        eq.converged and eq.info["degenerate"] and eq.info["method"] == "exact:vertex_enumeration"
    )
    assert eq.info["n_equilibria"] == 4  # the 4 pure profiles: the extreme points of the square
    # a degenerate 2×3 game whose equilibria form a segment: its extreme points, each with zero regret
    A = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    B = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    res = finite.nash_equilibria(np.stack([A, B]))
    assert res.degenerate and res.complete and max(res.regrets) < 1e-12
    want = {finite._key([np.asarray(x), np.asarray(y)]) for x, y in nashpy_equilibria(A, B)}
    assert {finite._key(p) for p in res.profiles} == want


def test_degenerate_integer_games_keep_every_pure_and_nashpy_equilibrium():
    rng = np.random.default_rng(0)
    for _ in range(20):
        A, B = rng.integers(0, 3, size=(2, 3, 3)).astype(float)
        res = finite.nash_equilibria(np.stack([A, B]))
        assert max(res.regrets) < 1e-12
        keys = {finite._key(p) for p in res.profiles}
        pure = {
            tuple(int(np.argmax(x)) for x in p)
            for p in res.profiles
            if all(x.max() == 1 for x in p)
        }
        assert pure == set(MatrixGame(np.stack([A, B])).pure_equilibria())
        try:
            theirs = nashpy_equilibria(A, B)
        except TypeError:  # nashpy's vertex enumeration fails on some degenerate polytopes
            continue
        assert {
            finite._key([x, y]) for x, y in theirs
        } <= keys  # nashpy misses some, never the reverse


def test_lemke_howson_from_every_label_on_rectangular_games():
    rng = np.random.default_rng(7)
    for _ in range(10):
        A, B = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
        U = np.stack([A, B])
        every = {finite._key([np.asarray(x), np.asarray(y)]) for x, y in nashpy_equilibria(A, B)}
        assert {finite._key(p) for p in finite.support_enumeration(U).profiles} == every
        for label in range(7):
            p = finite.lemke_howson(U, label=label).profile
            assert finite._key(p) in every and finite.regrets(U, p).max() < 1e-12


def no_pure_deviation_gain(u, xs):
    """max_i max_a E[u_i(a, x_−i)] − E[u_i(x)] written out with einsum (independent of agents.finite)."""
    x, y, z = xs
    dev = [
        np.einsum("abc,b,c->a", u[0], y, z),
        np.einsum("abc,a,c->b", u[1], x, z),
        np.einsum("abc,a,b->c", u[2], x, y),
    ]
    return max(d.max() - d @ s for d, s in zip(dev, xs, strict=True))


def test_three_player_games_have_no_profitable_pure_deviation():
    # Jordan's game: 1 matches 2, 2 matches 3, 3 mismatches 1; the only equilibrium is (½, ½, ½)
    u = np.zeros((3, 2, 2, 2))
    for a, b, c in np.ndindex(2, 2, 2):
        u[:, a, b, c] = [a == b, b == c, c != a]
    eq = solve(MatrixGame(u), "nash")
    assert eq.converged and eq.info["method"] == "exact:nplayer_support_enumeration"
    assert np.allclose(eq.actions, 0.5, atol=1e-9) and eq.info["n_equilibria"] == 1
    rng = np.random.default_rng(3)
    for shape, method in [
        ((3, 2, 2, 2), "nplayer_support_enumeration"),
        ((3, 3, 3, 3), "logit_homotopy"),
    ]:
        for _ in range(2):
            u = rng.normal(size=shape)
            Lam = agents.preset("altruistic", 3, alpha=0.3)
            eq = solve(MatrixGame(u), "nash", Lam)
            assert eq.converged and eq.info["method"] == f"exact:{method}"
            U = np.tensordot(Lam, u, axes=([1], [0]))
            for p in eq.info["equilibria"]:
                assert no_pure_deviation_gain(U, p) < 1e-9
    # completeness signs on 2×2×2 games: an odd count (generic games), every pure equilibrium, the logit limit
    for _ in range(3):
        u = rng.normal(size=(3, 2, 2, 2))
        res = finite.nash_equilibria(u)
        keys = {finite._key(p) for p in res.profiles}
        assert res.count % 2 == 1 and finite._key(finite.logit_homotopy(u).profile) in keys
        pure = {
            a for a in np.ndindex(2, 2, 2) if no_pure_deviation_gain(u, np.eye(2)[list(a)]) < 1e-12
        }
        found = [p for p in res.profiles if all(x.max() == 1 for x in p)]
        assert pure == {tuple(int(np.argmax(x)) for x in p) for p in found}


@pytest.mark.parametrize("method", ["fictitious_play", "logit"])
def test_learned_dynamics_time_average_approaches_rps_equilibrium(method):
    eq = solve(
        MatrixGame(np.stack([RPS, -RPS]), init=[[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]),
        "nash", method=method, steps=4000,
    )  # fmt: skip
    assert eq.info["method"] == f"learned:{method}" and eq.status == "max_steps"
    assert np.abs(eq.actions - 1 / 3).max() < 0.02 and eq.residual < 0.05
    assert np.allclose(eq.actions, np.stack(eq.info["average"]))
    assert eq.history.shape == (4000, 2) and eq.info["regret_last"] >= 0
    if (
        method == "fictitious_play"
    ):  # the last iterate is a pure best reply: it cycles, the average converges
        assert np.isin(np.stack(eq.info["last"]), [0.0, 1.0]).all()


def test_bad_options_name_their_field():
    g = MatrixGame(matching_pennies())
    with pytest.raises(ValidationError, match="^method"):
        solve(g, "nash", method="simplex")
    with pytest.raises(ValidationError, match="^select"):
        solve(g, "nash", select="best")
    with pytest.raises(ValidationError, match="^solver"):
        solve(g, "nash", solver="gambit")
    with pytest.raises(ValidationError, match="^payoffs"):
        finite.lemke_howson(np.zeros((3, 2, 2, 2)))
    with pytest.raises(ValidationError, match="^label"):
        finite.lemke_howson(matching_pennies(), label=9)
    with pytest.raises(ValidationError, match="^Lambda"):
        finite.nash_equilibria(matching_pennies(), np.eye(3))
