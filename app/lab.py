"""Cached calls into mftt's public API for the Transformer lab page (small, sub-second computations)."""

from __future__ import annotations

import numpy as np
import streamlit as st

from app import figures
from control.errors import ValidationError


def _torch():
    import torch

    torch.set_num_threads(1)
    return torch


@st.cache_data(show_spinner="Integrating the token dynamics…", max_entries=32)
def sphere_flow(d: int, n: int, beta: float, variant: str, T: float, seed: int):
    """Tokens of ``mftt.dynamics.self_attention_flow`` from seeded Gaussian starts, their energy and min overlap."""
    torch = _torch()
    from mftt import dynamics

    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, d, generator=g, dtype=torch.float64)
    t = torch.linspace(0.0, T, 61, dtype=torch.float64)
    xs = dynamics.self_attention_flow(x0, t, beta=beta, variant=variant, rtol=1e-6, atol=1e-8)
    E = dynamics.energy(xs, beta)
    G = dynamics.pairwise_inner(xs)
    return xs.numpy(), E.numpy(), G.amin((-1, -2)).numpy()


@st.cache_data(show_spinner="Running the transformer…", max_entries=32)
def mftt_tokens(opts: tuple, D: int, seed: int):
    """Token trajectory over depth of a seeded ``mftt.MeanFieldTypeTransformer`` and its parameter count."""
    torch = _torch()
    import mftt

    cfg = mftt.MFTTConfig(**dict(opts))
    torch.manual_seed(seed)
    model = mftt.MeanFieldTypeTransformer(cfg, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(D, cfg.d_model, generator=g, dtype=torch.float64)
    with torch.no_grad():
        _, info = model(x, return_info=True)
    return info["trajectory"].numpy(), int(model.n_params)


@st.cache_data(show_spinner=False, max_entries=32)
def norm_maps(names: tuple[str, ...], extent: float, lines: int = 9, points: int = 160):
    """Grid lines of [-extent, extent]² and their images under each ``mftt.make_norm(name, 2)``."""
    torch = _torch()
    import mftt

    s = np.linspace(-extent, extent, points)
    grid = []
    for v in np.linspace(-extent, extent, lines):
        grid.append(np.stack([s, np.full_like(s, v)], -1))
        grid.append(np.stack([np.full_like(s, v), s], -1))
    images = {}
    for name in names:
        norm = mftt.make_norm(name, 2, dtype=torch.float64)
        with torch.no_grad():
            images[name] = [norm(torch.as_tensor(c, dtype=torch.float64)).numpy() for c in grid]
    return grid, images


def consistency_section(seed: int) -> None:
    """Residuals of the output-fed-back-as-prompt loop (``mftt.consistency``) for a few relaxations γ."""
    st.markdown(
        r"The transformer's output is fed back as its prompt (docs/theory.md#fixed-points): "
        r"$p \leftarrow p + \gamma\,(T(p) - p)$ with $T = S \circ \mathrm{MFTT}$ "
        r"($\gamma = 1$: the plain loop; $\gamma < 1$: Krasnoselskii–Mann averaging). A fixed point is a "
        r"self-consistent answer; the residual $\lVert T(p) - p \rVert$ shows whether and how fast it is "
        r"reached, $\mathrm{Lip}(T) < 1$ that it forgets $p_0$."
    )
    import mftt

    c = st.columns(5)
    summarisers = ["none", *getattr(mftt, "BALL_NORMS", ())]
    summ = c[4].selectbox(
        "summariser S",
        summarisers,
        index=summarisers.index("soft") if "soft" in summarisers else 0,
        key="lab_cons_S",
        help="Applied to the output before it is fed back: T = S∘MFTT. A ball norm keeps prompts bounded.",
    )
    steps = int(c[0].number_input("iterations", 5, 400, 60, key="lab_cons_steps"))
    gammas = c[1].multiselect(
        "relaxation γ", [1.0, 0.75, 0.5, 0.25], default=[1.0, 0.5], key="lab_cons_gamma"
    )
    T = float(c[2].slider("transformer depth T", 0.1, 4.0, 1.0, 0.1, key="lab_cons_T"))
    D = int(c[3].number_input("prompt tokens", 2, 32, 6, key="lab_cons_D"))
    if not gammas:
        st.info("Pick at least one relaxation γ.")
        return
    try:
        series, table = consistency_residuals(
            tuple(sorted(gammas, reverse=True)), steps, T, D, seed, summ
        )
    except ValidationError as exc:
        st.error(str(exc))
        return
    st.plotly_chart(figures.residuals(series), width="stretch", key="lab_cons_fig")
    st.dataframe(table, hide_index=True, width="stretch")


@st.cache_data(show_spinner="Iterating the consistency loop…", max_entries=32)
def consistency_residuals(
    gammas: tuple[float, ...], steps: int, T: float, D: int, seed: int, summariser: str = "none"
):
    """``mftt.consistency.consistency_loop`` of a seeded MFTT (d_model = 4) and summariser, for each γ."""
    torch = _torch()
    import mftt
    from mftt.consistency import consistency_loop

    cfg = mftt.MFTTConfig(d_model=4, heads=1, d_ff=8, depth=2, norm="soft", T=T)
    torch.manual_seed(seed)
    model = mftt.MeanFieldTypeTransformer(cfg, dtype=torch.float64)
    p0 = torch.randn(D, 4, generator=torch.Generator().manual_seed(seed + 7), dtype=torch.float64)
    S = None if summariser == "none" else mftt.make_norm(summariser, 4, dtype=torch.float64)
    series, rows = {}, []
    for g in gammas:
        r = consistency_loop(model, S, p0, steps=steps, gamma=g, tol=1e-10)
        series[f"γ = {g:g}"] = np.asarray(r.residuals, float)
        rows.append(
            {
                "γ": g,
                "converged": r.converged,
                "iterations": r.steps,
                "last residual": float(r.residuals[-1]) if r.residuals else float("nan"),
                "Lip(T) at the end": r.lipschitz,
                "‖p_K − p₀‖": r.distance_to_prompt[-1],
            }
        )
    return series, rows
