"""Compare page: constant, time, feedback and meanfield weights on one scenario, over common seeds.

The laws are judged by the comparison protocol of ``agents.experiments.comparison``: certified exploitability relative to the
cost scale (never the bare total cost, which rewards profiles that are not equilibria), a 95 % Student-t
interval per law, paired tests against ``constant`` on common seeds and one conclusion sentence per law. Nothing
is ranked: a difference is stated only when both paired tests find it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import streamlit as st

from agents import empathy
from agents.experiments.comparison import LAW_FREE_POLICIES, from_cells
from agents.status import PLAYED
from app import figures, state
from control.errors import ValidationError
from mftt.stats import MIN_SEEDS_FOR_TEST, format_p

KEY = "compare"
INIT_NOISE = 0.1  # std of the seeded perturbation of initial parameters (agents.play's init_noise)

st.title("Compare weight laws")
st.caption(
    "The same game learned with constant, open-loop (time), state-feedback and mean-field-feedback weights on "
    "common seeds: certified exploitability per law (mean ± 95 % t-interval), the gap to the closed-form "
    "reference, paired tests against constant and one conclusion per law. Laws are never ranked on ties."
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
if policy in LAW_FREE_POLICIES:
    st.warning(
        f"With **{policy}** policies the weight law has no effect (each agent's action is its own parameter): "
        "the laws would be the same player, so this page will not compare or rank them."
    )
laws = st.multiselect("Weight laws", list(state.LAWS), default=list(state.LAWS), key="cmp_laws")
d1, d2 = st.columns(2)
n_seeds = int(
    d1.number_input(
        "Seeds (common to every law)",
        1,
        20,
        MIN_SEEDS_FOR_TEST,
        key="cmp_seeds",
        help=f"A paired test needs at least {MIN_SEEDS_FOR_TEST} seeds to reach 5 % significance.",
    )
)
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
        # every seed perturbs every law's initial parameters (linear gains otherwise start at 0 on all seeds)
        exp = exp.with_values({"training.init_noise": INIT_NOISE})
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
seeds = [int(v) for v in cell["seed"].values] if "seed" in cell.dims else [0]
st.markdown(f"**Seeds** (common to every law): {', '.join(map(str, seeds))}")
res = from_cells(cell, scenario)
if isinstance(res, str):
    st.warning(res[0].upper() + res[1:] + ".")
    st.stop()
ref = np.asarray(cell["reference_cost"].values, float) if "reference_cost" in cell else None
if ref is not None and np.isfinite(ref).any():
    per_agent = np.nanmean(ref.reshape(-1, ref.shape[-1]), 0)
    st.markdown(
        "**Reference**: the closed-form equilibrium, material costs "
        + ", ".join(f"{v:.4g}" for v in per_agent)
        + f" (total {np.nansum(per_agent):.4g}); the gap below is each law's total cost against it."
    )
else:
    st.markdown(
        "**Reference**: none in closed form for this scenario; exploitability is the certificate."
    )
rows = []
for law in res.laws:
    iv = res.intervals[law]
    rows.append(
        {
            "law": law,
            "exploitability (%)": iv.mean,
            "± 95 % t": iv.half if math.isfinite(iv.half) else np.nan,
            "gap to reference (%)": res.mean_of(law, "gap"),
            "parameters / agent": res.mean_of(law, "n_params"),
            "field evaluations": res.mean_of(law, "compute"),
            "statuses": ", ".join(f"{k} {v}" for k, v in res.statuses(law).items()),
        }
    )
table = pd.DataFrame(rows)
st.markdown(
    "**Per law** (certified exploitability = NashConv / cost scale, lower is better; laws in their own order, "
    "not ranked)"
)
st.dataframe(table, hide_index=True, width="stretch", key="cmp_table")
same = [law for law in res.laws if res.deterministic(law)]
if same:
    st.info(
        f"{', '.join(same)}: the same exploitability on every seed — the seed does not reach "
        f"{'this law' if len(same) == 1 else 'these laws'} here (deterministic initialisation and data), "
        "so their seeds are repeats, not independent samples."
    )
if res.comparisons:
    st.markdown("**Paired against constant** (improvement = constant − law on common seeds)")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "law": c.law,
                    "improvement (%)": c.diff.mean,
                    "± 95 % t": c.diff.half,
                    "p (t, Holm)": format_p(c.p_t_adj),
                    "p (Wilcoxon)": format_p(c.p_wilcoxon),
                    "d_z": c.d_z,
                    "seeds": c.n,
                }
                for c in res.comparisons
            ]
        ),
        hide_index=True,
        width="stretch",
        key="cmp_paired",
    )
st.markdown("**Conclusions**")
for line in res.conclusions():
    st.markdown(f"- {line}")
st.caption("Budget: " + res.budget_line())
left, right = st.columns(2)
with left:
    st.plotly_chart(
        figures.bars(
            list(table["law"]),
            table["exploitability (%)"].to_numpy(),
            np.nan_to_num(table["± 95 % t"].to_numpy()),
            title="Certified exploitability (mean ± 95 % t-interval)",
            yaxis="NashConv / cost scale (%)",
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
