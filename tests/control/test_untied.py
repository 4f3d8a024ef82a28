"""The ``untied`` law (docs/theory.md#weight-laws): independent weights per layer as a piecewise-constant law in
depth time. All pieces equal is the constant law, the piece switches at t = kT/L, gradients are exact, it has
L times the constant law's parameters and, containing the constant class, does at least as well on the LQ
mean-field-type control problem (docs/theory.md#lq-control, docs/theory.md#lq-policy-cost)."""

import pytest
import torch

from control import LQProblem, ParticleLQ, ValidationError, make_law
from control.training import fit

F64 = torch.float64
LQ = dict(A=0.5, Abar=0.3, B=1.0, Sigma=0.5, Q=1.0, Qbar=2.0, R=1.0, QT=1.0, QTbar=1.0, T=1.0)
MEANS = [-1.5, -0.5, 0.5, 1.5]


def _set_pieces(law, values):
    """Piece k := values[k] (a tensor [L, *shape] or [*batch, L, *shape])."""
    b = len(law.batch)
    with torch.no_grad():
        law.theta0.copy_(values.select(b, 0))
        law.rest.copy_(values.narrow(b, 1, law.layers - 1))


@pytest.mark.parametrize("batch", [(), (3,)])
def test_all_pieces_equal_is_the_constant_law_exactly(batch):
    init = torch.randn(batch + (2, 3), dtype=F64)
    const = make_law("constant", (2, 3), 2, init=init, batch=batch, dtype=F64, T=2.0)
    untied = make_law("untied", (2, 3), 2, init=init, batch=batch, dtype=F64, T=2.0, layers=5)
    x = torch.randn(4, *batch, 7, 2, dtype=F64)
    y = torch.randn(4, *batch, 7, 2, dtype=F64)
    for t in [0.0, 0.3, 0.4, 0.8, 1.2, 1.99, 2.0, torch.tensor(1.7, dtype=F64)]:
        assert torch.equal(untied(t, x), const(t, x))
        assert torch.equal(untied.apply_to(t, x, y), const.apply_to(t, x, y))
    # the same with the pieces set by hand to one common value
    w = torch.randn(batch + (2, 3), dtype=F64)
    _set_pieces(untied, w.unsqueeze(len(batch)).expand(batch + (5, 2, 3)))
    with torch.no_grad():
        const.theta0.copy_(w)
    assert torch.equal(untied(1.1, x), const(1.1, x))


@pytest.mark.parametrize("L, T", [(1, 1.0), (2, 1.0), (3, 1.0), (7, 2.5), (12, 12.0), (50, 0.3)])
def test_piece_switches_at_the_layer_boundaries(L, T):
    law = make_law("untied", (1,), 1, layers=L, T=T, dtype=F64)
    _set_pieces(law, torch.arange(L, dtype=F64).reshape(L, 1))
    x = torch.zeros(1, 1, dtype=F64)

    def law_at(t):
        return float(law(t, x).detach())

    h = T / L
    for k in range(L):
        tk = k * h  # the discrete model's layer time, rounded in floating point
        assert law_at(tk) == k  # a layer time picks its own layer
        assert law_at(tk + 0.5 * h) == k
        assert law_at((k + 1) * h - 1e-6 * h) == k  # just before the next boundary
        if k:
            assert law_at(tk - 1e-6 * h) == k - 1
    assert law_at(T) == L - 1 and law_at(1.5 * T) == L - 1 and law_at(-1.0) == 0
    for dtype in (torch.float32, F64):  # grids of either precision pick layer k at t_k
        grid = torch.linspace(0, T, L + 1, dtype=dtype)
        want = torch.arange(L + 1).clamp(max=L - 1).to(F64)
        assert torch.equal(law.piece(grid), want.long())
        assert torch.equal(law.theta_t(grid).detach().reshape(-1), want)  # vectorised over times
        assert [law_at(t) for t in grid] == want.tolist()  # 0-dim tensor times


def test_gradients_match_finite_differences():
    """∂J/∂θ_k of the particle LQ cost under an untied law: autograd against central differences."""
    pl = ParticleLQ(LQProblem(**LQ), MEANS, 0.5, n_particles=32, n_steps=9, seed=3)
    law = pl.make_law("untied", layers=3)
    _set_pieces(law, torch.tensor([[0.8, 0.1], [1.3, -0.2], [0.4, 0.3]], dtype=F64))
    params = [law.theta0, law.rest]
    grads = torch.autograd.grad(pl.loss(law), params)
    eps = 1e-6
    for p, g in zip(params, grads, strict=True):
        assert g.abs().max() > 1e-3  # every piece matters
        for i in range(p.numel()):
            with torch.no_grad():
                p.view(-1)[i] += eps
                up = float(pl.loss(law))
                p.view(-1)[i] -= 2 * eps
                down = float(pl.loss(law))
                p.view(-1)[i] += eps
            assert float(g.reshape(-1)[i]) == pytest.approx(
                (up - down) / (2 * eps), rel=1e-6, abs=1e-9
            )


@pytest.mark.parametrize("shape, batch", [((2,), ()), ((3, 4), ()), ((3, 4), (5,))])
@pytest.mark.parametrize("L", [1, 2, 6])
def test_parameter_count_is_layers_times_the_constant_law(shape, batch, L):
    const = make_law("constant", shape, 2, batch=batch)
    untied = make_law("untied", shape, 2, batch=batch, layers=L)
    assert untied.n_params == L * const.n_params
    assert make_law("untied", shape, 2).layers == 4  # the default
    assert make_law("untied", shape, 2).n_params == make_law("time", shape, 2).n_params  # order 3


def _floor(pl, layers: int | None) -> float:
    """min over gains of the exact cost (Lyapunov recursion) of u = −k x with one gain per piece
    (``layers`` pieces; None: one per step). The offset is 0 at the optimum (symmetric means)."""
    n = pl.n_steps
    L = n if layers is None else layers
    piece = make_law("untied", (1,), 1, layers=L).piece(torch.arange(n, dtype=F64) * pl.h)
    E = torch.nn.functional.one_hot(piece, L).to(F64)  # step -> piece
    k = torch.ones(L, 1, 1, dtype=F64, requires_grad=True)

    def cost():
        K = (E @ k.reshape(L, 1)).reshape(n, 1, 1)
        return pl.linear_policy_cost(K, K)

    fit([k], cost, steps=30, optimizer="lbfgs", tol=1e-14, patience=2, progress=False)
    with torch.no_grad():
        return float(cost())


def test_untied_does_at_least_as_well_as_constant_on_lq_control():
    pl = ParticleLQ(LQProblem(**LQ), MEANS, 0.5, n_particles=64, n_steps=10, seed=1)
    J = pl.J_star(discrete=True)
    # exact floors of the classes: nested pieces give nested classes, so the floors decrease along them
    f = {L: (_floor(pl, L) - J) / J for L in (1, 2, 5, 10)}
    assert f[1] > f[2] > f[10] > 0 and f[1] > f[5] > f[10]
    assert f[10] == pytest.approx((_floor(pl, None) - J) / J, rel=1e-9)  # one piece per step
    assert (
        f[1] - f[10] > 0.002
    )  # the optimal gains vary in time: per-layer gains gain a visible amount
    # learned on the particles (u = −(θ₁x + θ₀)): the untied law started at the best constant law costs
    # exactly the same, and learning can only lower it
    const, _ = pl.learn("constant", steps=20)
    Jc = float(pl.loss(const).detach())
    untied = pl.make_law("untied", layers=5, init=const.theta0.detach())
    assert float(pl.loss(untied).detach()) == Jc
    fit(untied, lambda: pl.loss(untied), steps=20, optimizer="lbfgs", tol=1e-12, progress=False)
    Ju = float(pl.loss(untied).detach())
    assert Ju <= Jc and (Jc - Ju) / J > 0.5 * (f[1] - f[5])


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"layers": 0}, r"^layers: expected an integer >= 1, got 0$"),
        ({"layers": 2.5}, r"^layers: expected an integer, got 2\.5$"),
        ({"layers": "3"}, r"^layers: expected an integer, got '3'$"),
        ({"layers": True}, r"^layers: expected an integer, got True$"),
        ({"order": 2}, r"^law\.order: expected an option of the 'untied' law \(.*layers.*\)"),
    ],
)
def test_bad_layers_one_line_errors(kw, match):
    with pytest.raises(ValidationError, match=match):
        make_law("untied", (2, 2), 1, **kw)


def test_layers_is_an_option_of_the_untied_law_only_and_its_size_is_checked():
    with pytest.raises(ValidationError, match=r"^law\.layers: .*'time' law"):
        make_law("time", 2, layers=3)
    with pytest.raises(
        ValidationError, match=r"^law: expected a size whose arrays fit the .* MB budget"
    ):
        make_law("untied", (1000, 1000), 1, layers=10**6)  # refused before allocating 4 TB
