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
from agents.play import Outcome
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
    o = Outcome(
        scenario="lq_game", Lambda=np.eye(2), law="constant", policy="linear", concept="nash", seed=0,
        agent_names=["a", "b"], costs=np.array([1.0, 2.0]), empathetic_costs=np.array([1.5, 2.5]),
        exploitability=0.25, reference_costs=None, history=np.ones((4, 2)), times=np.linspace(0, 1, 3),
        trajectory=np.zeros((3, 2)), n_params=np.array([3, 3]), status="ok", message="converged",
        wall_time=0.5,
    )  # fmt: skip
    ds = outcome_dataset(o, key="k", index=7)
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


# ---- trained weights (issue 15) ------------------------------------------------------------
def _mftt_exp(scenario: str = "cournot", steps: int = 4, **kw) -> Experiment:
    d = {
        "name": "w",
        "scenarios": {scenario: {}},
        "agents": {"n": 2, "weights": ["constant"], "policy": "mftt"},
        "Lambda": {"presets": ["selfish"]},
        "training": {"steps": steps},
        "seeds": [0, 1],
        "fuse": 1,
        "backend": "local",
    }
    d.update(kw)
    return Experiment.from_dict(d)


def _spy_games(monkeypatch) -> dict:
    """Substitute agents.play.play (the runner looks it up per cell) to keep each cell's trained game."""
    import importlib

    from agents.concepts import solve

    play_module = importlib.import_module(
        "agents.play"
    )  # the module (``agents.play`` is also the function)
    real, games = play_module.play, {}

    def spy(*args, **kwargs):
        def solver(game, *a, **k):
            games[kwargs["seed"]] = game
            return solve(game, *a, **k)

        return real(*args, solver=solver, **kwargs)

    monkeypatch.setattr(play_module, "play", spy)
    return games


@pytest.fixture(scope="module")
def mftt_run(tmp_path_factory):
    """A 2-seed Cournot run with MFTT firms (about 2 s) and the trained game of each cell."""
    out = tmp_path_factory.mktemp("weights") / "r.nc"
    with pytest.MonkeyPatch.context() as mp:
        games = _spy_games(mp)
        run_experiment(_mftt_exp(), out=out, progress=False)
    return out, games


def test_trained_weights_are_stored_beside_the_results_and_load_back_bitwise(mftt_run):
    import torch

    from agents import attention_maps, load_trained_game, load_weights

    out, games = mftt_run
    ds = open_results(out)
    index = json.loads(ds.attrs["weights"])
    assert index["dir"] == "r.nc.weights" and sorted(index["cells"]) == ["0", "1"]
    assert not list(out.parent.glob("r.nc.weights/.*.tmp"))  # written atomically
    for seed in (0, 1):
        state = load_weights(out, {"seed": seed}, ds=ds)
        game = games[seed]
        for j in range(game.n_agents):
            ps = game.parameters_of(j)
            assert len([k for k in state if k.startswith(f"agent.{j}.")]) == len(ps)
            for k, p in enumerate(ps):
                t = state[f"agent.{j}.{k}"]
                assert t.dtype == p.dtype and torch.equal(t, p.detach())  # bitwise
        rebuilt, kwargs = load_trained_game(out, {"seed": seed}, ds=ds)
        assert kwargs["seed"] == seed and kwargs["policy"] == "mftt"
        for j in range(game.n_agents):
            a, b = attention_maps(game, j), attention_maps(rebuilt, j)
            assert a["token"] == "window step" and a["maps"].ndim == 4
            assert np.array_equal(a["maps"], b["maps"])  # the rebuilt model attends as the cell did
    assert load_weights(out, 1).keys() == state.keys()


def test_weights_refusals_name_the_field(mftt_run, tmp_path):
    import shutil

    from agents import load_weights

    out = mftt_run[0]
    ds = open_results(out)
    with pytest.raises(ValidationError, match=r"^cell\.seed: "):
        load_weights(out, {"seed": 5}, ds=ds)
    with pytest.raises(ValidationError, match=r"^cell: "):
        load_weights(out, 3, ds=ds)
    with pytest.raises(ValidationError, match=r"^cell\.nope: "):
        load_weights(out, {"nope": 1}, ds=ds)
    bare = ds.copy()
    bare.attrs = {k: v for k, v in ds.attrs.items() if k != "weights"}
    with pytest.raises(ValidationError, match=r"^weights: .*no trained weights for this cell"):
        load_weights(tmp_path / "bare.nc", 0, ds=bare)
    copy = tmp_path / "r.nc"
    shutil.copy(out, copy)
    shutil.copytree(out.parent / "r.nc.weights", tmp_path / "r.nc.weights")
    f0, f1 = sorted((tmp_path / "r.nc.weights").iterdir())
    f0.unlink()
    f0.symlink_to(f1)
    with pytest.raises(ValidationError, match="^weights: .*not a plain file"):
        load_weights(copy, 0, ds=ds)
    f0.unlink()
    f0.write_bytes(f1.read_bytes())  # another cell's weights under this cell's name
    with pytest.raises(ValidationError, match="^weights: .*another cell"):
        load_weights(copy, 0, ds=ds)


@pytest.mark.slow
def test_lq_game_trained_attention_over_particles_per_head_and_time(tmp_path, monkeypatch):
    from agents import attention_maps, load_trained_game

    games = _spy_games(monkeypatch)
    out = tmp_path / "lq.nc"
    run_experiment(_mftt_exp("lq_game", steps=2, seeds=[0]), out=out, progress=False)
    rebuilt, _ = load_trained_game(out, 0)
    for k in (0, 3):
        a, b = attention_maps(games[0], 1, k), attention_maps(rebuilt, 1, k)
        assert a["token"] == "particle" and a["time"] == b["time"] == a["times"][k]
        assert a["maps"].shape[1] == 2  # heads
        np.testing.assert_allclose(a["maps"].sum(-1), 1.0, atol=1e-12)  # rows: a query's weights
        assert np.array_equal(a["maps"], b["maps"])


def test_cell_progress_is_throttled_and_read_back(tmp_path):
    from agents.experiments.results import CellProgress, read_progress

    hook = CellProgress(tmp_path, 3, "k")
    for step in range(1, 1001):
        hook(step, 1000, np.array([1.0, 2.0 / step]))
    assert hook.writes == 2  # the first step and the last, not a thousand files
    (p,) = read_progress(tmp_path)
    assert (p["cell"], p["step"], p["total"]) == (3, 1000, 1000)
    assert (
        len(p["cost"]) <= 400 and p["steps"][-1] == 1000 and p["cost"][-1] == pytest.approx(1.002)
    )
    hook.close()
    assert read_progress(tmp_path) == []
