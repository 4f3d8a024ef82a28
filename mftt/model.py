"""The mean-field-type transformer: config and model, discrete or continuous depth (docs/theory.md#block, docs/theory.md#depth-ode, docs/theory.md#weight-laws).

Depth is time t ∈ [0, T]; the weights are controls θ(t, x_i, μ_t) given by ``control`` laws (one set of laws for
the whole depth: ``constant`` = weights shared across layers, ``untied`` = independent weights per layer (one
piece per layer unless ``law_options["layers"]`` says otherwise), ``time`` = open-loop weights smooth in depth,
``feedback``/``meanfield`` = state / mean-field feedback weights, docs/theory.md#weight-laws).

* discrete: L = ``depth`` layers x_{l+1} = x_l + h G(t_l, x_l), h = T/L, t_l = l h (forward Euler of the field;
  with T = L every layer is exactly the seed's block Ô, docs/theory.md#block);
* continuous: dx/dt = G(t, x) solved by ``control.solve`` on the grid t_k = kT/L (adjoint optional).
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import torch
from torch import Tensor, nn

from control import METHODS, WEIGHT_LAWS, make_law, solve
from control.errors import ValidationError, choice, number
from control.limits import check_size

from .attention import ATTENTION, FAST_PATH
from .block import Block
from .feedforward import ACTIVATIONS, FEEDFORWARD
from .norms import NORMS

_STAGES = {"euler": 1, "midpoint": 2, "heun2": 2, "heun3": 3, "rk4": 4}


def _flag(name: str, v) -> bool:
    if not isinstance(v, bool):
        raise ValidationError(name, "a bool", v)
    return v


def _optional_dim(name: str, v) -> int | None:
    return None if v is None else int(number(name, v, low=1, integer=True))


@dataclass(frozen=True)
class MFTTConfig:
    """Hyper-parameters of a mean-field-type transformer, validated on construction (one-line errors)."""

    d_model: int = 8
    heads: int = 2
    d_k: int | None = None
    d_v: int | None = None
    d_ff: int = 16
    depth: int = 2
    attention: str = "boltzmann"
    norm: str = "soft"
    ff: str = "mlp"
    experts: int = 4
    top_k: int = 2
    weights: str = "constant"
    law_options: dict = field(default_factory=dict)
    causal: bool = False
    continuous: bool = False
    T: float = 1.0
    method: str = "rk4"
    adjoint: bool = False
    d_in: int | None = None
    d_out: int | None = None
    activation: str = "relu"
    head_scale: str = "standard"  # "seed": 1/√H on the head sum (docs/theory.md#block)
    rtol: float = 1e-6
    atol: float = 1e-8

    def __post_init__(self):
        for f in ("d_model", "heads", "d_ff", "depth", "experts", "top_k"):
            number(f, getattr(self, f), low=1, integer=True)
        for f in ("d_k", "d_v", "d_in", "d_out"):
            _optional_dim(f, getattr(self, f))
        if self.d_k is None and self.d_model % self.heads:
            raise ValidationError(
                "heads", f"a divisor of d_model={self.d_model} (or give d_k)", self.heads
            )
        choice("attention", self.attention, ATTENTION)
        choice("norm", self.norm, NORMS)
        choice("ff", self.ff, FEEDFORWARD)
        choice("weights", self.weights, WEIGHT_LAWS)
        choice("activation", self.activation, ACTIVATIONS)
        choice("head_scale", self.head_scale, ("standard", "seed"))
        choice("method", self.method, METHODS)
        if self.top_k > self.experts:
            raise ValidationError("top_k", f"an integer in 1..experts={self.experts}", self.top_k)
        for f in ("causal", "continuous", "adjoint"):
            _flag(f, getattr(self, f))
        if self.causal and not getattr(NORMS[self.norm], "causal_safe", True):
            raise ValidationError(
                "norm",
                f"a causal-safe norm ({', '.join(n for n in NORMS if n != 'batch')})",
                self.norm,
                reason="batch norm pools over the sequence and leaks future tokens",
            )
        if self.causal and self.weights == "meanfield":
            raise ValidationError(
                "weights",
                "constant, time or feedback when causal=True",
                self.weights,
                reason="the mean field pools all tokens, so it would leak future tokens",
            )
        number("T", self.T, low=0.0, strict_low=True)
        number("rtol", self.rtol, low=0.0, strict_low=True)
        number("atol", self.atol, low=0.0, strict_low=True)
        if not isinstance(self.law_options, dict):
            raise ValidationError("law_options", "a dict", self.law_options)
        make_law(self.weights, (1,), 1, **self.law_options)  # refuses unknown options by name
        self._check_size()

    def _check_size(self) -> None:
        """Refuse a transformer whose weights cannot fit the memory budget, before allocating."""
        number("depth", self.depth, low=1, high=100_000, integer=True)
        dims = {
            f: getattr(self, f) or 0
            for f in ("d_model", "d_ff", "experts", "heads", "d_k", "d_v", "d_in", "d_out")
        }
        dm, h = self.d_model, self.heads
        dk, dv = self.d_k_, self.d_v_
        ff = 2 * dm * self.d_ff * (self.experts if self.ff == "moe" else 1)
        per_block = (
            2 * dm * dk * h + 2 * dm * dv * h + ff + dm * ((self.d_in or 0) + (self.d_out or 0))
        )
        biggest = max(dims, key=lambda f: dims[f])
        check_size(biggest, (per_block,), itemsize=4)

    @property
    def d_k_(self) -> int:
        return self.d_k if self.d_k is not None else self.d_model // self.heads

    @property
    def d_v_(self) -> int:
        return self.d_v if self.d_v is not None else self.d_k_

    def replace(self, **changes) -> MFTTConfig:
        """A validated copy with some fields changed."""
        return MFTTConfig(**{**asdict(self), **changes})


class _Field(nn.Module):
    """dx/dt = G(t, x) as an ``nn.Module`` (so the adjoint finds its parameters)."""

    def __init__(self, block: Block):
        super().__init__()
        self.block = block

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        return self.block(t, x)


class MeanFieldTypeTransformer(nn.Module):
    """Tokens ``[..., D, d_in]`` → ``[..., D, d_out]`` through law-weighted blocks (docs/theory.md#block, docs/theory.md#weight-laws).

    ``batch=(A,)`` stacks A agents' independent weights; the input is then ``[..., A, D, d_in]``.
    """

    def __init__(
        self,
        cfg: MFTTConfig | dict | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        batch: tuple[int, ...] | list[int] = (),
    ):
        super().__init__()
        if cfg is None:
            cfg = MFTTConfig()
        elif isinstance(cfg, dict):
            cfg = MFTTConfig(**cfg)
        elif not isinstance(cfg, MFTTConfig):
            raise ValidationError(
                "cfg", "an MFTTConfig or a dict of its fields", type(cfg).__name__
            )
        self.cfg = cfg
        self.batch = tuple(int(number("batch", b, low=1, integer=True)) for b in batch)
        if len(self.batch) > 1:
            raise ValidationError("batch", "() or (A,)", self.batch)
        kw = dict(device=device, dtype=dtype)
        self.block = Block(block_config(cfg), batch=self.batch, **kw)
        self.field = _Field(self.block)
        self.read_in = self._linear(cfg.d_in, cfg.d_model, **kw) if cfg.d_in else None
        self.read_out = self._linear(cfg.d_model, cfg.d_out, **kw) if cfg.d_out else None

    def _linear(self, a: int, b: int, device=None, dtype=None) -> nn.ParameterDict:
        W = torch.randn(self.batch + (a, b), dtype=dtype).to(device) / math.sqrt(
            a
        )  # CPU draws: same on every device
        bias = torch.zeros(self.batch + (1, b), device=device, dtype=dtype)
        return nn.ParameterDict({"W": nn.Parameter(W), "b": nn.Parameter(bias)})

    @staticmethod
    def _linear_apply(lin: nn.ParameterDict | None, x: Tensor) -> Tensor:
        return x if lin is None else x @ lin["W"] + lin["b"]

    # ------------------------------------------------------------------ forward
    def _check(self, x: Tensor) -> None:
        d = self.cfg.d_in or self.cfg.d_model
        lead = "A, " if self.batch else ""
        bad = not isinstance(x, Tensor) or x.dim() < 2 + len(self.batch) or x.shape[-1] != d
        if not bad and self.batch:
            bad = x.shape[-3] != self.batch[0]
        if bad:
            want = f"a tensor [..., {lead}D, {d}]" + (
                f" with A={self.batch[0]}" if self.batch else ""
            )
            raise ValidationError("x", want, tuple(x.shape) if isinstance(x, Tensor) else x)
        if not x.is_floating_point():
            raise ValidationError("x", "a floating-point tensor", str(x.dtype))

    def forward(self, x: Tensor, return_info: bool = False):
        """Tokens through the depth; with ``return_info`` also the depth trajectory and attention maps."""
        self._check(x)
        cfg = self.cfg
        x = self._linear_apply(self.read_in, x)
        L, T = cfg.depth, cfg.T
        h = T / L
        attn: list[Tensor] = []
        if not cfg.continuous:
            traj = [x]
            for layer in range(L):
                inc, w = self.block.increment(layer * h, x, need_weights=return_info)
                x = x + h * inc
                if return_info:
                    assert w is not None  # need_weights=True
                    traj.append(x)
                    attn.append(w.detach())
            times = torch.linspace(0, T, L + 1, dtype=x.dtype, device=x.device)
            nfe = L
        else:
            times = torch.linspace(0, T, L + 1, dtype=x.dtype, device=x.device)
            sol = solve(
                self.field,
                x,
                times,
                method=cfg.method,
                adjoint=cfg.adjoint,
                rtol=cfg.rtol,
                atol=cfg.atol,
            )
            x, nfe = sol.xs[-1], sol.nfe
            if return_info:
                traj = list(sol.xs)
                with torch.no_grad():
                    for k in range(L + 1):
                        _, w = self.block.increment(times[k], sol.xs[k], need_weights=True)
                        assert w is not None
                        attn.append(w)
        y = self._linear_apply(self.read_out, x)
        if not return_info:
            return y
        info = {
            "trajectory": torch.stack(traj),
            "attention": attn,
            "times": times,
            "nfe": nfe,
        }
        return y, info

    # ------------------------------------------------------------------ sizes
    @property
    def n_params(self) -> int:
        """Trainable scalars (all agents together when ``batch=(A,)``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @property
    def n_params_per_agent(self) -> int:
        """Trainable scalars of one agent (``n_params`` / A)."""
        return self.n_params // (self.batch[0] if self.batch else 1)

    def flops(self, D: int) -> int:
        """Approximate floating-point operations of one forward on D tokens (one agent, 2 per multiply-add).

        Counts norms, projections, scores, weighted sums, output map, FFN/MoE (experts evaluated densely),
        the per-token law evaluations and read-in/out, times the number of field evaluations (L discrete;
        L·stages for fixed-step solvers; 6L as a nominal figure for adaptive ones).
        """
        c = self.cfg
        d, H, dk, dv, q = c.d_model, c.heads, c.d_k_, c.d_v_, c.d_ff
        pairs = 2 if c.attention == "difference" else 1
        att = 2 * D * d * H * (2 * pairs * dk + dv) + 2 * pairs * H * D * D * (dk + dv)
        att += 2 * D * H * dv * d + 3 * pairs * H * D * D
        E1 = c.experts + 1 if c.ff == "moe" else 1
        ff = E1 * 2 * D * (2 * d * q + q + d) + (2 * D * d * E1 if c.ff == "moe" else 0)
        norms = 2 * 5 * D * d
        laws = 0
        if c.weights in ("feedback", "meanfield"):
            rank = int(c.law_options.get("rank", 2))
            sizes = sum(
                int(cast(Any, m).size) for m in self.block.modules() if hasattr(m, "per_particle")
            )
            laws = 2 * D * (rank * d + rank * sizes)
        per_eval = att + ff + norms + laws
        if c.continuous:
            evals = c.depth * _STAGES.get(c.method, 6)
        else:
            evals = c.depth
        io = 2 * D * d * ((c.d_in or 0) + (c.d_out or 0))
        return int(per_eval * evals + io)


def block_config(cfg: MFTTConfig) -> MFTTConfig:
    """The config the blocks are built from: an ``untied`` law gets ``layers = depth`` (one weight tensor per
    layer, docs/theory.md#weight-laws) unless its ``law_options`` set ``layers``; other configs unchanged."""
    if cfg.weights != "untied" or "layers" in cfg.law_options:
        return cfg
    # a copy, not ``cfg.replace``: validating again would draw a probe law from the global RNG and shift
    # every later initialisation (depth is already a validated positive integer)
    out = copy.copy(cfg)
    object.__setattr__(out, "law_options", {**cfg.law_options, "layers": cfg.depth})
    return out


def uses_fast_path(cfg: MFTTConfig) -> bool:
    """Whether the forward without ``return_info`` goes through ``scaled_dot_product_attention``."""
    return cfg.attention in FAST_PATH
