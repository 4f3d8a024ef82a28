"""Everything validated up front: scenario parameters and sweep values at load, seeds in 32 bits,
wrong types at the API as one line, config files read as files, every memory size and long horizons in the
budget, Ray resources this machine cannot give, and exit 1 when a cell fails."""

from __future__ import annotations

import os
import time
import warnings

import pytest
from typer.testing import CliRunner

import agents
from agents.experiments import runner as runner_mod
from agents.experiments.cli import app
from agents.experiments.config import Experiment, load_experiment
from agents.experiments.runner import run_experiment
from control.errors import ValidationError


def _exp(**d):
    base = {"name": "v", "scenarios": ["cournot"], "backend": "local", "training": {"steps": 3}}
    return Experiment.from_dict({**base, **d})


def _refused(field: str, fn, *args, **kwargs) -> str:
    t0 = time.perf_counter()
    with pytest.raises(ValidationError) as e:
        fn(*args, **kwargs)
    msg = str(e.value)
    assert msg.startswith(field + ":"), msg
    assert "\n" not in msg and "\x1b" not in msg
    assert time.perf_counter() - t0 < 5  # nothing ran
    return msg


SCENARIO_PARAMS = [
    ({"cournot": {"n_agents": 3}}, "scenarios.cournot.n_agents"),
    ({"cournot": {"n": 3}}, "scenarios.cournot.n"),
    ({"cournot": {"q_max": "x"}}, "scenarios.cournot.q_max"),
    ({"cournot": {"beta": 0.0}}, "scenarios.cournot.beta"),
    ({"cournot": {"markets": 1.5}}, "scenarios.cournot.markets"),
    ({"cournot": {"window": 0}}, "scenarios.cournot.window"),
    ({"cournot": {"noise": -1.0}}, "scenarios.cournot.noise"),
    ({"lq_game": {"T": -1.0}}, "scenarios.lq_game.T"),
    ({"lq_game": {"T": 0.0}}, "scenarios.lq_game.T"),
    ({"lq_game": {"r": [1.0, -1.0]}}, "scenarios.lq_game.r"),
    ({"lq_game": {"v0": -0.5}}, "scenarios.lq_game.v0"),
    ({"lq_game": {"particles": 0}}, "scenarios.lq_game.particles"),
    ({"lq_game": {"a": 1e300}}, "scenarios.lq_game.a"),
    ({"security": {"gamma": 0.0}}, "scenarios.security.gamma"),
    ({"stackelberg": {"beta": -2.0}}, "scenarios.stackelberg.beta"),
    ({"matrix": {"game": "nope"}}, "scenarios.matrix.game"),
    ({"commons": {"K": 0.0}}, "scenarios.commons.K"),
]


@pytest.mark.parametrize(("scenarios", "field"), SCENARIO_PARAMS)
def test_scenario_parameters_refused_at_load(scenarios, field):
    _refused(field, _exp, scenarios=scenarios)


def test_sweep_values_refused_at_load():
    _refused("sweep.training.lr", _exp, training={"lr": 0.1}, sweep={"training.lr": [0.1, -1]})
    _refused("sweep.scenarios.cournot.beta", _exp, sweep={"scenarios.cournot.beta": [1.0, 0.0]})
    _refused("sweep.agents.mftt.d_model", _exp, sweep={"agents.mftt.d_model": [8, -1]})
    _refused("sweep.nope", _exp, sweep={"nope": [1]})
    _refused("sweep.scenarios.lq_game.T", _exp, sweep={"scenarios.lq_game.T": [1.0]})  # not in grid


def test_scenario_parameter_sweep_is_accepted():
    """`scenarios.cournot.alpha` was refused with a hint to use scenarios.<name>.<param>."""
    e = _exp(sweep={"scenarios.cournot.alpha": [5.0, 10.0]})
    assert e.dims[-1] == "scenarios_cournot_alpha"
    assert [c.kwargs["params"] for c in e.cells()] == [{"alpha": 5.0}, {"alpha": 10.0}]


@pytest.mark.parametrize("seed", [2**32, 2**40, 2**63, 2**70, 2**2000, -1, 1.5, "0", True])
def test_seeds_outside_32_bits_refused(seed):
    _refused("seeds[0]", _exp, seeds=[seed])


def test_seed_bounds_accepted():
    assert _exp(seeds=[0, 2**32 - 1]).seeds == (0, 2**32 - 1)


@pytest.mark.parametrize("source", [None, b'name = "x"', 5, ["a"], 1.5])
def test_load_experiment_wrong_types(source):
    _refused("config", load_experiment, source)


def test_config_files_read_as_files(tmp_path):
    text = 'name = "f"\nscenarios = ["matrix"]\n'
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_experiment(bom).name == "f" and load_experiment(str(bom)).name == "f"
    txt = tmp_path / "cfg.txt"
    txt.write_text(text)
    with pytest.warns(UserWarning, match="does not end in .toml"):
        assert load_experiment(str(txt)).name == "f"
    _refused("config", load_experiment, str(tmp_path / "missing.toml"))
    _refused("config", load_experiment, tmp_path)  # a folder
    (tmp_path / "bad.toml").write_bytes(b"\xff\xfe name")
    _refused("config", load_experiment, tmp_path / "bad.toml")
    r = CliRunner().invoke(app, ["run", str(txt), "-q", "--backend", "local", "--out", str(tmp_path / "r.nc"), "--set", "training.steps=3"])  # fmt: skip
    assert r.exit_code == 0, r.output


def test_deep_nesting_and_huge_numbers_are_one_line():
    deep = (
        'name = "x"\nscenarios = ["cournot"]\n[agents]\nmftt = {x = '
        + "[" * 3000
        + "]" * 3000
        + "}\n"
    )
    _refused("config", load_experiment, deep)
    _refused("agents.mftt.d_model", _exp, agents={"mftt": {"d_model": 1e308}})
    _refused("Lambda.alpha", _exp, Lambda={"alpha": 1e308})
    _refused(
        "Lambda.matrices.m[0][0]",
        _exp,
        scenarios=["matrix"],
        Lambda={"presets": [], "matrices": {"m": [[1e308, 0], [0, 1]]}},
    )


def test_control_characters_in_keys_do_not_garble_the_line():
    msg = _refused("x?]0;pwn?", _exp, **{"x\x1b]0;pwn\x07": 1})
    assert "\x07" not in msg


def test_play_wrong_inputs_one_line():
    _refused("seed", agents.play, "matrix", seed=2**40)
    _refused("seed", agents.play, "matrix", seed=2**70)
    _refused("params.n_agents", agents.play, "cournot", params={"n_agents": 3})


def test_play_device_and_solver_types():
    _refused("solver", agents.play, "matrix", solver=5)
    _refused("device", agents.play, "matrix", device="meta")


def test_run_experiment_wrong_types():
    _refused("experiment", run_experiment, None)
    _refused("out", run_experiment, _exp(), out=5)


# ---- budget -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("scenarios", "agents_", "words"),
    [
        ({"cournot": {"markets": 10**9}}, {"policy": "mftt"}, "markets"),
        ({"cournot": {"window": 10**9}}, {"policy": "mftt"}, "window"),
        ({"cournot": {"markets": 10**9}}, {}, "markets"),
        ({"lq_game": {"particles": 10**9}}, {}, "particles"),
        ({"lq_game": {"n_steps": 10**9}}, {}, "n_steps"),
        ({"consensus": {"n_steps": 10**9}}, {}, "n_steps"),
        ({"cournot": {"markets": 10**5, "window": 10**3}}, {"policy": "mftt"}, "markets"),
        ({"cournot": {}}, {"policy": "mftt", "mftt": {"d_model": 4096, "d_ff": 4096}}, "MB"),
    ],
)
def test_budget_covers_every_size(scenarios, agents_, words):
    msg = _refused("budget.max_memory_mb", _exp, scenarios=scenarios, agents=agents_)
    assert words in msg


def test_budget_covers_swept_sizes():
    msg = _refused(
        "budget.max_memory_mb",
        _exp,
        scenarios={"lq_game": {}},
        sweep={"scenarios.lq_game.particles": [4, 10**9]},
    )
    assert "particles" in msg


def test_long_horizon_refused_with_the_estimate():
    msg = _refused("budget", _exp, scenarios={"lq_game": {"T": 1e6}})
    assert "s per cell" in msg and "T = 1e+06" in msg
    assert _exp(scenarios={"lq_game": {"T": 10.0}}).n_cells == 1


def test_ray_resources_this_machine_cannot_give(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a cell ran")

    monkeypatch.setattr(runner_mod, "_execute", boom)
    _refused("ray.num_cpus", _exp, ray={"num_cpus": 0})
    big = _exp(backend="ray", ray={"num_cpus": (os.cpu_count() or 1) * 32})
    _refused("ray.num_cpus", run_experiment, big, progress=False)
    import torch

    if not torch.cuda.is_available():
        _refused("ray.num_gpus", run_experiment, _exp(backend="ray", ray={"num_gpus": 1}), progress=False)  # fmt: skip
    # in-process runs need no Ray resources
    with pytest.raises(AssertionError, match="a cell ran"):
        run_experiment(big, backend="local", progress=False)


# ---- exit codes ---------------------------------------------------------------------------
def test_exit_1_when_a_cell_fails_2_for_bad_configs(tmp_path, monkeypatch):
    cfg = tmp_path / "c.toml"
    cfg.write_text('name = "x"\nseeds = [0, 1]\nbackend = "local"\nscenarios = ["matrix"]\n[training]\nsteps = 5\n')  # fmt: skip
    import sys

    play_mod = sys.modules["agents.play"]

    real = play_mod.play

    def flaky(*a, **k):
        if k.get("seed") == 1:
            raise RuntimeError("boom in seed 1")
        return real(*a, **k)

    monkeypatch.setattr(play_mod, "play", flaky)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = CliRunner().invoke(app, ["run", str(cfg), "-q", "--out", str(tmp_path / "r.nc")])
    assert r.exit_code == 1, r.output
    assert "boom in seed 1" in r.output and "exit 1" in r.output  # the summary, then why
    assert (tmp_path / "r.nc").is_file()  # the finished cells are written
    monkeypatch.setattr(play_mod, "play", real)
    r = CliRunner().invoke(app, ["run", str(cfg), "-q", "--out", str(tmp_path / "r.nc")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["run", str(cfg), "--set", "seeds=[2147483648000]"])
    assert r.exit_code == 2 and r.output.startswith("error: seeds[0]")


def test_step_counts_that_take_hours_refused():
    msg = _refused("budget", _exp, training={"steps": 10**7})
    assert "10000000 learning iterations" in msg
    msg = _refused("budget", _exp, scenarios={"lq_game": {}}, training={"steps": 10**6})
    assert "time steps" in msg


@pytest.mark.parametrize("output", ["r.png", "r.nc\x00x", "a/" + "x" * 240 + ".nc", "results/"])
def test_config_output_name_refused_at_load(output):
    _refused("output", _exp, output=output)


def test_solve_without_a_game_and_overflowing_mftt_options():
    _refused("game", agents.solve, None, "nash")
    _refused("mftt", agents.play, "lq_game", policy="mftt", mftt={"d_model": 1e308}, steps=1)
