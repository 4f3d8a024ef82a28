"""Weight laws (docs/theory.md#mean-field): registry, shape contract, parameter counts, common start, bad input."""

import pytest
import torch

from control import WEIGHT_LAWS, ValidationError, make_law

NAMES = ["constant", "time", "feedback", "meanfield", "untied"]


def test_registry_has_exactly_five_laws():
    assert sorted(WEIGHT_LAWS) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_every_law_starts_equal_to_the_constant_law(name):
    init = torch.tensor([[0.5, -1.0, 2.0], [0.0, 1.0, 3.0]], dtype=torch.float64)
    law = make_law(name, (2, 3), 2, init=init, dtype=torch.float64)
    x = torch.randn(4, 7, 2, dtype=torch.float64)
    theta = law(0.3, x)
    assert torch.broadcast_shapes(theta.shape, (4, 7, 2, 3)) == (4, 7, 2, 3)
    assert torch.allclose(theta, init.expand(theta.shape))


def test_parameter_counts():
    opts = {"constant": {}, "time": {"order": 3}, "untied": {"layers": 5}}
    counts = {n: make_law(n, 2, 1, **opts.get(n, {"order": 3, "rank": 2})).n_params for n in NAMES}
    # constant 2; time 2 + 3·2; feedback + U (4·2·2) + V (2·1); meanfield + Uμ (4·2·2) + Vμ (2·2); untied 5·2
    assert counts == {"constant": 2, "time": 8, "feedback": 26, "meanfield": 46, "untied": 10}


def test_meanfield_law_reads_the_population_mean():
    law = make_law("meanfield", 1, 1, init=torch.zeros(1), dtype=torch.float64)
    with torch.no_grad():
        law.Umu[0].fill_(1.0)  # constant-in-time coefficient (Σ_k P_k(-1) = 0 would cancel)
    x = torch.randn(2, 50, 1, dtype=torch.float64)
    x[1] += 3.0
    th = law(0.0, x)
    assert th.shape == (2, 50, 1) and not torch.allclose(th[0], th[1])
    assert torch.allclose(th[0], th[0, :1].expand(50, 1))  # U = 0: no own-state feedback yet


def test_bad_names_and_options():
    with pytest.raises(
        ValidationError, match=r"^law: expected one of constant, time, feedback, meanfield, untied,"
    ):
        make_law("attention", 2)
    with pytest.raises(ValidationError, match=r"^law\.rank: .*'time' law"):
        make_law("time", 2, rank=3)
    with pytest.raises(ValidationError, match=r"^shape: "):
        make_law("constant", (2, 0))
    law = make_law("feedback", 2, 3)
    with pytest.raises(ValidationError, match=r"^x: expected a tensor \[\.\.\., N, 3\]"):
        law(0.0, torch.zeros(5, 2))
