"""fit (docs/theory.md#training): Adam and L-BFGS reach known minima, early stop, divergence, atomic checkpoint and resume."""

import math
import os

import pytest
import torch

from control import ValidationError, fit

TARGET = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
HESS = torch.diag(torch.tensor([1.0, 4.0, 0.25], dtype=torch.float64))


def quad(w):
    return lambda: 0.5 * (w - TARGET) @ HESS @ (w - TARGET) + 3.0


def test_lbfgs_and_adam_reach_the_minimum():
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    res = fit([w], quad(w), steps=5, optimizer="lbfgs", progress=False)
    assert torch.allclose(w.detach(), TARGET, atol=1e-8) and res.final_loss == pytest.approx(3.0)
    w2 = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    res2 = fit(w2, quad(w2), steps=600, lr=0.05, progress=False)
    assert torch.allclose(w2.detach(), TARGET, atol=1e-3)
    assert res2.losses[0] > res2.losses[-1] and len(res2.losses) == 600 == res2.steps


def test_early_stop_on_tolerance_and_patience():
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    res = fit([w], quad(w), steps=500, optimizer="lbfgs", tol=1e-10, patience=3, progress=False)
    assert res.converged and res.status == "converged" and res.steps < 20


def test_nonfinite_loss_stops_with_diverged_and_keeps_last_finite_params():
    w = torch.ones(1, dtype=torch.float64, requires_grad=True)
    calls = []

    def loss():
        calls.append(1)
        return (w**2).sum() * (float("nan") if len(calls) > 5 else 1.0)

    res = fit([w], loss, steps=50, lr=0.1, progress=False)
    assert res.status == "diverged" and len(res.losses) == 5 and torch.isfinite(w).all()


def test_checkpoint_resume_equals_uninterrupted(tmp_path):
    def run(ckpt, stop_at=None, steps=30):
        torch.manual_seed(0)
        w = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        torch.manual_seed(1)

        def loss():  # stochastic: resumption must also restore the RNG state
            noise = 0.01 * torch.randn(3, dtype=torch.float64)
            return 0.5 * (w - TARGET - noise) @ HESS @ (w - TARGET - noise)

        cb = (lambda k, v: k + 1 >= stop_at) if stop_at else None
        res = fit([w], loss, steps=steps, lr=0.1, progress=False, checkpoint=ckpt,
                  checkpoint_every=7, callback=cb)  # fmt: skip
        return w.detach().clone(), res

    w_full, full = run(tmp_path / "full.pt")
    w_part, part = run(tmp_path / "run.pt", stop_at=12)
    assert part.status == "stopped" and part.steps == 12
    w_res, res = run(tmp_path / "run.pt")
    assert res.resumed_from == 12 and len(res.losses) == 30
    assert torch.equal(w_res, w_full) and res.losses == full.losses
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    fit([w], quad(w), steps=3, lr=0.1, progress=False, checkpoint=path)
    good = path.read_bytes()

    def broken_save(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        fit([w], quad(w), steps=6, lr=0.1, progress=False, checkpoint=path, checkpoint_every=1)
    assert path.read_bytes() == good and os.listdir(tmp_path) == ["ck.pt"]


def test_progress_bar_runs():
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    assert fit([w], quad(w), steps=3, progress=True).steps == 3


def test_bad_input():
    w = torch.zeros(3, requires_grad=True)
    with pytest.raises(
        ValidationError, match=r"^optimizer: expected one of adam, lbfgs, sgd, got 'rmsprop'"
    ):
        fit([w], quad(w), optimizer="rmsprop")
    with pytest.raises(ValidationError, match=r"^lr: "):
        fit([w], quad(w), lr=-1.0)
    with pytest.raises(ValidationError, match=r"^params_or_module: "):
        fit([torch.zeros(3)], quad(w))
    with pytest.raises(ValidationError, match=r"^loss_fn: expected a scalar tensor"):
        fit([w], lambda: w * 2, steps=1, progress=False)
    with pytest.raises(TypeError, match="momentum"):
        fit([w], quad(w), momentum=0.9)


@pytest.mark.parametrize("adjoint", [False, True])
def test_fit_through_an_ode_solve(adjoint):
    """Learn θ in dx/dt = −θx so that x(1) = x0·e^{−2}: θ → 2, with or without the adjoint."""
    from control import make_law, solve

    law = make_law("constant", 1, 1, init=torch.tensor([0.5]), dtype=torch.float64)
    x0 = torch.ones(4, 1, dtype=torch.float64)

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.law = law

        def forward(self, t, x):
            return -self.law(t, x) * x

    field = Field()

    def loss():
        xT = solve(field, x0, [0.0, 1.0], method="rk4", options={"step_size": 0.05},
                   adjoint=adjoint).xs[-1]  # fmt: skip
        return ((xT - math.exp(-2.0)) ** 2).mean()

    res = fit(law, loss, steps=10, optimizer="lbfgs", tol=1e-14, patience=2, progress=False)
    assert float(law.theta0.detach()) == pytest.approx(2.0, abs=1e-3) and res.final_loss < 1e-10
