"""Weight laws θ = law(t, x, μ): the weights of a model as controls (docs/theory.md#block, docs/theory.md#weight-laws, docs/theory.md#mean-field).

Five kinds, chosen by name from ``WEIGHT_LAWS``:

* ``constant``  θ = θ₀                                           (one block's weights tied across depth)
* ``untied``    θ(t) = θ_k for t ∈ [kT/L, (k+1)T/L)               (independent weights per layer, L = ``layers``)
* ``time``      θ(t) = θ₀ + Σ_k c_k P_k(s)                       (open loop; Legendre basis, s = 2t/T − 1)
* ``feedback``  θ(t, x_i) = θ(t) + U(t) V φ(x_i)                  (low-rank state feedback)
* ``meanfield`` θ(t, x_i, μ) = θ(t) + U(t) V φ(x_i) + U_μ(t) V_μ ψ(μ),  ψ(μ) = (E x, Var x)

Shape contract: ``x`` is ``[*batch, N, d_state]``; the law returns ``[*batch, N, *shape]`` (per particle) or
``[*batch, 1, *shape]`` (shared by all particles). Parameters may carry a leading ``batch`` shape so that many
agents' heterogeneous weights are one tensor. Every law starts equal to the constant law (its extra
coefficients start at zero), so comparisons start from the same point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from . import meanfield as mf
from .errors import ValidationError, choice, number
from .limits import check_size

FEATURES = {"linear": lambda x: x, "tanh": torch.tanh}


def legendre(s: Tensor, order: int) -> Tensor:
    """Legendre polynomials P_1..P_order at s ∈ [-1, 1]: ``[...] -> [..., order]`` (P_0 is θ₀ itself)."""
    ps = [torch.ones_like(s), s]
    for k in range(1, order):
        ps.append(((2 * k + 1) * s * ps[k] - k * ps[k - 1]) / (k + 1))
    return torch.stack(ps[1 : order + 1], -1)


def _combine(basis: Tensor, U: Tensor) -> Tensor:
    """Σ_k basis_k U_k for ``U [*batch, k, p, r]`` → ``[*batch, p, r]``: one pass over U, no permuted copy."""
    return (basis @ U.flatten(-2)).unflatten(-1, U.shape[-2:])


def _add(out: Tensor, other: Tensor) -> Tensor:
    """out + other, in place when ``out`` is a fresh product of the full broadcast shape."""
    return (
        out.add_(other)
        if out.shape == torch.broadcast_shapes(out.shape, other.shape)
        else out + other
    )


def _shape(shape: int | Sequence[int]) -> tuple[int, ...]:
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if not shape or any(not isinstance(s, int) or s < 1 for s in shape):
        raise ValidationError("shape", "a tuple of positive integers", shape)
    return shape


def _as_time(t: Tensor | float, ref: Tensor) -> Tensor:
    return torch.as_tensor(t, dtype=ref.dtype, device=ref.device)


class WeightLaw(nn.Module):
    """Base class: θ = law(t, x, μ). Subclasses implement ``forward``."""

    kind: str = "?"
    per_particle: bool = False

    def __init__(
        self,
        shape: int | Sequence[int],
        d_state: int = 1,
        *,
        batch: Sequence[int] = (),
        init: Tensor | None = None,
        init_scale: float | None = None,
        T: float = 1.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.shape = _shape(shape)
        self.d_state = int(number("d_state", d_state, low=1, integer=True))
        self.batch = tuple(int(b) for b in batch)
        self.T = float(number("T", T, low=0.0, strict_low=True))
        self.size = math.prod(self.shape)
        full = self.batch + self.shape
        if init is not None:
            init = torch.as_tensor(init, dtype=dtype, device=device)
            try:
                theta0 = init.expand(full).clone()
            except RuntimeError:
                raise ValidationError(
                    "init", f"a tensor broadcastable to {full}", tuple(init.shape)
                ) from None
        else:
            fan_in = self.shape[0] if len(self.shape) > 1 else 1
            scale = (1.0 / math.sqrt(fan_in)) if init_scale is None else init_scale
            theta0 = (
                torch.randn(full, dtype=dtype).to(device) * scale
            )  # drawn on the CPU: same seed, same weights on any device
        self.theta0 = nn.Parameter(theta0)

    @property
    def n_params(self) -> int:
        """Number of trainable scalars."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def _check(self, x: Tensor) -> None:
        if x.dim() < 2 or x.shape[-1] != self.d_state:
            raise ValidationError("x", f"a tensor [..., N, {self.d_state}]", tuple(x.shape))

    def apply_to(
        self, t: Tensor | float, x: Tensor, y: Tensor, mu: mf.MeanField | None = None
    ) -> Tensor:
        """y_i θ(t, x_i, μ) for a matrix law, shape (a, b): ``y [*lead, *batch, N, a] -> [..., N, b]``.

        Each particle's row times its own weight matrix, as a transformer applies its weights (docs/theory.md#weight-laws);
        the feedback laws override it so that no per-particle matrix is ever formed.
        """
        if len(self.shape) != 2:
            raise ValidationError("shape", "a matrix shape (a, b) for apply_to", self.shape)
        W = self(t, x, mu)
        if W.shape[-3] == 1:
            return y @ W.squeeze(-3)
        return (y.unsqueeze(-2) @ W).squeeze(-2)

    def _shared(self, theta: Tensor) -> Tensor:
        """``[*batch, *shape] -> [*batch, 1, *shape]``: one θ for every particle (broadcasts over x's lead)."""
        return theta.unsqueeze(len(self.batch))

    def extra_repr(self) -> str:
        return f"kind={self.kind}, shape={self.shape}, batch={self.batch}, n_params={self.n_params}"


class ConstantLaw(WeightLaw):
    """θ = θ₀: the standard transformer's constant weights."""

    kind = "constant"

    def forward(self, t: Tensor | float, x: Tensor, mu: mf.MeanField | None = None) -> Tensor:
        self._check(x)
        return self._shared(self.theta0)


class TimeLaw(WeightLaw):
    """θ(t) = θ₀ + Σ_{k=1}^{order} c_k P_k(2t/T − 1): open loop in depth time (per-layer weights)."""

    kind = "time"

    def __init__(self, shape, d_state: int = 1, *, order: int = 3, **kw):
        super().__init__(shape, d_state, **kw)
        self.order = int(number("order", order, low=1, integer=True))
        self.coef = nn.Parameter(self.theta0.new_zeros(self.batch + (self.order,) + self.shape))

    def theta_t(self, t: Tensor | float) -> Tensor:
        """θ(t) as ``[*batch, *shape]``."""
        s = 2 * _as_time(t, self.theta0) / self.T - 1
        basis = legendre(s, self.order)  # [order]
        c = self.coef.flatten(len(self.batch) + 1)  # [*batch, order, size]
        return self.theta0 + (basis @ c).reshape(self.batch + self.shape)

    def forward(self, t, x, mu=None):
        self._check(x)
        return self._shared(self.theta_t(t))


class UntiedLaw(WeightLaw):
    """θ(t) = θ_k on the k-th of ``layers`` equal pieces of [0, T]: untied per-layer weights (docs/theory.md#comparison).

    A standard transformer's independent weights per layer, read in continuous depth as a piecewise-constant
    open-loop law: piece k = ⌊t·L/T⌋ (clamped to 0..L−1, so t = T is in the last piece), with a tolerance of
    16·ε·L pieces (ε of the time's dtype) so that the layer times t_l = l·T/L, rounded in floating point,
    pick layer l. ``layers`` (L, default 4: the parameter count of the default ``time`` law, θ₀ and 3
    Legendre coefficients) is the number of pieces; an MFTT sets it to its ``depth`` unless given. ``theta0`` holds the first piece (so an
    ``init`` starts every piece: all pieces equal is the ``constant`` law), ``rest`` the L − 1 others,
    ``[*batch, L − 1, *shape]``: L times the constant law's parameters, each piece its own tensor. In
    continuous depth the field jumps at the boundaries kT/L (an adaptive solver takes small steps there).
    """

    kind = "untied"

    def __init__(self, shape, d_state: int = 1, *, layers: int = 4, **kw):
        super().__init__(shape, d_state, **kw)
        self.layers = int(number("layers", layers, low=1, integer=True))
        b = len(self.batch)
        rest = (
            self.theta0.detach().unsqueeze(b).expand(self.batch + (self.layers - 1,) + self.shape)
        )
        self.rest = nn.Parameter(rest.clone())

    def piece(self, t: Tensor | float) -> Tensor:
        """The piece index k(t) = ⌊t·L/T + tol⌋ clamped to 0..L−1 (tol = 16·ε·L, ε of t's dtype), a long
        tensor of t's shape (on t's device for a tensor t, else on the CPU)."""
        tt = t if isinstance(t, Tensor) else torch.tensor(float(t), dtype=torch.float64)
        eps = torch.finfo(tt.dtype if tt.is_floating_point() else torch.float64).eps
        s = tt.to(torch.float64) * (self.layers / self.T)
        return torch.floor(s + 16 * eps * self.layers).clamp(0, self.layers - 1).long()

    def pieces(self) -> Tensor:
        """All L pieces as one ``[*batch, L, *shape]`` tensor (differentiable)."""
        return torch.cat([self.theta0.unsqueeze(len(self.batch)), self.rest], len(self.batch))

    def theta_t(self, t: Tensor | float) -> Tensor:
        """θ(t): ``[*batch, *shape]`` for a scalar t, ``[*batch, *t.shape, *shape]`` for a tensor of times."""
        b = len(self.batch)
        if isinstance(t, (int, float)) or (
            isinstance(t, Tensor) and t.dim() == 0 and t.device.type == "cpu"
        ):  # a Python index: no copy of the other pieces
            k = int(self.piece(t))
            return self.theta0 if k == 0 else self.rest.select(b, k - 1)
        ks = self.piece(t).to(self.theta0.device)
        out = self.pieces().index_select(b, ks.reshape(-1))  # [*batch, K, *shape]
        return out.reshape(self.batch + tuple(ks.shape) + self.shape)

    def forward(self, t, x, mu=None):
        self._check(x)
        return self._shared(self.theta_t(t))


class FeedbackLaw(TimeLaw):
    """θ(t, x_i) = θ(t) + U(t)·V·φ(x_i): low-rank state feedback on each particle's own state."""

    kind = "feedback"
    per_particle = True

    def __init__(self, shape, d_state: int = 1, *, rank: int = 2, features: str = "linear", **kw):
        super().__init__(shape, d_state, **kw)
        self.rank = int(number("rank", rank, low=1, integer=True))
        self.features = choice("features", features, FEATURES)
        p = self.theta0
        k = self.order + 1
        self.U = nn.Parameter(p.new_zeros(self.batch + (k, self.size, self.rank)))
        self.V = nn.Parameter(
            torch.randn(self.batch + (self.rank, self.d_state), dtype=p.dtype).to(p.device)
            / math.sqrt(self.d_state)
        )

    def _basis0(self, t) -> Tensor:
        s = 2 * _as_time(t, self.theta0) / self.T - 1
        return torch.cat(
            [torch.ones_like(s).unsqueeze(-1), legendre(s, self.order)], -1
        )  # [order+1]

    def _lowrank(self, U: Tensor, V: Tensor, f: Tensor, basis: Tensor) -> Tensor:
        """Σ_k basis_k U_k V f for features ``f = [*lead, *batch, M, d_f]`` → ``[*lead, *batch, M, size]``."""
        Ut = _combine(basis, U)  # [*batch, size, rank]
        return (f @ V.transpose(-1, -2)) @ Ut.transpose(-1, -2)

    def apply_to(self, t, x, y, mu=None):
        """y_i θ(t, x_i) = y_i θ(t) + Σ_r c_ir y_i Ũ_r(t) with c_i = Vφ(x_i) and Ũ_r the r-th column of U(t)
        as an a×b matrix: 1 + rank batched products instead of one a×b matrix per particle."""
        if len(self.shape) != 2:
            return super().apply_to(t, x, y, mu)
        self._check(x)
        a, b = self.shape
        Ut = _combine(self._basis0(t), self.U)  # [*batch, a·b, rank]
        Ut = Ut.reshape(self.batch + (a, b * self.rank))
        c = FEATURES[self.features](x) @ self.V.transpose(-1, -2)  # [..., N, rank]
        yU = (y @ Ut).unflatten(-1, (b, self.rank))  # [..., N, b, rank]
        # Σ_r c_ir (y_i Ũ_r): rank fused multiply-adds over [..., N, b], not N tiny (b×rank)·rank products
        fb = yU[..., 0] * c[..., :1]
        for r in range(1, self.rank):
            fb.addcmul_(yU[..., r], c[..., r : r + 1])
        return _add(y @ self.theta_t(t), fb)

    def forward(self, t, x, mu=None):
        self._check(x)
        delta = self._lowrank(self.U, self.V, FEATURES[self.features](x), self._basis0(t))
        base = self._shared(self.theta_t(t)).flatten(-len(self.shape))
        return (base + delta).reshape(x.shape[:-1] + self.shape)


class MeanFieldLaw(FeedbackLaw):
    """θ(t, x_i, μ) = θ(t) + U(t)Vφ(x_i) + U_μ(t)V_μ ψ(μ), ψ(μ) = (E x, Var x) of the particle law."""

    kind = "meanfield"

    def __init__(self, shape, d_state: int = 1, *, rank: int = 2, mu_rank: int | None = None, **kw):
        super().__init__(shape, d_state, rank=rank, **kw)
        self.mu_rank = int(
            number("mu_rank", rank if mu_rank is None else mu_rank, low=1, integer=True)
        )
        p = self.theta0
        k = self.order + 1
        self.Umu = nn.Parameter(p.new_zeros(self.batch + (k, self.size, self.mu_rank)))
        self.Vmu = nn.Parameter(
            torch.randn(self.batch + (self.mu_rank, 2 * self.d_state), dtype=p.dtype).to(p.device)
            / math.sqrt(2 * self.d_state)
        )

    def _mu_delta(self, t, x: Tensor, mu: mf.MeanField | None) -> Tensor:
        """U_μ(t) V_μ ψ(μ) as ``[*lead, *batch, 1, size]`` (shared by the particles of one sample)."""
        if mu is None:
            mu = mf.MeanField.of(x)
        psi = torch.cat([mu.mean, mu.var], -1).unsqueeze(-2)  # [*lead, *batch, 1, 2d]
        return self._lowrank(self.Umu, self.Vmu, psi, self._basis0(t))

    def apply_to(self, t, x, y, mu=None):
        """The feedback product plus y_i times the mean-field matrix (one per sample, shared by its particles)."""
        if len(self.shape) != 2:
            return super().apply_to(t, x, y, mu)
        delta = self._mu_delta(t, x, mu)
        return _add(super().apply_to(t, x, y), y @ delta.reshape(delta.shape[:-2] + self.shape))

    def forward(self, t, x, mu: mf.MeanField | None = None):
        theta = super().forward(t, x)
        delta = self._mu_delta(t, x, mu)  # [*lead, *batch, 1, size]
        return theta + delta.reshape(delta.shape[:-1] + self.shape)


WEIGHT_LAWS: dict[str, type[WeightLaw]] = {
    "constant": ConstantLaw,
    "time": TimeLaw,
    "feedback": FeedbackLaw,
    "meanfield": MeanFieldLaw,
    "untied": UntiedLaw,
}

LAW_OPTIONS: dict[str, set[str]] = {  # the options each law accepts beyond the common ones
    "constant": set(),
    "time": {"order"},
    "feedback": {"order", "rank", "features"},
    "meanfield": {"order", "rank", "features", "mu_rank"},
    "untied": {"layers"},
}
_COMMON = {"batch", "init", "init_scale", "T", "device", "dtype"}


def make_law(name: str, shape: int | Sequence[int], d_state: int = 1, **kw) -> WeightLaw:
    """Build ``WEIGHT_LAWS[name](shape, d_state, **kw)``, refusing unknown names and options by name."""
    choice("law", name, WEIGHT_LAWS)
    for k in kw:
        if k not in LAW_OPTIONS[name] | _COMMON:
            allowed = ", ".join(sorted(LAW_OPTIONS[name] | _COMMON))
            raise ValidationError(
                f"law.{k}", f"an option of the {name!r} law ({allowed})", "unknown option"
            )
    _check_law_size(name, shape, d_state, kw)
    return WEIGHT_LAWS[name](shape, d_state, **kw)


def _check_law_size(name: str, shape, d_state, kw: dict) -> None:
    """Refuse a law whose parameters cannot fit the memory budget before allocating them."""
    dims = [shape] if isinstance(shape, int) else shape
    vals = [d_state, kw.get("order", 3), kw.get("rank", 2), kw.get("mu_rank", kw.get("rank", 2))]
    vals.append(kw.get("layers", 4))
    try:
        ints = [int(v) for v in (*dims, *kw.get("batch", ()), *vals)]
    except (TypeError, ValueError, OverflowError):
        return  # the law's own validation names the bad field
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in ints):
        return
    size = math.prod(int(s) for s in dims)
    batch = math.prod(int(b) for b in kw.get("batch", ()))
    d, order, rank, mu, layers = (int(v) for v in vals)
    extra = {"constant": 0, "time": order, "feedback": order + (order + 1) * rank}
    extra["untied"] = layers - 1
    extra["meanfield"] = extra["feedback"] + (order + 1) * mu
    elems = batch * (
        size * (1 + extra[name]) + (rank * d + 2 * mu * d) * (name in ("feedback", "meanfield"))
    )
    check_size("law", (elems,), itemsize=4)
