"""Empathy matrix Λ: presets, classification by docs/theory.md#empathy, validation, L^Λ = Λ L."""

import numpy as np
import pytest
import torch

from agents import empathy
from agents.concepts import solve
from agents.game import StaticGame
from control.errors import ValidationError


def test_presets_values():
    n = 4
    assert np.array_equal(empathy.preset("selfish", n), np.eye(n))
    assert np.array_equal(empathy.preset("team", n), np.ones((n, n)))
    B = empathy.preset("berge", n)
    assert np.allclose(np.diag(B), 0) and np.allclose(B.sum(1), 1)
    A = empathy.preset("altruistic", n, alpha=0.3)
    assert np.allclose(np.diag(A), 1) and np.allclose(A[0, 1:], 0.3)
    S = empathy.preset("spiteful", n, alpha=0.3)
    assert np.allclose(S[0, 1:], -0.3)
    assert np.all(np.diag(empathy.preset("self_abnegating", n, alpha=0.5)) == -0.5)
    assert np.allclose(empathy.preset("selfless", 3), np.ones((3, 3)) - np.eye(3))
    assert set(empathy.PRESETS) == {
        "selfish", "altruistic", "spiteful", "team", "berge", "zero_sum", "coopetitive",
        "self_abnegating", "selfless",
    }  # fmt: skip


def test_zero_sum_costs_sum_to_zero_and_team_is_social_cost():
    L = np.random.default_rng(1).normal(size=5)
    assert abs(empathy.empathetic_costs(empathy.preset("zero_sum", 5), L).sum()) < 1e-12
    assert np.allclose(empathy.empathetic_costs(empathy.preset("team", 5), L), L.sum())
    # the two-player zero-sum preset is the game of payoff differences (docs/theory.md#patterns)
    Z = empathy.preset("zero_sum", 2)
    assert np.allclose(empathy.empathetic_costs(Z, [3.0, 1.0]), [2.0, -2.0])


def test_coopetitive_signs_by_group():
    C = empathy.preset("coopetitive", 4, alpha=0.4, groups=[0, 0, 1, 1], beta=0.7)
    assert C[0, 1] == 0.4 and C[2, 3] == 0.4 and C[0, 2] == -0.7 and C[3, 1] == -0.7
    assert np.all(np.diag(C) == 1)


def test_empathetic_costs_torch_matches_numpy():
    Lam = empathy.preset("coopetitive", 3, alpha=0.5)
    L = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    assert np.allclose(empathy.empathetic_costs(Lam, L).numpy(), Lam @ L.numpy())


def test_classify_follows_the_sign_table():
    n = 3
    assert empathy.classify(empathy.preset("selfish", n)) == ["selfish"] * n
    assert empathy.classify(empathy.preset("team", n)) == ["partially selfish, altruistic"] * n
    assert empathy.classify(empathy.preset("berge", n)) == ["selfless, altruistic"] * n
    assert empathy.classify(empathy.preset("spiteful", n))[0] == "partially selfish, spiteful"
    assert empathy.classify(empathy.preset("self_abnegating", n))[1].startswith("self-abnegating")
    lab = empathy.classify(
        np.array([[0.0, -1.0, 1.0], [0, 1, 0], [0, 0, 1]])
    )  # a co-opetitive row (docs/theory.md#patterns)
    assert lab[0] == "selfless, coopetitive (altruistic to [2], spiteful to [1])"
    assert lab[1:] == ["selfish", "selfish"]


@pytest.mark.parametrize(
    "bad, field",
    [
        (np.ones((2, 3)), "Lambda"),
        (np.ones((3, 3)), "Lambda"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "Lambda"),
        ("nonsense", "Lambda"),
    ],
)
def test_bad_Lambda_is_one_line_naming_the_field(bad, field):
    with pytest.raises(ValidationError) as e:
        empathy.as_Lambda(bad, 2)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(field)
    if isinstance(bad, str):
        assert "selfish" in msg and "berge" in msg  # lists the allowed presets


def _convex_game():
    # L_i = (u_i - 1)^2 + 0.1 u_i u_j: convex own cost in an unbounded action
    def cost(u):
        x = u[:, 0]
        return (x - 1) ** 2 + 0.1 * x * x.flip(0)

    return StaticGame(cost, 2, convex_own_cost=True)


@pytest.mark.parametrize("preset", ["berge", "selfless", "self_abnegating"])
def test_nash_refuses_nonpositive_self_regard_with_the_reason(preset):
    with pytest.raises(ValidationError) as e:
        solve(_convex_game(), "nash", preset)
    msg = str(e.value)
    assert msg.startswith("Lambda[0,0]") and "convex own cost" in msg and "\n" not in msg


def test_stackelberg_refuses_selfless_follower():
    Lam = np.array([[1.0, 0.0], [1.0, 0.0]])  # follower (agent 1) selfless
    with pytest.raises(ValidationError, match=r"Lambda\[1,1\].*best response"):
        solve(_convex_game(), "stackelberg", Lam)
