"""Per-agent Ray actors (seed slide 18): the same seed gives the same equilibrium as the in-process solver."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import agents.runner as runner
from agents.config import Experiment
from agents.runner import run_experiment

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
    assert (local["status"] == "ok").all()
    xr.testing.assert_identical(
        actors.drop_vars("wall_time").drop_attrs(), local.drop_vars("wall_time").drop_attrs()
    )
    # learning moved the firms: the history is not flat
    h = local["history"].isel(scenario=0, Lambda=0, law=0, seed=0).values
    assert np.abs(h[0] - h[-1]).max() > 1e-3


@pytest.mark.slow
def test_actors_on_a_differential_game_match_to_rounding(ray_up):
    exp = _exp("lq_game", 4, "particles = 4\nn_steps = 4")
    local = run_experiment(exp, backend="local", progress=False)
    actors = run_experiment(exp, backend="actors", progress=False)
    assert (actors["status"] == local["status"]).all() and (local["status"] == "ok").all()
    for v in ("cost", "empathetic_cost", "history", "trajectory", "exploitability"):
        np.testing.assert_allclose(
            actors[v].values, local[v].values, rtol=1e-12, atol=1e-12, equal_nan=True
        )


def test_a_non_nash_cell_is_refused_cleanly(ray_up):
    exp = Experiment.from_toml(
        'name = "s"\n[scenarios.stackelberg]\n[agents]\nweights = ["constant"]\n[training]\nsteps = 3\n'
    )
    ds = run_experiment(exp, backend="actors", progress=False)
    assert ds["status"].item() == "failed"
    assert ds["message"].item().startswith("backend: expected a nash cell")
