"""Reusable page sections: the Λ editor, the transformer options form and the results panel."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st
import torch

import mftt
from agents import empathy, lambda_warnings, rollout_parts
from agents.agent import MFTTPolicy
from agents.status import PLAYED
from app import figures, state
from control.errors import ValidationError


def _set_lambda(prefix: str, name: str, n: int) -> None:
    """Preset button callback: replace the Λ grid by ``agents.empathy.preset(name, n, alpha)``."""
    alpha = float(st.session_state.get(f"{prefix}_alpha", 0.5))
    try:
        L = empathy.preset(name, n, alpha)
        st.session_state[f"{prefix}_Lambda"] = L
        st.session_state[f"{prefix}_Lambda_label"] = name
        st.session_state[f"{prefix}_Lambda_preset"] = (name, alpha, L.tolist())
        st.session_state.pop(f"{prefix}_preset_error", None)
    except ValidationError as exc:
        st.session_state[f"{prefix}_preset_error"] = str(exc)
    _bump(prefix)
    st.session_state[f"{prefix}_Lambda_text"] = ""
    st.session_state.pop(f"{prefix}_text_error", None)


def _bump(prefix: str) -> None:
    """Rebuild the grid editor from ``<prefix>_Lambda`` (a new widget key drops its pending edits)."""
    key = f"{prefix}_Lambda_ver"
    st.session_state[key] = st.session_state.get(key, 0) + 1


def _alpha_changed(prefix: str, n: int) -> None:
    """α slider callback: re-apply the chosen preset with the new strength (a hand-edited grid is kept)."""
    chosen = st.session_state.get(f"{prefix}_Lambda_preset")
    if chosen and _label(prefix) == chosen[0]:
        _set_lambda(prefix, chosen[0], n)


def _fill_from_text(prefix: str, n: int) -> None:
    """Text callback: a valid typed Λ fills the grid and the text is cleared; a bad one stays with its message."""
    text = st.session_state.get(f"{prefix}_Lambda_text", "")
    if not text.strip():
        st.session_state.pop(f"{prefix}_text_error", None)
        return
    try:
        L = empathy.validate_Lambda(state.parse_lambda_text(text, n), n)
    except ValidationError as exc:
        st.session_state[f"{prefix}_text_error"] = str(exc)
        return
    st.session_state[f"{prefix}_Lambda"] = L
    st.session_state[f"{prefix}_Lambda_label"] = "custom"
    st.session_state[f"{prefix}_Lambda_text"] = ""
    st.session_state.pop(f"{prefix}_text_error", None)
    _bump(prefix)


def _label(prefix: str) -> str:
    """The preset name while the grid still equals that preset's matrix, else ``custom``."""
    chosen = st.session_state.get(f"{prefix}_Lambda_preset")
    L = np.asarray(st.session_state.get(f"{prefix}_Lambda"), dtype=float)
    if chosen and L.shape == np.shape(chosen[2]) and np.allclose(L, chosen[2], rtol=0, atol=1e-9):
        return chosen[0]
    if L.ndim == 2 and L.shape[0] == L.shape[1] and np.array_equal(L, np.eye(L.shape[0])):
        return "selfish"
    return "custom"


def lambda_label(prefix: str) -> tuple[str, str]:
    """(name recorded in the results, text shown in the settings header), e.g. ("altruistic", "altruistic (α 0.5)")."""
    name = _label(prefix)
    chosen = st.session_state.get(f"{prefix}_Lambda_preset")
    if chosen and name == chosen[0] and name != "selfish":
        return name, f"{name} (α {chosen[1]:g})"
    return name, name


def lambda_editor(prefix: str, n: int) -> tuple[np.ndarray | None, str | None]:
    """Λ as an editable n×n grid (the one source of truth) with preset buttons and a text shortcut that fills it.

    Returns (Λ, None) when valid, (None, one-line message) otherwise; the message is also shown inline,
    with warnings for extreme or degenerate matrices.
    """
    key = f"{prefix}_Lambda"
    if key not in st.session_state or np.shape(st.session_state[key]) != (n, n):
        st.session_state[key] = np.eye(n)
        st.session_state.pop(f"{prefix}_Lambda_preset", None)
        st.session_state[f"{prefix}_Lambda_text"] = (
            ""  # typed text for another agent count is dropped
        )
        st.session_state.pop(f"{prefix}_text_error", None)
        _bump(prefix)
    st.session_state.setdefault(f"{prefix}_alpha", 0.5)
    st.slider(
        "Preset strength α",
        -1.0,
        1.0,
        step=0.05,
        key=f"{prefix}_alpha",
        persist_state="session",
        on_change=_alpha_changed,
        args=(prefix, n),
        help="How strongly the presets weigh the others' costs (altruism, spite, co-opetition).",
    )
    presets = list(empathy.PRESETS)
    per_row = 5
    for start in range(0, len(presets), per_row):
        cols = st.columns(per_row)
        for col, name in zip(cols, presets[start : start + per_row], strict=False):
            col.button(
                name.replace("_", " "),
                key=f"{prefix}_preset_{name}",
                on_click=_set_lambda,
                args=(prefix, name, n),
                width="stretch",
            )
    if st.session_state.get(f"{prefix}_preset_error"):
        st.error(st.session_state[f"{prefix}_preset_error"])
    names = state.agent_names(n)
    edited = st.data_editor(
        state.lambda_frame(st.session_state[key], names),
        key=f"{key}_editor_{st.session_state.get(f'{key}_ver', 0)}",
        num_rows="fixed",
        width="stretch",
        column_config={
            c: st.column_config.TextColumn(c, help=f"weight on {c}'s cost") for c in names
        },
    )
    st.text_input(
        "…or type Λ and press Enter to fill the grid (rows separated by ';', entries by ',')",
        key=f"{prefix}_Lambda_text",
        placeholder="1, 0.5; 0.5, 1",
        on_change=_fill_from_text,
        args=(prefix, n),
    )
    if st.session_state.get(f"{prefix}_text_error"):
        msg = st.session_state[f"{prefix}_text_error"]
        st.error(f"Typed Λ not used: {msg}")
    try:
        Lambda = empathy.validate_Lambda(state.lambda_from_frame(edited, n), n)
        labels = empathy.classify(Lambda)
    except ValidationError as exc:
        st.error(str(exc))
        return None, str(exc)
    if not np.array_equal(Lambda, np.asarray(st.session_state[key], dtype=float)):
        st.session_state[key] = Lambda  # the grid's edits are the matrix (kept across pages)
    for w in lambda_warnings(Lambda):
        st.warning(w)
    st.dataframe(
        {"agent": names, "attitude": labels},
        hide_index=True,
        width="stretch",
        key=f"{prefix}_labels",
    )
    return Lambda, None


def mftt_options_form(prefix: str) -> tuple[dict[str, Any], str | None]:
    """Transformer options for the agents' MFTT policies (fields of ``mftt.MFTTConfig``), checked inline.

    Returns (options, None) or (options, one-line message) when ``MFTTConfig`` refuses them.
    """
    kernels = list(mftt.ATTENTION)
    norms = list(mftt.NORMS)
    ss = st.session_state
    ss.setdefault(f"{prefix}_dmodel", 8)
    ss.setdefault(f"{prefix}_heads", 2)
    ss.setdefault(f"{prefix}_depth", 1)
    ss.setdefault(f"{prefix}_kernel", "boltzmann" if "boltzmann" in kernels else kernels[0])
    ss.setdefault(f"{prefix}_norm", "soft" if "soft" in norms else norms[0])
    c1, c2, c3 = st.columns(3)
    opts: dict[str, Any] = {
        "d_model": int(
            c1.selectbox(
                "d_model",
                [4, 8, 16, 32],
                key=f"{prefix}_dmodel",
                persist_state="session",
            )
        ),
        "heads": int(
            c2.selectbox(
                "heads",
                [1, 2, 3, 4],
                key=f"{prefix}_heads",
                persist_state="session",
            )
        ),
        "depth": int(
            c3.number_input(
                "depth",
                1,
                8,
                key=f"{prefix}_depth",
                persist_state="session",
            )
        ),
        "attention": c1.selectbox(
            "attention kernel",
            kernels,
            key=f"{prefix}_kernel",
            persist_state="session",
        ),
        "norm": c2.selectbox("norm", norms, key=f"{prefix}_norm", persist_state="session"),
    }
    c3.caption("The layers' weight law is the *Weight law* above.")
    if mftt is not None:
        try:
            mftt.MFTTConfig(**opts)
        except ValidationError as exc:
            st.error(str(exc))
            return opts, str(exc)
    return opts, None


# ---------------------------------------------------------------- results


def _names(cell) -> list[str]:
    """Agent names recorded by the run (first seed), without the padding."""
    if "agent_name" not in cell:
        return []
    v = np.asarray(cell["agent_name"].values).astype(str)
    if v.size == 0:
        return []
    v = v.reshape(-1, v.shape[-1])[0]
    return [s for s in v if s]


def _squeeze(ds, keep: tuple[str, ...] = ("seed",)):
    """Take the first label of every grid dimension not in ``keep`` (the page ran one scenario/Λ/law)."""
    return ds.isel({d: 0 for d in state.grid_dims(ds) if d not in keep})


STALE_CSS = """<style>
.st-key-stale_results { opacity: 0.45; filter: grayscale(1); }
</style>"""


def results_header(ran: dict[str, Any], current: dict[str, Any] | None) -> bool:
    """Head a result with the settings that produced it; say so when the form has changed since (stale).

    Returns True when stale (the caller greys the result)."""
    st.markdown("**Settings of these results:** " + state.settings_markdown(ran))
    diff = state.settings_diff(ran, current) if current is not None else []
    if diff:
        st.markdown(STALE_CSS, unsafe_allow_html=True)
        st.warning(
            "**Stale:** the form has changed since this run ("
            + "; ".join(diff)
            + "). Press **Run** for results of the current settings.",
            icon=":material/history:",
        )
    return bool(diff)


def show_results(ds, ran: dict[str, Any] | None = None, key: str = "res", path=None) -> None:
    """The results of an Explore run: metrics, trajectories, learning curves, costs and attention maps.

    ``path``: the results file (its trained weights feed the attention maps)."""
    ran = ran or {}
    cell = _squeeze(ds)
    status = np.asarray(cell["status"].values).astype(str).ravel()
    bad = [s for s in status if s != "ok"]
    if bad:
        msgs = {str(m) for m in np.asarray(cell["message"].values).ravel() if str(m)}
        counts = ", ".join(f"{bad.count(k)} {k}" for k in dict.fromkeys(bad))
        st.warning(
            f"{len(bad)} of {status.size} cells are not certified equilibria ({counts}; ok = "
            "converged and NashConv within tolerance): " + "; ".join(sorted(msgs))
        )
    if not np.isin(status, PLAYED).any() or cell.sizes.get("agent", 0) == 0:
        st.error(
            "No cell of this run finished: change the settings (e.g. the learning rate or Λ) and run again."
        )
        return
    seeds = [int(s) for s in cell["seed"].values] if "seed" in cell.dims else [0]
    names = _names(cell) or state.agent_names(int(cell.sizes.get("agent", 1)))
    n = len(names)
    cost = np.asarray(cell["cost"].values, float).reshape(len(seeds), -1)[:, :n]
    emp = np.asarray(cell["empathetic_cost"].values, float).reshape(len(seeds), -1)[:, :n]
    expl = np.asarray(cell["exploitability"].values, float).ravel()
    m1, m2, m3, m4 = st.columns(4)
    with np.errstate(all="ignore"):
        m1.metric("Total material cost", f"{np.nanmean(cost.sum(1)):.4g}")
        meth = {str(m) for m in np.asarray(cell["exploitability_method"].values).ravel() if str(m)}
        m2.metric(
            "Exploitability (NashConv)",
            f"{np.nanmean(expl):.3g}",
            help="certified by best responses: " + (", ".join(sorted(meth)) or "n/a"),
        )
        gap = np.asarray(cell["gap"].values, float) if "gap" in cell else np.array([np.nan])
        m3.metric("Gap to closed form", "n/a" if np.isnan(gap).all() else f"{np.nanmean(gap):.2%}")
        m4.metric("Wall time", f"{np.nansum(np.asarray(cell['wall_time'].values, float)):.1f} s")
    seed = seeds[0]
    if len(seeds) > 1:
        seed = st.selectbox("Seed shown in the trajectory", seeds, key=f"{key}_seed")
    if state.is_population(cell):
        population_results(ds, cell, seed, seeds, names, cost, emp, ran, key, path)
        return
    tabs = st.tabs(["Trajectories", "Learning", "Costs per agent", "Attention"])
    one = cell.sel(seed=seed) if "seed" in cell.dims else cell
    with tabs[0]:
        st.plotly_chart(
            figures.trajectory(one["times"].values, one["trajectory"].values),
            width="stretch",
            key=f"{key}_traj",
        )
    with tabs[1]:
        hist = np.asarray(cell["history"].values, float)  # [seed, iteration, agent]
        hist = hist.reshape(len(seeds), hist.shape[-2], hist.shape[-1])
        curves = {names[k]: hist[:, :, k] for k in range(min(n, hist.shape[-1]))}
        st.plotly_chart(
            figures.learning_curves(curves, title="Empathetic cost over learning (band: seeds)"),
            width="stretch",
            key=f"{key}_learn",
        )
        st.plotly_chart(
            figures.bars(
                [f"seed {s}" for s in seeds],
                expl,
                title="Exploitability at the learned profile",
                yaxis="NashConv",
            ),
            width="stretch",
            key=f"{key}_expl",
        )
    with tabs[2]:
        cost_panel(cell, seeds, names, cost, emp, key)
    with tabs[3]:
        attention_panel(one, ran, names, key=key, path=path, ds=ds)


def cost_panel(cell, seeds, names: list[str], cost, emp, key: str) -> None:
    """Mean material and empathetic cost per agent (population) over seeds, against the closed form."""
    n = len(names)
    ref = None
    if "reference_cost" in cell:
        ref = np.asarray(cell["reference_cost"].values, float).reshape(len(seeds), -1)[0, :n]
    with np.errstate(all="ignore"):
        st.plotly_chart(
            figures.cost_bars(names, np.nanmean(cost, 0), np.nanmean(emp, 0), ref),
            width="stretch",
            key=f"{key}_costs",
        )


def population_results(ds, cell, seed, seeds, names, cost, emp, ran, key, path) -> None:
    """A population run: the density of states over time (quantile bands per population), learning, the
    populations' costs against the closed form and a histogram of every agent's cost."""
    one = cell.sel(seed=seed) if "seed" in cell.dims else cell
    n = len(names)
    tabs = st.tabs(["Distribution of states", "Learning", "Costs", "Attention"])
    with tabs[0]:
        times = np.asarray(one["times"].values, float)
        keep = np.isfinite(times)
        parts = rollout_parts(np.asarray(one["trajectory"].values, float)[keep], n)
        if parts is not None and np.isfinite(parts[0]).any():
            st.plotly_chart(
                figures.quantile_bands(times[keep], parts[0], names, paths=parts[1]),
                width="stretch",
                key=f"{key}_bands",
            )
            st.caption(
                "Per population: the agents' states at each time, as the 5–95 % band, the median and "
                "the mean, and the paths of a fixed sample of agents (first noise replica)."
            )
        else:  # a population game without per-agent states (e.g. routing's flows): its summary as is
            st.plotly_chart(
                figures.trajectory(one["times"].values, one["trajectory"].values),
                width="stretch",
                key=f"{key}_traj",
            )
    with tabs[1]:
        hist = np.asarray(cell["history"].values, float)
        hist = hist.reshape(len(seeds), hist.shape[-2], hist.shape[-1])
        curves = {names[k]: hist[:, :, k] for k in range(min(n, hist.shape[-1]))}
        st.plotly_chart(
            figures.learning_curves(
                curves, title="Mean empathetic cost over learning (band: seeds)"
            ),
            width="stretch",
            key=f"{key}_learn",
        )
    with tabs[2]:
        cost_panel(cell, seeds, names, cost, emp, key)
        idx = state.cell_of(ds, one)
        if path is not None and idx is not None and state.has_weights(ds, idx):
            try:
                J = state.population_costs(str(path), idx)
            except ValidationError:
                st.info(
                    "This population game has no per-agent costs to draw (its agents are flows)."
                )
            else:
                st.plotly_chart(
                    figures.histogram(
                        {
                            names[k] if k < n else f"population {k + 1}": J[k]
                            for k in range(J.shape[0])
                        },
                        title=f"Every agent's cost ({J.shape[-1]:,} per population, seed {seed})",
                    ),
                    width="stretch",
                    key=f"{key}_hist",
                )
        else:
            st.info(
                "Per-agent costs need the trained policy stored with the run (runs made before it was)."
            )
    with tabs[3]:
        attention_panel(one, ran, names, key=key, path=path, ds=ds)


def attention_panel(
    one, ran: dict[str, Any], names: list[str], key: str, path=None, ds=None
) -> None:
    """Attention maps of an agent's MFTT: the trained weights stored with the run (``agents.load_weights``) on
    the tokens the policy reads, or, for a run without stored weights, seeded initial weights (said so)."""
    if ran.get("policy") != "mftt":
        st.info("Attention maps need the **mftt** policy: choose it under *Policy* and run again.")
        return
    if path is not None and ds is not None:
        cell = state.cell_of(ds, one)
        if cell is not None and state.has_weights(ds, cell):
            trained_attention(path, ds, cell, names, key)
            return
    st.warning(
        "**Initial weights**, not trained: this run stored no trained weights (runs made before trained "
        "weights were stored, or a cell that did not finish), so these maps show the MFTT at its seeded "
        "initialisation.",
        icon=":material/info:",
    )
    traj = np.asarray(one["trajectory"].values, float)
    times = np.asarray(one["times"].values, float)
    ok = np.isfinite(traj).all(-1) & np.isfinite(times)
    traj, times = traj[ok], times[ok]
    if traj.shape[0] < 2:
        st.info(
            "This scenario has no time axis (a static game): there is no token sequence to attend over."
        )
        return
    agent = st.selectbox(
        "Agent", list(range(len(names))), format_func=lambda i: names[i], key=f"{key}_agent"
    )
    seed = int(np.asarray(one["seed"].values).item()) if "seed" in one.coords else 0
    tokens = np.concatenate([traj, times[:, None]], -1)
    law = str(np.asarray(one["law"].values).item()) if "law" in one.coords else "constant"
    opts = tuple(sorted((ran.get("mftt") or {}).items()))
    maps = _attention_maps(opts, law, tokens, seed * 1000 + int(agent))
    st.plotly_chart(
        figures.heatmaps(
            maps,
            [f"layer {i + 1}" for i in range(len(maps))],
            title=f"Initial weights: attention of {names[agent]}'s MFTT over the rollout's time steps",
            xaxis="key token j (time step)",
            yaxis="query token i (time step)",
        ),
        width="stretch",
        key=f"{key}_attn",
    )
    st.caption(
        "Tokens are the rollout's mean states with their time (one per time step), read by an MFTT policy "
        "(agents.agent.MFTTPolicy) with this run's transformer options and weight law at seeded initial "
        "weights (averaged over heads)."
    )


def trained_attention(path, ds, cell: int, names: list[str], key: str) -> None:
    """The trained MFTT's attention in cell ``cell`` of the run stored at ``path``: per head, per depth time,
    on the tokens the agent reads at a chosen time of the rollout (``agents.attention_maps``)."""
    run = state.results_name(path).removesuffix(".nc")
    label = state.cell_label(ds, cell)
    st.success(
        f"**Trained weights** from run `{run}`, cell {cell} ({label}), loaded from the weights stored "
        "with the results (safetensors).",
        icon=":material/model_training:",
    )
    c1, c2, c3 = st.columns(3)
    agent = c1.selectbox(
        "Agent", list(range(len(names))), format_func=lambda i: names[i], key=f"{key}_tagent"
    )
    try:
        info = state.trained_attention(str(path), cell, int(agent), None)
    except ValidationError as exc:  # a model that reads no tokens (e.g. linear agents)
        st.info(f"No attention maps are drawn for this game's trained model ({exc}).")
        return
    k = None
    if info["times"]:
        times = info["times"]
        k = int(
            c2.select_slider(
                "Rollout time t (the tokens the policy reads then)",
                options=list(range(len(times))),
                format_func=lambda i: f"{times[i]:.3g}",
                key=f"{key}_ttime",
            )
        )
        if k:
            info = state.trained_attention(str(path), cell, int(agent), k)
    depth = list(info["depth_times"])
    d = 0
    if len(depth) > 1:
        d = int(
            c3.select_slider(
                "Depth time τ (layer)",
                options=list(range(len(depth))),
                format_func=lambda i: f"{depth[i]:.3g}",
                key=f"{key}_tdepth",
            )
        )
    maps = info["maps"][d]  # [heads, D, D]
    token = info["token"]
    when = f" at t = {info['time']:.3g}" if info["time"] is not None else ""
    st.plotly_chart(
        figures.heatmaps(
            list(maps),
            [f"head {h + 1}" for h in range(maps.shape[0])],
            title=(
                f"Trained attention of {names[agent]}'s MFTT{when}, depth time τ = {depth[d]:.3g}"
                if depth
                else f"Trained attention of {names[agent]}'s MFTT{when}"
            ),
            xaxis=f"key {token} j",
            yaxis=f"query {token} i",
        ),
        width="stretch",
        key=f"{key}_tattn",
    )
    what = {
        "particle": "the particles of the population state the agent observes (with the time appended)",
        "agent": "the agents' states as this agent observes them (with the time appended)",
        "window step": "the steps of the first market's (price, quantity) history window",
    }.get(token, "the tokens the policy reads")
    st.caption(
        f"Row i: how query {token} i weighs every key {token} j (each row sums to 1). Tokens are {what}; "
        f"{maps.shape[0]} head(s), {len(depth)} depth time(s) of the transformer."
    )


@st.cache_data(show_spinner=False, max_entries=16)
def _attention_maps(opts: tuple, law: str, traj: np.ndarray, seed: int) -> list[np.ndarray]:
    """Head-averaged attention [D, D] per layer of the agent's MFTT policy (``agents.agent.MFTTPolicy``).

    Tokens are the rollout's mean states with their time appended, as the policy reads its observations.
    """
    torch.manual_seed(seed)
    policy = MFTTPolicy(traj.shape[-1] - 1, 1, law, config=dict(opts), dtype=torch.float64)
    with torch.no_grad():
        _, info = policy.model(torch.as_tensor(traj, dtype=torch.float64), return_info=True)
    return [np.asarray(w.mean(-3).cpu().numpy()) for w in info["attention"]]
