"""Populations of exchangeable agents: K populations of N agents each share one policy per population.

Agent i of population k has its own state x_i ∈ R^d and plays u_i = π_k(t, x_i, μ); the agents meet only
through the law μ of each population (its mean and variance per replica), so a step costs O(K·N) whatever N.
The states are simulated over leading axes ``[R, K, N, d]``: R independent replicas of the whole population
(each with its own common noise), K populations, N agents. With noise (idiosyncratic σ_k dW_i, common
σ⁰_k dW⁰) the dynamics are an SDE stepped by Euler–Maruyama from a seeded generator that restarts at each
simulation (common random numbers across learning steps and across cells with the same seed); without
noise they are an ODE solved by ``control.solve``.

The players of the game are the K populations; ``costs()`` returns the mean cost J̄_k of each population.
How a population's gradient treats the law (``gradient``):

* ``mean_field`` (default): each agent is too small to move the law, so the law's statistics are frozen
  (stop-gradient) when its cost is differentiated: one backward pass gives every population's Nash
  (mean-field game) gradient at any N. It differs from the N-player own-gradient by O(1/N).
* ``exact``: the N-player own-gradient ∂J_i/∂θ_i of every agent through per-agent parameter copies and one
  batched backward over agents (O(N²): for small N and for checking ``mean_field``).
* ``population``: each population is one decision-maker that moves its whole law (mean-field-type game
  between populations; with Λ = 11ᵀ the social optimum): the law stays differentiable.

See docs/populations.md#populations and docs/populations.md#population-gradients.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from control import DivergenceError, solve
from control.errors import ValidationError, choice, number

from .best_response import BestResponse, Budget
from .deviations import population_best_response
from .game import Game
from .population_policy import (
    Drift,
    Ghosts,
    Law,
    LinearPopulationPolicy,
    Policy,
    Running,
    Terminal,
    sample_normal,
)

__all__ = [
    "GRADIENTS",
    "Ghosts",
    "Law",
    "LinearPopulationPolicy",
    "PopulationGame",
    "sample_normal",
]

GRADIENTS = ("mean_field", "exact", "population")
SCHEMES = (
    "heun",
    "euler",
)  # SDE steps (noise on); without noise control.solve's ``method`` is used
EXACT_MAX_AGENTS = 512  # the exact own-gradient holds an [N, N, …] Jacobian block

# agents per population whose whole trajectories a rollout keeps (PopulationGame.rollout)
SAMPLED = 8


def rollout_parts(summary: np.ndarray, K: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Split a population rollout's summary ``[T, 4·K + S·K]`` (``PopulationGame.rollout``, as stored in the
    results' ``trajectory``) into the statistics ``[T, K, 4]`` (mean, 5 %, 50 %, 95 %) and the sampled
    agents' paths ``[T, K, S]``. Columns that are NaN throughout (padding of a results file) are dropped;
    None when the summary is not of that form (e.g. routing's flows)."""
    a = np.asarray(summary, float)
    if a.ndim != 2 or K < 1 or a.shape[1] < 4 * K:
        return None
    stats, paths = a[:, : 4 * K], a[:, 4 * K :]
    paths = paths[:, np.isfinite(paths).any(0)] if paths.size else paths
    if paths.shape[1] % K:
        return None
    T = len(a)
    return stats.reshape(T, K, 4), paths.reshape(T, K, -1)


class PopulationGame(Game):
    """K populations × N agents; players are the populations, costs the mean cost per population.

    ``x0 [R, K, N, d]``; ``drift(t, x, u, law)``, ``running_cost(t, x, u, law) -> [R, K, N]``,
    ``terminal_cost(x, law) -> [R, K, N]``; ``sigma``/``sigma0`` per population (idiosyncratic/common noise).
    """

    solve_defaults: dict = {"optimizer": "adam"}
    players_are_populations = True

    def __init__(
        self,
        names: Sequence[str],
        policy: Policy,
        x0: Tensor,
        drift: Drift,
        running_cost: Running,
        terminal_cost: Terminal,
        *,
        T: float = 1.0,
        n_steps: int = 20,
        sigma: Sequence[float] | np.ndarray | float = 0.0,
        sigma0: Sequence[float] | np.ndarray | float = 0.0,
        gradient: str = "mean_field",
        noise_seed: int = 0,
        bounds: tuple[float, float] | None = None,
        method: str = "rk4",
        scheme: str = "heun",
        noise_dims: Sequence[float] | None = None,
        checkpoint: bool | None = None,
    ):
        if not isinstance(x0, Tensor) or x0.dim() != 4 or not x0.is_floating_point():
            raise ValidationError(
                "x0", "a float tensor [R, K, N, d] (replicas × populations × agents × d)", x0
            )
        self.R, self.K, self.N, self.d = x0.shape
        if len(names) != self.K:
            raise ValidationError("names", f"{self.K} population names", list(names))
        self.n_agents, self.agent_names = self.K, list(names)
        self.policy, self.x0, self.device = policy, x0, x0.device
        self.drift, self.running_cost, self.terminal_cost = drift, running_cost, terminal_cost
        self.T = float(number("T", T, low=0.0, strict_low=True))
        self.n_steps = int(number("n_steps", n_steps, low=1, integer=True))
        self.gradient = choice("gradient", gradient, GRADIENTS)
        # recompute each SDE step in the backward pass instead of keeping its activations: memory O(R·K·N·d) per
        # step instead of the policy's internals (an MFTT's depth solve) for every step; same numbers
        if checkpoint is not None and not isinstance(checkpoint, bool):
            raise ValidationError(
                "checkpoint", "True, False or None (on for MFTT policies)", checkpoint
            )
        self.checkpoint = (
            getattr(policy, "kind", "") == "mftt" if checkpoint is None else checkpoint
        )
        if (
            self.gradient == "population"
        ):  # values and gradients agree: best-response rounds (L-BFGS) apply
            self.solve_defaults = {"optimizer": "adam", "polish_rounds": 6}
        if self.gradient == "exact" and self.N > EXACT_MAX_AGENTS:
            raise ValidationError(
                "gradient",
                f"mean_field or population above {EXACT_MAX_AGENTS} agents",
                "exact",
                reason=f"the exact own-gradient costs O(N²) (N = {self.N})",
            )
        self.sigma = self._per_population("sigma", sigma)
        self.sigma0 = self._per_population("sigma0", sigma0)
        # which state coordinates the noise drives (e.g. velocities, not positions): a multiplier per coordinate
        nd = np.ones(self.d) if noise_dims is None else np.asarray(noise_dims, dtype=float)
        if nd.shape != (self.d,) or not np.isfinite(nd).all():
            raise ValidationError("noise_dims", f"{self.d} finite multipliers", noise_dims)
        self.noise_dims = torch.as_tensor(nd, dtype=x0.dtype, device=self.device)
        self.noisy = bool(((self.sigma != 0).any() or (self.sigma0 != 0).any()) and (nd != 0).any())
        self.noise_seed = int(noise_seed)
        self.bounds = bounds
        self.method = method
        self.scheme = choice("scheme", scheme, SCHEMES)
        S = int(policy.samples)  # the agents an attention policy reads, fixed per game
        g = torch.Generator().manual_seed(self.noise_seed + 31)
        self._sample = (
            None
            if S == 0
            else torch.randperm(self.N, generator=g)[: min(S, self.N)].to(self.device)
        )
        if self.gradient == "exact" and policy.kind != "linear":
            raise ValidationError(
                "gradient", "mean_field or population for a non-linear policy", "exact"
            )
        self.times = torch.linspace(
            0.0, self.T, self.n_steps + 1, dtype=x0.dtype, device=self.device
        )

    def _per_population(self, field: str, v) -> Tensor:
        a = np.broadcast_to(np.atleast_1d(np.asarray(v, dtype=float)), (self.K,))
        if not np.isfinite(a).all() or (a < 0).any():
            raise ValidationError(field, f"a number ≥ 0 or {self.K} of them", v)
        return torch.as_tensor(a.copy(), dtype=self.x0.dtype, device=self.device)

    # ---- protocol -----------------------------------------------------------------------------
    def parameters_of(self, j: int) -> list[Tensor]:
        return self.policy.parameters_of(j)

    def costs(self) -> Tensor:
        """Mean cost J̄_k [K]; its gradient is the one ``gradient`` names (values are the same for all)."""
        if self.gradient != "exact" or not torch.is_grad_enabled():
            return self.agent_costs().mean((0, 2))
        return self._exact_surrogate()

    def n_agents_total(self) -> int:
        return self.K * self.N

    # ---- simulation ---------------------------------------------------------------------------
    def law(self, x: Tensor, frozen: bool | None = None) -> Law:
        lw = Law.of(x, self._sample)
        if frozen is None:
            frozen = self.gradient == "mean_field"
        return lw.detach() if frozen else lw

    def agent_costs(
        self,
        W: Tensor | None = None,
        *,
        ghosts: Ghosts | None = None,
        states: list[Tensor] | None = None,
    ) -> Tensor:
        """Every agent's cost ``[R, K, N]`` (or the ghosts' ``[R, K, M]`` when ``ghosts`` is given).

        ``W``: per-agent gains (see ``LinearPopulationPolicy``). ``ghosts``: M extra agents per population who
        play against the law of the real ones without entering it (a deviation too small to move the flow);
        with noise they replay the recorded flow and common noise. ``states`` collects ``x`` at every grid time.
        """
        if not self.noisy:
            return self._ode_costs(W, ghosts, states)
        if ghosts is not None:
            return self._ghost_costs(ghosts)
        x = self.x0
        c = x.new_zeros(x.shape[:3])
        act = lambda t, x, law: self._act(t, x, law, W)  # noqa: E731
        recompute = self.checkpoint and torch.is_grad_enabled()
        for t, h, dW, dW0 in self._noise(x.shape):
            if states is not None:
                states.append(x.detach())
            noise = h.sqrt() * (self._s * dW + self._s0 * dW0)
            if recompute:
                x, dc = checkpoint(self._step, t, h, x, noise, act, use_reentrant=False)
            else:
                x, dc = self._step(t, h, x, noise, act)
            c = c + dc
        if states is not None:
            states.append(x.detach())
        return self._finite(c + self.terminal_cost(x, self.law(x)))

    def _step(
        self, t, h, x, noise, act, laws: tuple[Law, Law] | None = None
    ) -> tuple[Tensor, Tensor]:
        """One stochastic Heun step (additive noise: weak order 2) and the trapezoidal running cost.

        ``laws``: the (recorded) laws at t and t + h for agents who do not enter them (ghosts).
        """
        law = self.law(x) if laws is None else laws[0]
        u = act(t, x, law)
        f, ell = self.drift(t, x, u, law), self.running_cost(t, x, u, law)
        if self.scheme == "euler":
            return x + h * f + noise, h * ell
        xe = x + h * f + noise
        law1 = self.law(xe) if laws is None else laws[1]
        u1 = act(t + h, xe, law1)
        f1, ell1 = self.drift(t + h, xe, u1, law1), self.running_cost(t + h, xe, u1, law1)
        return x + 0.5 * h * (f + f1) + noise, 0.5 * h * (ell + ell1)

    @property
    def _s(self) -> Tensor:
        return self.sigma.view(1, -1, 1, 1) * self.noise_dims

    @property
    def _s0(self) -> Tensor:
        return self.sigma0.view(1, -1, 1, 1) * self.noise_dims

    def _noise(self, shape, seed: int | None = None, common_only: bool = False):
        """(t, h, dW [shape], dW0 [R, 1, 1, d]) per step from a generator seeded afresh (common random numbers).

        dW0 always comes from the game's seed, so ghosts (``seed``) meet the real population's common noise.
        """
        # drawn on the CPU and moved: the same seed gives the same noise on every device
        g0 = torch.Generator().manual_seed(self.noise_seed)
        g = g0 if seed is None else torch.Generator().manual_seed(seed)
        dt, dev = self.x0.dtype, self.device
        for n in range(self.n_steps):
            t, h = self.times[n], self.times[n + 1] - self.times[n]
            dW0 = torch.randn(self.R, 1, 1, self.d, generator=g0, dtype=dt).to(dev)
            if (
                seed is not None
            ):  # the real population's idiosyncratic draws are skipped to keep dW0 in step
                torch.randn(self.x0.shape, generator=g0, dtype=dt)
            yield t, h, torch.randn(shape, generator=g, dtype=dt).to(dev), dW0

    def flow(self) -> list[Law]:
        """The population's law at every grid time (no gradient): what a small deviating agent faces."""
        out: list[Law] = []
        states: list[Tensor] = []
        with torch.no_grad():
            self.agent_costs(states=states)
        for x in states:
            out.append(Law.of(x, self._sample))
        return out

    def _ghost_costs(self, gh: Ghosts) -> Tensor:
        flow = gh.flow if gh.flow is not None else self.flow()
        g = gh.x0
        c = g.new_zeros(g.shape[:3])
        play = lambda t, g, law: self._clip(gh.play(t, g, law))  # noqa: E731
        for n, (t, h, dW, dW0) in enumerate(self._noise(g.shape, seed=gh.seed)):
            g, dc = self._step(
                t, h, g, h.sqrt() * (self._s * dW + self._s0 * dW0), play, (flow[n], flow[n + 1])
            )
            c = c + dc
        return self._finite(c + self.terminal_cost(g, flow[-1]))

    def _ode_costs(self, W, ghosts: Ghosts | None, states) -> Tensor:
        g = None if ghosts is None else ghosts.x0
        R, K, N, d = self.x0.shape
        nx = self.x0.numel()
        M = 0 if g is None else g.shape[2]
        ng = R * K * M * d

        def field(t: Tensor, z: Tensor) -> Tensor:
            x = z[:nx].reshape(R, K, N, d)
            law = self.law(x)
            u = self._act(t, x, law, W)
            parts = [self.drift(t, x, u, law).reshape(-1)]
            if ghosts is not None:  # g is ghosts.x0
                gx = z[nx : nx + ng].reshape(R, K, M, d)
                ug = self._clip(ghosts.play(t, gx, law))
                parts += [
                    self.drift(t, gx, ug, law).reshape(-1),
                    self.running_cost(t, gx, ug, law).reshape(-1),
                ]
            else:
                parts.append(self.running_cost(t, x, u, law).reshape(-1))
            return torch.cat(parts)

        z0 = [self.x0.reshape(-1)]
        if g is not None:
            z0 += [g.reshape(-1), g.new_zeros(R * K * M)]
        else:
            z0.append(self.x0.new_zeros(R * K * N))
        sol = solve(field, torch.cat(z0), self.times, method=self.method)
        self.nfe += sol.nfe
        zT = sol.xs[-1]
        xT = zT[:nx].reshape(R, K, N, d)
        if states is not None:
            states.extend(sol.xs[:, :nx].reshape(-1, R, K, N, d).detach())
        law = self.law(xT)
        if g is not None:
            gT = zT[nx : nx + ng].reshape(R, K, M, d)
            return self._finite(zT[nx + ng :].reshape(R, K, M) + self.terminal_cost(gT, law))
        return self._finite(zT[nx:].reshape(R, K, N) + self.terminal_cost(xT, law))

    # (k, agent index or None for the whole population, play(t, x_k [R, M, d], law) -> [R, M, m]):
    # who deviates while a best response is searched (agents.deviations)
    override: tuple[int, int | None, Callable[[Tensor, Tensor, Law], Tensor]] | None = None

    def _act(self, t: Tensor, x: Tensor, law: Law, W: Tensor | None) -> Tensor:
        u = self.policy(t, x, law, W)
        if self.override is not None:
            k, i, play = self.override
            sl = slice(None) if i is None else slice(i, i + 1)
            uk = u[:, k].clone()
            uk[:, sl] = play(t, x[:, k, sl], law)
            u = torch.cat([u[:, :k], uk.unsqueeze(1), u[:, k + 1 :]], 1)
        return self._clip(u)

    def _clip(self, u: Tensor) -> Tensor:
        return u if self.bounds is None else u.clamp(*self.bounds)

    def _finite(self, c: Tensor) -> Tensor:
        if not torch.isfinite(c).all():
            raise DivergenceError(self.T, "population cost")
        return c

    # ---- gradients ----------------------------------------------------------------------------
    def per_agent_weights(self) -> Tensor:
        """Leaf per-agent copies ``[K, N, order+1, m, f]`` of the shared gains."""
        pol = self.policy
        assert isinstance(pol, LinearPopulationPolicy)  # the exact gradient needs a linear policy
        W = torch.stack([w.detach() for w in pol.W])
        return W.unsqueeze(1).expand(self.K, self.N, *W.shape[1:]).clone().requires_grad_(True)

    def own_gradients(self) -> tuple[Tensor, Tensor]:
        """(per-agent costs J [K, N] mean over replicas, ∂J_{k,i}/∂θ_{k,i} [K, N, …]): the N-player own-gradients.

        One batched backward over the K·N agents (``is_grads_batched``) extracts the Jacobian's diagonal.
        """
        W = self.per_agent_weights()
        prev, self.gradient = self.gradient, "exact"
        try:
            J = self.agent_costs(W).mean(0)  # [K, N]
        finally:
            self.gradient = prev
        KN = self.K * self.N
        eye = torch.eye(KN, dtype=J.dtype, device=J.device).reshape(KN, self.K, self.N)
        (jac,) = torch.autograd.grad(J, W, grad_outputs=eye, is_grads_batched=True)
        jac = jac.reshape(self.K, self.N, self.K, self.N, *W.shape[2:])
        k, i = torch.meshgrid(torch.arange(self.K), torch.arange(self.N), indexing="ij")
        return J.detach(), jac[k, i, k, i]

    def mean_field_gradients(self) -> list[Tensor]:
        """∂J̄_k/∂θ_k with the law frozen, every population at once (one backward pass)."""
        prev, self.gradient = self.gradient, "mean_field"
        try:
            J = self.agent_costs().mean((0, 2))
        finally:
            self.gradient = prev
        ps = [p for k in range(self.K) for p in self.parameters_of(k)]
        return list(torch.autograd.grad(J.sum(), ps))

    def _exact_surrogate(self) -> Tensor:
        J, g = self.own_gradients()
        gk = g.mean(1)  # the representative agent's own-gradient [K, …]
        out = []
        pol = self.policy
        assert isinstance(pol, LinearPopulationPolicy)  # gradient "exact" is refused otherwise
        for k, w in enumerate(pol.W):
            out.append(J[k].mean() + (gk[k] * (w - w.detach())).sum())
        return torch.stack(out)

    # ---- reporting ----------------------------------------------------------------------------
    def rollout(self) -> tuple[np.ndarray, np.ndarray]:
        """(times [T], summary [T, 4·K + S·K]) of x_1 in noise replica 0: per population the mean and the
        5 %, 50 %, 95 % quantiles over its agents, then a fixed sample of S = min(``SAMPLED``, N) agents'
        trajectories per population (agents 0…S−1: exchangeable, so any fixed choice is a random sample).
        O(T·N) to compute, O(T·K) to store whatever N is."""
        states: list[Tensor] = []
        with torch.no_grad():
            self.agent_costs(states=states)
        xs = torch.stack(states)[:, 0, :, :, 0]  # [T, K, N]
        q = torch.quantile(
            xs, torch.tensor([0.05, 0.5, 0.95], dtype=xs.dtype, device=xs.device), dim=-1
        )
        summary = torch.cat([xs.mean(-1, keepdim=True), q.permute(1, 2, 0)], -1)  # [T, K, 4]
        sample = xs[:, :, : min(SAMPLED, xs.shape[-1])]  # [T, K, S]
        T = len(self.times)
        out = torch.cat([summary.reshape(T, -1), sample.reshape(T, -1)], -1)
        return self.times.cpu().numpy(), out.cpu().numpy()

    # ---- deviations ---------------------------------------------------------------------------
    def deviation_response(
        self, j: int, Lambda: np.ndarray, e0: float, budget: Budget
    ) -> BestResponse:
        """Population j's best deviation (``agents.best_response`` calls this; see ``deviations``)."""
        return population_best_response(self, j, Lambda, e0, budget)
