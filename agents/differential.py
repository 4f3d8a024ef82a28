"""Differential games: a state z driven by all agents' policies, rolled out by ``control.solve`` (docs/theory.md#patterns, docs/theory.md#lq-game).

The state is a population of particles ``x [P, d]`` (samples of the law of a common state, or the agents' own
states seen as tokens). At time t every agent observes ``observe(t, x) -> [n, P_obs, d_obs]`` and its policy
returns actions ``u [n, P_obs, m]`` (one batched call per group of same-structured policies). The dynamics
``dx/dt = f(t, x, u)`` may depend on the law of x (mean, variance: the mean-field-type coupling), and the
running costs ``ℓ(t, x, u) -> [n]`` are integrated with the state, so one fixed-grid solve gives the material
costs ``L_i = ∫ ℓ_i dt + g_i(x_T)`` of every agent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from control import DivergenceError, solve
from control.errors import ValidationError, choice, number
from control.integrate import METHODS

from .agent import Agent, PolicyStack
from .game import Game

# stage nodes c_i of the fixed-step methods (torchdiffeq's rk4 is the 3/8 rule): open-loop gains are tabulated there
STAGES = {"euler": (0.0,), "midpoint": (0.0, 0.5), "rk4": (0.0, 1 / 3, 2 / 3, 1.0)}
Field = Callable[[Tensor, Tensor, Tensor], Tensor]


class DifferentialGame(Game):
    """n agents with policies u_j = π_j(t, obs_j; θ_j), state dynamics f(t, x, u) and costs ℓ, g (docs/theory.md#patterns, docs/theory.md#lq-game).

    ``x0 [P, d]``: initial particles. ``dynamics(t, x, u) -> [P, d]``, ``running_cost(t, x, u) -> [n]``,
    ``terminal_cost(x) -> [n]``; ``u [n, P_obs, m]``. ``observe(t, x) -> [n, P_obs, d_obs]`` defaults to every
    agent seeing all particles. ``bounds=(low, high)`` clips actions. ``summarize(xs [K, P, d]) -> [K, k]``
    gives the trajectory reported by ``rollout`` (default: the particle mean). The time grid has ``n_steps``
    fixed steps of ``method`` (default rk4) on [0, T].
    """

    convex_own_cost = False
    # (j, play(t, obs_j, x) -> u_j) replaces agent j's policy while a best response is searched;
    # (None, play(t, obs, x) -> u) replaces every agent's (a reference profile played on this grid)
    deviation: tuple[int | None, Callable[[Tensor, Tensor, Tensor], Tensor]] | None = None
    # policy parameters (gains, Legendre coefficients, MFTT weights) are badly scaled for plain gradient steps
    solve_defaults: ClassVar[dict] = {"optimizer": "adam", "polish_rounds": 6}

    def __init__(
        self,
        agents: Sequence[Agent],
        x0: Tensor,
        dynamics: Field,
        running_cost: Field,
        terminal_cost: Callable[[Tensor], Tensor],
        *,
        T: float = 1.0,
        n_steps: int = 20,
        method: str = "rk4",
        observe: Callable[[Tensor, Tensor], Tensor] | None = None,
        bounds: tuple[float, float] | None = None,
        summarize: Callable[[Tensor], Tensor] | None = None,
        convex_own_cost: bool = False,
    ):
        self.agents = list(agents)
        if not self.agents:
            raise ValidationError("agents", "at least one Agent", [])
        for a in self.agents:
            if not isinstance(a, Agent):
                raise ValidationError("agents", "a list of Agent", type(a).__name__)
        names = [a.name for a in self.agents]
        if len(set(names)) != len(names):
            raise ValidationError("agents", "distinct agent names", names)
        if not isinstance(x0, Tensor) or x0.dim() != 2 or not x0.is_floating_point():
            raise ValidationError("x0", "a float tensor [P, d] (particles × state dim)", x0)
        self.n_agents = len(self.agents)
        self.agent_names = names
        self.x0 = x0
        self.device = x0.device
        self.dynamics, self.running_cost, self.terminal_cost = dynamics, running_cost, terminal_cost
        self.T = float(number("T", T, low=0.0, strict_low=True))
        self.n_steps = int(number("n_steps", n_steps, low=1, integer=True))
        self.method = choice("method", method, METHODS)
        self.observe = observe or self._observe_all
        if bounds is not None:
            lo, hi = (float(number("bounds", b)) for b in bounds)
            if lo >= hi:
                raise ValidationError("bounds", "(low, high) with low < high", bounds)
            bounds = (lo, hi)
        self.bounds = bounds
        self.summarize = summarize or (lambda xs: xs.mean(-2))
        self.convex_own_cost = bool(convex_own_cost)
        self.stack = PolicyStack([a.policy for a in self.agents])
        self.times = torch.linspace(
            0.0, self.T, self.n_steps + 1, dtype=x0.dtype, device=self.device
        )
        nodes = STAGES.get(self.method)
        self.stage_times = None
        if nodes is not None:
            h = self.times[1:] - self.times[:-1]
            c = torch.tensor(nodes, dtype=x0.dtype, device=self.device)
            st = self.times[:-1, None] + h[:, None] * c
            self.stage_times = torch.unique(torch.cat([st.reshape(-1), self.times]))

    # ---- protocol -----------------------------------------------------------------------------
    def parameters_of(self, j: int) -> list[Tensor]:
        """Agent j's policy parameters (leaf tensors)."""
        return self.agents[j].parameters()

    def costs(self) -> Tensor:
        """Material costs L [n] = ∫ℓ dt + g(x_T) along the rollout at the current policies."""
        return self.simulate()[1]

    def rollout(self) -> tuple[np.ndarray, np.ndarray]:
        """(times [K], summary of the state [K, k]) at the current policies."""
        with torch.no_grad():
            xs, _ = self.simulate(return_states=True)
            traj = self.summarize(xs)
        return self.times.cpu().numpy(), traj.reshape(len(self.times), -1).cpu().numpy()

    # ---- simulation ---------------------------------------------------------------------------
    def _observe_all(self, t: Tensor, x: Tensor) -> Tensor:
        return x.unsqueeze(0).expand((self.n_agents,) + tuple(x.shape))

    def controls(self, t: Tensor | float, x: Tensor) -> Tensor:
        """Every agent's actions ``[n, P_obs, m]`` at state ``x [P, d]`` (policies must be bound)."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        obs = self.observe(t, x)
        u = self.stack(t, obs)
        if (
            self.deviation is not None
        ):  # a best-response candidate (agents.best_response) or a reference
            j, play = self.deviation
            if j is None:  # every agent plays the given profile: play(t, obs, x) -> [n, P_obs, m]
                u = play(t, obs, x)
            else:
                u = torch.cat([u[:j], play(t, obs[j], x).unsqueeze(0), u[j + 1 :]])
        if self.bounds is not None:
            u = u.clamp(*self.bounds)
        return u

    def simulate(self, return_states: bool = False):
        """Solve the state and the cost accumulators together; returns (xs [K, P, d] or None, costs [n])."""
        return self.stack.run(lambda: self._simulate(return_states), self.stage_times)

    def _simulate(self, return_states: bool):
        P, d = self.x0.shape
        nx = P * d

        def field(t: Tensor, z: Tensor) -> Tensor:
            x = z[:nx].reshape(P, d)
            u = self.controls(t, x)
            return torch.cat([self.dynamics(t, x, u).reshape(-1), self.running_cost(t, x, u)])

        z0 = torch.cat([self.x0.reshape(-1), self.x0.new_zeros(self.n_agents)])
        sol = solve(field, z0, self.times, method=self.method)
        self.nfe += sol.nfe
        zT = sol.xs[-1]
        costs = zT[nx:] + self.terminal_cost(zT[:nx].reshape(P, d))
        if not torch.isfinite(costs).all():
            raise DivergenceError(self.T, "cost")
        xs = sol.xs[:, :nx].reshape(-1, P, d) if return_states else None
        return xs, costs

    def gains(self, times: Tensor | np.ndarray | Sequence[float]) -> np.ndarray:
        """Linear-policy gains Θ(t) ``[K, n, 2, m, d]`` (fluctuation, mean) for time/constant laws (docs/theory.md#lq-game)."""
        t = torch.as_tensor(np.asarray(times, dtype=float), dtype=self.x0.dtype, device=self.device)
        out = []
        with torch.no_grad():
            for a in self.agents:
                if a.kind != "linear":
                    raise ValidationError(f"agents.{a.name}.policy", "a linear policy", a.kind)
                law = a.policy.gains
                dummy = self.x0.new_zeros(1, law.d_state)
                out.append(torch.stack([law(tk, dummy)[0] for tk in t]))
        return torch.stack(out, 1).cpu().numpy()
