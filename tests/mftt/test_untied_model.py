"""An MFTT with ``untied`` weights (docs/theory.md#weight-laws, docs/theory.md#block): one weight tensor per
layer, layer l running the block with its own piece; all pieces equal is the weight-tied (constant) model."""

import pytest
import torch

from control.errors import ValidationError
from control.laws import UntiedLaw
from mftt import MeanFieldTypeTransformer, MFTTConfig
from mftt.compare import _count, flops_counter, match_widths

CFG = dict(d_model=4, heads=2, d_ff=6, depth=3, T=1.5, d_in=2, d_out=1, attention="difference")


def _untied_laws(m):
    """Every untied law by every name it has (the block is also reachable as ``field.block``)."""
    return {
        n: mod for n, mod in m.named_modules(remove_duplicate=False) if isinstance(mod, UntiedLaw)
    }


def _randomise_pieces(m):
    with torch.no_grad():
        for law in _untied_laws(m).values():
            law.rest.normal_(0, 0.5)
    return m


@pytest.mark.parametrize("extra", [{}, {"continuous": True, "method": "rk4"}, {"ff": "moe"}])
def test_untied_model_with_equal_pieces_is_the_tied_model_exactly(extra):
    torch.manual_seed(0)
    tied = MeanFieldTypeTransformer(MFTTConfig(**CFG, **extra))
    torch.manual_seed(0)  # the same draws: every piece starts at the tied weights
    untied = MeanFieldTypeTransformer(MFTTConfig(**CFG, **extra, weights="untied"))
    x = torch.randn(2, 5, 2)
    assert torch.equal(untied(x), tied(x))


def test_one_piece_per_layer_by_default_and_params_are_depth_times_the_block():
    cfg = MFTTConfig(**CFG, weights="untied")
    m = MeanFieldTypeTransformer(cfg)
    assert {law.layers for law in _untied_laws(m).values()} == {3}
    assert cfg.law_options == {}  # the config keeps what was given
    tied = MeanFieldTypeTransformer(MFTTConfig(**CFG))
    io = 2 * 4 + 4 + 4 * 1 + 1  # read-in and read-out (W and b), not per layer
    assert m.n_params - io == 3 * (tied.n_params - io)
    assert m.flops(5) == tied.flops(5)  # one piece is read per layer: the same forward work
    m2 = MeanFieldTypeTransformer(cfg.replace(law_options={"layers": 2}))
    assert {law.layers for law in _untied_laws(m2).values()} == {2}


def test_layer_l_runs_the_block_with_piece_l():
    """The untied forward equals L tied layers, layer l loaded with piece l of every weight."""
    torch.manual_seed(1)
    m = _randomise_pieces(MeanFieldTypeTransformer(MFTTConfig(**CFG, weights="untied")))
    tied = MeanFieldTypeTransformer(MFTTConfig(**CFG))
    x = torch.randn(2, 5, 2)
    L, h = 3, 1.5 / 3
    state = {k: v for k, v in m.state_dict().items() if not k.endswith(".rest")}
    z = m.read_in and x @ m.read_in["W"] + m.read_in["b"]
    for layer in range(L):
        for name, law in _untied_laws(m).items():
            state[name + ".theta0"] = law.pieces()[layer].detach()
        tied.load_state_dict(state)
        z = z + h * tied.block(layer * h, z)
    want = z @ m.read_out["W"] + m.read_out["b"]
    torch.testing.assert_close(m(x), want, rtol=1e-6, atol=1e-6)
    # and the pieces matter: changing the last piece changes the output
    with torch.no_grad():
        m.block.ff.W2.rest[-1].add_(1.0)
    assert not torch.allclose(m(x), want)


def test_continuous_euler_is_the_discrete_untied_model():
    torch.manual_seed(2)
    cfg = MFTTConfig(**CFG, weights="untied")
    disc = _randomise_pieces(MeanFieldTypeTransformer(cfg))
    cont = MeanFieldTypeTransformer(cfg.replace(continuous=True, method="euler"))
    cont.load_state_dict(disc.state_dict())
    x = torch.randn(3, 5, 2)
    torch.testing.assert_close(cont(x), disc(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("match", ["params", "flops"])
@pytest.mark.parametrize("target", ["constant", "feedback", "untied"])
def test_untied_widths_match_budgets_within_5_percent(match, target):
    base = MFTTConfig(d_model=8, heads=2, d_ff=16, d_in=3, d_out=1, depth=3)
    opts = {"feedback": {"order": 1, "rank": 1}}.get(target, {})
    goal_cfg = base.replace(weights=target, law_options=opts)
    count = _count if match == "params" else flops_counter(16)
    c, gap = match_widths(base.replace(weights="untied"), count(goal_cfg), count=count)
    assert c.weights == "untied" and gap <= 0.05
    assert abs(count(c) - count(goal_cfg)) <= 0.05 * count(goal_cfg)


@pytest.mark.parametrize(
    "opts, match",
    [
        ({"layers": 0}, r"^layers: expected an integer >= 1, got 0$"),
        ({"layers": 1.5}, r"^layers: expected an integer, got 1\.5$"),
        ({"order": 2}, r"^law\.order: expected an option of the 'untied' law \(.*layers"),
    ],
)
def test_bad_untied_options_one_line_errors(opts, match):
    with pytest.raises(ValidationError, match=match):
        MFTTConfig(weights="untied", law_options=opts)
