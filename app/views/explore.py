"""Explore page: pick a scenario, edit Λ, choose policy/law/concept/seeds, run it in the background, see results."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import panels, state
from control.errors import ValidationError

KEY = "explore"

st.title("Explore a scenario")
st.caption(
    "Agents play a game whose costs are mixed by the empathy matrix Λ; each learns its policy "
    "(a mean-field-type transformer, a linear feedback law or a direct action) until no one gains by deviating."
)


SCENARIOS = state.scenarios()

names = sorted(SCENARIOS)
left, right = st.columns([2, 3], gap="large")

with left:
    st.subheader("Game")
    scenario = st.selectbox("Scenario", names, key="ex_scenario")
    cls = SCENARIOS[scenario]
    st.markdown(f"*{cls.description}*" if cls.description else "")
    n = int(st.number_input("Number of agents", 1, 16, int(cls.n_agents), key=f"ex_n_{scenario}"))
    policies = list(getattr(cls, "policies", ("linear",)))
    policy = st.selectbox(
        "Policy",
        policies,
        index=policies.index(cls.default_policy) if cls.default_policy in policies else 0,
        key=f"ex_policy_{scenario}",
        help="mftt: a mean-field-type transformer; linear: a linear state-and-mean feedback law; direct: a plain action.",
    )
    law = st.selectbox(
        "Weight law",
        state.LAWS,
        index=state.LAWS.index("feedback"),
        key="ex_law",
        help="How the policy's weights depend on time, state and the state's law (constant → meanfield).",
    )
    concepts = state.concepts(cls.default_concept)
    concept = st.selectbox(
        "Solution concept",
        concepts,
        index=concepts.index(cls.default_concept) if cls.default_concept in concepts else 0,
        key=f"ex_concept_{scenario}",
    )
    c1, c2 = st.columns(2)
    n_seeds = int(c1.number_input("Seeds", 1, 8, 2, key="ex_seeds"))
    steps = int(
        c2.number_input(
            "Learning steps", 1, 5000, int(min(cls.default_steps, state.APP_STEPS)), key="ex_steps"
        )
    )
    with st.expander("Transformer options (policy = mftt)", expanded=policy == "mftt"):
        mftt_opts, mftt_error = panels.mftt_options_form("ex")

with right:
    st.subheader("Empathy matrix Λ")
    Lambda, Lambda_error = panels.lambda_editor("ex", n)
    if cls.lambda_meaning:
        with st.expander("What Λ means in this scenario"):
            for k, v in cls.lambda_meaning.items():
                st.markdown(f"- **{k}**: {v}")

run = st.button("Run", type="primary", key="ex_run", disabled=not state.can_run(KEY))
if run:
    problem = Lambda_error or (mftt_error if policy == "mftt" else None)
    if problem:
        st.error(f"Cannot run: {problem}")
    else:
        try:
            exp = state.make_experiment(
                scenario=scenario,
                n_agents=n,
                Lambda=Lambda,
                laws=[law],
                policy=policy,
                concept=concept,
                seeds=list(range(n_seeds)),
                steps=steps,
                mftt=mftt_opts if policy == "mftt" else None,
                name="explore",
            )
            state.submit(KEY, exp)
            st.session_state["ex_ran"] = dict(
                scenario=scenario, policy=policy, mftt=mftt_opts, Lambda=Lambda
            )
        except ValidationError as exc:
            st.error(str(exc))

state.progress_fragment(KEY)

if state.error(KEY):
    st.error(f"The run failed: {state.error(KEY)}")

ds = state.result(KEY)
if ds is None:
    if state.handle(KEY) is None:
        st.info(
            "**First time here?** Pick a scenario, choose how the agents care about each other "
            "with a Λ preset (or edit the grid), and press **Run**. Learning runs in the background; "
            "the results (state trajectories, learning curves, costs, attention maps) appear below."
        )
    st.stop()

st.divider()
st.subheader("Results")
if st.session_state.get(f"{KEY}:out"):
    name = Path(st.session_state[f"{KEY}:out"]).name
    st.caption(f"Saved as `{name}` in the results folder: open it on the **Runs** page.")
panels.show_results(ds, st.session_state.get("ex_ran", {}))
