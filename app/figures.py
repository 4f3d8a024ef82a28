"""Plotly figures for the pages (plus one matplotlib PNG for downloads); drawing only, no computation."""

from __future__ import annotations

import io

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
LAYOUT = dict(template="plotly_white", margin=dict(l=40, r=20, t=50, b=40), height=360)


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _band(color: str) -> str:
    r, g, b = (int(color[k : k + 2], 16) for k in (1, 3, 5))
    return f"rgba({r},{g},{b},0.18)"


def trajectory(
    times: np.ndarray,
    traj: np.ndarray,
    names: list[str] | None = None,
    title: str = "Mean state trajectory",
    xaxis: str = "time t",
    yaxis: str = "mean state E[x(t)]",
) -> go.Figure:
    """Curves over a time axis (by default the rollout's mean state components; traj is [time, state],
    NaN padding dropped); ``xaxis``/``yaxis`` name what is drawn (energy, inner products, depth…)."""
    fig = go.Figure()
    times, traj = np.asarray(times, float), np.atleast_2d(np.asarray(traj, float))
    ok = np.isfinite(times)
    for k in range(traj.shape[1]):
        y = traj[ok, k]
        if not np.isfinite(y).any():
            continue
        name = names[k] if names and k < len(names) else f"z[{k}]"
        mode = "lines+markers" if ok.sum() < 3 else "lines"
        fig.add_scatter(x=times[ok], y=y, mode=mode, name=name, line=dict(color=_color(k)))
    fig.update_layout(title=title, xaxis_title=xaxis, yaxis_title=yaxis, **LAYOUT)
    return fig


def learning_curves(
    curves: dict[str, np.ndarray],
    title: str = "Cost over learning",
    yaxis: str = "cost",
    log: bool = False,
) -> go.Figure:
    """Overlaid curves; each value is [runs, iteration] (mean line, min–max band over runs) or [iteration]."""
    fig = go.Figure()
    for i, (label, arr) in enumerate(curves.items()):
        arr = np.atleast_2d(np.asarray(arr, float))
        keep = np.isfinite(arr).any(0)
        if not keep.any():
            continue
        arr = arr[:, keep]
        it = np.arange(arr.shape[1])
        c = _color(i)
        with np.errstate(all="ignore"):
            mean = np.nanmean(arr, 0)
            lo, hi = np.nanmin(arr, 0), np.nanmax(arr, 0)
        if arr.shape[0] > 1:
            fig.add_scatter(
                x=np.r_[it, it[::-1]],
                y=np.r_[hi, lo[::-1]],
                fill="toself",
                mode="lines",
                fillcolor=_band(c),
                line=dict(width=0),
                hoverinfo="skip",
                showlegend=False,
            )
        fig.add_scatter(x=it, y=mean, mode="lines", name=label, line=dict(color=c))
    fig.update_layout(title=title, xaxis_title="learning iteration", yaxis_title=yaxis, **LAYOUT)
    if log:
        fig.update_yaxes(type="log")
    return fig


def cost_bars(
    names: list[str],
    material: np.ndarray,
    empathetic: np.ndarray,
    reference: np.ndarray | None = None,
    title: str = "Material vs empathetic cost per agent",
) -> go.Figure:
    """Grouped bars per agent: material cost L_i, empathetic cost (ΛL)_i, and the closed-form reference if any."""
    fig = go.Figure()
    fig.add_bar(
        x=names, y=np.asarray(material, float), name="material cost", marker_color=_color(0)
    )
    fig.add_bar(
        x=names,
        y=np.asarray(empathetic, float),
        name="empathetic cost (ΛL)",
        marker_color=_color(4),
    )
    if reference is not None and np.isfinite(np.asarray(reference, float)).any():
        fig.add_scatter(
            x=names,
            y=np.asarray(reference, float),
            mode="markers",
            name="closed-form reference",
            marker=dict(symbol="diamond", size=12, color="black"),
        )
    fig.update_layout(title=title, barmode="group", yaxis_title="cost", **LAYOUT)
    return fig


def bars(
    labels: list[str],
    values: np.ndarray,
    errors: np.ndarray | None = None,
    title: str = "",
    yaxis: str = "",
) -> go.Figure:
    """Plain bars with optional error bars (e.g. exploitability per seed, mean ± CI per law)."""
    fig = go.Figure()
    err = (
        None if errors is None else dict(type="data", array=np.asarray(errors, float), visible=True)
    )
    fig.add_bar(
        x=list(labels),
        y=np.asarray(values, float),
        error_y=err,
        marker_color=[_color(i) for i in range(len(labels))],
    )
    fig.update_layout(title=title, yaxis_title=yaxis, showlegend=False, **LAYOUT)
    return fig


def quantile_bands(
    times: np.ndarray,
    stats: np.ndarray,
    names: list[str],
    title: str = "Density of states over time",
    paths: np.ndarray | None = None,
) -> go.Figure:
    """Per population the state's distribution over time: ``stats [T, K, 4]`` holds the mean and the 5 %,
    50 %, 95 % quantiles over its agents (``agents.rollout_parts``): a 5–95 % band, the median (solid) and
    the mean (dotted); ``paths [T, K, S]``, a fixed sample of S agents' paths per population, as thin lines."""
    fig = go.Figure()
    t = np.asarray(times, float)
    S = np.asarray(stats, float)
    ok = np.isfinite(t)
    if paths is not None and not np.asarray(paths).size:
        paths = None
    for k in range(S.shape[1]):
        if paths is not None:
            for i in range(paths.shape[2]):
                fig.add_scatter(
                    x=t[ok],
                    y=paths[ok, k, i],
                    mode="lines",
                    line=dict(color=_color(k), width=0.6),
                    opacity=0.35,
                    showlegend=i == 0,
                    legendgroup=f"sample{k}",
                    name=f"{names[k] if k < len(names) else f'population {k + 1}'}: sample agents",
                )
        c, name = _color(k), names[k] if k < len(names) else f"population {k + 1}"
        mean, q5, q50, q95 = (S[ok, k, i] for i in range(4))
        fig.add_scatter(
            x=t[ok], y=q95, mode="lines", line=dict(width=0), showlegend=False, hoverinfo="skip"
        )
        fig.add_scatter(
            x=t[ok],
            y=q5,
            mode="lines",
            line=dict(width=0),
            fill="tonexty",
            fillcolor=_band(c),
            name=f"{name}: 5–95 %",
        )
        fig.add_scatter(x=t[ok], y=q50, mode="lines", line=dict(color=c), name=f"{name}: median")
        fig.add_scatter(
            x=t[ok], y=mean, mode="lines", line=dict(color=c, dash="dot"), name=f"{name}: mean"
        )
    fig.update_layout(
        title=title, xaxis_title="time t", yaxis_title="state x (agents' quantiles)", **LAYOUT
    )
    return fig


def histogram(
    values: dict[str, np.ndarray], title: str = "Per-agent costs", xaxis: str = "cost"
) -> go.Figure:
    """Overlaid histograms, one per group (e.g. per population: its agents' costs)."""
    fig = go.Figure()
    for i, (label, v) in enumerate(values.items()):
        v = np.asarray(v, float).ravel()
        fig.add_histogram(
            x=v[np.isfinite(v)], name=label, marker_color=_color(i), opacity=0.7, nbinsx=50
        )
    fig.update_layout(
        title=title, xaxis_title=xaxis, yaxis_title="agents", barmode="overlay", **LAYOUT
    )
    return fig


def step_curve(steps, cost, title: str = "Λ-cost over learning steps") -> go.Figure:
    """A running cell's total Λ-cost against its learning step (a small live chart)."""
    fig = go.Figure()
    fig.add_scatter(
        x=np.asarray(steps, float),
        y=np.asarray(cost, float),
        mode="lines",
        line=dict(color=_color(0)),
    )
    fig.update_layout(
        title=title,
        xaxis_title="learning step",
        yaxis_title="total Λ-cost",
        **{**LAYOUT, "height": 220, "margin": dict(l=40, r=10, t=40, b=35)},
    )
    return fig


def heatmaps(
    mats: list[np.ndarray],
    titles: list[str],
    title: str = "Attention",
    zmin: float | None = 0.0,
    zmax: float | None = None,
    colorscale: str = "Viridis",
    xaxis: str | None = None,
    yaxis: str | None = None,
) -> go.Figure:
    """A row of heat maps (attention matrices [D, D], Λ, ...), one shared colour scale; ``xaxis``/``yaxis``
    label every panel (e.g. key and query token)."""
    k = max(len(mats), 1)
    fig = make_subplots(rows=1, cols=k, subplot_titles=titles, horizontal_spacing=0.06)
    if zmax is None:
        zmax = float(max((np.nanmax(m) for m in mats), default=1.0))
    for i, m in enumerate(mats):
        fig.add_trace(
            go.Heatmap(
                z=np.asarray(m, float),
                zmin=zmin,
                zmax=zmax,
                colorscale=colorscale,
                showscale=i == k - 1,
            ),
            1,
            i + 1,
        )
        fig.update_yaxes(
            autorange="reversed", title_text=yaxis if i == 0 else None, row=1, col=i + 1
        )
        if xaxis:
            fig.update_xaxes(title_text=xaxis, row=1, col=i + 1)
    fig.update_layout(title=title, **{**LAYOUT, "height": 340})
    return fig


def lambda_heatmap(Lambda: np.ndarray, names: list[str]) -> go.Figure:
    """Λ as a diverging heat map (row j: agent j's weights on everyone's cost)."""
    L = np.asarray(Lambda, float)
    m = float(np.abs(L).max()) or 1.0
    fig = go.Figure(
        go.Heatmap(
            z=L,
            x=names,
            y=names,
            zmin=-m,
            zmax=m,
            colorscale="RdBu",
            text=np.round(L, 2),
            texttemplate="%{text}",
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(
        title="Λ (row j weighs everyone's cost for agent j)", **{**LAYOUT, "height": 300}
    )
    return fig


def tokens(traj: np.ndarray, title: str = "Tokens over depth", sphere: bool = True) -> go.Figure:
    """Tokens moving over depth: traj [steps, D, d] with d = 2 or 3, animated by a depth slider."""
    traj = np.asarray(traj, float)
    d = traj.shape[-1]
    steps = traj.shape[0]
    idx = np.unique(np.linspace(0, steps - 1, min(steps, 40)).round().astype(int))

    def scatter(k: int):
        x = traj[k]
        mk = dict(size=7 if d == 2 else 4, color=np.arange(x.shape[0]), colorscale="Turbo")
        if d == 3:
            return go.Scatter3d(
                x=x[:, 0], y=x[:, 1], z=x[:, 2], mode="markers", marker=mk, name="tokens"
            )
        return go.Scatter(x=x[:, 0], y=x[:, 1], mode="markers", marker=mk, name="tokens")

    data = [scatter(int(idx[0]))]
    if sphere:
        if d == 2:
            th = np.linspace(0, 2 * np.pi, 200)
            data.append(
                go.Scatter(
                    x=np.cos(th),
                    y=np.sin(th),
                    mode="lines",
                    line=dict(color="lightgray"),
                    name="unit circle",
                    hoverinfo="skip",
                )
            )
        else:
            u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 30), np.linspace(0, np.pi, 15))
            data.append(
                go.Surface(
                    x=np.cos(u) * np.sin(v),
                    y=np.sin(u) * np.sin(v),
                    z=np.cos(v),
                    opacity=0.12,
                    showscale=False,
                    colorscale="Greys",
                    hoverinfo="skip",
                )
            )
    frames = [go.Frame(data=[scatter(int(k))], traces=[0], name=str(int(k))) for k in idx]
    fig = go.Figure(data=data, frames=frames)
    slider = dict(
        active=0,
        currentvalue=dict(prefix="depth step "),
        steps=[
            dict(
                method="animate",
                label=str(int(k)),
                args=[
                    [str(int(k))],
                    dict(
                        mode="immediate",
                        frame=dict(duration=0, redraw=True),
                        transition=dict(duration=0),
                    ),
                ],
            )
            for k in idx
        ],
    )
    play = dict(
        type="buttons",
        showactive=False,
        x=0.0,
        y=-0.08,
        xanchor="left",
        buttons=[
            dict(
                label="▶ play",
                method="animate",
                args=[None, dict(frame=dict(duration=120, redraw=True), fromcurrent=True)],
            )
        ],
    )
    fig.update_layout(
        title=title, sliders=[slider], updatemenus=[play], **{**LAYOUT, "height": 480}
    )
    if d == 2:
        fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


def residuals(
    series: dict[str, np.ndarray],
    title: str = "Consistency loop residuals",
    yaxis: str = "‖O(Y) − Y‖",
) -> go.Figure:
    """Residual curves over iterations on a log scale."""
    fig = go.Figure()
    for i, (label, r) in enumerate(series.items()):
        r = np.asarray(r, float)
        fig.add_scatter(
            x=np.arange(1, len(r) + 1),
            y=r,
            mode="lines+markers",
            name=label,
            line=dict(color=_color(i)),
        )
    fig.update_layout(title=title, xaxis_title="iteration", yaxis_title=yaxis, **LAYOUT)
    fig.update_yaxes(type="log")
    return fig


def norm_ball(
    curves_in: list[np.ndarray],
    curves_out: dict[str, list[np.ndarray]],
    title: str = "Norm maps drawn into the unit ball",
) -> go.Figure:
    """Grid lines of the plane (left) and their images under each norm map (right), with the unit circle."""
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("input grid in ℝ²", "image under the norm map")
    )
    th = np.linspace(0, 2 * np.pi, 200)
    for col in (1, 2):
        fig.add_scatter(
            x=np.cos(th),
            y=np.sin(th),
            mode="lines",
            line=dict(color="black", dash="dot"),
            name="unit circle",
            showlegend=col == 1,
            row=1,
            col=col,
        )
    for c in curves_in:
        fig.add_scatter(
            x=c[:, 0],
            y=c[:, 1],
            mode="lines",
            line=dict(color="lightgray", width=1),
            showlegend=False,
            hoverinfo="skip",
            row=1,
            col=1,
        )
    for i, (label, cs) in enumerate(curves_out.items()):
        for j, c in enumerate(cs):
            fig.add_scatter(
                x=c[:, 0],
                y=c[:, 1],
                mode="lines",
                line=dict(color=_color(i), width=1),
                name=label,
                legendgroup=label,
                showlegend=j == 0,
                row=1,
                col=2,
            )
    for col in (1, 2):
        fig.update_yaxes(scaleanchor=f"x{'' if col == 1 else col}", scaleratio=1, row=1, col=col)
    fig.update_layout(title=title, **{**LAYOUT, "height": 440})
    return fig


def summary_png(ds) -> bytes:
    """A static PNG of a results Dataset (costs per agent, learning curves) for downloads; matplotlib Agg."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    grid = [d for d in ds["cost"].dims if d != "agent"]
    cost = ds["cost"].mean([d for d in grid if d in ds["cost"].dims], skipna=True)
    emp = ds["empathetic_cost"].mean(
        [d for d in grid if d in ds["empathetic_cost"].dims], skipna=True
    )
    names = (
        [str(a) for a in ds["agent"].values]
        if "agent" in ds.coords
        else [str(i) for i in range(cost.size)]
    )
    x = np.arange(len(names))
    axes[0].bar(x - 0.2, cost.values, 0.4, label="material")
    axes[0].bar(x + 0.2, emp.values, 0.4, label="empathetic")
    axes[0].set_xticks(x, names)
    axes[0].set_title("cost per agent (mean over grid)")
    axes[0].legend()
    if "history" in ds:
        h = ds["history"]
        other = [d for d in h.dims if d not in ("iteration", "agent")]
        h = h.mean(other, skipna=True) if other else h
        for k in range(h.sizes.get("agent", 1)):
            axes[1].plot(h.isel(agent=k).values, label=names[k] if k < len(names) else str(k))
        axes[1].set_xlabel("iteration")
        axes[1].set_title("empathetic cost over learning")
        axes[1].legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
