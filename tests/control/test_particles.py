"""The particle LQ mean-field-type problem under weight laws (docs/theory.md#lq-control, docs/theory.md#mean-field): exactness and learning."""

import numpy as np
import pytest
import torch

from control import LQProblem, ParticleLQ, ValidationError

PROB = dict(A=0.5, Abar=0.3, B=1.0, Sigma=0.5, Q=1.0, Qbar=2.0, R=1.0, QT=1.0, QTbar=1.0, T=1.0)
MEANS = [-1.5, -0.5, 0.5, 1.5]  # symmetric: an open-loop offset cannot help, only E x can


def particles(**kw):
    return ParticleLQ(LQProblem(**PROB), MEANS, 0.5, **{"n_particles": 256, "n_steps": 25, **kw})


def test_riccati_law_is_recovered_exactly_by_the_gain_regression():
    pl = particles()
    r = pl.simulate(pl.optimal_law())
    K, Kb, c = pl.effective_gains(r)
    sol = pl.discrete()
    np.testing.assert_allclose(K[:, 0, 0].numpy(), sol.arrays["K"][:, 0, 0], rtol=1e-9)
    np.testing.assert_allclose(Kb[:, 0, 0].numpy(), sol.arrays["Kbar"][:, 0, 0], rtol=1e-9)
    assert float(c.abs().max()) < 1e-9


def test_simulation_matches_the_exact_cost_of_linear_policies():
    """Monte Carlo of u = −K(x − Ex) − K̄Ex with constant gains vs the Lyapunov recursion (same discretisation)."""
    pl = particles(n_particles=40_000, seed=7)
    K, Kb = torch.tensor([[0.8]], dtype=torch.float64), torch.tensor([[1.7]], dtype=torch.float64)
    exact = float(pl.linear_policy_cost(K, Kb))

    def law(t, x, mu=None):  # θ_g = K, θ_o = (K̄ − K) E x
        return torch.cat([K.expand(x.shape[0], 1, 1), (Kb - K) * x.mean(-2, keepdim=True)], -1)

    with torch.no_grad():
        r = pl.simulate(law, keep=False)
    assert abs(float(r.cost) - exact) < 3 * r.standard_error(antithetic=True)
    assert exact > pl.J_star()  # and the Riccati gains beat them


def test_optimum_beats_every_perturbation_on_common_noise():
    pl = particles(n_particles=2000)
    law = pl.make_law("time")
    opt = float(pl.loss(pl.optimal_law()))
    with torch.no_grad():
        law.theta0.copy_(torch.tensor([1.4, 0.0], dtype=torch.float64))
    assert float(pl.loss(law).detach()) > opt


def test_loss_gradient_matches_finite_differences():
    pl = particles(n_particles=64, n_steps=10)
    law = pl.make_law("meanfield")
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in law.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    loss = pl.loss(law)
    (grad,) = torch.autograd.grad(loss, law.Umu)
    eps, idx = 1e-6, (1, 0, 0)
    with torch.no_grad():
        law.Umu[idx] += eps
        up = float(pl.loss(law))
        law.Umu[idx] -= 2 * eps
        down = float(pl.loss(law))
    assert float(grad[idx]) == pytest.approx((up - down) / (2 * eps), rel=1e-6)


def test_bad_input():
    prob = LQProblem(**PROB)
    with pytest.raises(ValidationError, match=r"^m0: "):
        ParticleLQ(prob, [[1.0, 2.0]], 0.5)
    with pytest.raises(ValidationError, match=r"^cov0: "):
        ParticleLQ(prob, 1.0, -0.5)
    with pytest.raises(ValidationError, match=r"^n_particles: .*even"):
        ParticleLQ(prob, 1.0, 0.5, n_particles=3)
    with pytest.raises(
        ValidationError, match=r"^law: expected one of constant, time, feedback, meanfield"
    ):
        particles().make_law("transformer")


@pytest.mark.slow
def test_learning_meanfield_reaches_J_star_and_tracks_the_gains():
    """The meanfield law learns u* within 0.5 % (common random numbers on fresh noise), with gains ≈ K, K̄;
    the constant law does no better than the best constant two-gain policy (docs/theory.md#weight-laws)."""
    pl = particles()
    sol = pl.discrete()
    report = {}
    for name in ("constant", "meanfield"):
        law, res = pl.learn(name, steps=6)
        cmp = pl.compare(law, n_particles=20_000)
        report[name] = (law.n_params, cmp["cost"], cmp["gap"], cmp["gap_se"])
        if name == "meanfield":
            assert cmp["gap"] < 0.005 and cmp["gap"] > -3 * cmp["gap_se"], report
            K, Kb, _ = pl.effective_gains(cmp["rollout"])
            assert np.abs(K[:, 0, 0].numpy() - sol.arrays["K"][:, 0, 0]).max() < 0.1
            assert np.abs(Kb[:, 0, 0].numpy() - sol.arrays["Kbar"][:, 0, 0]).max() < 0.15
        else:
            K_best, Kb_best, J_best = pl.best_constant_gains()
            theta = law.theta0.detach()
            assert abs(float(theta[1])) < 0.02  # symmetric means: the learned offset is ≈ 0 ...
            # ... so the constant law is u = −θ₁x, the two-gain policy K = K̄ = θ₁: never below the best
            J_const = float(pl.linear_policy_cost(theta[:1].reshape(1, 1), theta[:1].reshape(1, 1)))
            assert J_const >= J_best - 1e-12
            assert cmp["cost"] > J_best - 3 * cmp["se"]
            assert cmp["gap"] > 0.02  # and it is clearly worse than the feedback optimum
    assert report["constant"][0] == 2 and report["meanfield"][0] == 46


@pytest.mark.gpu
def test_particle_lq_on_cuda_matches_cpu():
    cpu = particles(n_particles=512)
    gpu = particles(n_particles=512, device="cuda")
    with torch.no_grad():
        a = cpu.simulate(cpu.optimal_law(), keep=False).cost
        b = gpu.simulate(gpu.optimal_law(), keep=False).cost
    assert b.device.type == "cuda" and float(b) == pytest.approx(float(a), rel=1e-10)
