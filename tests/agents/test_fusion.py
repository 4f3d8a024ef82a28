"""Cross-cell fusion: cells differing in seed and Λ solved as one ODE give their stand-alone numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import agents.differential as differential
from agents import play, play_fused, play_many
from agents.differential import DifferentialGame
from agents.experiments.config import Experiment
from agents.experiments.fusion import NotFusable, block_Lambda, plan
from agents.experiments.runner import run_experiment
from agents.learning import gradient_play, gradient_play_cells
from agents.scenarios import get_scenario
from agents.status import PLAYED
from control.errors import ValidationError

# a coopetitive 3-player Λ (rows: whose payoff; mixed signs off the diagonal)
COOP = [[1.0, 0.4, -0.2], [0.3, 0.8, 0.0], [-0.1, 0.5, 1.2]]


def close(a, b, rtol=1e-10, atol=1e-12):
    np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=rtol, atol=atol)


def _cells(**common):
    return [
        dict(common, Lambda=L, seed=s)
        for L, s in (("selfish", 3), (COOP, 3), ("team", 11), (COOP, 7))
    ]


@pytest.mark.parametrize(
    "common",
    [
        dict(scenario="lq_game", n_agents=3, law="meanfield", steps=12, lr=0.03,
             params={"particles": 24}),
        dict(scenario="commons", n_agents=3, law="time", policy="mftt", steps=6),
    ],
    ids=["lq_game-linear", "commons-mftt"],
)  # fmt: skip
def test_fused_cells_reproduce_their_standalone_play(common):
    cells = _cells(**common)
    fused = play_fused(cells)
    alone = [play(**c) for c in cells]
    assert len({tuple(np.round(o.costs, 6)) for o in alone}) >= 3  # the cells really differ
    for f, a in zip(fused, alone, strict=True):
        assert (f.status, f.message, f.seed) == (a.status, a.message, a.seed)
        close(f.Lambda, a.Lambda, 0, 0)
        close(f.costs, a.costs)
        close(f.empathetic_costs, a.empathetic_costs)
        close(f.history, a.history)
        close(f.exploitability, a.exploitability, rtol=1e-8, atol=1e-10)
        close(f.trajectory, a.trajectory)
        close(f.n_params, a.n_params, 0, 0)
        # a fused cell counts the evaluations of every fused solve, also those after it stopped
        assert f.nfe >= a.nfe > 0
    if all(a.message == "max_steps" for a in alone):
        assert len({f.nfe for f in fused} | {a.nfe for a in alone}) == 1
        if a.reference_costs is not None:
            close(f.reference_costs, a.reference_costs)


def test_one_solve_per_evaluation_for_all_cells(monkeypatch):
    """The fused game integrates one state [C, ·] per cost evaluation, as many solves as one cell alone."""
    shapes: list[tuple] = []
    real = differential.solve

    def counted(field, x0, t, **kw):
        shapes.append(tuple(x0.shape))
        return real(field, x0, t, **kw)

    monkeypatch.setattr(differential, "solve", counted)
    cells = _cells(scenario="lq_game", n_agents=3, law="constant", steps=5)
    outs = play_fused(cells)
    C = len(cells)
    # the one simulator: stacked solves integrate z [C, ·]; a single cell's (best-response rounds,
    # certification, the rollout, on each cell's own game whose agents are the fused ones) z [·]
    stacked = [s for s in shapes if len(s) == 2]
    assert stacked and all(s[0] == C for s in stacked)
    assert all(len(s) == 1 for s in shapes if len(s) != 2)
    # fused: at most 5 learning steps + the final evaluation
    assert len(stacked) <= 5 + 1
    fused_nfe = len(stacked) * 4 * get_scenario("lq_game").defaults["n_steps"]  # rk4
    assert all(o.nfe > fused_nfe for o in outs)


def test_each_cell_stops_on_its_own_rule():
    """With a loose tolerance the cells converge at different iterations; each keeps its own history."""
    sc = get_scenario("lq_game")(2)
    Ls = [np.eye(2), np.array([[1.0, 0.9], [0.9, 1.0]]), np.array([[0.6, -0.3], [0.0, 1.4]])]
    games = []
    for k in range(3):
        torch.manual_seed(k)
        games.append(sc.game(Lambda=Ls[k], law="constant", policy="linear", seed=k))
    opts = dict(steps=60, lr=0.1, tol=0.05, optimizer="sgd")
    fused = gradient_play_cells(DifferentialGame.fuse(games), block_Lambda(Ls), **opts)
    its = []
    for k in range(3):
        torch.manual_seed(k)
        g = sc.game(Lambda=Ls[k], law="constant", policy="linear", seed=k)
        status, it, res, hist = gradient_play(g, Ls[k], **opts)
        fs, fit, fres, fhist = fused[k]
        assert (fs, fit) == (status, it)
        close(fres, res)
        close(fhist, hist)
        its.append(it)
    assert len(set(its)) > 1 and "converged" in {f[0] for f in fused}


def test_a_diverging_cell_unfuses_its_group_and_play_many_matches_play():
    """lr 0.3 diverges in some cells only: the group falls back to cell-by-cell play."""
    common = dict(scenario="lq_game", n_agents=3, law="meanfield", steps=12, lr=0.3,
                  params={"particles": 24})  # fmt: skip
    cells = _cells(**common)
    with pytest.raises(NotFusable, match="diverged"):
        play_fused(cells)
    many = play_many(cells + [dict(scenario="cournot", steps=3)])
    alone = [play(**c) for c in cells]
    statuses = [o.status for o in alone]
    assert "diverged" in statuses and set(statuses) - {"diverged"} <= set(PLAYED), statuses
    assert set(statuses) != {"diverged"}
    for m, a in zip(many[:4], alone, strict=True):
        assert (m.status, m.message) == (a.status, a.message)
        close(m.costs, a.costs, 0, 0)
    assert many[-1].scenario == "cournot" and many[-1].status in PLAYED


def test_structurally_different_cells_are_refused():
    with pytest.raises(NotFusable):  # different laws: different parameter shapes
        play_fused([dict(scenario="lq_game", law="constant"), dict(scenario="lq_game", law="time")])
    with pytest.raises(NotFusable):  # minimax is not fused
        play_fused([dict(scenario="security", seed=0), dict(scenario="security", seed=1)])
    sc = get_scenario("lq_game")
    a = sc(2).game(Lambda=np.eye(2), law="constant", policy="linear")
    b = sc(2, q=2.0).game(Lambda=np.eye(2), law="constant", policy="linear")  # other running cost
    with pytest.raises(NotFusable, match="dynamics or costs"):
        DifferentialGame.fuse([a, b])


def test_plan_groups_fusable_cells_in_balanced_chunks():
    lq = [dict(scenario="lq_game", law="feedback", seed=s, Lambda=L) for s in range(5) for L in ("selfish", "team")]  # fmt: skip
    other = [dict(scenario="security", seed=0), dict(scenario="cournot", seed=0)]
    cells = lq[:3] + other + lq[3:]
    tasks = plan(cells, max_cells=4)
    assert sorted(i for t in tasks for i in t) == list(range(len(cells)))
    fused = [t for t in tasks if len(t) > 1]
    assert sorted(len(t) for t in fused) == [3, 3, 4]  # 10 cells → 3 balanced chunks of ≤ 4
    assert [3] in tasks and [4] in tasks  # security (minimax) and cournot run alone
    assert plan(cells, max_cells=1) == [[i] for i in range(len(cells))]
    assert plan(cells, max_cells=4) == tasks  # deterministic


def test_runner_fused_equals_unfused_and_fuse_is_validated():
    exp = Experiment.from_toml(
        'name = "f"\nseeds = [0, 4]\n[scenarios.consensus]\nn_steps = 6\n[agents]\nweights = ["feedback"]\n'
        '[Lambda]\npresets = ["selfish", "team"]\n[training]\nsteps = 4\n'
    )
    assert exp.fuse == 8 and Experiment.from_dict(exp.to_dict()).fuse == 8
    a = run_experiment(exp, backend="local", progress=False)
    b = run_experiment(exp, backend="local", progress=False, fuse=1)
    for k in ("cost", "empathetic_cost", "exploitability", "history", "trajectory", "gap", "nfe"):
        close(a[k].values, b[k].values)
    assert a["status"].isin(list(PLAYED)).all()
    with pytest.raises(ValidationError, match="fuse"):
        Experiment.from_dict({**exp.to_dict(), "fuse": 0})
    with pytest.raises(ValidationError, match="fuse"):
        run_experiment(exp, backend="local", progress=False, fuse=0)
