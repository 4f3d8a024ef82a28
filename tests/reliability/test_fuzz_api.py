"""Fuzz the Python API with malformed calls: only the validation family escapes, one line naming the field.

Targets: control.make_law / solve / LQProblem / LQGame / fit, mftt.MFTTConfig (and the model for absurd
sizes), agents.empathy.preset / classify, agents.solve and agents.play. Every drawn call is invalid by
construction, so each must raise (a silent acceptance fails the test too). ~1,100 calls in total.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import control
import mftt
from agents import empathy, play, solve
from agents.agent import LAWS as AGENT_LAWS
from agents.concepts import SOLUTION_CONCEPTS
from agents.scenarios import SCENARIOS, get_scenario

from ._fuzz import (
    INF,
    NAN,
    absurd,
    bad_matrix,
    expect_family,
    not_name,
    not_nonneg_int,
    not_number,
    not_pos_float,
    not_pos_int,
    text_not_number,
)

huge = st.integers(min_value=10**10, max_value=10**18)  # beyond any memory budget
FAST = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))


def _draw_field(options: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    """(field, bad value) pairs, one field at a time."""
    return st.one_of(*[s.map(lambda v, k=k: (k, v)) for k, s in options.items()])


# ---- control.make_law --------------------------------------------------------------------------
LAW_BAD = {
    "name": not_name(control.WEIGHT_LAWS),
    "shape": st.one_of(
        st.integers(max_value=0),
        st.just(()),
        st.tuples(st.integers(-3, 0)),
        st.text(min_size=1, max_size=3),
        st.just((2.5,)),
        huge.map(lambda k: (k, k)),
    ),
    "d_state": st.one_of(not_pos_int, huge),
    "rank": st.one_of(not_pos_int, huge),
    "order": st.one_of(not_pos_int, huge),
    "T": not_pos_float,
    "bogus": st.integers(),
}


@FAST
@given(_draw_field(LAW_BAD), st.sampled_from(["feedback", "meanfield"]))
def test_make_law(bad, law):
    field, v = bad
    kw = {"name": law, "shape": (2, 3), "d_state": 2}
    opts = {}
    if field in kw:
        kw[field] = v
    else:
        opts[field] = v
    expect_family(
        lambda: control.make_law(kw["name"], kw["shape"], kw["d_state"], **opts),
        {"law", "shape", "d_state", "rank", "order", "T", f"law.{field}", field},
    )


# ---- control.solve -----------------------------------------------------------------------------
def _field(t, x):
    return -x


SOLVE_BAD = {
    "x0": st.one_of(
        not_number,
        st.just(torch.zeros(3, dtype=torch.int64)),
        st.just(np.zeros(3)),
        st.just(torch.tensor([NAN, 1.0], dtype=torch.float64)),
    ),
    "t": st.one_of(
        st.just([0.0]),
        st.just([0.0, 0.0]),
        st.just([0.0, NAN]),
        st.just([0.0, INF]),
        st.just([[0.0, 1.0]]),
        st.just([]),
        st.text(max_size=3),
    ),
    "method": not_name(control.METHODS),
    "rtol": not_pos_float,
    "atol": not_pos_float,
    "field": st.one_of(st.none(), st.integers(), st.text(max_size=3)),
}


@FAST
@given(_draw_field(SOLVE_BAD))
def test_solve(bad):
    field, v = bad
    kw = {
        "field": _field,
        "x0": torch.ones(3, dtype=torch.float64),
        "t": [0.0, 0.5, 1.0],
        "method": "rk4",
        "rtol": 1e-6,
        "atol": 1e-8,
    }
    kw[field] = v
    f, x0, t = kw.pop("field"), kw.pop("x0"), kw.pop("t")
    expect_family(lambda: control.solve(f, x0, t, **kw), {field})


def test_solve_divergence_is_reported_with_time():
    """An ODE blow-up (dx/dt = x²) raises DivergenceError with the time reached, or reports it by status."""
    x0 = torch.ones(1, dtype=torch.float64)
    t = torch.linspace(0, 2, 21, dtype=torch.float64)
    with pytest.raises(control.DivergenceError) as e:
        control.solve(lambda t, x: x**2 * 50, x0, t, method="rk4")
    assert 0.0 < e.value.t < 2.0 and "t=" in str(e.value)
    sol = control.solve(lambda t, x: x**2 * 50, x0, t, method="rk4", throw=False)
    assert sol.status != "ok" and 0.0 < float(sol.t_reached) < 2.0


# ---- control.LQProblem / LQGame ----------------------------------------------------------------
LQ_BASE = dict(A=0.5, Abar=0.1, B=1.0, Sigma=0.3, Q=1.0, Qbar=0.5, R=1.0, QT=1.0, QTbar=0.0, T=1.0)
mat_bad = st.one_of(
    st.sampled_from([NAN, INF, -INF]),
    text_not_number,
    st.just(np.ones((2, 3)).tolist()),
    st.just(np.ones((3, 3, 3)).tolist()),
    st.just([[1.0, NAN], [NAN, 1.0]]),
    st.just(None),
)
LQ_BAD = {
    **{k: mat_bad for k in LQ_BASE if k != "T"},
    "R": st.one_of(mat_bad, st.floats(max_value=0.0, allow_nan=False)),  # R must be > 0
    "T": not_pos_float,
}


@FAST
@given(_draw_field(LQ_BAD))
def test_lq_problem(bad):
    field, v = bad
    kw = {**LQ_BASE, field: v}
    # a 2-D problem for the matrix-shaped bad values, so a 2x2 value is not silently the right shape
    if isinstance(v, list) and np.ndim(v) == 2 and np.shape(v) == (2, 2):
        kw = {k: (np.eye(2) * x if k != "T" and k != field else x) for k, x in kw.items()}
        kw["B"] = np.eye(2) if field != "B" else v
    expect_family(lambda: control.LQProblem(**kw).solve(), {field, "R+Rbar", "Q", "QT"})


GAME_BASE = dict(
    a=0.3, abar=0.0, sigma=0.2, b=[1.0, 1.0], q=[1.0, 1.0], qbar=[0.0, 0.0], r=[1.0, 1.0],
    qT=[1.0, 1.0], qTbar=[0.0, 0.0], T=1.0,
)  # fmt: skip
vec_bad = st.one_of(
    st.just([1.0, 2.0, 3.0]),
    st.just([[1.0, 1.0]]),
    st.just([1.0, NAN]),
    st.just([INF, 1.0]),
    text_not_number,
    st.just(None),
)
GAME_BAD = {
    "a": not_number,
    "abar": not_number,
    "sigma": not_number,
    **{k: vec_bad for k in ("q", "qbar", "qT", "qTbar")},
    "b": st.one_of(st.just([[1.0, 1.0]]), st.just([1.0, NAN]), text_not_number),
    "r": st.one_of(
        vec_bad, st.just([-1.0, 1.0]), st.just([0.0, 1.0])
    ),  # negative / zero control cost
    "T": not_pos_float,
    "Lambda": bad_matrix(2) | st.just([[0.0, 1.0], [1.0, 1.0]]),  # λ_jj <= 0 refused by LQGame
}


@FAST
@given(_draw_field(GAME_BAD))
def test_lq_game(bad):
    field, v = bad
    kw = {**GAME_BASE, field: v}
    expect_family(lambda: control.LQGame(**kw).solve_nash(), {field, "b"})


# ---- control.fit -------------------------------------------------------------------------------
FIT_BAD = {
    "steps": not_nonneg_int,
    "lr": not_pos_float.filter(lambda v: v is not None),  # None: the optimiser's default
    "optimizer": not_name(control.OPTIMIZERS),
    "tol": st.one_of(not_number, st.floats(max_value=-1e-9, allow_nan=False)),
    "patience": not_pos_int,
    "checkpoint_every": not_pos_int,
    "loss_fn": st.one_of(st.none(), st.integers(), st.text(max_size=2)),
    "params": st.one_of(st.none(), st.just([]), st.integers(), st.just([np.ones(2)])),
}


@FAST
@given(_draw_field(FIT_BAD))
def test_fit(bad):
    field, v = bad
    p = torch.zeros(2, requires_grad=True)
    kw = {"params": [p], "loss_fn": lambda: (p**2).sum(), "steps": 3, "progress": False}
    kw[field] = v
    params, loss = kw.pop("params"), kw.pop("loss_fn")
    expect_family(lambda: control.fit(params, loss, **kw), {field, "params_or_module"})


# ---- mftt.MFTTConfig and absurd model sizes ----------------------------------------------------
from mftt.model import ATTENTION, FEEDFORWARD, NORMS  # noqa: E402

CFG_BAD = {
    **{
        k: not_pos_int
        for k in ("d_model", "heads", "d_ff", "depth", "experts", "top_k")
    },
    **{k: st.one_of(st.integers(max_value=0), st.text(min_size=1, max_size=2)) for k in ("d_k", "d_v", "d_in", "d_out")},
    "attention": not_name(ATTENTION),
    "norm": not_name(NORMS),
    "ff": not_name(FEEDFORWARD),
    "weights": not_name(control.WEIGHT_LAWS),
    "method": not_name(control.METHODS),
    "T": not_pos_float,
    "rtol": not_pos_float,
    "causal": st.one_of(st.integers(2, 5), st.text(min_size=1, max_size=2)),
    "law_options": st.one_of(st.integers(), st.just({"bogus": 1}), st.just({"rank": -1})),
}  # fmt: skip


@FAST
@given(_draw_field(CFG_BAD))
def test_mftt_config(bad):
    field, v = bad
    expect_family(lambda: mftt.MFTTConfig(**{field: v}), {field, "heads", "top_k", "law"})


@settings(max_examples=30, deadline=None)
@given(
    st.sampled_from(["d_model", "d_ff", "depth", "experts", "d_in"]),
    st.integers(min_value=10**10, max_value=10**18),
)
def test_mftt_absurd_sizes_refused_before_allocating(field, n):
    """A transformer that cannot fit in memory is refused with a one-line error, not a MemoryError."""
    kw = {field: n}
    if field == "d_model":
        kw["heads"] = 1
    if field == "experts":
        kw["ff"] = "moe"  # experts only cost memory in a mixture of experts

    def build():
        cfg = mftt.MFTTConfig(**kw)
        mftt.MeanFieldTypeTransformer(cfg)

    expect_family(build, {field, "d_model", "mftt", "budget"})


# ---- agents.empathy ----------------------------------------------------------------------------
@FAST
@given(
    _draw_field(
        {
            "name": not_name(empathy.PRESETS),
            "n": st.one_of(not_pos_int, absurd),
            "alpha": not_number,
        }
    )
)
def test_preset(bad):
    field, v = bad
    kw = {"name": "altruistic", "n": 3, "alpha": 0.5, field: v}
    expect_family(
        lambda: empathy.preset(kw["name"], kw["n"], kw["alpha"]),
        {"Lambda", "n_agents", "Lambda_alpha", "budget"},
    )


@FAST
@given(
    st.one_of(
        st.just(np.ones((2, 3)).tolist()),
        st.just([[1.0, NAN], [0.0, 1.0]]),
        st.just([[INF]]),
        st.just([[1.0, 0.0], [1.0]]),
        st.just([["a", "b"], ["c", "d"]]),
        st.just(np.ones((2, 2, 2)).tolist()),
        st.just([]),
        text_not_number,
    )
)
def test_classify(L):
    expect_family(lambda: empathy.classify(L), {"Lambda"})


# ---- agents.solve on a cheap game --------------------------------------------------------------
@pytest.fixture(scope="module")
def berge_game():
    sc = get_scenario("berge")(2)
    return sc.game(
        Lambda=np.eye(2), law="constant", policy="direct", mftt=None, seed=0, device="cpu"
    )


@FAST
@given(
    _draw_field(
        {
            "concept": not_name(SOLUTION_CONCEPTS),
            "Lambda": st.one_of(
                bad_matrix(2), not_name(empathy.PRESETS).filter(lambda s: s is not None)
            ),
            "steps": not_pos_int,
            "lr": not_pos_float,
            "bogus": st.integers(),
        }
    )
)
def test_solve_concept(berge_game, bad):
    field, v = bad
    kw = {"concept": "nash", "Lambda": None, "steps": 2, "lr": 0.1, field: v}
    concept, L = kw.pop("concept"), kw.pop("Lambda")
    expect_family(lambda: solve(berge_game, concept, L, **kw), {field, "nash."})


# ---- agents.play (the runner's cell) -----------------------------------------------------------
PLAY_BAD = {
    "scenario": not_name(SCENARIOS),
    "n_agents": st.one_of(not_pos_int.filter(lambda v: v is not None), absurd),
    "Lambda": st.one_of(bad_matrix(2), st.text(min_size=1, max_size=8).filter(lambda s: s not in empathy.PRESETS)),
    "Lambda_alpha": not_number,
    "law": not_name(AGENT_LAWS),
    "policy": not_name(["direct", "mftt", "linear"]).filter(lambda v: v is not None),
    "concept": not_name(SOLUTION_CONCEPTS).filter(lambda v: v is not None),
    "steps": not_pos_int.filter(lambda v: v is not None),
    "lr": not_pos_float.filter(lambda v: v is not None),
    "seed": not_nonneg_int,
    "params": st.one_of(
        st.integers(), st.text(min_size=1, max_size=3), st.just({"bogus": 1.0}),
        st.just({"alpha": NAN}), st.just({"c": "x"}), st.just({"window": 2.5}),
    ),
    "mftt": st.one_of(st.integers(), st.text(min_size=1, max_size=3), st.just({"bogus": 1}), st.just({"d_model": -1})),
    "device": st.one_of(st.integers(), st.sampled_from(["banana", "cuda:99", ""])),
}  # fmt: skip


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(_draw_field(PLAY_BAD))
def test_play(bad):
    field, v = bad
    kw = {"scenario": "cournot", "n_agents": 2, "law": "constant", "steps": 2, field: v}
    if field == "mftt":
        kw["policy"] = "mftt"  # the options must be read (and refused) by the policy that uses them
    scen = kw.pop("scenario")
    names = {field, "scenario", "Lambda", "mftt", "device", "budget"}
    names |= {f"{s}.n_agents" for s in SCENARIOS} | {f"{s}." for s in SCENARIOS}
    expect_family(lambda: play(scen, **kw), names)


@pytest.fixture(scope="module")
def small_model():
    return mftt.MeanFieldTypeTransformer(mftt.MFTTConfig(d_model=4, heads=2, d_ff=8, depth=1))


@FAST
@given(
    st.one_of(
        st.tuples(st.integers(1, 3), st.integers(1, 6))
        .filter(lambda s: s[1] != 4)
        .map(lambda s: torch.zeros(s)),
        st.just(torch.zeros(4)),
        st.just(torch.zeros(2, 4, dtype=torch.int64)),
        st.just(torch.zeros(2, 4, dtype=torch.bool)),
        st.just(np.zeros((2, 4))),
        text_not_number,
        st.none(),
    )
)
def test_mftt_forward_bad_input(small_model, x):
    expect_family(lambda: small_model(x), {"x"})
