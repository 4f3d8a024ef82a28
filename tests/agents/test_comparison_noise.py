"""The price of open loop under noise (docs/theory.md#open-loop-gap) and the suite's ``lq_noise`` task; the
``untied`` law in ``lq_control`` with its exact floor (issue 14)."""

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from agents.experiments.comparison import (
    NOISE_M0,
    NOISE_PROBLEM,
    SUITES,
    TASKS,
    action_particles,
    open_loop_floors,
    run_task,
)
from control import LQProblem

SMALL = dict(particles=32, n_steps=6, iters=4, rollouts=90, eval_particles=1000)


def _best_open_loop(pl):
    """The untied law (one piece per step) holding the exact best open-loop control of §25.1:
    θ_l = K̄_l m_l along the deterministic optimal mean path, u_l = −θ_l."""
    sol = pl.discrete()
    c = pl.problem.discretise(pl.n_steps)
    Kb = sol.arrays["Kbar"]
    Ah, Bh = c["A"] + c["Abar"], c["B"] + c["Bbar"]
    m, theta = pl.m0[0].copy(), []
    for l in range(pl.n_steps):
        theta.append(Kb[l] @ m)
        m = (Ah - Bh @ Kb[l]) @ m
    law = pl.make_law("untied", layers=pl.n_steps)
    th = torch.as_tensor(np.array(theta), dtype=torch.float64)  # [n, m]
    with torch.no_grad():
        law.theta0.copy_(th[0])
        law.rest.copy_(th[1:])
    return law


@pytest.mark.parametrize("cov0", [0.0, 0.3])
def test_open_loop_gap_against_monte_carlo(cov0):
    """The exact gap of the best open-loop control, tr((M⁰₀ − P₀)S₀) + Σ tr((M⁰_{l+1} − P_{l+1})W), is what
    the particles measure (common noise with the Riccati feedback), within 4 standard errors."""
    prob = LQProblem(**NOISE_PROBLEM)
    pl = action_particles(prob, [NOISE_M0], cov0, n_particles=2, n_steps=12)
    f = open_loop_floors(prob, [NOISE_M0], cov0, 12, {"untied": _best_open_loop(pl)})
    assert f["untied"] == pytest.approx(f["noise"], rel=1e-9)  # the untied class reaches it
    cmp = pl.compare(_best_open_loop(pl), n_particles=40_000, seed=7)
    assert cmp["J_star_h"] == pytest.approx(f["J_star_h"], rel=1e-12)
    assert abs(cmp["gap"] - f["noise"]) < 4 * cmp["gap_se"]
    assert cmp["gap_se"] < 0.05 * f["noise"]  # a sharp check: the gap is 20+ standard errors
    # the optimal feedback itself is at gap 0 on the same noise: the gap is the open loop's
    assert abs(pl.compare(pl.optimal_law(), n_particles=2000, seed=7)["gap"]) < 1e-12


def test_discrete_noise_gap_converges_to_sigma2_integral():
    """gap_h → σ²∫₀ᵀ (M⁰ − P) dt at first order in h, with M⁰(t) = q_T e^{2aτ} + q(e^{2aτ} − 1)/(2a)."""
    p = NOISE_PROBLEM
    prob = LQProblem(**p)
    sol = prob.solve()
    a, q, qT, s2, T = p["A"], p["Q"], p["QT"], p["Sigma"] ** 2, p["T"]

    def M0(t):
        e = np.exp(2 * a * (T - t))
        return qT * e + q * (e - 1) / (2 * a)

    gap = s2 * quad(lambda t: M0(t) - float(np.squeeze(sol.P(t))), 0, T)[0]
    errs = []
    for n in (50, 100, 200):
        f = open_loop_floors(prob, [NOISE_M0], 0.0, n, {})
        errs.append(abs(f["noise"] * f["J_star_h"] - gap))
    assert errs[0] > errs[1] > errs[2] and errs[1] / errs[2] == pytest.approx(2.0, rel=0.1)
    assert errs[2] < 0.02 * gap


def test_open_loop_floors_are_nested_and_the_noise_gap_is_large():
    t = TASKS["lq_noise"]
    for size in ("quick", "full"):
        fl = t.floors({**t.sizes[size]})
        assert fl["constant"] > fl["time"] >= fl["untied"] - 1e-9 > 30.0
        assert fl["untied"] == pytest.approx(fl["noise"], rel=1e-9)


def test_lq_noise_known_answer_at_small_size():
    """Open-loop laws sit on their exact floors; feedback beats constant and goes far below every
    open-loop floor (p < 0.01, 6 paired seeds)."""
    task = TASKS["lq_noise"]
    r = run_task(
        task, "quick", seeds=range(6), laws=("constant", "untied", "feedback"), overrides=SMALL
    )
    fl = task.floors({**task.sizes["quick"], **SMALL})
    for c in r.comparisons:
        assert c.winner == c.law and c.p_t < 0.01 and r.as_expected(c) is True
    for law in (
        "constant",
        "untied",
    ):  # learned open-loop laws: at their floor, to Monte Carlo error
        se = np.array([x["gap_se"] for x in r.records[law]])
        assert (r.values(law) >= fl[law] - 4 * se).all()
        assert abs(r.intervals[law].mean - fl[law]) < 0.1 * fl[law]
    assert r.intervals["feedback"].mean < 0.1 * fl["noise"]
    for law in r.laws:
        assert not r.deterministic(law) and len(set(r.values(law))) == 6
    assert "lq_noise" in SUITES["full"] and "lq_noise" not in SUITES["quick"]  # too slow for quick


def test_untied_in_lq_control_has_one_gain_per_step_and_an_exact_floor():
    task = TASKS["lq_control"]
    assert "untied" in task.sizes["full"]["laws"]
    r = run_task(task, "quick", seeds=range(6), laws=("constant", "untied"), overrides=SMALL)
    fl = task.floors({**task.sizes["quick"], **SMALL})
    assert fl["untied"] == fl["time"] < fl["constant"]
    assert {x["n_params"] for x in r.records["untied"]} == {2 * SMALL["n_steps"]}
    se = np.array([x["gap_se"] for x in r.records["untied"]])
    assert (
        r.values("untied") >= fl["untied"] - 4 * se
    ).all()  # the exact floor bounds the learned law
