"""The LQ mean-field-type control problem as an interacting-particle simulation under any weight law (docs/theory.md#lq-control, docs/theory.md#mean-field).

N particles per population follow the Euler–Maruyama scheme (no common noise, step h = T/n)

    x_{l+1} = x_l + h (A x_l + Ā E x_l + B u_l + B̄ E u_l) + √h Σ ξ_l,     u_i = −(θ_g x_i + θ_o),

with θ = law(t_l, x, μ) read as a gain matrix θ_g ``[m, d]`` and an offset θ_o ``[m]`` (law shape ``(2,)`` for
d = m = 1, else ``(m, d + 1)``). The cost is the population mean of Σ_l h·(xᵀQx + ExᵀQ̄Ex + uᵀRu + EuᵀR̄Eu) +
x_Lᵀ Q_T x_L + Ex_Lᵀ Q̄_T Ex_L, averaged over B populations with their own initial means. The optimum of this
discrete problem is ``LQProblem.solve_discrete(n)``: θ_g = K_l, θ_o = (K̄_l − K_l) E x (docs/theory.md#lq-control), so a law that
reads the mean field can reach it; with several initial means an open-loop offset cannot.

The noise is drawn once from a seeded generator (common random numbers), so the loss is a deterministic
function of the law's parameters and two laws are compared on the same noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from . import meanfield as mf
from .costs import lq_running, lq_terminal
from .errors import ValidationError, number
from .laws import WeightLaw, make_law
from .riccati import LQProblem, LQSolution
from .training import FitResult, fit


@dataclass(frozen=True)
class Rollout:
    """A simulated population: states ``xs [n+1, B, N, d]``, controls ``us [n, B, N, m]``, costs."""

    t: Tensor
    xs: Tensor
    us: Tensor
    cost: Tensor  # scalar: mean over populations of each population's cost
    per_population: Tensor  # [B]
    per_particle: Tensor  # [B, N]: particle i's share; its mean over i is the population cost

    def standard_error(self, antithetic: bool = False) -> float:
        """Monte Carlo standard error of ``cost`` (pairs i, i + N/2 averaged first when antithetic)."""
        c = self.per_particle.detach()
        if antithetic:
            h = c.shape[-1] // 2
            c = 0.5 * (c[..., :h] + c[..., h : 2 * h])
        B, N = c.shape
        return float(c.std(-1, unbiased=True).pow(2).sum().sqrt() / (B * math.sqrt(N)))


class RiccatiLaw(nn.Module):
    """The exact optimum as a weight law: θ_g = K(t), θ_o = (K̄(t) − K(t)) E x (docs/theory.md#lq-control)."""

    def __init__(self, sol: LQSolution, shape: tuple[int, ...], T: float):
        super().__init__()
        self.sol, self.shape, self.T = sol, shape, T
        self.n_params = 0

    def forward(self, t, x: Tensor, mu: mf.MeanField | None = None) -> Tensor:
        p = self.sol.problem
        tt = float(t) + 1e-12
        K = torch.as_tensor(np.reshape(self.sol.K(tt), (p.m, p.d)), dtype=x.dtype, device=x.device)
        Kb = torch.as_tensor(
            np.reshape(self.sol.Kbar(tt), (p.m, p.d)), dtype=x.dtype, device=x.device
        )
        m = x.mean(-2, keepdim=True)  # [*lead, 1, d]
        offset = m @ (Kb - K).T  # [*lead, 1, m]
        gain = K.expand(offset.shape[:-1] + K.shape)
        theta = torch.cat([gain, offset.unsqueeze(-1)], -1)  # [*lead, 1, m, d+1]
        return theta.reshape(theta.shape[:-2] + self.shape)


class ParticleLQ:
    """Particle simulation of an ``LQProblem`` under any weight law; seeded common random numbers (docs/theory.md#lq-control)."""

    def __init__(
        self,
        problem: LQProblem,
        m0,
        cov0,
        *,
        n_particles: int = 2048,
        n_steps: int = 50,
        seed: int = 0,
        antithetic: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float64,
    ):
        if not isinstance(problem, LQProblem):
            raise ValidationError("problem", "an LQProblem", type(problem).__name__)
        self.problem = p = problem
        d, m = p.d, p.m
        m0a = np.asarray(m0, dtype=float)
        if m0a.ndim == 0 and d == 1:
            m0a = m0a.reshape(1, 1)
        elif m0a.ndim == 1 and d == 1:
            m0a = m0a[:, None]
        elif m0a.ndim == 1 and m0a.shape[0] == d:
            m0a = m0a[None]
        if m0a.ndim != 2 or m0a.shape[1] != d or not np.all(np.isfinite(m0a)):
            raise ValidationError("m0", f"one initial mean [d={d}] or several [B, {d}]", m0a.shape)
        cov = np.asarray(cov0, dtype=float) * (np.eye(d) if np.ndim(cov0) == 0 else 1.0)
        if cov.shape != (d, d):
            raise ValidationError("cov0", f"a {d}x{d} covariance", cov.shape)
        try:
            chol = np.linalg.cholesky(cov + 1e-300 * np.eye(d))
        except np.linalg.LinAlgError:
            raise ValidationError("cov0", "a positive definite covariance", cov.tolist()) from None
        self.n_particles = number("n_particles", n_particles, low=2, integer=True)
        self.n_steps = number("n_steps", n_steps, low=1, integer=True)
        if antithetic and self.n_particles % 2:
            raise ValidationError("n_particles", "an even count with antithetic=True", n_particles)
        self.antithetic, self.seed = antithetic, int(seed)
        self.m0, self.cov0 = m0a, cov
        self.B = m0a.shape[0]
        self.h = p.T / self.n_steps
        self.dtype = dtype
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.law_shape: tuple[int, ...] = (2,) if d == 1 and m == 1 else (m, d + 1)
        tt: dict[str, Any] = dict(dtype=dtype, device=self.device)
        self._mats = {
            k: torch.as_tensor(getattr(p, k), **tt)
            for k in ("A", "Abar", "B", "Bbar", "Sigma", "Q", "Qbar", "R", "Rbar", "QT", "QTbar")
        }
        self._m0 = torch.as_tensor(m0a, **tt)
        self._chol = torch.as_tensor(chol, **tt)
        self.x0, self.xi = self.draw(self.n_particles, self.seed)

    # ------------------------------------------------------------------ noise and initial states
    def draw(self, n_particles: int, seed: int) -> tuple[Tensor, Tensor]:
        """Initial states ``[B, N, d]`` (exact sample mean m0 when antithetic) and noise ``[n, B, N, k]``."""
        p, B, n = self.problem, self.B, self.n_steps
        k = p.Sigma.shape[1]
        g = torch.Generator(device="cpu").manual_seed(seed)
        half = n_particles // 2 if self.antithetic else n_particles
        z = torch.randn((B, half, p.d), generator=g, dtype=self.dtype)
        xi = torch.randn((n, B, half, k), generator=g, dtype=self.dtype)
        if self.antithetic:
            z, xi = torch.cat([z, -z], -2), torch.cat([xi, -xi], -2)
        z, xi = z.to(self.device), xi.to(self.device)
        x0 = self._m0[:, None, :] + z @ self._chol.T
        return x0, xi

    def make_law(self, name: str, **opts) -> WeightLaw:
        """A weight law of this problem's θ shape, starting at θ = 0 (u = 0), on the problem's device/dtype."""
        opts.setdefault("init", torch.zeros(self.law_shape, dtype=self.dtype))
        opts.setdefault("T", self.problem.T)
        return make_law(
            name, self.law_shape, self.problem.d, dtype=self.dtype, device=self.device, **opts
        )

    # ----------------------------------------------------------------------------- simulation
    def control(self, theta: Tensor, x: Tensor) -> Tensor:
        """u = −(θ_g x + θ_o): ``theta [B, N or 1, *law_shape], x [B, N, d] -> [B, N, m]``."""
        d, m = self.problem.d, self.problem.m
        th = theta.reshape(theta.shape[: theta.dim() - len(self.law_shape)] + (m, d + 1))
        return -((th[..., :d] @ x.unsqueeze(-1)).squeeze(-1) + th[..., d])

    def simulate(
        self,
        law: Callable,
        *,
        x0: Tensor | None = None,
        xi: Tensor | None = None,
        keep: bool = True,
    ) -> Rollout:
        """Euler–Maruyama rollout of the closed loop under ``law`` on the stored (or given) noise."""
        M = self._mats
        x = self.x0 if x0 is None else x0
        xi = self.xi if xi is None else xi
        h, sh = self.h, math.sqrt(self.h)
        xs, us = [x], []
        acc = x.new_zeros(x.shape[:-1])
        for l in range(self.n_steps):
            t = l * h
            mu = mf.MeanField.of(x)
            u = self.control(law(t, x, mu), x)
            acc = acc + h * lq_running(x, u, M["Q"], M["Qbar"], M["R"], M["Rbar"])
            mean_x, mean_u = mu.mean.unsqueeze(-2), u.mean(-2, keepdim=True)
            drift = x @ M["A"].T + mean_x @ M["Abar"].T + u @ M["B"].T + mean_u @ M["Bbar"].T
            x = x + h * drift + sh * xi[l] @ M["Sigma"].T
            if keep:
                xs.append(x)
                us.append(u)
        acc = acc + lq_terminal(x, M["QT"], M["QTbar"])
        per_pop = acc.mean(-1)
        t = torch.linspace(0.0, self.problem.T, self.n_steps + 1, dtype=self.dtype)
        return Rollout(
            t=t,
            xs=torch.stack(xs) if keep else x.unsqueeze(0),
            us=torch.stack(us) if keep else x.new_zeros(0),
            cost=per_pop.mean(),
            per_population=per_pop,
            per_particle=acc,
        )

    def loss(self, law: Callable) -> Tensor:
        """The particle cost under ``law`` on the fixed noise (differentiable in the law's parameters)."""
        return self.simulate(law, keep=False).cost

    # ---------------------------------------------------------------------------- references
    def exact(self) -> LQSolution:
        """The continuous-time optimum (docs/theory.md#lq-control)."""
        return self.problem.solve()

    def discrete(self) -> LQSolution:
        """The exact optimum of this Euler discretisation (docs/theory.md#lq-discrete)."""
        return self.problem.solve_discrete(self.n_steps)

    def J_star(self, discrete: bool = True) -> float:
        """Optimal cost averaged over the B initial means (discrete: of this very discretisation)."""
        sol = self.discrete() if discrete else self.exact()
        return float(np.mean([sol.cost(m, self.cov0) for m in self.m0]))

    def optimal_law(self, discrete: bool = True) -> RiccatiLaw:
        """The Riccati feedback u = −K(x − Ex) − K̄Ex as a law (discrete gains by default)."""
        sol = self.discrete() if discrete else self.exact()
        return RiccatiLaw(sol, self.law_shape, self.problem.T)

    def linear_policy_cost(self, K: Tensor, Kbar: Tensor) -> Tensor:
        """Exact expected cost of u = −K_l(x − Ex) − K̄_l Ex in this discretisation (Lyapunov recursion).

        ``K``, ``Kbar``: ``[n, m, d]`` or ``[m, d]`` (constant); differentiable (torch). Averaged over the B means.
        S_{l+1} = F S Fᵀ + hΣΣᵀ with F = I + h(A − BK_l); m_{l+1} = (I + h(Â − B̂K̄_l)) m_l (docs/theory.md#lq-discrete).
        """
        M, h, n = self._mats, self.h, self.n_steps
        d = self.problem.d
        K = K.expand((n,) + K.shape[-2:]) if K.dim() == 2 else K
        Kbar = Kbar.expand((n,) + Kbar.shape[-2:]) if Kbar.dim() == 2 else Kbar
        eye = torch.eye(d, dtype=self.dtype, device=self.device)
        Ah, Bh = M["A"] + M["Abar"], M["B"] + M["Bbar"]
        Qh, Rh = M["Q"] + M["Qbar"], M["R"] + M["Rbar"]
        W = h * M["Sigma"] @ M["Sigma"].T
        S = torch.as_tensor(self.cov0, dtype=self.dtype, device=self.device)
        m = self._m0  # [B, d]
        cost = torch.zeros((), dtype=self.dtype, device=self.device)
        for l in range(n):
            k, kb = K[l], Kbar[l]
            cost = cost + h * ((M["Q"] + k.T @ M["R"] @ k) * S).sum()
            cost = cost + h * torch.einsum("bi,ij,bj->b", m, Qh + kb.T @ Rh @ kb, m).mean()
            F = eye + h * (M["A"] - M["B"] @ k)
            S = F @ S @ F.T + W
            m = m @ (eye + h * (Ah - Bh @ kb)).T
        cost = cost + (M["QT"] * S).sum()
        return cost + torch.einsum("bi,ij,bj->b", m, M["QT"] + M["QTbar"], m).mean()

    def effective_gains(self, rollout: Rollout) -> tuple[Tensor, Tensor, Tensor]:
        """Least-squares fit u ≈ −K_eff(x − Ex) − K̄_eff Ex − c per step over all particles and populations.

        Works for any law; for the Riccati law it returns K_l and K̄_l exactly. Returns ``K_eff [n, m, d]``,
        ``Kbar_eff [n, m, d]`` and the offset ``c [n, m]``. Needs B ≥ 2 distinct initial means to identify K̄.
        """
        d = self.problem.d
        xs, us = rollout.xs[:-1].detach(), rollout.us.detach()  # [n, B, N, d], [n, B, N, m]
        mean = xs.mean(-2, keepdim=True).expand_as(xs)
        ones = torch.ones(xs.shape[:-1] + (1,), dtype=xs.dtype, device=xs.device)
        feats = torch.cat([xs - mean, mean, ones], -1).flatten(1, 2)  # [n, B*N, 2d+1]
        target = -us.flatten(1, 2)  # [n, B*N, m]
        coef = torch.linalg.lstsq(feats, target).solution  # [n, 2d+1, m]
        K = coef[:, :d].transpose(-1, -2)
        Kbar = coef[:, d : 2 * d].transpose(-1, -2)
        return K, Kbar, coef[:, 2 * d]

    # ------------------------------------------------------------------------------- learning
    def learn(
        self,
        name: str,
        *,
        steps: int = 10,
        optimizer: str = "lbfgs",
        lr: float | None = None,
        tol: float = 1e-9,
        patience: int = 2,
        progress: bool = False,
        **law_opts,
    ) -> tuple[WeightLaw, FitResult]:
        """Fit a fresh ``name`` law (starting at u = 0) to the particle cost on the fixed noise (docs/theory.md#mean-field)."""
        law = self.make_law(name, **law_opts)
        res = fit(
            law,
            lambda: self.loss(law),
            steps=steps,
            optimizer=optimizer,
            lr=lr,
            tol=tol,
            patience=patience,
            progress=progress,
        )
        return law, res

    def compare(self, law: Callable, *, n_particles: int = 20_000, seed: int = 12345) -> dict:
        """Cost of ``law`` vs the discrete optimum on the same fresh noise (common random numbers).

        Returns ``cost``, ``optimal`` (both Monte Carlo), ``gap`` = (cost − optimal)/optimal and its standard
        error ``gap_se`` (from the per-particle differences), ``J_star_h`` (exact discrete optimum) and
        ``J_star`` (continuous).
        """
        x0, xi = self.draw(n_particles, seed)
        with torch.no_grad():
            a = self.simulate(law, x0=x0, xi=xi)
            b = self.simulate(self.optimal_law(), x0=x0, xi=xi, keep=False)
        diff = Rollout(
            a.t, a.xs, a.us, a.cost - b.cost, a.per_population, a.per_particle - b.per_particle
        )
        opt = float(b.cost)
        return dict(
            cost=float(a.cost),
            optimal=opt,
            gap=float(a.cost - b.cost) / opt,
            gap_se=diff.standard_error(self.antithetic) / opt,
            se=a.standard_error(self.antithetic),
            J_star_h=self.J_star(True),
            J_star=self.J_star(False),
            rollout=a,
        )

    def best_constant_gains(self, steps: int = 20) -> tuple[Tensor, Tensor, float]:
        """min over constant (K, K̄) of the exact cost of u = −K(x − Ex) − K̄Ex (Lyapunov recursion, L-BFGS)."""
        p = self.problem
        sol = self.exact()
        K = torch.tensor(np.reshape(sol.K(0.0), (p.m, p.d)), dtype=self.dtype, requires_grad=True)
        Kb = torch.tensor(
            np.reshape(sol.Kbar(0.0), (p.m, p.d)), dtype=self.dtype, requires_grad=True
        )
        fit(
            [K, Kb],
            lambda: self.linear_policy_cost(K, Kb),
            steps=steps,
            optimizer="lbfgs",
            tol=1e-12,
            patience=2,
            progress=False,
        )
        with torch.no_grad():
            J = float(self.linear_policy_cost(K, Kb))
        return K.detach(), Kb.detach(), J
