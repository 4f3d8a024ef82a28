"""Constant vs time vs feedback vs mean-field weights at matched parameter counts (docs/theory.md#weight-laws).

A fair comparison matches parameters (docs/theory.md#weight-laws): every law gets widths (d_model, d_ff) whose
parameter count is within ``tolerance`` (5 %) of a common target. The result is an ``xarray.Dataset`` of loss
curves and test metrics per law and seed; ``attrs["ranking"]`` is the measured order by mean test MSE, and
``attrs["separated"]`` says whether the gaps exceed the seed spread. No winner is claimed beyond that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict

import numpy as np
import torch
import xarray as xr

from control import WEIGHT_LAWS
from control.errors import ValidationError, choice
from control.laws import LAW_OPTIONS

from .forecasting import TASKS, train_forecaster
from .model import MeanFieldTypeTransformer, MFTTConfig


def _count(cfg: MFTTConfig) -> int:
    with torch.device("meta"):
        return MeanFieldTypeTransformer(cfg).n_params


def match_widths(
    cfg: MFTTConfig, target: int, *, tolerance: float = 0.05, max_scale: int = 4
) -> tuple[MFTTConfig, float]:
    """Widths (d_model a multiple of heads, d_ff ≥ 1) with n_params within ``tolerance`` of ``target``.

    n_params is affine in d_ff at fixed d_model, so d_ff is solved for; d_model candidates are tried from the
    closest to the given one outwards. Returns the config and its relative gap.
    """
    H = cfg.heads
    cands = sorted(
        range(H, max_scale * cfg.d_model + 1, H), key=lambda d: (abs(d - cfg.d_model), d)
    )
    best = (cfg, float("inf"))
    for d in cands:
        c1 = cfg.replace(d_model=d, d_ff=1, d_k=None, d_v=None)
        n1, n2 = _count(c1), _count(c1.replace(d_ff=2))
        q = max(1, round((target - n1) / (n2 - n1)) + 1)
        c = c1.replace(d_ff=q)
        gap = abs(_count(c) - target) / target
        if gap < best[1]:
            best = (c, gap)
        if gap <= tolerance:
            return c, gap
    return best


def compare_weight_laws(
    task: str = "forecast",
    laws: Sequence[str] = ("constant", "time", "feedback", "meanfield"),
    seeds: Sequence[int] = (0, 1),
    match_params: bool = True,
    *,
    data: str | np.ndarray = "multi_seasonal",
    base: MFTTConfig | dict | None = None,
    target: str | int = "max",
    tolerance: float = 0.05,
    steps: int = 100,
    lr: float = 1e-2,
    horizon: int = 1,
    context: int = 16,
    data_kw: dict | None = None,
    device: str | None = None,
) -> xr.Dataset:
    """Train one forecaster per (law, seed) and collect loss curves, test MSE/MAE and sizes."""
    choice("task", task, TASKS)
    for law in laws:
        choice("laws", law, WEIGHT_LAWS)
    if not seeds:
        raise ValidationError("seeds", "at least one seed", seeds)
    if base is None:
        base = {"d_model": 8, "heads": 2, "d_ff": 16, "depth": 2}
    if isinstance(
        base, dict
    ):  # law_options may name options of several laws: each law takes its own
        base = dict(base)
        opts = dict(base.pop("law_options", {}))
        base = MFTTConfig(**{**base, "weights": "constant"})
    else:
        opts = dict(base.law_options)
    probe = dict(d_in=3, d_out=1)  # read-in/out sizes do not depend on the law
    cfgs = {
        law: base.replace(
            weights=law,
            law_options={k: v for k, v in opts.items() if k in LAW_OPTIONS[law]},
            **probe,
        )
        for law in laws
    }
    counts = {law: _count(c) for law, c in cfgs.items()}
    if target == "max":
        goal = max(counts.values())
    elif target == "min":
        goal = min(counts.values())
    elif isinstance(target, int) and target > 0:
        goal = target
    else:
        raise ValidationError("target", "max, min or a positive integer", target)
    gaps = {}
    for law in laws:
        if match_params:
            cfgs[law], gaps[law] = match_widths(cfgs[law], goal, tolerance=tolerance)
        else:
            gaps[law] = abs(counts[law] - goal) / goal
    L, S = len(laws), len(seeds)
    loss = np.full((L, S, steps), np.nan)
    mse, mae, base_mse = np.full((L, S), np.nan), np.full((L, S), np.nan), np.full((L, S), np.nan)
    n_params = np.zeros(L, dtype=int)
    for i, law in enumerate(laws):
        cfg = {k: v for k, v in asdict(cfgs[law]).items() if k not in ("d_in", "d_out")}
        for j, seed in enumerate(seeds):
            r = train_forecaster(
                data,
                task=task,
                horizon=horizon,
                context=context,
                cfg=cfg,
                steps=steps,
                lr=lr,
                seed=seed,
                data_kw=data_kw,
                device=device,
            )
            loss[i, j, : len(r.losses)] = r.losses
            mse[i, j], mae[i, j], base_mse[i, j] = r.mse, r.mae, r.baseline_mse
            n_params[i] = r.n_params
    mean, spread = mse.mean(1), mse.std(1)
    order = [laws[k] for k in np.argsort(mean)]
    ranked = np.sort(mean)
    sd_sorted = spread[np.argsort(mean)]
    separated = bool(
        S > 1
        and all(ranked[k + 1] - ranked[k] > sd_sorted[k] + sd_sorted[k + 1] for k in range(L - 1))
    )
    return xr.Dataset(
        {
            "loss": (("law", "seed", "step"), loss),
            "test_mse": (("law", "seed"), mse),
            "test_mae": (("law", "seed"), mae),
            "baseline_mse": (("law", "seed"), base_mse),
            "n_params": (("law",), n_params),
            "param_gap": (("law",), np.array([gaps[law] for law in laws])),
            "d_model": (("law",), np.array([cfgs[law].d_model for law in laws])),
            "d_ff": (("law",), np.array([cfgs[law].d_ff for law in laws])),
        },
        coords={"law": list(laws), "seed": list(seeds), "step": np.arange(steps)},
        attrs={
            "task": task,
            "data": data if isinstance(data, str) else "array",
            "target_params": int(goal),
            "matched": int(match_params),
            "ranking": " < ".join(order),
            "separated": int(separated),
            "note": "ranking by mean test MSE as measured; no winner unless 'separated' (gaps > seed spread)",
        },
    )
