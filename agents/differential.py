"""Differential games: a state z driven by all agents' policies, rolled out by ``control.solve`` (docs/theory.md#patterns, docs/theory.md#lq-game).

The state is a population of particles ``x [P, d]`` (samples of the law of a common state, or the agents' own
states seen as tokens). At time t every agent observes ``observe(t, x) -> [n, P_obs, d_obs]`` and its policy
returns actions ``u [n, P_obs, m]`` (one batched call per group of same-structured policies). The dynamics
``dx/dt = f(t, x, u)`` may depend on the law of x (mean, variance: the mean-field-type coupling), and the
running costs ``ℓ(t, x, u) -> [n]`` are integrated with the state, so one fixed-grid solve gives the material
costs ``L_i = ∫ ℓ_i dt + g_i(x_T)`` of every agent.

One simulator serves one cell and many: ``DifferentialGame.fuse(games)`` makes C cells of one game (same
dynamics and costs; their own initial states, policies and Λ) a single game of C·n agents whose state
``z [C, P·d + n]`` is integrated by one ``control.solve`` call; a lone game is the case C = 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from copy import copy

import numpy as np
import torch
from torch import Tensor
from torch.func import vmap

from control import DivergenceError, solve
from control.errors import ValidationError, choice, number
from control.integrate import METHODS
from control.laws import WeightLaw

from .agent import Agent, PolicyStack
from .game import Game

# stage nodes c_i of the fixed-step methods (torchdiffeq's rk4 is the 3/8 rule): open-loop gains are tabulated there
STAGES = {"euler": (0.0,), "midpoint": (0.0, 0.5), "rk4": (0.0, 1 / 3, 2 / 3, 1.0)}
Field = Callable[[Tensor, Tensor, Tensor], Tensor]


class NotFusable(Exception):
    """These cells cannot be played as one game (different structure, dynamics or costs; or, from the
    fusion plan, a non-Nash concept, a diverging cell…): they are then played one by one."""


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
    solve_defaults: dict = {"optimizer": "adam", "polish_rounds": 6}

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
        self.observe = observe or self.observe_all
        if bounds is not None:
            lo, hi = (float(number("bounds", b)) for b in bounds)
            if lo >= hi:
                raise ValidationError("bounds", "(low, high) with low < high", bounds)
            bounds = (lo, hi)
        self.bounds = bounds
        self.summarize = summarize or (lambda xs: xs.mean(-2))
        self.convex_own_cost = bool(convex_own_cost)
        self.stack = PolicyStack([a.policy for a in self.agents])
        self.n_cells, self.n_per_cell, self.cells = 1, self.n_agents, [self]
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

    @classmethod
    def fuse(cls, games: Sequence[DifferentialGame]) -> DifferentialGame:
        """C cells of one game as one game of C·n agents (agent ``c·n + j`` is agent j of cell c).

        The cells share the dynamics and costs of ``games[0]`` and keep their own initial states and policies
        (which stay the cells' own objects: learning the stacked game trains every cell's game). The cells must
        have one structure (state, agents, grid, method, bounds, policy shapes) and the same vector field:
        every cell's dynamics and costs are evaluated at one probe point and must agree, else ``NotFusable``.
        """
        games = list(games)
        if len(games) < 2 or not all(type(g) is cls and g.n_cells == 1 for g in games):
            raise NotFusable(f"fusing needs at least two single-cell {cls.__name__}s")
        g0 = games[0]
        for g in games[1:]:
            same = (
                g.x0.shape == g0.x0.shape
                and g.x0.dtype == g0.x0.dtype
                and g.x0.device == g0.x0.device
                and g.n_agents == g0.n_agents
                and g.method == g0.method
                and g.bounds == g0.bounds
                and torch.equal(g.times, g0.times)
                and g.stack.groups == g0.stack.groups
                and [p.signature() for p in g.stack.policies]
                == [p.signature() for p in g0.stack.policies]
                and (g.observe == g.observe_all) == (g0.observe == g0.observe_all)
            )
            if not same or not g0._same_field(g):
                raise NotFusable("the cells' games differ in structure, dynamics or costs")
        out = copy(
            g0
        )  # the shared settings (dynamics, costs, grid, bounds, summary); then the cell axis
        out.cells, out.n_cells, out.n_per_cell = games, len(games), g0.n_agents
        out.n_agents = out.n_cells * out.n_per_cell
        out.agents = [a for g in games for a in g.agents]
        out.agent_names = [f"{c}:{name}" for c, g in enumerate(games) for name in g.agent_names]
        out.solve_defaults = dict(g0.solve_defaults)
        out.x0 = torch.stack([g.x0 for g in games])
        out.stack = PolicyStack([a.policy for a in out.agents])
        out.nfe, out.deviation = 0, None
        if g0.observe == g0.observe_all:
            out.observe = out.observe_all
        return out

    def _same_field(self, other: DifferentialGame) -> bool:
        """Do ``other``'s dynamics and costs agree with this game's at this game's initial state and controls?"""
        with torch.no_grad():
            t = self.times[0]
            u = self.stack.run(lambda: self.controls(t, self.x0), self.stage_times)
            pairs = [
                (self.dynamics(t, self.x0, u), other.dynamics(t, self.x0, u)),
                (self.running_cost(t, self.x0, u), other.running_cost(t, self.x0, u)),
                (self.terminal_cost(self.x0), other.terminal_cost(self.x0)),
                (self.summarize(self.x0[None]), other.summarize(self.x0[None])),
            ]
            if self.observe != self.observe_all:
                pairs.append((self.observe(t, self.x0), other.observe(t, self.x0)))
        return all(a.shape == b.shape and torch.equal(a, b) for a, b in pairs)

    # ---- protocol -----------------------------------------------------------------------------
    def parameters_of(self, j: int) -> list[Tensor]:
        """Agent j's policy parameters (leaf tensors)."""
        return self.agents[j].parameters()

    def costs(self) -> Tensor:
        """Material costs L [n] (C > 1 cells: [C·n], cell-major) = ∫ℓ dt + g(x_T) at the current policies."""
        return self.simulate()[1].reshape(-1)

    def rollout(self) -> tuple[np.ndarray, np.ndarray]:
        """(times [K], summary of the state [K, k]) at the current policies (cell 0 when C > 1)."""
        return self.rollouts()[0]

    def rollouts(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every cell's (times [K], summary of the state [K, k]) at the current policies, from one solve."""
        with torch.no_grad():
            xs, _ = self.simulate(return_states=True)
            xs = xs if self.n_cells > 1 else xs[:, None]
            times = self.times.cpu().numpy()
            return [
                (times, g.summarize(xs[:, c]).reshape(len(times), -1).cpu().numpy())
                for c, g in enumerate(self.cells)
            ]

    # ---- simulation ---------------------------------------------------------------------------
    def observe_all(self, t: Tensor, x: Tensor) -> Tensor:
        """The default observation: every agent sees all particles, ``[n, P, d]``."""
        return x.unsqueeze(0).expand((self.n_per_cell,) + tuple(x.shape))

    def controls(self, t: Tensor | float, x: Tensor) -> Tensor:
        """Every agent's actions ``[n, P_obs, m]`` at state ``x [P, d]`` (one cell; policies must be bound)."""
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

    def _cell_controls(self, t: Tensor, x: Tensor) -> Tensor:
        """Every cell's actions ``[C, n, P_obs, m]`` at states ``x [C, P, d]``: one batched policy call."""
        if self.deviation is not None:
            raise ValidationError(
                "deviation", "a single-cell game (deviate in a cell's own game)", "C > 1"
            )
        C, n = self.n_cells, self.n_per_cell
        if self.observe == self.observe_all:
            obs = x.unsqueeze(1).expand((C, n) + tuple(x.shape[1:]))
        else:
            obs = vmap(self.observe, in_dims=(None, 0))(t, x)
        u = self.stack(t, obs.reshape((C * n,) + tuple(obs.shape[2:])))
        if self.bounds is not None:
            u = u.clamp(*self.bounds)
        return u.reshape((C, n) + tuple(u.shape[1:]))

    def simulate(self, return_states: bool = False):
        """Solve the states and the cost accumulators together.

        Returns (xs or None, costs): ``xs [K, P, d]`` and ``costs [n]`` for one cell, ``xs [K, C, P, d]`` and
        ``costs [C, n]`` for C > 1 cells.
        """
        return self.stack.run(lambda: self._simulate(return_states), self.stage_times)

    def _simulate(self, return_states: bool):
        C, n = self.n_cells, self.n_per_cell
        P, d = self.x0.shape[-2:]
        nx = P * d
        if (
            C == 1
        ):  # the cell axis is implicit: the scenario's functions see x [P, d] and u [n, P_obs, m]
            rates = lambda t, x, u: (self.dynamics(t, x, u), self.running_cost(t, x, u))  # noqa: E731
            terminal = self.terminal_cost
            act: Callable[[Tensor, Tensor], Tensor] = self.controls
        else:  # one vmap for both rates (its per-call input handling is most of the field's overhead)
            dyn, run = self.dynamics, self.running_cost
            rates = vmap(lambda t, x, u: (dyn(t, x, u), run(t, x, u)), in_dims=(None, 0, 0))
            terminal = vmap(self.terminal_cost)
            act = self._cell_controls
        shape = (P, d) if C == 1 else (C, P, d)

        def field(t: Tensor, z: Tensor) -> Tensor:
            x = z[..., :nx].reshape(shape)
            dx, cost_rate = rates(t, x, act(t, x))
            return torch.cat([dx.reshape(z.shape[:-1] + (nx,)), cost_rate], -1)

        z0 = torch.cat(
            [self.x0.reshape(shape[:-2] + (nx,)), self.x0.new_zeros(shape[:-2] + (n,))], -1
        )
        sol = solve(field, z0, self.times, method=self.method)
        self.nfe += sol.nfe
        for g in self.cells if C > 1 else ():  # every cell takes part in every solve
            g.nfe += sol.nfe
        zT = sol.xs[-1]
        costs = zT[..., nx:] + terminal(zT[..., :nx].reshape(shape))
        if not torch.isfinite(costs).all():
            raise DivergenceError(self.T, "cost")
        xs = sol.xs[..., :nx].reshape((-1,) + shape) if return_states else None
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
                assert isinstance(law, WeightLaw)  # a linear policy's gains are a control.laws law
                dummy = self.x0.new_zeros(1, law.d_state)
                out.append(torch.stack([law(tk, dummy)[0] for tk in t]))
        return torch.stack(out, 1).cpu().numpy()
