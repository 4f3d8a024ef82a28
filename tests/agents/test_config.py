"""Experiment configs: TOML round trip, grid expansion, sweeps, one-line validation errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.experiments.config import Experiment, dumps_toml, load_experiment, parse_value
from control import WEIGHT_LAWS
from control.errors import ValidationError

CONFIGS = Path(__file__).resolve().parents[2] / "examples" / "configs"

BASE = """
name = "t"
seeds = [0, 3]
[scenarios.cournot]
alpha = 12.0
[scenarios.lq_game]
[agents]
weights = ["constant", "feedback"]
[Lambda]
presets = ["selfish", "team"]
[training]
steps = 7
"""


def test_toml_round_trip_and_grid():
    exp = Experiment.from_toml(BASE)
    again = Experiment.from_toml(exp.to_toml())
    assert again == exp
    assert exp.dims == ("scenario", "Lambda", "law", "seed")
    cells = exp.cells()
    assert len(cells) == exp.n_cells == 2 * 2 * 2 * 2
    # C order: scenario slowest, seed fastest
    assert [c.coords["seed"] for c in cells[:2]] == [0, 3]
    assert cells[0].kwargs["params"] == {"alpha": 12.0} and cells[-1].kwargs["params"] is None
    assert cells[-1].coords == {
        "scenario": "lq_game",
        "Lambda": "team",
        "law": "feedback",
        "seed": 3,
    }
    assert {c.key for c in cells}.__len__() == len(cells)  # distinct arguments, distinct keys


def test_sweep_adds_dimensions_and_validates_each_value():
    exp = Experiment.from_toml(BASE + '[sweep]\n"agents.n" = [2, 3]\n"training.lr" = [0.1, 0.2]\n')
    assert exp.dims[-2:] == ("n_agents", "lr")
    cells = exp.cells()
    assert len(cells) == 16 * 4
    assert [(c.kwargs["n_agents"], c.kwargs["lr"]) for c in cells[:4]] == [
        (2, 0.1), (2, 0.2), (3, 0.1), (3, 0.2)
    ]  # fmt: skip
    with pytest.raises(ValidationError, match=r"^sweep\.training\.lr: .*> 0"):
        Experiment.from_toml(BASE + '[sweep]\n"training.lr" = [0.1, -1.0]\n').cells()
    with pytest.raises(ValidationError, match=r"^sweep\.seeds: "):
        Experiment.from_toml(BASE + '[sweep]\n"seeds" = [1, 2]\n')


def test_with_values_and_parse_value():
    exp = Experiment.from_toml(BASE).with_values({"training.steps": 3, "agents.n": 2})
    assert exp.training.steps == 3 and exp.agents.n == 2
    assert parse_value("2") == 2 and parse_value("0.5") == 0.5 and parse_value("true") is True
    assert parse_value("feedback") == "feedback"


@pytest.mark.parametrize(
    "patch, field",
    [
        ('[agents]\nweights = "fedback"', "agents.weights"),
        ("[agents]\nn = 0", "agents.n"),
        ('[agents]\nn = "two"', "agents.n"),
        ("[agents]\nfoo = 1", "agents.foo"),
        ("bogus = 1", "bogus"),
        ('[Lambda]\npresets = ["selfsh"]', "Lambda.presets"),
        ("[Lambda.matrices]\nm = [[1.0, 2.0]]", "Lambda.matrices.m"),
        (
            "[Lambda.matrices]\nm = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]",
            "Lambda.matrices.m",
        ),
        ("[Lambda.matrices]\nm = [[1.0, nan], [0.0, 1.0]]", "Lambda.matrices.m[0][1]"),
        ("[training]\nlr = 0.0", "training.lr"),
        ("[training]\nsteps = 1.5", "training.steps"),
        ("seeds = []", "seeds"),
        ("seeds = [1, 1]", "seeds"),
        ('backend = "slurm"', "backend"),
        ("[ray]\nnum_gpus = -1", "ray.num_gpus"),
        ('[concept]\nname = "nashh"', "concept.name"),
        ("[scenarios.cournot]\nalphaa = 1.0", "scenarios.cournot.alphaa"),
        ("[scenarios.nope]", "scenarios"),
        ("[budget]\nmax_cells = 0", "budget.max_cells"),
        ("[budget]\nmax_memory_mb = 0.0001", "budget.max_memory_mb"),
        ("x = [", "config"),
    ],
)
def test_bad_configs_give_one_line_naming_the_field(patch, field):
    scen = "" if "scenarios" in patch else "[scenarios.cournot]\n"
    top = not patch.startswith("[")  # top-level keys must come before the first table
    text = 'name = "t"\n' + (patch + "\n" + scen if top else scen + patch)
    with pytest.raises(ValidationError) as e:
        Experiment.from_toml(text)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(field + ":"), msg
    assert isinstance(e.value, ValueError)


def test_weights_message_lists_the_allowed_laws():
    with pytest.raises(ValidationError) as e:
        Experiment.from_toml('[scenarios.cournot]\n[agents]\nweights = "fedback"')
    laws = ", ".join(WEIGHT_LAWS)  # the registry, e.g. constant, time, feedback, meanfield, untied
    assert str(e.value) == f"agents.weights: expected one of {laws}, got 'fedback'"


def test_budget_message_carries_the_estimate():
    with pytest.raises(ValidationError, match=r"budget.max_cells: expected at most 3 cells, got 8"):
        Experiment.from_toml(
            BASE.replace("seeds = [0, 3]", "seeds = [0]") + "[budget]\nmax_cells = 3"
        )


def test_python_users_build_the_same_objects():
    from agents.experiments.config import AgentsSpec, LambdaSpec, ScenarioSpec, TrainingSpec

    exp = Experiment(
        scenarios=(ScenarioSpec("cournot", {"alpha": 12.0}), ScenarioSpec("lq_game")),
        name="t",
        agents=AgentsSpec(weights=("constant", "feedback")),
        Lambda=LambdaSpec(presets=("selfish", "team")),
        training=TrainingSpec(steps=7),
        seeds=(0, 3),
    )
    assert exp == Experiment.from_toml(BASE)
    with pytest.raises(ValidationError, match=r"^agents\.weights: "):
        AgentsSpec(weights=("constant", "fedback"))


def test_dumps_toml_quotes_dotted_keys():
    text = dumps_toml({"a": 1, "sweep": {"agents.n": [2, 4]}, "t": {"s": 'x"y'}})
    import tomllib

    assert tomllib.loads(text) == {"a": 1, "sweep": {"agents.n": [2, 4]}, "t": {"s": 'x"y'}}


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_example_config_loads(path):
    exp = load_experiment(path)
    assert exp.n_cells == len(exp.cells()) >= 1
    assert Experiment.from_toml(exp.to_toml()) == exp


def test_example_configs_cover_every_scenario():
    from agents.scenarios import SCENARIOS

    covered = {s.name for p in CONFIGS.glob("*.toml") for s in load_experiment(p).scenarios}
    assert covered >= set(SCENARIOS), set(SCENARIOS) - covered
    demo = load_experiment(CONFIGS / "demo.toml")
    assert {"lq_game", "cournot", "consensus", "security"} <= {s.name for s in demo.scenarios}
    assert set(demo.agents.weights) == {"constant", "feedback", "meanfield"}
    assert len(demo.Lambda.labels) >= 2 and len(demo.seeds) >= 1


def test_scenario_table_overrides_policy_steps_and_lr_for_that_scenario_only():
    from agents.experiments.config import Experiment

    exp = Experiment.from_toml(
        'scenarios = {cournot = {policy = "mftt", steps = 7, lr = 0.02, alpha = 9.0}, lq_game = {}}\n'
        "[training]\nsteps = 3\n"
    )
    by = {c.coords["scenario"]: c.kwargs for c in exp.cells()}
    assert (by["cournot"]["policy"], by["cournot"]["steps"], by["cournot"]["lr"]) == (
        "mftt",
        7,
        0.02,
    )
    assert by["cournot"]["params"] == {"alpha": 9.0}
    assert (by["lq_game"]["policy"], by["lq_game"]["steps"], by["lq_game"]["lr"]) == (None, 3, None)
    assert Experiment.from_dict(exp.to_dict()) == exp


@pytest.mark.parametrize(
    "table, field",
    [
        ('{policy = "linear"}', "scenarios.cournot.policy"),
        ("{steps = 0}", "scenarios.cournot.steps"),
        ("{lr = -1.0}", "scenarios.cournot.lr"),
    ],
)
def test_bad_scenario_overrides_name_their_field(table, field):
    from agents.experiments.config import Experiment
    from control.errors import ValidationError

    with pytest.raises(ValidationError) as e:
        Experiment.from_toml(f"scenarios = {{cournot = {table}}}")
    msg = str(e.value)
    assert msg.startswith(field) and "\n" not in msg


def test_list_valued_scenario_parameters_survive_loading():
    """Per-player lists are range-checked without being consumed (they once arrived empty)."""
    exp = Experiment.from_toml('name = "x"\n[scenarios.lq_game]\nb = [1.0, 0.7]\nr = [1.0, 0.6]\n')
    assert exp.scenarios[0].params["b"] == [1.0, 0.7]
    assert exp.cells()[0].kwargs["params"]["b"] == [1.0, 0.7]
