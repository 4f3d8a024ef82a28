"""Explore page: pick a scenario, edit Λ, choose policy/law/concept/seeds, run it as a background job, see results.

The title and the landing text come before the heavy imports (torch, xarray through ``agents``), so the first
paint does not wait for them.
"""

from __future__ import annotations

import streamlit as st

KEY = "explore"

st.title("Explore a scenario")

if not st.query_params.get("job") and not any(
    k in st.session_state for k in (f"{KEY}:job", f"{KEY}:result")
):
    st.markdown(
        "Agents learn policies in a game whose costs are mixed by an **empathy matrix Λ** "
        "(row *j*: how agent *j* weighs everyone's cost). Here you can\n"
        "1. **explore** a game: pick a scenario and Λ, press **Run**, read costs, learning curves and "
        "the gap to the exact equilibrium;\n"
        "2. **compare weight laws** (constant → mean-field feedback) on one game over seeds (*Compare* page);\n"
        "3. **browse runs**: every run is a job saved in `results/` that you can watch, cancel, download "
        "or re-run (*Runs* page)."
    )
    st.button(
        "Try an example: lq_game, 2 agents, altruistic Λ, 1 seed, 4 steps",
        key="ex_example",
        icon=":material/play_arrow:",
        on_click=lambda: st.session_state.update({"ex_example_go": True}),
    )

from app import warm  # noqa: E402

if (
    not warm.ready()
):  # app/serve.py is importing torch & co.: never import them from two threads at once
    with st.spinner("Loading torch and the platform (first visit after the server started)…"):
        warm.wait()

import numpy as np  # noqa: E402

from app import panels, state  # noqa: E402
from control.errors import ValidationError  # noqa: E402

SCENARIOS = state.scenarios()
names = sorted(SCENARIOS)
ss = st.session_state


def _restore(settings: dict) -> None:
    """Put a job's settings back into the form (after a reload that found the job in the URL)."""
    sc = settings.get("scenario")
    if sc not in SCENARIOS:
        return
    ss["ex_scenario"] = sc
    for k, widget in (
        ("n", f"ex_n_{sc}"),
        ("policy", f"ex_policy_{sc}"),
        ("concept", f"ex_concept_{sc}"),
    ):
        if settings.get(k) is not None:
            ss[widget] = settings[k]
    for k, widget in (("law", "ex_law"), ("seeds", "ex_seeds"), ("steps", "ex_steps")):
        if settings.get(k) is not None:
            ss[widget] = settings[k]
    if settings.get("Λ matrix") is not None:
        ss["ex_Lambda"] = np.asarray(settings["Λ matrix"], dtype=float)
        if settings.get("Λ name") not in (None, "custom"):
            ss["ex_Lambda_preset"] = (
                settings["Λ name"],
                float(settings.get("α", 0.5)),
                settings["Λ matrix"],
            )
        ss["ex_Lambda_ver"] = ss.get("ex_Lambda_ver", 0) + 1


# a reload keeps ?job=<id> in the address: find the job again, and its settings
if f"{KEY}:job" not in ss and st.query_params.get("job"):
    found = state.get_job(st.query_params["job"])
    if found is not None:
        _restore(found.settings)
        state.attach(KEY, found)

if ss.pop("ex_example_go", False):
    ss.update(
        {
            "ex_scenario": "lq_game",
            "ex_n_lq_game": 2,
            "ex_seeds": 1,
            "ex_steps": 4,
            "ex_autorun": True,
        }
    )
    panels._set_lambda("ex", "altruistic", 2)

ss.setdefault("ex_scenario", "lq_game" if "lq_game" in SCENARIOS else names[0])
ss.setdefault("ex_law", "feedback")
ss.setdefault("ex_seeds", 2)

left, right = st.columns([2, 3], gap="large")

with left:
    scenario = st.selectbox("Scenario", names, key="ex_scenario", persist_state="session")
    cls = SCENARIOS[scenario]
    if cls.description:
        st.caption(cls.description)
    ss.setdefault(f"ex_n_{scenario}", int(cls.n_agents))
    policies = list(getattr(cls, "policies", ("linear",)))
    ss.setdefault(
        f"ex_policy_{scenario}",
        cls.default_policy if cls.default_policy in policies else policies[0],
    )
    concepts = state.concepts(cls.default_concept)
    ss.setdefault(f"ex_concept_{scenario}", cls.default_concept)
    ss.setdefault("ex_steps", int(min(cls.default_steps, state.APP_STEPS)))
    c1, c2 = st.columns(2)
    population = bool(getattr(cls, "population", False))
    n = int(
        c1.number_input(
            "Agents per population" if population else "Number of agents",
            1,
            state.MAX_POPULATION if population else state.MAX_AGENTS,
            key=f"ex_n_{scenario}",
            persist_state="session",
            help=(
                "Exchangeable agents sharing their population's policy: a learning step costs O(N), so "
                f"up to {state.MAX_POPULATION:,} per population (the run's budget is checked before it starts)."
                if population
                else None
            ),
        )
    )
    players = state.n_players(scenario, n)  # Λ is players × players: the agents, or the populations
    policy = c2.selectbox(
        "Policy",
        policies,
        key=f"ex_policy_{scenario}",
        persist_state="session",
        help="mftt: a mean-field-type transformer; linear: a linear state-and-mean feedback law; "
        "direct: a plain action (no weight law).",
    )
    c1, c2 = st.columns(2)
    law = None
    if policy != "direct":
        law = c1.selectbox(
            "Weight law",
            state.LAWS,
            key="ex_law",
            persist_state="session",
            help="How the policy's weights depend on time, state and the state's law (constant → meanfield).",
        )
    concept = c2.selectbox(
        "Solution concept",
        concepts,
        key=f"ex_concept_{scenario}",
        persist_state="session",
    )
    c1, c2 = st.columns(2)
    n_seeds = int(c1.number_input("Seeds", 1, 8, key="ex_seeds", persist_state="session"))
    steps = int(
        c2.number_input(
            "Learning steps",
            1,
            5000,
            key="ex_steps",
            persist_state="session",
        )
    )
    mftt_opts, mftt_error = {}, None
    if policy == "mftt":
        with st.expander("Transformer options", expanded=False):
            mftt_opts, mftt_error = panels.mftt_options_form("ex")
    run_slot = st.container()

with right:
    st.markdown("**Empathy matrix Λ**")
    if population:
        st.caption(
            f"One row per population ({players}): Λ weighs the populations' mean costs; the {n:,} agents "
            "of a population share its row."
        )
    Lambda, Lambda_error = panels.lambda_editor("ex", players)
    if Lambda is not None and not Lambda_error:
        Lambda_error = state.precheck(
            scenario, n, Lambda, law or "feedback", policy, concept, mftt_opts
        )
        if Lambda_error:
            st.error(f"{scenario} refuses this Λ with {concept}: {Lambda_error}")
    if cls.lambda_meaning:
        with st.expander("What Λ means in this scenario"):
            for k, v in cls.lambda_meaning.items():
                st.markdown(f"- **{k}**: {v}")

Lambda_name, Lambda_shown = panels.lambda_label("ex")
current = {
    "scenario": scenario,
    "n": n,
    "Λ": Lambda_shown,
    "Λ name": Lambda_name,
    "α": float(ss.get("ex_alpha", 0.5)),
    "Λ matrix": None if Lambda is None else np.asarray(Lambda, float).tolist(),
    "law": law,
    "policy": policy,
    "concept": concept,
    "steps": steps,
    "seeds": n_seeds,
    "mftt": mftt_opts if policy == "mftt" else None,
}
problem = Lambda_error or mftt_error

with run_slot:
    same = not state.can_run(KEY, current)
    run = st.button(
        "Run",
        type="primary",
        key="ex_run",
        disabled=bool(problem) or same,
        width="stretch",
    )
    if same:
        st.caption("These settings are running now (see the progress below or the **Runs** page).")
    elif problem:
        st.caption(f"Fix Λ or the options first: {problem}")

if (run or ss.pop("ex_autorun", False)) and not problem and not same:
    try:
        exp = state.make_experiment(
            scenario=scenario,
            n_agents=n,
            Lambda=Lambda,
            laws=[law or "feedback"],
            policy=policy,
            concept=concept,
            seeds=list(range(n_seeds)),
            steps=steps,
            mftt=mftt_opts if policy == "mftt" else None,
            name="explore",
            Lambda_label=Lambda_name,
        )
        job = state.submit(KEY, exp, settings=current)
        st.query_params["job"] = job.id
        st.rerun()  # redraw with the Run button disabled for these settings
    except ValidationError as exc:
        st.error(str(exc))

with run_slot:  # progress and Cancel right under the Run button, above the fold
    state.progress_fragment(KEY)

if state.error(KEY):
    st.error(f"The run failed: {state.error(KEY)}")

ds = state.result(KEY)
if ds is None:
    st.stop()

st.divider()
st.subheader("Results")
ran = state.ran_settings(KEY)
stale = panels.results_header(ran, current)
if state.note(KEY):
    st.info(state.note(KEY))
with st.container(key="stale_results" if stale else "results"):
    if st.session_state.get(f"{KEY}:out"):
        st.caption(
            f"Saved as `{state.results_name(ss[f'{KEY}:out'])}` in the results folder "
            "(job and manifest on the **Runs** page)."
        )
    panels.show_results(ds, ran, path=st.session_state.get(f"{KEY}:out"))
