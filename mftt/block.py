"""The transformer block as a state-feedback increment (docs/theory.md#block, docs/theory.md#weight-laws).

Ô = (Id + O_ff∘O_nn)∘(Id + O_att∘O_nn) (pre-norm). Written as an increment G = Ô − Id:

    G(t, x) = A + F(N₂(x + A)),   A = Att_θ(t)(N₁(x)),

so one seed block is x + G(t, x), a discrete layer of step h is x + h·G(t_l, x) (forward Euler), and continuous
depth is dx/dt = G(t, x). Every weight (Q, K, V, W_h, λ, W₁, b₁, W₂, b₂, gate) is a control law evaluated at
depth time t on the sub-layer's normalised tokens and their mean field: θ = Θ(t, N(x_i), μ) (docs/theory.md#weight-laws).
"""

from __future__ import annotations

from torch import Tensor, nn

from control.meanfield import MeanField

from .attention import MultiHeadAttention
from .feedforward import FEEDFORWARD
from .norms import NORMS


class Block(nn.Module):
    """One pre-norm transformer block with law-valued weights; ``forward(t, x)`` returns the increment G(t, x)."""

    def __init__(self, cfg, *, batch: tuple[int, ...] = (), device=None, dtype=None):
        super().__init__()
        d = cfg.d_model
        common = dict(
            law=cfg.weights,
            law_options=dict(cfg.law_options),
            T=cfg.T,
            batch=batch,
            device=device,
            dtype=dtype,
        )
        self.uses_mu = cfg.weights == "meanfield"
        nkw = dict(batch=batch, device=device, dtype=dtype)
        self.norm1 = NORMS[cfg.norm](d, **nkw)
        self.norm2 = NORMS[cfg.norm](d, **nkw)
        self.attn = MultiHeadAttention(
            d,
            cfg.heads,
            cfg.d_k_,
            cfg.d_v_,
            kernel=cfg.attention,
            causal=cfg.causal,
            head_scale=cfg.head_scale,
            **common,
        )
        ffkw = dict(activation=cfg.activation, **common)
        if cfg.ff == "moe":
            ffkw.update(experts=cfg.experts, top_k=cfg.top_k)
        self.ff = FEEDFORWARD[cfg.ff](d, cfg.d_ff, **ffkw)

    def _mu(self, u: Tensor) -> MeanField | None:
        return MeanField.of(u) if self.uses_mu else None

    def increment(
        self, t, x: Tensor, *, need_weights: bool = False, fast: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """(G(t, x), attention weights or None): the block minus the identity."""
        u = self.norm1(x)
        a, w = self.attn(t, u, self._mu(u), need_weights=need_weights, fast=fast)
        z = self.norm2(x + a)
        y = self.ff(t, z, self._mu(z))  # a fresh tensor: the residual is added in place
        return y.add_(a), w

    def forward(self, t, x: Tensor) -> Tensor:
        """The vector field G(t, x) of continuous depth (docs/theory.md#block: x_{l+1} = x_l + h G is its Euler step)."""
        return self.increment(t, x)[0]

    def step(self, t, x: Tensor, h: float = 1.0) -> Tensor:
        """One discrete layer x + h·G(t, x); h = 1 is the seed's Ô (docs/theory.md#block)."""
        return x + h * self.increment(t, x)[0]
