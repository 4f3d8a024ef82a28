"""Feed-forward blocks O_ff (docs/theory.md#block): two-layer FFN and mixture of experts, weights from control laws.

* ``mlp``  FF(x) = W₂ r(W₁x + b₁) + b₂ (docs/theory.md#block).
* ``moe``  E experts plus one always-active shared expert E+1; token i keeps the top-k of the gate logits
  (W̃₃x + b̃₃) over the E routed experts, E_i, and mixes ỹ = Σ_{e ∈ E_i ∪ {E+1}} η_e ỹ_e with
  η = softmax over E_i ∪ {E+1}, so the gates sum to 1 (docs/theory.md#block). Experts are evaluated densely
  (one batched matmul for all E+1) and masked: simple and loop-free at the sizes this platform uses.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from control.errors import ValidationError

from .weights import affine, agent_chunks, blockable, gemm, weight_law

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "gelu": F.gelu,
    "tanh": torch.tanh,
    "silu": F.silu,
    "sigmoid": torch.sigmoid,
    "identity": lambda x: x,
}


def _activation(name: str) -> Callable[[Tensor], Tensor]:
    if name not in ACTIVATIONS:
        raise ValidationError("activation", f"one of {', '.join(ACTIVATIONS)}", name)
    return ACTIVATIONS[name]


class FeedForward(nn.Module):
    """Two-layer FFN W₂ r(W₁x + b₁) + b₂ with every weight a law θ(t, x_i, μ) (docs/theory.md#block)."""

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        *,
        activation: str = "relu",
        law: str = "constant",
        law_options: dict | None = None,
        T: float = 1.0,
        batch: tuple[int, ...] = (),
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.r = _activation(activation)
        self.activation = activation
        kw = dict(options=law_options or {}, batch=batch, T=T, device=device, dtype=dtype)
        self.W1 = weight_law(law, (d_model, d_ff), d_model, **kw)
        self.b1 = weight_law(law, (d_ff,), d_model, init=0.0, **kw)
        self.W2 = weight_law(law, (d_ff, d_model), d_model, **kw)
        self.b2 = weight_law(law, (d_model,), d_model, init=0.0, **kw)

    def forward(self, t, z: Tensor, mu=None) -> Tensor:
        """z ``[..., D, d_model]`` → ``[..., D, d_model]``."""
        if self.W1.per_particle:  # fresh products, then bias and activation in place
            h = affine(self.W1, self.b1, t, z, z, mu)
            return affine(self.W2, self.b2, t, z, self._act(h), mu)
        # token-shared weights: one matrix per sample (per agent), the bias fused into the product
        W1, b1 = self.W1(t, z, mu).squeeze(-3), self.b1(t, z, mu)
        W2, b2 = self.W2(t, z, mu).squeeze(-3), self.b2(t, z, mu)
        chunks = None
        if W1.dim() == 3 and z.dim() == 3 and blockable(z, W1, b1, W2, b2):
            chunks = agent_chunks(z.shape[0], z.shape[1] * W1.shape[-1])
        if chunks is None:
            return gemm(self._act(gemm(z, W1, b1)), W2, b2)
        # per-agent weights, no autograd graph: agent chunk by agent chunk, so that each chunk's hidden
        # [c, D, d_ff] stays in cache between its two products (the same products, cache-blocked)
        y = z.new_empty(z.shape[:-1] + (W2.shape[-1],))
        for s in chunks:
            torch.baddbmm(b2[s], self._act(torch.baddbmm(b1[s], z[s], W1[s])), W2[s], out=y[s])
        return y

    def _act(self, h: Tensor) -> Tensor:
        """The activation of a fresh hidden tensor (ReLU in place)."""
        return h.relu_() if self.activation == "relu" else self.r(h)


class MixtureOfExperts(nn.Module):
    """E routed experts + 1 shared expert, top-k gate, gates summing to 1 (docs/theory.md#block)."""

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        *,
        experts: int = 4,
        top_k: int = 2,
        activation: str = "relu",
        law: str = "constant",
        law_options: dict | None = None,
        T: float = 1.0,
        batch: tuple[int, ...] = (),
        device=None,
        dtype=None,
    ):
        super().__init__()
        if top_k > experts or top_k < 1:
            raise ValidationError("top_k", f"an integer in 1..experts={experts}", top_k)
        self.r = _activation(activation)
        self.experts, self.top_k = experts, top_k
        E1 = experts + 1
        kw = dict(options=law_options or {}, batch=batch, T=T, device=device, dtype=dtype)
        self.W1 = weight_law(
            law, (E1, d_model, d_ff), d_model, init_scale=1 / math.sqrt(d_model), **kw
        )
        self.b1 = weight_law(law, (E1, d_ff), d_model, init=0.0, **kw)
        self.W2 = weight_law(
            law, (E1, d_ff, d_model), d_model, init_scale=1 / math.sqrt(d_ff), **kw
        )
        self.b2 = weight_law(law, (E1, d_model), d_model, init=0.0, **kw)
        self.W3 = weight_law(law, (d_model, E1), d_model, **kw)
        self.b3 = weight_law(law, (E1,), d_model, init=0.0, **kw)

    def gates(self, t, z: Tensor, mu=None) -> Tensor:
        """η ``[..., D, E+1]``: softmax of the gate logits over the top-k routed experts and the shared one."""
        logits = self.W3.apply_to(t, z, z, mu) + self.b3(t, z, mu)
        idx = logits[..., : self.experts].topk(self.top_k, dim=-1).indices
        keep = torch.zeros_like(logits, dtype=torch.bool)
        keep[..., : self.experts].scatter_(-1, idx, True)
        keep[..., self.experts] = True
        return torch.softmax(logits.masked_fill(~keep, float("-inf")), -1)

    def forward(self, t, z: Tensor, mu=None) -> Tensor:
        """z ``[..., D, d_model]`` → ``[..., D, d_model]``."""
        eta = self.gates(t, z, mu)
        zz = z.unsqueeze(-2).unsqueeze(-2)  # [..., D, 1, 1, d]
        h = (zz @ self.W1(t, z, mu)).squeeze(-2) + self.b1(t, z, mu)  # [..., D, E+1, q]
        y = (self.r(h).unsqueeze(-2) @ self.W2(t, z, mu)).squeeze(-2) + self.b2(t, z, mu)
        return (eta.unsqueeze(-1) * y).sum(-2)


FEEDFORWARD: dict[str, type[nn.Module]] = {"mlp": FeedForward, "moe": MixtureOfExperts}
