"""CellSpec: a cell's settings validated once, with the scenario's defaults, and one way to build its game."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents import CellSpec, get_scenario, play
from control.errors import ValidationError


def _params(game) -> list[np.ndarray]:
    return [p.detach().numpy().copy() for j in range(game.n_agents) for p in game.parameters_of(j)]


def test_defaults_are_the_scenarios_and_kwargs_round_trip():
    spec = CellSpec.of(scenario="lq_game", seed=4)
    cls = get_scenario("lq_game")
    assert (spec.policy, spec.concept, spec.steps, spec.lr) == (
        cls.default_policy, cls.default_concept, cls.default_steps, cls.default_lr
    )  # fmt: skip
    assert CellSpec.of(spec.kwargs()) == spec  # validated values validate to themselves


def test_build_is_seeded_and_init_noise_moves_every_parameter():
    spec = CellSpec.of(scenario="consensus", n_agents=3, law="time", seed=7)
    a, b = spec.build()[2], spec.build()[2]
    for x, y in zip(_params(a), _params(b), strict=True):
        np.testing.assert_array_equal(x, y)
    noisy = CellSpec.of(spec.kwargs(), init_noise=0.1).build()[2]
    moved = [np.abs(x - y).min() > 0 for x, y in zip(_params(a), _params(noisy), strict=True)]
    assert all(moved)
    other_seed = CellSpec.of(spec.kwargs(), init_noise=0.1, seed=8).build()[2]
    assert any(
        not np.array_equal(x, y) for x, y in zip(_params(noisy), _params(other_seed), strict=True)
    )


def test_the_built_game_is_the_one_play_learns_from():
    """play(steps=1) starts from CellSpec.build's game: its first history row is that game's Λ-costs."""
    spec = CellSpec.of(
        scenario="lq_game", n_agents=2, law="constant", steps=1, init_noise=0.05, seed=3
    )
    _, L, game = spec.build()
    with torch.no_grad():
        first = L @ game.costs().numpy()
    out = play(**spec.kwargs())
    np.testing.assert_allclose(out.history[0], first, rtol=1e-12)


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (dict(law="sometimes"), "law"),
        (dict(policy="oracle"), "policy"),
        (dict(steps=0), "steps"),
        (dict(lr=-1.0), "lr"),
        (dict(seed=2**40), "seed"),
        (dict(init_noise=-0.1), "init_noise"),
        (dict(mftt={"depth_of_field": 2}), "mftt.depth_of_field"),
        (dict(params={"n_agents": 3}), "params.n_agents"),
    ],
)
def test_bad_input_names_its_field(bad, field):
    with pytest.raises(ValidationError) as e:
        CellSpec.of(scenario="lq_game", **bad)
    assert str(e.value).startswith(field + ":") and "\n" not in str(e.value)
