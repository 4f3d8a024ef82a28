"""Per-agent Ray actors: the same seed gives the same equilibrium as the in-process solver."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import agents.experiments.runner as runner
from agents.experiments.config import Experiment
from agents.experiments.runner import run_experiment
from agents.status import PLAYED

pytestmark = pytest.mark.ray


@pytest.fixture(scope="session")
def ray_up():
    started = runner.init_ray(None, num_cpus=2)
    yield
    if started:
        import ray

        ray.shutdown()


def _exp(scenario: str, steps: int, extra: str = "") -> Experiment:
    return Experiment.from_toml(
        f'name = "a"\nseeds = [0, 1]\n[scenarios.{scenario}]\n{extra}\n[agents]\nweights = ["feedback"]\n'
        f'[Lambda]\npresets = ["selfish", "altruistic"]\n[training]\nsteps = {steps}\n'
    )


def test_actors_reach_the_in_process_equilibrium_bit_for_bit(ray_up):
    exp = _exp("cournot", 12)
    local = run_experiment(exp, backend="local", progress=False)
    actors = run_experiment(exp, backend="actors", progress=False)
    assert local["status"].isin(list(PLAYED)).all()
    xr.testing.assert_identical(
        actors.drop_vars("wall_time").drop_attrs(), local.drop_vars("wall_time").drop_attrs()
    )
    # learning moved the firms: the history is not flat
    h = local["history"].isel(scenario=0, Lambda=0, law=0, seed=0).values
    assert np.abs(h[0] - h[-1]).max() > 1e-3


@pytest.mark.slow
def test_actors_on_a_differential_game_start_alike_and_are_certified(ray_up):
    """The actors run plain per-agent gradient play (no annealing, no best-response rounds, unlike the
    in-process Nash of differential games): same game and first step, then each is certified on its own."""
    exp = _exp("lq_game", 4, "particles = 4\nn_steps = 4")
    local = run_experiment(exp, backend="local", progress=False)
    actors = run_experiment(exp, backend="actors", progress=False)
    assert local["status"].isin(list(PLAYED)).all() and actors["status"].isin(list(PLAYED)).all()
    first = dict(iteration=0)
    np.testing.assert_allclose(
        actors["history"].isel(first).values, local["history"].isel(first).values, rtol=1e-12
    )
    np.testing.assert_allclose(actors["reference_cost"].values, local["reference_cost"].values)
    assert (actors["exploitability"] >= 0).all() and np.isfinite(actors["exploitability"]).all()


def test_a_non_nash_cell_is_refused_cleanly(ray_up):
    exp = Experiment.from_toml(
        'name = "s"\n[scenarios.stackelberg]\n[agents]\nweights = ["constant"]\n[training]\nsteps = 3\n'
    )
    ds = run_experiment(exp, backend="actors", progress=False)
    assert ds["status"].item() == "failed"
    assert ds["message"].item().startswith("backend: expected a nash cell")


def test_a_restarted_agent_worker_continues_exactly():
    """A worker rebuilt mid-cell (as after a Ray restart) that is sent the profile and its optimiser state
    (Adam moments) takes exactly the step the lost worker would have taken."""
    from agents.experiments.actors import AgentWorker

    optimizer = "adam"  # what lq_game's policies learn with; plain gradient steps carry no state
    kw = dict(scenario="lq_game", Lambda="selfish", law="feedback", seed=3, steps=6,
              params={"particles": 4, "n_steps": 4})  # fmt: skip
    n = 2
    workers = [AgentWorker() for _ in range(n)]
    profile = [w.start(kw, j, optimizer) for j, w in enumerate(workers)]
    states: list = [None] * n
    for _ in range(3):
        replies = [w.step(profile, kw, j, optimizer, states[j]) for j, w in enumerate(workers)]
        profile, states = [r[0] for r in replies], [r[3] for r in replies]
    assert all(s is not None and s[0] is not None and s[0][0] == 3.0 for s in states)
    kept = workers[0].step(profile, kw, 0, optimizer, states[0])
    reborn = AgentWorker().step(
        profile, kw, 0, optimizer, states[0]
    )  # a fresh process: state restored
    for a, b in zip(kept[0], reborn[0], strict=True):
        np.testing.assert_array_equal(a, b)
    lost = AgentWorker().step(
        profile, kw, 0, optimizer, None
    )  # without the moments the step differs
    assert any(not np.array_equal(a, b) for a, b in zip(kept[0], lost[0], strict=True))
