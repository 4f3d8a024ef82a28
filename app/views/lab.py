"""Transformer lab: tokens moving over depth (docs/theory.md#sphere), an MFTT's own token flow, consistency residuals, norm maps."""

from __future__ import annotations

import numpy as np
import streamlit as st

import mftt
from app import figures, lab, panels, state
from control.errors import ValidationError

st.title("Transformer lab")
st.caption(
    "Small, instant experiments with the transformer itself: depth is time, tokens are particles. "
    "Change a control and the figure updates."
)


tab_sphere, tab_mftt, tab_trained, tab_loop, tab_norm = st.tabs(
    [
        "Tokens on the sphere",
        "MFTT over depth",
        "Trained attention",
        "Consistency loop",
        "Norm maps",
    ]
)

with tab_sphere:
    st.markdown(
        r"Self-attention dynamics on the sphere (docs/theory.md#sphere): tokens $x_i \in S^{d-1}$ move by"
    )
    st.latex(
        r"\dot x_i = P^{\perp}_{x_i}\Big(\sum_j w_{ij}\, x_j\Big), \qquad "
        r"w_{ij} = \frac{e^{\beta\langle x_i, x_j\rangle}}{\sum_k e^{\beta\langle x_i, x_k\rangle}}"
        r"\ \text{(SA)} \quad\text{or}\quad w_{ij} = \frac{e^{\beta\langle x_i, x_j\rangle}}{n}"
        r"\ \text{(USA)}"
    )
    st.markdown(
        r"For $d \ge 3$ almost every start collapses to one cluster; the energy "
        r"$E_\beta = \frac{1}{2\beta n^2}\sum_{i,j} e^{\beta\langle x_i, x_j\rangle}$ never decreases."
    )
    c = st.columns(5)
    d = int(c[0].radio("dimension d", [2, 3], index=1, key="lab_d", horizontal=True))
    n_tok = int(c[1].number_input("tokens n", 2, 64, 16, key="lab_n", persist_state="session"))
    beta = float(
        c[2].number_input("β", 0.0, 20.0, 1.0, 0.5, key="lab_beta", persist_state="session")
    )
    variant = c[3].selectbox("variant", ["SA", "USA"], key="lab_variant", persist_state="session")
    T = float(
        c[4].number_input("depth T", 0.5, 40.0, 10.0, 0.5, key="lab_T", persist_state="session")
    )
    seed = int(st.number_input("seed", 0, 10_000, 0, key="lab_seed", persist_state="session"))
    try:
        traj, energy, spread = lab.sphere_flow(d, n_tok, beta, variant, T, seed)
        st.plotly_chart(
            figures.tokens(
                traj, title=f"{n_tok} tokens on S^{d - 1} over depth ({variant}, β={beta:g})"
            ),
            width="stretch",
            key="lab_sphere_fig",
        )
        times = np.linspace(0, T, traj.shape[0])
        left, right = st.columns(2)
        left.plotly_chart(
            figures.trajectory(
                times,
                energy[:, None],
                ["E_β"],
                title="Energy E_β (non-decreasing)",
                xaxis="depth t",
                yaxis="energy E_β",
            ),
            width="stretch",
            key="lab_energy",
        )
        right.plotly_chart(
            figures.trajectory(
                times,
                spread[:, None],
                ["min ⟨xᵢ,xⱼ⟩"],
                title="Smallest pairwise inner product (→ 1: one cluster)",
                xaxis="depth t",
                yaxis="min ⟨xᵢ, xⱼ⟩",
            ),
            width="stretch",
            key="lab_spread",
        )
    except ValidationError as exc:
        st.error(str(exc))

with tab_mftt:
    st.markdown(
        "A mean-field-type transformer with d_model = 2 or 3 and one head, so its tokens can be drawn: "
        "each layer moves every token by the attention and feed-forward increments of its weight law."
    )
    c = st.columns(4)
    kernels = list(mftt.ATTENTION)
    kernel = c[0].selectbox("attention kernel", kernels, key="lab_kernel", persist_state="session")
    norm = c[1].selectbox(
        "norm", list(mftt.NORMS), index=list(mftt.NORMS).index("soft"), key="lab_norm"
    )
    law = c[2].selectbox("weight law", list(state.LAWS), key="lab_law", persist_state="session")
    depth = int(
        c[3].number_input("depth (layers)", 1, 64, 12, key="lab_depth", persist_state="session")
    )
    c = st.columns(4)
    dm = int(c[0].radio("d_model", [2, 3], index=0, key="lab_dm", horizontal=True))
    D = int(c[1].number_input("tokens D", 2, 64, 12, key="lab_D", persist_state="session"))
    T_m = float(
        c[2].number_input("depth T", 0.5, 40.0, 6.0, 0.5, key="lab_Tm", persist_state="session")
    )
    continuous = c[3].toggle("continuous depth (ODE)", key="lab_cont", persist_state="session")
    try:
        opts = dict(
            d_model=dm,
            heads=1,
            d_ff=8,
            depth=depth,
            attention=kernel,
            norm=norm,
            weights=law,
            continuous=continuous,
            T=T_m,
        )
        traj, n_params = lab.mftt_tokens(tuple(sorted(opts.items())), D, seed)
        st.plotly_chart(
            figures.tokens(
                traj,
                title=f"{D} tokens through the MFTT ({kernel}, {norm}, {law} weights)",
                sphere=False,
            ),
            width="stretch",
            key="lab_mftt_fig",
        )
        st.caption(f"{n_params} trainable parameters (seeded initial weights).")
    except ValidationError as exc:
        st.error(str(exc))

with tab_trained:
    st.markdown(
        "The attention of a **trained** MFTT: the weights a run learned (stored beside its results) on "
        "the tokens the agent reads while it plays, per head and per depth time."
    )
    trained = [p for p in state.list_results() if state.has_weights_dir(p)]
    if not trained:
        st.info(
            "No run with trained weights yet: run a scenario with the **mftt** policy on the **Explore** "
            "page (e.g. cournot or lq_game), then come back."
        )
    else:
        path = st.selectbox("Run", trained, format_func=state.results_name, key="lab_trained_run")
        try:
            ds = state.load_path(path)
        except ValidationError as exc:
            st.error(str(exc))
        else:
            cells = state.weights_cells(ds)
            if not cells:
                st.info(
                    "This run stored no trained weights (no cell with an MFTT policy finished)."
                )
            else:
                cell = st.selectbox(
                    "Cell",
                    cells,
                    format_func=lambda c: f"{c}: {state.cell_label(ds, c)}",
                    key="lab_trained_cell",
                )
                names = state.cell_agent_names(ds, cell) or state.agent_names(ds.sizes["agent"])
                panels.trained_attention(path, ds, cell, names, key="lab_trained")

with tab_loop:
    lab.consistency_section(seed)

with tab_norm:
    st.markdown(
        r"Each normalisation of docs/theory.md#norms drawn as a map of the plane: grid lines of $\mathbb{R}^2$ "
        r"(left) and their images (right). The ball norms (rmse, ermse, soft $= x/(1+\lVert x\rVert)$, capsule) "
        r"map $\mathbb{R}^2$ into the open unit ball."
    )
    ball = list(getattr(mftt, "BALL_NORMS", ())) or list(mftt.NORMS)
    chosen = st.multiselect(
        "norms", list(mftt.NORMS), default=ball[:2], key="lab_norms", persist_state="session"
    )
    extent = float(
        st.slider("grid extent", 0.5, 10.0, 3.0, 0.5, key="lab_extent", persist_state="session")
    )
    if not chosen:
        st.info("Pick at least one norm to draw its map.")
    else:
        try:
            grid, images = lab.norm_maps(tuple(chosen), extent)
            st.plotly_chart(figures.norm_ball(grid, images), width="stretch", key="lab_norm_fig")
        except ValidationError as exc:
            st.error(str(exc))
