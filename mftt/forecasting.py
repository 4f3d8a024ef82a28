"""Forecast, backcast and nowcast on windows of a multivariate series (docs/theory.md#forecasting), trained with ``control.fit``.

For a window of ``context`` steps starting at s (tokens = time steps, features = channels + 2 position
features), the target is
* ``forecast``: y_{s+context−1+h}  (h steps after the window's last step);
* ``backcast``: y_{s−h}            (h steps before the window's first step, from later data);
* ``nowcast``:  the target channels at the window's last step, which are hidden (zeroed) in the input, from the
  other channels observed up to then (mixed-frequency fusion).
The prediction is read at the last token (forecast/nowcast) or the first token (backcast).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import Tensor

from control.errors import ValidationError, choice, number
from control.training import fit

from .model import MeanFieldTypeTransformer, MFTTConfig

TASKS = ("forecast", "backcast", "nowcast")


def multi_seasonal(
    n: int = 400, channels: int = 2, periods=(12, 50), noise: float = 0.1, seed: int = 0
) -> np.ndarray:
    """Sum of sinusoids of the given periods with random phases/amplitudes per channel, plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    y = np.zeros((n, channels))
    for p in periods:
        amp = rng.uniform(0.5, 1.5, channels)
        phase = rng.uniform(0, 2 * np.pi, channels)
        y += amp * np.sin(2 * np.pi * t / p + phase)
    return y + noise * rng.standard_normal((n, channels))


def regime_ar(
    n: int = 400, channels: int = 2, coefs=(0.95, -0.5), switch: float = 0.02, seed: int = 0
) -> np.ndarray:
    """AR(1) whose coefficient switches between regimes as a Markov chain (switch probability per step)."""
    rng = np.random.default_rng(seed)
    y = np.zeros((n, channels))
    r = 0
    for k in range(1, n):  # a sequential recursion over time, not over particles
        if rng.random() < switch:
            r = (r + 1) % len(coefs)
        y[k] = coefs[r] * y[k - 1] + 0.3 * rng.standard_normal(channels)
    return y


def lorenz63(n: int = 400, dt: float = 0.02, seed: int = 0) -> np.ndarray:
    """The Lorenz-63 system (σ=10, ρ=28, β=8/3) sampled every dt from a random start on the attractor."""
    rng = np.random.default_rng(seed)

    def f(t, u):
        x, y, z = u
        return [10 * (y - x), x * (28 - z) - y, x * y - 8 / 3 * z]

    u0 = solve_ivp(f, (0, 5), rng.normal(0, 1, 3) + [1, 1, 20], rtol=1e-8).y[:, -1]
    t = np.arange(n) * dt
    return solve_ivp(f, (0, t[-1]), u0, t_eval=t, rtol=1e-8, atol=1e-8).y.T


GENERATORS: dict[str, Callable[..., np.ndarray]] = {
    "multi_seasonal": multi_seasonal,
    "regime_ar": regime_ar,
    "lorenz63": lorenz63,
}


def load_csv(path: str | Path, columns: list[str] | None = None) -> np.ndarray:
    """A numeric series ``[n, channels]`` from a CSV with a header row (optionally only some columns)."""
    import pandas as pd

    df = pd.read_csv(path)
    if columns is not None:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise ValidationError(
                "columns", f"columns of {path} ({', '.join(df.columns)})", missing
            )
        df = df[columns]
    return df.select_dtypes("number").to_numpy(dtype=float)


def series(data: str | np.ndarray, **kw) -> np.ndarray:
    """A generator name, a CSV path or an array → ``[n, channels]`` float array."""
    if isinstance(data, np.ndarray):
        y = data
    elif isinstance(data, str) and data in GENERATORS:
        y = GENERATORS[data](**kw)
    elif isinstance(data, str | Path) and str(data).endswith(".csv"):
        y = load_csv(data, **kw)
    else:
        raise ValidationError(
            "data", f"one of {', '.join(GENERATORS)}, a .csv path or an array", data
        )
    y = np.asarray(y, dtype=float)
    return y[:, None] if y.ndim == 1 else y


def windows(
    y: np.ndarray, *, context: int, horizon: int = 1, task: str = "forecast", targets=(0,)
) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``X [N, context, c + 2]`` (channels + sin/cos position) and targets ``Y [N, len(targets)]``."""
    choice("task", task, TASKS)
    context = int(number("context", context, low=1, integer=True))
    horizon = int(number("horizon", horizon, low=0 if task == "nowcast" else 1, integer=True))
    n, c = y.shape
    targets = list(targets)
    lo = horizon if task == "backcast" else 0
    hi = n - context - (horizon if task == "forecast" else 0)
    if hi < lo + 1:
        raise ValidationError("context", f"a window shorter than the series (n={n})", context)
    starts = np.arange(lo, hi + 1)
    idx = starts[:, None] + np.arange(context)[None, :]
    X = y[idx].copy()  # [N, context, c]
    if task == "forecast":
        Y = y[starts + context - 1 + horizon][:, targets]
    elif task == "backcast":
        Y = y[starts - horizon][:, targets]
    else:
        Y = X[:, -1, targets].copy()
        X[:, -1, targets] = 0.0
    pos = np.pi * np.arange(context) / context
    P = np.broadcast_to(np.stack([np.sin(pos), np.cos(pos)], -1), (len(starts), context, 2))
    return np.concatenate([X, P], -1), Y


@dataclass
class ForecastResult:
    """Trained model, training losses, test MSE/MAE and the naive baseline's test MSE."""

    model: MeanFieldTypeTransformer
    losses: list[float]
    mse: float
    mae: float
    baseline_mse: float
    n_params: int
    info: dict = field(default_factory=dict)


def _read(out: Tensor, task: str) -> Tensor:
    return out[..., 0, :] if task == "backcast" else out[..., -1, :]


def train_forecaster(
    data: str | np.ndarray = "multi_seasonal",
    *,
    task: str = "forecast",
    horizon: int = 1,
    context: int = 16,
    cfg: MFTTConfig | dict | None = None,
    steps: int = 150,
    lr: float = 1e-2,
    seed: int = 0,
    split: float = 0.75,
    targets=(0,),
    data_kw: dict | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    shift: float | None = 1.0,
) -> ForecastResult:
    """Train an MFTT on the windows of a series (z-scored by the training part) and score the test part.

    The baseline is persistence (the value nearest in time inside the window) for forecast/backcast and the
    previous step for nowcast. ``shift`` (None: skipped) also scores the model under a shifted initial law
    (docs/theory.md#comparison): a fresh series of the same generator (another seed; for data given as an
    array or CSV, the test part) whose level is moved by ``shift`` training standard deviations, in
    ``info["shifted_mse"]`` and ``info["shifted_baseline_mse"]`` (persistence is shift-invariant).
    """
    y = series(data, **(data_kw or {}))
    number("split", split, low=0.0, high=1.0, strict_low=True)
    shift = None if shift is None else float(number("shift", shift))
    cut = int(len(y) * split)
    mu, sd = y[:cut].mean(0), y[:cut].std(0) + 1e-8
    z = (y - mu) / sd
    X, Y = windows(z, context=context, horizon=horizon, task=task, targets=targets)
    ntr = max(1, int(len(X) * split) - context - horizon)  # no window overlap across the cut
    nte0 = int(len(X) * split)
    base = dict(d_model=8, heads=2, d_ff=16, depth=2)
    if isinstance(cfg, MFTTConfig):
        cfg = cfg.replace(d_in=X.shape[-1], d_out=Y.shape[-1])
    else:
        cfg = MFTTConfig(**{**base, **(cfg or {}), "d_in": X.shape[-1], "d_out": Y.shape[-1]})
    torch.manual_seed(seed)
    dtype = torch.get_default_dtype()
    Xt = torch.as_tensor(X, dtype=dtype, device=device)
    Yt = torch.as_tensor(Y, dtype=dtype, device=device)
    model = MeanFieldTypeTransformer(cfg, device=device, dtype=dtype)

    def loss_fn() -> Tensor:
        return (_read(model(Xt[:ntr]), task) - Yt[:ntr]).square().mean()

    res = fit(model, loss_fn, steps=steps, lr=lr, progress=progress)
    with torch.no_grad():
        pred = _read(model(Xt[nte0:]), task)
        err = pred - Yt[nte0:]
        naive = _naive(Xt[nte0:], task, targets)
        base_mse = float((naive - Yt[nte0:]).square().mean())
    info = {"status": res.status, "n_train": ntr, "n_test": len(X) - nte0}
    if shift is not None:
        shifted = _shifted_series(data, data_kw, z, cut, mu, sd, shift)
        X2, Y2 = windows(shifted, context=context, horizon=horizon, task=task, targets=targets)
        X2t = torch.as_tensor(X2, dtype=dtype, device=device)
        Y2t = torch.as_tensor(Y2, dtype=dtype, device=device)
        with torch.no_grad():
            info["shifted_mse"] = float((_read(model(X2t), task) - Y2t).square().mean())
            info["shifted_baseline_mse"] = float((_naive(X2t, task, targets) - Y2t).square().mean())
    return ForecastResult(
        model=model,
        losses=list(res.losses),
        mse=float(err.square().mean()),
        mae=float(err.abs().mean()),
        baseline_mse=base_mse if math.isfinite(base_mse) else float("nan"),
        n_params=model.n_params,
        info=info,
    )


SHIFT_SEED = 1_000_003  # the shifted series' seed offset: a trajectory the training never saw


def _shifted_series(data, data_kw, z: np.ndarray, cut: int, mu, sd, shift: float) -> np.ndarray:
    """The z-scored series under a shifted initial law: a fresh draw of the generator (or the test part of
    given data), its level moved by ``shift`` (in the training part's standard deviations)."""
    if isinstance(data, str) and data in GENERATORS:
        kw = dict(data_kw or {})
        kw["seed"] = int(kw.get("seed", 0)) + SHIFT_SEED
        fresh = (series(data, **kw) - mu) / sd
    else:
        fresh = z[cut:]
    return fresh + shift


def _naive(X: Tensor, task: str, targets) -> Tensor:
    """Persistence: the value nearest in time inside the window (nowcast: the previous step)."""
    t_idx = torch.as_tensor(list(targets), device=X.device)
    col = {"backcast": 0, "forecast": -1}.get(task, -2)
    return X[:, col][:, t_idx]
