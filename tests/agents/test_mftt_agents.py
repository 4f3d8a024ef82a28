"""MFTT agents: batched evaluation equals per-agent models; constant vs feedback weights measured in games."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import agents
from agents import MFTTPolicy, play
from agents.agent import PolicyStack
from agents.status import PLAYED

D = torch.float64


@pytest.mark.parametrize("law", ["constant", "feedback"])
def test_batched_mftt_equals_each_agents_model(law):
    torch.manual_seed(1)
    pols = [MFTTPolicy(2, 2, law, dtype=D) for _ in range(3)]
    stack = PolicyStack(pols)
    assert len(stack.groups) == 1
    obs = torch.randn(3, 4, 2, dtype=D)
    t = torch.tensor(0.3, dtype=D)
    out = stack.run(lambda: stack(t, obs))
    ref = torch.stack([p(t, obs[j]) for j, p in enumerate(pols)])
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    w = torch.randn_like(out)
    leaf = next(pols[1].parameters())
    g1 = torch.autograd.grad((out * w).sum(), [leaf])[0]
    g2 = torch.autograd.grad((ref * w).sum(), [leaf])[0]
    torch.testing.assert_close(g1, g2)
    # permutation equivariance over tokens: attention is the mean-field interaction
    perm = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(pols[0](t, obs[0][perm]), pols[0](t, obs[0])[perm])


def test_mftt_reads_other_agents_as_tokens_in_consensus():
    """Agent j's action depends on the other agents' states (the tokens), not only on its own."""
    sc = agents.get_scenario("consensus")(3)
    game = sc.game(Lambda=np.eye(3), law="constant", policy="mftt", seed=0)
    x = game.x0.clone()
    u0 = game.agents[0].policy(0.0, game.observe(0.0, x)[0])[0]
    x[2] += 1.0
    u1 = game.agents[0].policy(0.0, game.observe(0.0, x)[0])[0]
    assert float((u0 - u1).abs().max().detach()) > 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("scenario,steps", [("consensus", 6), ("cournot", None)])
def test_constant_vs_feedback_weights_are_run_and_reported(scenario, steps):
    """Measured, not asserted as a win: both laws run, report costs/exploitability/parameter counts."""
    rows = {}
    for law in ("constant", "feedback"):
        o = play(scenario, policy="mftt", law=law, steps=steps, seed=0)
        assert o.status in PLAYED, o.message
        assert np.isfinite(o.costs).all() and o.exploitability >= 0
        rows[law] = o
        print(
            f"{scenario} mftt/{law}: costs {np.round(o.costs, 4)} ref {o.reference_costs} "
            f"expl {o.exploitability:.3e} n_params {o.n_params.tolist()} wall {o.wall_time:.1f}s"
        )
    assert (rows["feedback"].n_params > rows["constant"].n_params).all()
