"""Compare page: constant, time, feedback and meanfield weights side by side on one scenario, over seeds."""

from __future__ import annotations

import numpy as np
import streamlit as st

from agents import empathy
from agents.status import PLAYED
from app import figures, state
from control.errors import ValidationError

KEY = "compare"

st.title("Compare weight laws")
st.caption(
    "The same game learned with constant, open-loop (time), state-feedback and mean-field-feedback weights: "
    "parameter counts, a ranking with 95% confidence over seeds, and the learning curves."
)


SCENARIOS = state.scenarios()

c1, c2, c3 = st.columns(3)
scenario = c1.selectbox("Scenario", sorted(SCENARIOS), key="cmp_scenario")
cls = SCENARIOS[scenario]
c1.caption(cls.description)
n = int(c2.number_input("Number of agents", 1, 16, int(cls.n_agents), key=f"cmp_n_{scenario}"))
presets = list(empathy.PRESETS)
preset = c3.selectbox("Λ preset", presets, index=0, key="cmp_preset")
alpha = c3.slider("strength α", -1.0, 1.0, 0.5, 0.05, key="cmp_alpha")
policies = list(getattr(cls, "policies", ("linear",)))
policy = c2.selectbox(
    "Policy",
    policies,
    index=policies.index(cls.default_policy) if cls.default_policy in policies else 0,
    key=f"cmp_policy_{scenario}",
)
laws = st.multiselect("Weight laws", list(state.LAWS), default=list(state.LAWS), key="cmp_laws")
d1, d2 = st.columns(2)
n_seeds = int(d1.number_input("Seeds", 1, 10, 3, key="cmp_seeds"))
steps = int(
    d2.number_input(
        "Learning steps", 1, 5000, int(min(cls.default_steps, state.APP_STEPS)), key="cmp_steps"
    )
)

if st.button("Run comparison", type="primary", key="cmp_run", disabled=not state.can_run(KEY)):
    try:
        if not laws:
            raise ValidationError("laws", f"at least one of {', '.join(state.LAWS)}", "none")
        Lambda = empathy.preset(preset, n, alpha)
        exp = state.make_experiment(
            scenario=scenario,
            n_agents=n,
            Lambda=Lambda,
            laws=laws,
            policy=policy,
            concept=None,
            seeds=list(range(n_seeds)),
            steps=steps,
            name="compare",
            Lambda_label=preset,
        )
        state.submit(KEY, exp)
    except ValidationError as exc:
        st.error(str(exc))

state.progress_fragment(KEY)
if state.error(KEY):
    st.error(f"The run failed: {state.error(KEY)}")

ds = state.result(KEY)
if ds is None:
    if state.handle(KEY) is None:
        st.info(
            "**Nothing compared yet.** Choose a scenario and a Λ preset, keep all four weight laws, "
            "and press **Run comparison**: every law is learned on every seed in the background."
        )
    st.stop()

st.divider()
st.subheader("Results")
cell = ds.isel({d: 0 for d in state.grid_dims(ds) if d not in ("law", "seed")})
status = np.asarray(cell["status"].values).astype(str).ravel()
if not np.isin(status, PLAYED).any():
    msgs = {str(m) for m in np.asarray(cell["message"].values).ravel() if str(m)}
    st.error("No cell of this comparison finished: " + "; ".join(sorted(msgs)))
    st.stop()
if (status != "ok").any():
    st.warning(
        f"{int((status != 'ok').sum())} of {status.size} cells are not certified equilibria "
        f"({', '.join(f'{int((status == k).sum())} {k}' for k in dict.fromkeys(status) if k != 'ok')})."
    )
table = state.ranked_table(cell)
st.markdown(
    "**Ranking** (lower total material cost is better; ± is the 95% confidence half-width over seeds)"
)
st.dataframe(table, hide_index=True, width="stretch", key="cmp_table")
left, right = st.columns(2)
with left:
    st.plotly_chart(
        figures.bars(
            list(table["law"]),
            table["total cost"].to_numpy(),
            table["± CI95"].to_numpy(),
            title="Total material cost (mean ± 95% CI)",
            yaxis="cost",
        ),
        width="stretch",
        key="cmp_bars",
    )
with right:
    st.plotly_chart(
        figures.bars(
            list(table["law"]),
            table["parameters / agent"].to_numpy(),
            title="Trainable parameters per agent",
            yaxis="parameters",
        ),
        width="stretch",
        key="cmp_params",
    )
curves = {}
for law in [str(v) for v in cell["law"].values]:
    h = np.asarray(cell["history"].sel(law=law).values, float)  # [seed, iteration, agent]
    h = h.reshape(-1, h.shape[-2], h.shape[-1])
    curves[law] = np.where(np.isnan(h).all(-1), np.nan, np.nansum(h, -1))
st.plotly_chart(
    figures.learning_curves(curves, title="Total empathetic cost over learning (band: seeds)"),
    width="stretch",
    key="cmp_curves",
)
