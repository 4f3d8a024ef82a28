"""Games as the solution concepts see them: agents' decision variables and their material costs (docs/theory.md#empathy, docs/theory.md#patterns, docs/theory.md#agents).

Every game exposes the same small protocol (``Game``) so that one set of solution concepts
(``agents.concepts``) and one exploitability measure work on all of them: static games of
actions (``StaticGame``, the T = 0 case), finite matrix games in mixed strategies (``MatrixGame``)
and differential games (``agents.differential.DifferentialGame``, a subclass written elsewhere).
Costs are minimised; a payoff R is the cost L = −R.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from control.errors import ValidationError, choice, number

Profile = list[list[Tensor]]


@dataclass(frozen=True)
class ActionSpace:
    """Agent j's raw actions, the space a best response searches whatever j's policy class is.

    ``init``: the current profile's actions of j; ``low``/``high``: bounds (broadcast to ``init``, ±inf for
    none); ``costs(z)``: the material costs [n] with j's actions replaced by ``z`` and the others frozen;
    ``quadratic``: the costs are known to be quadratic in ``z`` (the best response is then a closed form).
    """

    init: Tensor
    low: Tensor
    high: Tensor
    costs: Callable[[Tensor], Tensor]
    quadratic: bool = False


class Game:
    """Abstract game: n agents, each with leaf decision tensors, and differentiable material costs [n].

    Subclasses set ``n_agents``, ``agent_names``, ``device`` and implement ``parameters_of`` and
    ``costs``. Optional class flags read by the concepts:

    * ``convex_own_cost``: each agent's own cost is convex in an *unbounded* decision, so minimising
      λ_jj L_j + … is ill posed when λ_jj ≤ 0 (docs/theory.md#self-regard); concepts then refuse such Λ.
    * ``supports_substitution``: ``costs()`` reads the variables through ``variables_of(j)``, so
      ``substitute(profile)`` may evaluate the costs at non-leaf tensors (unrolled Stackelberg).
    * ``solve_defaults``: concept options this game prefers (e.g. ``{"method": "extragradient"}`` for
      matching pennies); explicit options passed to ``agents.solve`` win.
    """

    n_agents: int = 0
    agent_names: list[str] = []
    device: torch.device = torch.device("cpu")
    convex_own_cost: bool = False
    supports_substitution: bool = False
    solve_defaults: dict = {}
    players_are_populations: bool = (
        False  # agents.population: each player is a population sharing a policy
    )
    n_cells: int = 1  # independent copies of the game played at once (agents.differential.DifferentialGame.fuse)
    nfe: int = 0  # vector-field evaluations of the ODE solves made so far (differential games)
    _override: Profile | None = None

    # ---- the protocol -------------------------------------------------------------------------
    def parameters_of(self, j: int) -> list[Tensor]:
        """Agent j's decision variables: leaf tensors with ``requires_grad``."""
        raise NotImplementedError

    def costs(self) -> Tensor:
        """Material costs L [n] (minimised) at the current decision variables, differentiable."""
        raise NotImplementedError

    def project(self) -> None:
        """Put the variables back into their feasible sets, in place (default: unconstrained)."""

    def action_space(self, j: int) -> ActionSpace | None:
        """Agent j's actions as a deviation space independent of its parametrisation (None: none declared)."""
        return None

    def deviation_response(self, j: int, Lambda: np.ndarray, e0: float, budget) -> object | None:
        """Agent j's best deviation from the game's own engine (``agents.best_response.BestResponse``), or None."""
        return None

    def rollout(self) -> tuple[np.ndarray, np.ndarray]:
        """(times [T], mean state trajectory [T, state_dim]); static games: ([0.], actions [1, ·])."""
        a = self.actions()
        flat = np.zeros((1, 0)) if a is None else np.asarray(a, dtype=float).reshape(1, -1)
        return np.zeros(1), flat

    def actions(self) -> np.ndarray | None:
        """The current action profile [n, d] as numbers where the game has one (None otherwise)."""
        return None

    # ---- derived helpers ----------------------------------------------------------------------
    def parameters(self) -> list[Tensor]:
        """All agents' decision variables, agent by agent."""
        return [p for j in range(self.n_agents) for p in self.parameters_of(j)]

    def n_params(self) -> np.ndarray:
        """Number of scalar decision variables per agent [n]."""
        return np.array(
            [sum(p.numel() for p in self.parameters_of(j)) for j in range(self.n_agents)],
            dtype=int,
        )

    def state_dict(self) -> Profile:
        """Snapshot of all decision variables (detached clones), agent by agent."""
        return [[p.detach().clone() for p in self.parameters_of(j)] for j in range(self.n_agents)]

    def load_state_dict(self, s: Profile) -> None:
        """Restore a snapshot taken by ``state_dict``."""
        with torch.no_grad():
            for j in range(self.n_agents):
                for p, v in zip(self.parameters_of(j), s[j], strict=True):
                    p.copy_(v)

    def variables_of(self, j: int) -> list[Tensor]:
        """Agent j's variables as ``costs()`` should read them: the substituted ones if any."""
        if self._override is not None:
            return self._override[j]
        return self.parameters_of(j)

    @contextlib.contextmanager
    def substitute(self, profile: Profile) -> Iterator[None]:
        """Evaluate ``costs()`` at ``profile`` (possibly non-leaf tensors) inside the block."""
        if not self.supports_substitution:
            raise ValidationError(
                "game",
                "a game that supports substitution",
                type(self).__name__,
                reason="its costs() does not read variables_of(j)",
            )
        old, self._override = self._override, profile
        try:
            yield
        finally:
            self._override = old

    def costs_at(self, profile: Profile) -> Tensor:
        """Material costs [n] at another profile (for games that support substitution)."""
        with self.substitute(profile):
            return self.costs()


def _names(names: Sequence[str] | None, n: int, field: str) -> list[str]:
    if names is None:
        return [f"agent{j}" for j in range(n)]
    names = [str(s) for s in names]
    if len(names) != n:
        raise ValidationError(field, f"{n} agent names", names)
    return names


def _bound(
    field: str, value: float | Sequence[float] | None, n: int, d: int, fill: float
) -> Tensor:
    if value is None:
        return torch.full((n, d), fill, dtype=torch.float64)
    t = torch.as_tensor(value, dtype=torch.float64)
    try:
        t = t.reshape(n, d) if t.numel() == n * d else t.expand(n, d)
    except RuntimeError:
        raise ValidationError(
            field, f"a number or an array broadcastable to [{n}, {d}]", value
        ) from None
    if torch.isnan(t).any():
        raise ValidationError(field, "numbers (±inf allowed)", value)
    return t.clone()


class StaticGame(Game):
    """A one-shot game of continuous actions (the T = 0 case): L = cost_fn(u), u [n, d] within bounds.

    ``cost_fn(u)`` maps the action profile [n, d] to the material costs [n]. Actions are leaf tensors, one
    per agent, box-constrained by ``low``/``high`` (``project`` clips them). Initial actions outside the
    bounds are refused (ValidationError naming ``actions``).
    """

    supports_substitution = True
    quadratic_costs = False  # set by subclasses whose cost_fn is quadratic in the actions

    def __init__(
        self,
        cost_fn: Callable[[Tensor], Tensor],
        n_agents: int,
        action_dim: int = 1,
        *,
        init: float | Sequence | np.ndarray | Tensor = 0.0,
        low: float | Sequence | None = None,
        high: float | Sequence | None = None,
        agent_names: Sequence[str] | None = None,
        convex_own_cost: bool = False,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float64,
    ):
        n = int(number("n_agents", n_agents, low=1, integer=True))
        d = int(number("action_dim", action_dim, low=1, integer=True))
        self.n_agents, self.action_dim = n, d
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype
        self.agent_names = _names(agent_names, n, "agent_names")
        self.cost_fn = cost_fn
        self.convex_own_cost = bool(convex_own_cost)
        self.low = _bound("low", low, n, d, -np.inf).to(self.device, dtype)
        self.high = _bound("high", high, n, d, np.inf).to(self.device, dtype)
        if (self.low > self.high).any():
            raise ValidationError("low", "low <= high", low)
        self._u = [
            torch.zeros(d, dtype=dtype, device=self.device, requires_grad=True) for _ in range(n)
        ]
        self.set_actions(init)

    def set_actions(self, actions: float | Sequence | np.ndarray | Tensor) -> None:
        """Set the action profile [n, d] (broadcast); values outside the bounds are refused."""
        a = torch.as_tensor(actions, dtype=self.dtype).to(self.device)
        try:
            n, d = self.n_agents, self.action_dim
            a = a.reshape(n, d) if a.numel() == n * d else a.expand(n, d)
        except RuntimeError:
            raise ValidationError(
                "actions",
                f"an array broadcastable to [{self.n_agents}, {self.action_dim}]",
                tuple(a.shape),
            ) from None
        if not torch.isfinite(a).all():
            raise ValidationError("actions", "finite numbers", a.tolist())
        bad = (a < self.low) | (a > self.high)
        if bad.any():
            j = int(bad.any(-1).nonzero()[0, 0])
            raise ValidationError(
                f"actions[{j}]",
                f"values in [{self.low[j].tolist()}, {self.high[j].tolist()}]",
                a[j].tolist(),
                reason="action outside its bounds",
            )
        with torch.no_grad():
            for j in range(self.n_agents):
                self._u[j].copy_(a[j])

    def parameters_of(self, j: int) -> list[Tensor]:
        """Agent j's action vector [d]."""
        return [self._u[j]]

    def profile_tensor(self) -> Tensor:
        """The action profile [n, d] as one (differentiable) tensor, honouring substitution."""
        return torch.stack([self.variables_of(j)[0] for j in range(self.n_agents)])

    def costs(self) -> Tensor:
        """Material costs [n] = cost_fn(u)."""
        return self.cost_fn(self.profile_tensor())

    def project(self) -> None:
        """Clip each action into its box."""
        with torch.no_grad():
            for j in range(self.n_agents):
                self._u[j].copy_(
                    torch.maximum(torch.minimum(self._u[j], self.high[j]), self.low[j])
                )

    def actions(self) -> np.ndarray:
        """Current actions [n, d]."""
        return torch.stack(self._u).detach().cpu().numpy()

    def action_space(self, j: int) -> ActionSpace:
        """Agent j's action vector within its box; the others' actions frozen."""
        fixed = torch.stack([u.detach() for u in self._u])

        def costs(z: Tensor) -> Tensor:
            return self.cost_fn(torch.cat([fixed[:j], z.reshape(1, -1), fixed[j + 1 :]]))

        return ActionSpace(
            self._u[j].detach().clone(), self.low[j], self.high[j], costs, self.quadratic_costs
        )


def simplex_projection(x: Tensor) -> Tensor:
    """Euclidean projection of each last-axis row onto the probability simplex (sort-based)."""
    u, _ = torch.sort(x, dim=-1, descending=True)
    css = u.cumsum(-1) - 1
    k = torch.arange(1, x.shape[-1] + 1, dtype=x.dtype, device=x.device)
    cond = u - css / k > 0
    rho = cond.to(x.dtype).cumsum(-1).argmax(-1, keepdim=True)
    tau = css.gather(-1, rho) / (rho + 1).to(x.dtype)
    return torch.clamp(x - tau, min=0.0)


class MatrixGame(Game):
    """A finite n-player game in mixed strategies: payoffs [n, m_1, …, m_n] (maximised), costs = −E[u_i].

    ``parametrisation="simplex"`` keeps each strategy as a probability vector (projected gradient play,
    the natural geometry for the monotone zero-sum case); ``"logits"`` uses softmax logits (interior).
    """

    supports_substitution = True

    def __init__(
        self,
        payoffs: np.ndarray | Sequence | Tensor,
        *,
        init: Sequence | np.ndarray | None = None,
        parametrisation: str = "simplex",
        agent_names: Sequence[str] | None = None,
        action_names: Sequence[Sequence[str]] | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float64,
    ):

        P = torch.as_tensor(np.asarray(payoffs, dtype=float), dtype=dtype)
        if P.ndim < 2 or P.shape[0] != P.ndim - 1:
            raise ValidationError(
                "payoffs",
                "a tensor [n, m_1, ..., m_n] (one payoff table per player)",
                tuple(P.shape),
            )
        if not torch.isfinite(P).all():
            raise ValidationError("payoffs", "finite numbers", "non-finite entries")
        self.parametrisation = choice("parametrisation", parametrisation, ["simplex", "logits"])
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype
        self.payoffs = P.to(self.device)
        self.n_agents = n = P.shape[0]
        self.n_actions = list(P.shape[1:])
        self.agent_names = _names(agent_names, n, "agent_names")
        self.action_names = (
            [list(a) for a in action_names]
            if action_names is not None
            else [[str(k) for k in range(m)] for m in self.n_actions]
        )
        self._x = [
            torch.full((m,), 1.0 / m, dtype=dtype, device=self.device)
            if self.parametrisation == "simplex"
            else torch.zeros(m, dtype=dtype, device=self.device)
            for m in self.n_actions
        ]
        for x in self._x:
            x.requires_grad_(True)
        if init is not None:
            self.set_strategies(init)

    def set_strategies(self, strategies: Sequence | np.ndarray) -> None:
        """Set mixed strategies (one probability vector per agent); refuses non-distributions."""
        if len(strategies) != self.n_agents:
            raise ValidationError("strategies", f"{self.n_agents} probability vectors", strategies)
        with torch.no_grad():
            for j, s in enumerate(strategies):
                p = torch.as_tensor(np.asarray(s, dtype=float), dtype=self.dtype).to(self.device)
                if (
                    p.shape != (self.n_actions[j],)
                    or not torch.isfinite(p).all()
                    or (p < -1e-12).any()
                    or abs(float(p.sum()) - 1) > 1e-9
                ):
                    raise ValidationError(
                        f"strategies[{j}]",
                        f"a probability vector of length {self.n_actions[j]}",
                        np.asarray(s).tolist(),
                        reason="outside the simplex",
                    )
                if self.parametrisation == "simplex":
                    self._x[j].copy_(p)
                else:
                    self._x[j].copy_(torch.log(p.clamp_min(1e-12)))

    def parameters_of(self, j: int) -> list[Tensor]:
        """Agent j's strategy vector (probabilities or logits)."""
        return [self._x[j]]

    def strategy_tensors(self) -> list[Tensor]:
        """Mixed strategies as probability vectors (differentiable, honouring substitution)."""
        xs = [self.variables_of(j)[0] for j in range(self.n_agents)]
        if self.parametrisation == "logits":
            xs = [torch.softmax(x, -1) for x in xs]
        return xs

    def costs(self) -> Tensor:
        """Material costs [n] = −E_{a∼x}[u_i(a)] by contracting each player's axis with its strategy."""
        v = self.payoffs
        for x in self.strategy_tensors():
            v = torch.tensordot(v, x, dims=([1], [0])) if v.ndim > 1 else v
        return -v

    def project(self) -> None:
        """Project probability vectors back onto the simplex (no-op for logits)."""
        if self.parametrisation == "simplex":
            with torch.no_grad():
                for x in self._x:
                    x.copy_(simplex_projection(x))

    def strategies(self) -> list[np.ndarray]:
        """Current mixed strategies as numpy probability vectors."""
        return [x.detach().cpu().numpy() for x in self.strategy_tensors()]

    def actions(self) -> np.ndarray:
        """Mixed strategies stacked [n, m] (when all players have m actions) else concatenated."""
        s = self.strategies()
        if len({len(x) for x in s}) == 1:
            return np.stack(s)
        return np.concatenate(s)[None]

    def pure_equilibria(self, Lambda: np.ndarray | None = None, tol: float = 1e-12) -> list[tuple]:
        """All pure Nash equilibria of the Λ-game (empathetic payoffs U = Λ u), by enumeration."""
        U = self.payoffs.detach().cpu().numpy()
        if Lambda is not None:
            U = np.tensordot(np.asarray(Lambda, dtype=float), U, axes=([1], [0]))
        out = []
        for a in np.ndindex(*self.n_actions):
            ok = True
            for i in range(self.n_agents):
                idx = list(a)
                idx[i] = slice(None)
                if U[(i, *idx)].max() > U[(i, *a)] + tol:
                    ok = False
                    break
            if ok:
                out.append(tuple(int(k) for k in a))
        return out
