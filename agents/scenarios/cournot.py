"""``cournot``: n firms set quantities under linear demand p = α − βΣq; empathy moves competition to collusion (docs/theory.md#static-games).

Firm i's cost is L_i = −(p − c_i) q_i. With symmetric empathy λ the Λ-Nash quantity is q = (α−c)/(β(3+λ)):
λ = 0 Cournot, λ = 1 monopoly total, λ = −1 competitive (price = c). Policies: ``direct`` (the quantity is
the action) or ``mftt`` (each firm's machine intelligence, a small ``mftt.MeanFieldTypeTransformer``,
reads the recent window of (price, total quantity) tokens of a market and sets its quantity; the
demand intercept varies across markets, so the MI has to forecast demand from the history).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call

import mftt as mftt_pkg
from control.errors import ValidationError, number

from ..game import ActionSpace, Game
from ._static import DTYPE, QuadraticGame, nash_reference
from .base import Scenario, register


def cournot_quadratic(alpha: float, beta: float, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) with L_i = ½qᵀA_i q + b_iᵀq = βq_iΣq − (α−c_i)q_i: A_i = β(e_i1ᵀ + 1e_iᵀ), b_i = −(α−c_i)e_i."""
    n = c.shape[0]
    eye, one = np.eye(n), np.ones(n)
    A = beta * (eye[:, :, None] * one[None, None, :] + one[None, :, None] * eye[:, None, :])
    b = -(alpha - c)[:, None] * eye
    return A, b


class CournotMFTTGame(Game):
    """Firms whose MFTT maps a market's (price, total quantity) history window to a quantity (docs/theory.md#mean-field).

    ``markets`` parallel markets with intercepts α_m = α(1 + spread·z_m); costs are averaged over markets.
    The read-out is scaled down (``OUT_SCALE``) so that Adam at the scenario's lr moves quantities gently.
    """

    OUT_SCALE = 0.2
    solve_defaults: dict = {"optimizer": "adam"}  # an instance attribute of Game

    def __init__(
        self, *, n, alpha, beta, c, q_max, window, markets, spread, noise, law, mftt, seed, device
    ):
        self.n_agents, self.device = n, torch.device(device)
        self.agent_names = [f"firm{j}" for j in range(n)]
        self.beta, self.q_max = beta, q_max
        self.c = torch.as_tensor(c, dtype=DTYPE, device=self.device)
        g = torch.Generator().manual_seed(seed)
        z = torch.linspace(-1, 1, markets, dtype=DTYPE)
        self.alpha_m = (alpha * (1 + spread * z)).to(self.device)  # [M]
        q_hist = (
            (alpha - float(np.mean(c))) / (beta * (n + 1)) * n
        )  # Cournot total as a typical past
        Q = q_hist * (1 + 0.3 * torch.rand(markets, window, generator=g, dtype=DTYPE))
        p = (
            self.alpha_m.cpu()[:, None]
            - beta * Q
            + noise * torch.randn(markets, window, generator=g, dtype=DTYPE)
        )
        scale = max(alpha, 1e-9)
        self.tokens = (torch.stack([p, Q], -1) / scale).to(self.device)  # [M, W, 2], O(1) features
        cfg = dict(d_model=8, heads=2, d_ff=16, depth=1, norm="soft")
        cfg.update(mftt or {})
        for k in ("d_in", "d_out", "weights"):
            if k in (mftt or {}):
                raise ValidationError(f"mftt.{k}", "left to the scenario", mftt[k])
        self.models = []
        for j in range(n):
            torch.manual_seed(seed * 1009 + j)
            conf = mftt_pkg.MFTTConfig(**cfg, weights=law, d_in=2, d_out=1)
            self.models.append(
                mftt_pkg.MeanFieldTypeTransformer(conf, device=self.device, dtype=DTYPE)
            )
        # one batched model evaluates every firm at once with the firms' stacked weights (no loop over agents)
        self.batched = mftt_pkg.MeanFieldTypeTransformer(
            conf, device=self.device, dtype=DTYPE, batch=(n,)
        )
        self.batched.requires_grad_(False)
        self.q0 = 0.5 * (alpha - float(np.mean(c))) / (beta * (n + 1))

    def parameters_of(self, j: int) -> list[Tensor]:
        """Firm j's MFTT weights."""
        return list(self.models[j].parameters())

    def quantities(self) -> Tensor:
        """q [n, M] = q₀(1 + out): the last token's read-out, affine (no saturation traps for the learner)."""
        named = [dict(m.named_parameters()) for m in self.models]
        stacked = {k: torch.stack([d[k] for d in named]) for k in named[0]}
        M, W, f = self.tokens.shape
        x = self.tokens.unsqueeze(1).expand(
            M, self.n_agents, W, f
        )  # [M, n, W, 2]: firms on the agent axis
        out = functional_call(self.batched, stacked, (x,))[:, :, -1, 0]  # [M, n]
        return self.q0 * (1 + self.OUT_SCALE * out.T)

    def costs(self) -> Tensor:
        """L_i = −mean_m (α_m − βQ_m − c_i) q_im."""
        q = self.quantities()
        price = self.alpha_m - self.beta * q.sum(0)
        return -((price[None, :] - self.c[:, None]) * q).mean(1)

    def action_space(self, j: int) -> ActionSpace:
        """Firm j's quantity in every market [M] (any quantity in [0, q_max]), the others' MFTTs frozen."""
        with torch.no_grad():
            q = self.quantities()

        def costs(z: Tensor) -> Tensor:
            qz = torch.cat([q[:j], z.reshape(1, -1), q[j + 1 :]])
            price = self.alpha_m - self.beta * qz.sum(0)
            return -((price[None, :] - self.c[:, None]) * qz).mean(1)

        zero, top = torch.zeros_like(q[j]), torch.full_like(q[j], float(self.q_max))
        return ActionSpace(q[j].clone(), zero, top, costs, quadratic=True)

    def actions(self) -> np.ndarray:
        """Mean quantity per firm over markets [n, 1]."""
        with torch.no_grad():
            return self.quantities().mean(1, keepdim=True).cpu().numpy()


@register
class Cournot(Scenario):
    """Quantity competition with linear inverse demand; closed-form Λ-Nash for any Λ (docs/theory.md#static-games)."""

    name = "cournot"
    description = (
        "n firms choose quantities; price p = α − β·Σq; firm i earns (p − c_i)q_i. Empathy Λ moves the "
        "market from competition (spite) through Cournot (selfish) to collusion (team). With policy "
        "'mftt' each firm's MI forecasts demand from the price history of its market."
    )
    n_agents = 2
    defaults: ClassVar[dict] = dict(
        alpha=10.0, beta=1.0, c=1.0, q_max=None, window=6, markets=8, spread=0.3, noise=0.05
    )
    lambda_meaning: ClassVar[dict] = {
        "selfish": "Cournot competition: q = (α−c)/(3β) for two firms",
        "altruistic": "partial collusion: firms weigh the rival's profit, output falls, price rises",
        "team": "full collusion: monopoly total (α−c)/(2β), split evenly by symmetric play",
        "spiteful": "relative-profit firms: output rises towards the competitive level",
        "zero_sum": "pure rivalry (two firms: price driven to marginal cost, λ = −1)",
        "berge": "each firm maximises the other's profit: it produces nothing (corner)",
        "selfless": "like berge",
        "coopetitive": "collude inside your group, compete with the other group",
        "self_abnegating": "firms harm their own profit: they produce nothing (corner)",
    }
    default_concept = "nash"
    default_policy = "direct"
    policies = ("direct", "mftt")
    default_steps = 150
    default_lr = 0.1

    def _c(self) -> np.ndarray:
        c = np.atleast_1d(np.asarray(self.params["c"], dtype=float))
        if c.ndim != 1 or c.shape[0] not in (1, self.n) or not np.isfinite(c).all():
            raise ValidationError(
                "cournot.c", f"a number or {self.n} finite costs", self.params["c"]
            )
        return np.broadcast_to(c, (self.n,)).copy()

    def _coef(self) -> tuple[float, float, np.ndarray, float]:
        p = self.params
        alpha = number("cournot.alpha", p["alpha"], low=0, strict_low=True)
        beta = number("cournot.beta", p["beta"], low=0, strict_low=True)
        qm = alpha / beta if p["q_max"] is None else p["q_max"]
        qm = number("cournot.q_max", qm, low=0, strict_low=True)
        return alpha, beta, self._c(), qm

    def quadratic(self) -> tuple[np.ndarray, np.ndarray]:
        """(A, b) of the quadratic cost form (see ``cournot_quadratic``)."""
        alpha, beta, c, _ = self._coef()
        return cournot_quadratic(alpha, beta, c)

    def equilibrium_quantities(self, Lambda: np.ndarray) -> np.ndarray | None:
        """Closed-form Λ-Nash quantities (None when not interior / not unique)."""
        _, _, _, qm = self._coef()
        A, b = self.quadratic()
        return nash_reference(A, b, Lambda, low=0.0, high=qm)

    def reference(self, Lambda: np.ndarray) -> np.ndarray | None:
        """Material costs −π_i at the closed-form Λ-Nash quantities.

        After ``game(policy="mftt")`` the reference is the average over that game's markets.
        """
        q = self.equilibrium_quantities(Lambda)
        if q is None:
            return None
        A, b = self.quadratic()
        alpha_m = getattr(self, "_alpha_m", None)
        if alpha_m is None:
            return 0.5 * np.einsum("ijk,j,k->i", A, q, q) + b @ q
        # mftt markets: the equilibrium is linear in α_m, so average the per-market closed form
        alpha, beta, c, qm = self._coef()
        out = []
        for a in alpha_m:
            Am, bm = cournot_quadratic(float(a), beta, c)
            qq = nash_reference(Am, bm, Lambda, low=0.0, high=qm)
            if qq is None:
                return None
            out.append(0.5 * np.einsum("ijk,j,k->i", Am, qq, qq) + bm @ qq)
        return np.mean(out, 0)

    def game(
        self, *, Lambda=None, law="constant", policy="direct", mftt=None, seed=0, device="cpu"
    ):
        """Direct quantities (a ``QuadraticGame`` on [0, q_max]) or MFTT firms (``CournotMFTTGame``)."""
        alpha, beta, c, qm = self._coef()
        self._alpha_m = None
        if policy == "mftt":
            p = self.params
            g = CournotMFTTGame(
                n=self.n,
                alpha=alpha,
                beta=beta,
                c=c,
                q_max=qm,
                window=int(number("cournot.window", p["window"], low=1, integer=True)),
                markets=int(number("cournot.markets", p["markets"], low=1, integer=True)),
                spread=number("cournot.spread", p["spread"], low=0, high=0.99),
                noise=number("cournot.noise", p["noise"], low=0),
                law=law,
                mftt=mftt,
                seed=seed,
                device=device,
            )
            self._alpha_m = g.alpha_m.cpu().numpy()  # reference() then averages over these markets
            return g
        if policy != "direct":
            raise ValidationError("policy", "one of direct, mftt", policy)
        A, b = cournot_quadratic(alpha, beta, c)
        init = (alpha - float(np.mean(c))) / (beta * (self.n + 1)) * 0.5
        return QuadraticGame(
            A,
            b,
            init=init,
            low=0.0,
            high=qm,
            agent_names=[f"firm{j}" for j in range(self.n)],
            device=device,
        )
