"""Constant vs untied vs time vs feedback vs mean-field weights at a matched budget (docs/theory.md#weight-laws).

A fair comparison matches the budget (docs/theory.md#comparison): every law gets widths (d_model, d_ff) whose
parameter count (``match="params"``) or forward FLOPs on the context (``match="flops"``,
``MeanFieldTypeTransformer.flops``) is within ``tolerance`` (5 %) of a common target. Each seed fixes the
initialisation *and* the generated series for every law alike (common seeds). The result is an
``xarray.Dataset`` of loss curves and test metrics per law and seed, with per-law t-intervals and the paired
tests against ``constant`` (``mftt.stats``); ``attrs["conclusions"]`` holds one line per law.
``attrs["ranking"]`` is only the measured order of the means: no winner is claimed unless a conclusion says so.
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

from . import stats
from .forecasting import TASKS, train_forecaster
from .model import MeanFieldTypeTransformer, MFTTConfig

MATCH = ("params", "flops", "none")


def _count(cfg: MFTTConfig) -> int:
    with torch.device("meta"):
        return MeanFieldTypeTransformer(cfg).n_params


def flops_counter(tokens: int):
    """``cfg -> model.flops(tokens)``: the forward FLOPs of one sequence of ``tokens`` tokens (compute budget)."""

    def count(cfg: MFTTConfig) -> int:
        with torch.device("meta"):
            return MeanFieldTypeTransformer(cfg).flops(tokens)

    return count


def match_widths(
    cfg: MFTTConfig, target: int, *, tolerance: float = 0.05, max_scale: int = 4, count=None
) -> tuple[MFTTConfig, float]:
    """Widths (d_model a multiple of heads, d_ff ≥ 1) with ``count(cfg)`` within ``tolerance`` of ``target``.

    ``count`` is the parameter count by default (or ``flops_counter(D)``); both are affine in d_ff at fixed
    d_model, so d_ff is solved for; d_model candidates are tried from the closest to the given one outwards.
    Returns the config and its relative gap.
    """
    count = _count if count is None else count
    H = cfg.heads
    cands = sorted(
        range(H, max_scale * cfg.d_model + 1, H), key=lambda d: (abs(d - cfg.d_model), d)
    )
    best = (cfg, float("inf"))
    for d in cands:
        c1 = cfg.replace(d_model=d, d_ff=1, d_k=None, d_v=None)
        n1, n2 = count(c1), count(c1.replace(d_ff=2))
        q = max(1, round((target - n1) / (n2 - n1)) + 1)
        c = c1.replace(d_ff=q)
        gap = abs(count(c) - target) / target
        if gap < best[1]:
            best = (c, gap)
        if gap <= tolerance:
            return c, gap
    return best


def compare_weight_laws(
    task: str = "forecast",
    laws: Sequence[str] = tuple(WEIGHT_LAWS),
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
    match: str | None = None,
    alpha: float = 0.05,
    shift: float | None = 1.0,
) -> xr.Dataset:
    """Train one forecaster per (law, seed) and collect loss curves, test MSE/MAE, sizes and the statistics.

    ``match``: ``"params"`` (default; ``match_params=False`` means ``"none"``), ``"flops"`` (forward FLOPs on
    ``context`` tokens) or ``"none"``. A generated series (``data`` a generator name) is drawn with each
    seed unless ``data_kw`` fixes its ``seed``. ``shift``: each model is also scored under a shifted initial
    law (``train_forecaster``'s ``shift``; None: not), in ``shifted_mse`` beside ``test_mse``.
    """
    choice("task", task, TASKS)
    match = ("params" if match_params else "none") if match is None else match
    choice("match", match, MATCH)
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
    count = flops_counter(context) if match == "flops" else _count
    counts = {law: count(c) for law, c in cfgs.items()}
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
        if match != "none":
            cfgs[law], gaps[law] = match_widths(cfgs[law], goal, tolerance=tolerance, count=count)
        else:
            gaps[law] = abs(counts[law] - goal) / goal
    L, S = len(laws), len(seeds)
    loss = np.full((L, S, steps), np.nan)
    mse, mae, base_mse = np.full((L, S), np.nan), np.full((L, S), np.nan), np.full((L, S), np.nan)
    shifted, shifted_base = np.full((L, S), np.nan), np.full((L, S), np.nan)
    n_params = np.zeros(L, dtype=int)
    flops = np.array([flops_counter(context)(cfgs[law]) for law in laws], dtype=np.int64)
    for i, law in enumerate(laws):
        cfg = {k: v for k, v in asdict(cfgs[law]).items() if k not in ("d_in", "d_out")}
        for j, seed in enumerate(seeds):
            kw = dict(data_kw or {})
            if isinstance(data, str):
                kw.setdefault(
                    "seed", int(seed)
                )  # the series follows the seed too, for every law alike
            r = train_forecaster(
                data,
                task=task,
                horizon=horizon,
                context=context,
                cfg=cfg,
                steps=steps,
                lr=lr,
                seed=seed,
                data_kw=kw,
                device=device,
                shift=shift,
            )
            loss[i, j, : len(r.losses)] = r.losses
            mse[i, j], mae[i, j], base_mse[i, j] = r.mse, r.mae, r.baseline_mse
            shifted[i, j] = r.info.get("shifted_mse", np.nan)
            shifted_base[i, j] = r.info.get("shifted_baseline_mse", np.nan)
            n_params[i] = r.n_params
    mean, spread = mse.mean(1), mse.std(1)
    order = [laws[k] for k in np.argsort(mean)]
    ranked = np.sort(mean)
    sd_sorted = spread[np.argsort(mean)]
    separated = bool(
        S > 1
        and all(ranked[k + 1] - ranked[k] > sd_sorted[k] + sd_sorted[k + 1] for k in range(L - 1))
    )
    ivs = [stats.t_interval(mse[i]) for i in range(L)]
    comps = []
    if "constant" in laws and S > 1:
        k0 = laws.index("constant")
        comps = stats.adjust(
            [
                stats.paired(mse[i], mse[k0], law=law, baseline="constant", alpha=alpha)
                for i, law in enumerate(laws)
                if law != "constant"
            ]
        )
    by = {c.law: c for c in comps}
    nan = float("nan")

    def col(f):
        return np.array([f(by[law]) if law in by else nan for law in laws], dtype=float)

    lines = [stats.conclusion(c, metric="test MSE") for c in comps]
    return xr.Dataset(
        {
            "loss": (("law", "seed", "step"), loss),
            "test_mse_mean": (("law",), np.array([iv.mean for iv in ivs])),
            "test_mse_half": (("law",), np.array([iv.half for iv in ivs])),
            "diff_vs_constant": (("law",), col(lambda c: c.diff.mean)),
            "diff_vs_constant_half": (("law",), col(lambda c: c.diff.half)),
            "p_t": (("law",), col(lambda c: c.p_t_adj)),
            "p_wilcoxon": (("law",), col(lambda c: c.p_wilcoxon)),
            "d_z": (("law",), col(lambda c: c.d_z)),
            "significant": (("law",), col(lambda c: float(c.significant))),
            "flops": (("law",), flops),
            "test_mse": (("law", "seed"), mse),
            "test_mae": (("law", "seed"), mae),
            "baseline_mse": (("law", "seed"), base_mse),
            "shifted_mse": (("law", "seed"), shifted),
            "shifted_baseline_mse": (("law", "seed"), shifted_base),
            "n_params": (("law",), n_params),
            "param_gap": (("law",), np.array([gaps[law] for law in laws])),
            "d_model": (("law",), np.array([cfgs[law].d_model for law in laws])),
            "d_ff": (("law",), np.array([cfgs[law].d_ff for law in laws])),
        },
        coords={"law": list(laws), "seed": list(seeds), "step": np.arange(steps)},
        attrs={
            "task": task,
            "data": data if isinstance(data, str) else "array",
            "shift": "none" if shift is None else float(shift),
            "target_params": int(goal),
            "matched": int(match != "none"),
            "match": match,
            "budget": (
                f"{match} matched within {100 * max(gaps.values()):.1f} % (tolerance "
                f"{100 * tolerance:g} %)"
                if match != "none"
                else "not matched"
            ),
            "conclusions": "\n".join(lines)
            or f"no paired test: {S} seed(s) (at least {stats.MIN_SEEDS_FOR_TEST} needed)",
            "ranking": " < ".join(order),
            "separated": int(separated),
            "note": "ranking = measured order of mean test MSE only; a winner is claimed only by 'conclusions'",
        },
    )
