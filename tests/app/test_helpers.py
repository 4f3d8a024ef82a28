"""The app's helpers: Λ parsing, upload checks, the ranking table, and what the figures actually draw."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from app import figures, lab, state
from control.errors import ValidationError


def test_parse_lambda_text_accepts_rows_and_refuses_bad_input():
    L = state.parse_lambda_text("1, 0.5; -0.25 1", 2)
    np.testing.assert_array_equal(L, [[1.0, 0.5], [-0.25, 1.0]])
    np.testing.assert_array_equal(state.parse_lambda_text("1 0\n0 1\n", 2), np.eye(2))
    with pytest.raises(ValidationError, match=r"^Lambda\[2,1\]: expected a number, got 'y'"):
        state.parse_lambda_text("1, 0; y, 1", 2)
    with pytest.raises(
        ValidationError, match=r"Lambda: expected 3 rows \(one per agent\), got '2 rows'"
    ):
        state.parse_lambda_text("1, 0; 0, 1", 3)
    with pytest.raises(ValidationError, match="finite"):
        state.parse_lambda_text("inf, 0; 0, 1", 2)


def test_lambda_from_frame_names_the_empty_cell():
    df = state.lambda_frame(np.eye(2), state.agent_names(2))
    np.testing.assert_array_equal(state.lambda_from_frame(df, 2), np.eye(2))
    df.iat[1, 0] = None
    with pytest.raises(ValidationError, match=r"^Lambda\[2,1\]"):
        state.lambda_from_frame(df, 2)


def test_read_upload_caps_size_and_checks_format(tmp_path):
    with pytest.raises(
        ValidationError, match=r"at most 0\.001 MB, got '0\.0 MB'|at most 0\.001 MB"
    ):
        state.read_upload("x.nc", b"\x89HDF" + b"\0" * 2000, max_mb=0.001)
    with pytest.raises(ValidationError, match="not a NetCDF file"):
        state.read_upload("x.csv", b"a,b\n1,2\n")
    # a NetCDF that is not an mftt results file is refused by agents.experiments.results.open_results
    p = tmp_path / "plain.nc"
    xr.Dataset({"a": ("x", np.arange(3.0))}).to_netcdf(p, engine="h5netcdf")
    with pytest.raises(ValidationError, match="mftt results file"):
        state.read_upload("plain.nc", p.read_bytes())


def _fake_results() -> xr.Dataset:
    """Two laws × three seeds, two agents: totals 3, 4, 5 (constant) and 1, 1, 1 (feedback)."""
    cost = np.array([[[1.0, 2.0], [2.0, 2.0], [2.0, 3.0]], [[0.5, 0.5], [0.5, 0.5], [0.25, 0.75]]])
    return xr.Dataset(
        {
            "cost": (("law", "seed", "agent"), cost),
            "exploitability": (("law", "seed"), np.array([[0.1, 0.2, 0.3], [0.0, 0.0, 0.0]])),
            "n_params": (("law", "seed", "agent"), np.broadcast_to([[[2.0]], [[26.0]]], (2, 3, 2))),
            "status": (("law", "seed"), np.full((2, 3), "ok")),
        },
        coords={"law": ["constant", "feedback"], "seed": [0, 1, 2]},
    )


def test_ranked_table_mean_and_confidence_half_width():
    t = state.ranked_table(_fake_results())
    assert list(t["law"]) == ["feedback", "constant"]
    assert list(t["rank"]) == [1, 2]
    assert t["total cost"].tolist() == pytest.approx([1.0, 4.0])
    # totals 3, 4, 5: sample sd 1, half-width 1.96/sqrt(3); identical totals: 0
    assert t["± CI95"].tolist() == pytest.approx([0.0, 1.96 / np.sqrt(3)])
    assert t["exploitability"].tolist() == pytest.approx([0.0, 0.2])
    assert t["parameters / agent"].tolist() == [26.0, 2.0]


def test_trajectory_and_curves_drop_padding():
    fig = figures.trajectory(
        np.array([0.0, 0.5, 1.0, np.nan]), np.array([[1.0], [0.5], [0.25], [np.nan]])
    )
    assert list(fig.data[0].x) == [0.0, 0.5, 1.0]
    curves = {"a": np.array([[1.0, 2.0, np.nan], [3.0, 4.0, np.nan]])}
    fig = figures.learning_curves(curves)
    band, line = fig.data
    assert list(line.y) == [2.0, 3.0]  # mean over runs, padding dropped
    assert list(band.y) == [3.0, 4.0, 2.0, 1.0]  # max forward, min backward


def test_tokens_figure_has_one_frame_per_shown_depth():
    traj = np.random.default_rng(0).normal(size=(7, 5, 3))
    fig = figures.tokens(traj)
    assert len(fig.frames) == 7
    np.testing.assert_allclose(fig.frames[-1].data[0].x, traj[-1, :, 0])


def test_norm_maps_draw_ball_norms_inside_the_unit_ball():
    grid, images = lab.norm_maps(("soft", "capsule", "rmse"), 5.0)
    assert len(grid) == 18
    for name, curves in images.items():
        r = np.concatenate([np.linalg.norm(c, axis=-1) for c in curves])
        assert r.max() < 1.0, name
        assert r.max() > 0.5, name  # the outer grid lines come close to the sphere


def test_sphere_flow_tokens_stay_on_the_sphere_and_cluster():
    traj, energy, spread = lab.sphere_flow(3, 6, 1.0, "SA", 20.0, 0)
    np.testing.assert_allclose(np.linalg.norm(traj, axis=-1), 1.0, atol=1e-6)
    assert np.all(np.diff(energy) >= -1e-6)  # E_β non-decreasing up to 1e-6 (docs/theory.md#sphere)
    assert spread[-1] > 0.99 > spread[0]  # d = 3: a single cluster
