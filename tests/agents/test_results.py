"""Results Dataset: schema, padding, gap formula, NetCDF round trip with manifest, atomic writes, corrupt files."""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest
import xarray as xr

from agents.experiments.config import Experiment
from agents.experiments.results import (
    assemble,
    failed_dataset,
    open_results,
    outcome_dataset,
    read_part,
    write_part,
    write_results,
)
from agents.experiments.runner import run_experiment
from agents.status import PLAYED, STATUSES
from control.errors import ValidationError

TINY = """
name = "tiny"
seeds = [0, 1]
[scenarios.cournot]
[scenarios.lq_game]
[agents]
weights = ["constant", "feedback"]
[Lambda]
presets = ["selfish", "team"]
[training]
steps = 3
"""


@pytest.fixture(scope="module")
def tiny():
    exp = Experiment.from_toml(TINY)
    return exp, run_experiment(exp, backend="local", progress=False)


def test_schema_dims_vars_and_attrs(tiny):
    exp, ds = tiny
    assert list(ds["status"].dims) == ["scenario", "Lambda", "law", "seed"]
    assert ds["cost"].dims == ("scenario", "Lambda", "law", "seed", "agent")
    assert ds["history"].dims[-2:] == ("iteration", "agent")
    assert ds["trajectory"].dims[-2:] == ("time", "state")
    for v in ("empathetic_cost", "reference_cost", "gap", "exploitability", "times", "n_params",
              "message", "wall_time", "nfe"):  # fmt: skip
        assert v in ds
    # lq_game cells solve ODEs (rk4: 4 evaluations per step); Cournot's direct quantities solve none
    assert (ds["nfe"].sel(scenario="lq_game") % 4 == 0).all() and (
        ds["nfe"].sel(scenario="lq_game") > 0
    ).all()
    assert (ds["nfe"].sel(scenario="cournot") == 0).all()
    assert list(ds["scenario"].values) == ["cournot", "lq_game"]
    assert set(np.unique(ds["status"].values)) <= set(STATUSES)
    assert ds.sizes["iteration"] == 3
    assert tomllib.loads(ds.attrs["manifest"])["training"]["steps"] == 3
    assert list(ds.attrs["seeds"]) == [0, 1]
    assert "torch" in json.loads(ds.attrs["versions"])
    assert "/root" not in ds.attrs["manifest"] and "/home" not in ds.attrs["manifest"]


def test_empathetic_cost_is_lambda_times_cost_and_gap_formula(tiny):
    _, ds = tiny
    ok = ds["status"].isin(list(PLAYED))
    assert bool(ok.any())
    # Λ L, recomputed from the stored Λ and material costs
    lam = ds["Lambda_matrix"].fillna(0.0)
    cost = ds["cost"].fillna(0.0)
    emp = (lam * cost.rename(agent="agent_j")).sum("agent_j")
    np.testing.assert_allclose(
        emp.where(ok & ds["cost"].notnull()).values, ds["empathetic_cost"].where(ok).values, rtol=1e-12,
        equal_nan=True,
    )  # fmt: skip
    ref = ds["reference_cost"].sum("agent", min_count=1)
    gap = (ds["cost"].sum("agent", min_count=1) - ref) / abs(ref)
    np.testing.assert_allclose(gap.values, ds["gap"].values, equal_nan=True)
    # the LQ game has a closed form; with Λ = team both firms' references are finite too
    assert np.isfinite(ds["reference_cost"].sel(scenario="lq_game").values).all()


def test_padding_with_fewer_agents_and_missing_cells():
    exp = Experiment.from_toml(TINY + '[sweep]\n"agents.n" = [2, 3]\n').with_values(
        {
            "scenarios": {"cournot": {}},
            "agents.weights": ["constant"],
            "Lambda.presets": ["selfish"],
        }
    )
    cells = exp.cells()
    assert len(cells) == 4
    from agents.experiments.runner import run_cell

    parts = {c.index: run_cell(c.kwargs, c.key, c.index) for c in cells[:3]}
    ds = assemble(exp, parts)
    assert ds.sizes["agent"] == 3
    two = ds["cost"].sel(n_agents=2, seed=0).squeeze()
    assert np.isfinite(two.values[:2]).all() and np.isnan(two.values[2])
    assert ds["status"].sel(n_agents=3, seed=1).item() == "missing"
    assert np.isnan(ds["cost"].sel(n_agents=3, seed=1)).all()
    assert ds["agent_name"].sel(n_agents=2, seed=0).squeeze().values[2] == ""
    # the padded third agent does not spoil the gap of the two-firm cells (closed form exists)
    gap = ds["gap"].sel(n_agents=2, seed=0).squeeze().item()
    ref = ds["reference_cost"].sel(n_agents=2, seed=0).squeeze().values[:2]
    assert np.isfinite(gap) and gap == pytest.approx(
        (two.values[:2].sum() - ref.sum()) / abs(ref.sum())
    )


def test_netcdf_round_trip_is_identical(tiny, tmp_path):
    _, ds = tiny
    path = write_results(ds, tmp_path / "sub" / "r.nc")
    back = open_results(path)
    xr.testing.assert_identical(back, ds)
    assert back.attrs["manifest"] == ds.attrs["manifest"]
    assert [p.name for p in path.parent.iterdir()] == ["r.nc"]  # no temporary left behind


def test_part_files_round_trip(tiny, tmp_path):
    class FakeOutcome:
        status, message, costs = "ok", "converged", np.array([1.0, 2.0])
        empathetic_costs, reference_costs, exploitability = np.array([1.5, 2.5]), None, 0.25
        history, times, trajectory = np.ones((4, 2)), np.linspace(0, 1, 3), np.zeros((3, 2))
        n_params, Lambda, agent_names, policy, concept, wall_time = (
            np.array([3, 3]), np.eye(2), ["a", "b"], "linear", "nash", 0.5,
        )  # fmt: skip

    ds = outcome_dataset(FakeOutcome(), key="k", index=7)
    p = write_part(tmp_path, 7, "k", ds)
    back = read_part(p)
    xr.testing.assert_equal(back, ds)
    f = failed_dataset("boom: x", key="k")
    assert f["status"].item() == "failed" and f["message"].item() == "boom: x"
    xr.testing.assert_equal(read_part(write_part(tmp_path, 8, "k", f)), f)
    assert np.isnan(f["nfe"].item())
    # a part written before the nfe variable existed still reads (nfe NaN)
    with np.load(p, allow_pickle=False) as z:
        old = {k: z[k] for k in z.files if k != "nfe"}
    np.savez(p, **old)
    back = read_part(p)
    assert np.isnan(back["nfe"].item()) and float(back["cost"][1]) == 2.0


@pytest.mark.parametrize(
    "content", [b"", b"not a netcdf file at all", b"\x89HDF\r\n\x1a\n" + b"\0" * 50]
)
def test_corrupt_or_foreign_files_give_one_clear_line(tmp_path, content):
    p = tmp_path / "bad.nc"
    p.write_bytes(content)
    with pytest.raises(ValidationError) as e:
        open_results(p)
    assert str(e.value).startswith("results: expected a readable NetCDF file")
    assert "\n" not in str(e.value)


def test_truncated_results_file(tiny, tmp_path):
    _, ds = tiny
    p = write_results(ds, tmp_path / "r.nc")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValidationError, match="^results: "):
        open_results(p)
    with pytest.raises(ValidationError, match="existing NetCDF"):
        open_results(tmp_path / "absent.nc")
    other = tmp_path / "plain.nc"
    xr.Dataset({"x": ("a", [1.0])}).to_netcdf(other, engine="h5netcdf")
    with pytest.raises(ValidationError, match="mftt results file"):
        open_results(other)
