"""Distributed strategic learning: one Ray actor per agent, parameters exchanged via the object store.

Each actor builds the cell's game from the same seed, holds its own decision variables and optimiser, and
every round (i) reads the current profile from the object store, (ii) differentiates its own empathetic
cost (Λ L)_j with respect to its own variables only, (iii) takes its optimiser step and projects, and
(iv) returns its new variables. This is exactly the simultaneous gradient play of
``agents.learning.gradient_play`` (method "gradient", plain steps θ_j ← P(θ_j − η ∂_j(ΛL)_j)),
so for the same seed it reaches the same equilibrium bit for bit (docs/theory.md#empathy, docs/theory.md#patterns). A restarted actor
rebuilds its game and continues from the profile it is sent, so worker deaths cost one retried call.
The optimisers are gradient play's own (``agents.learning.make_optimizer``: plain step or Adam).
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import torch
import xarray as xr

from control.errors import ValidationError

from ..cell import CellSpec
from ..concepts._finish import finish
from ..empathy import require_self_regard
from ..learning import (
    BLOWUP,
    OPTIMIZERS,
    lambda_costs,
    make_optimizer,
    own_grads,
    squared_step,
)
from ..play import play
from .results import failed_dataset, outcome_dataset


def _build(kwargs: dict[str, Any]):
    """(scenario instance, Λ, game, the validated cell) exactly as ``agents.play`` builds them."""
    spec = CellSpec.of(kwargs)
    sc, L, game = spec.build()
    return sc, L, game, spec


def _load(game, profile: list[list[np.ndarray]]) -> None:
    with torch.no_grad():
        for j, arrs in enumerate(profile):
            for p, a in zip(game.parameters_of(j), arrs, strict=True):
                p.copy_(torch.as_tensor(np.array(a), dtype=p.dtype, device=p.device))


def _own(game, j: int) -> list[np.ndarray]:
    return [p.detach().cpu().numpy().copy() for p in game.parameters_of(j)]


class AgentWorker:
    """One agent: its copy of the game, its own variables and optimiser (wrapped by ``ray.remote``).

    A worker is reused across cells (``start`` rebuilds it); ``step`` carries the cell's arguments, so a
    worker restarted by Ray after a crash rebuilds its game and continues from the profile it is sent.
    """

    def __init__(self):
        torch.set_num_threads(1)
        self.cell = None

    def start(self, kwargs: dict[str, Any], j: int, optimizer: str = "sgd") -> list[np.ndarray]:
        """Build agent j of this cell (seeded as ``agents.play``); returns its initial variables."""
        self.j, self.optimizer = j, optimizer
        _, self.Lambda, self.game, r = _build(kwargs)
        self.opt = make_optimizer(optimizer, self.game.parameters_of(j), r.lr)
        self.cell = (json.dumps(kwargs, sort_keys=True, default=str), j, optimizer)
        return _own(self.game, j)

    def step(
        self,
        profile: list[list[np.ndarray]],
        kwargs: dict[str, Any],
        j: int,
        optimizer: str,
        opt_state: list | None = None,
    ) -> tuple[list[np.ndarray], np.ndarray, float, list | None]:
        """One round: load the profile, descend own Λ-cost, project.

        Returns (new own vars, Λ-costs, ‖Δθ_j‖², optimiser state). A restarted worker rebuilds its agent,
        takes the profile sent and restores ``opt_state`` (its optimiser's state after the last round).
        """
        if self.cell != (json.dumps(kwargs, sort_keys=True, default=str), j, optimizer):
            self.start(kwargs, j, optimizer)
            self.opt.load(opt_state)
        _load(self.game, profile)
        _, E = lambda_costs(self.game, self.Lambda)
        e = E.detach().cpu().numpy()
        if not np.isfinite(e).all():
            return _own(self.game, self.j), e, float("nan"), self.opt.state()
        ps = self.game.parameters_of(self.j)
        (gs,) = own_grads(self.game, E, [self.j])
        before = [p.detach().clone() for p in ps]
        self.opt.step([g.detach() for g in gs])
        self.game.project()
        if self.optimizer == "adam":  # gradient_play's residual for Adam is the gradient norm
            sq = sum(float((g.detach() ** 2).sum()) for g in gs)
        else:
            sq = squared_step(ps, before)
        return _own(self.game, self.j), e, sq, self.opt.state()


class ActorPool:
    """Agent actors shared by the cells of one run (starting a worker process costs seconds)."""

    def __init__(self, *, num_gpus: float = 0.0, max_restarts: int = 3):
        self.num_gpus, self.max_restarts, self.actors = num_gpus, max_restarts, []

    def get(self, n: int) -> list:
        """n actors (created on first need; 0 CPUs each so that any n fits on any machine)."""
        import ray  # heavy (seconds): imported when actors are used, after runner set its environment

        Remote = ray.remote(AgentWorker).options(
            num_cpus=0,
            num_gpus=self.num_gpus,
            max_restarts=self.max_restarts,
            max_task_retries=self.max_restarts,
        )
        while len(self.actors) < n:
            self.actors.append(Remote.remote())
        return self.actors[:n]

    def close(self) -> None:
        import ray  # heavy (seconds): imported when actors are used, after runner set its environment

        for a in self.actors:
            ray.kill(a)
        self.actors = []


def _finite(profile: list[list[np.ndarray]]) -> bool:
    return all(
        np.isfinite(a).all() and float(np.abs(a).max(initial=0.0)) < BLOWUP
        for pl in profile
        for a in pl
    )


def run_cell_actors(
    kwargs: dict[str, Any],
    *,
    key: str = "",
    index: int = -1,
    num_cpus: float = 0.0,
    num_gpus: float = 0.0,
    max_retries: int = 3,
    pool: ActorPool | None = None,
) -> xr.Dataset:
    """Play one cell with one Ray actor per agent (Nash by simultaneous gradient play); never raises."""
    own = pool is None
    pool = pool or ActorPool(num_gpus=num_gpus, max_restarts=max_retries)
    try:
        out = play_actors(kwargs, pool=pool)
    except ValidationError as e:
        return failed_dataset(str(e), key=key, index=index)
    except Exception as e:  # a cell must not kill the sweep
        return failed_dataset(
            f"{type(e).__name__}: {' '.join(str(e).split())[:300]}", key=key, index=index
        )
    finally:
        if own:
            pool.close()
    return outcome_dataset(out, key=key, index=index)


def play_actors(kwargs: dict[str, Any], *, pool: ActorPool | None = None):
    """``agents.play`` with the learning distributed over per-agent actors; returns an ``agents.play.Outcome``.

    ``agents.play`` itself builds the game and measures the result (costs, exploitability, rollout,
    reference), so both backends share that code; only its learning is handed to ``solve_distributed``. Only Nash with plain gradient play (sgd or adam) is
    distributed; other concepts are refused with a ``ValidationError``.
    """

    def routed(game, concept, Lambda, *, steps, lr, progress=False, **_):
        return solve_distributed(kwargs, game, concept, Lambda, steps=steps, lr=lr, pool=pool)

    return play(**kwargs, progress=False, solver=routed)


def solve_distributed(
    kwargs: dict[str, Any],
    game,
    concept: str,
    Lambda: np.ndarray,
    *,
    steps: int,
    lr: float,
    pool: ActorPool | None = None,
    tol: float = 1e-8,
):
    """Nash of the Λ-game by simultaneous gradient play, one Ray actor per agent; loads the result into ``game``.

    Returns the ``Equilibrium`` that ``agents.concepts.solve_nash`` would return for the same seed.
    """
    import ray  # heavy (seconds): imported when actors are used, after runner set its environment

    opts = dict(getattr(game, "solve_defaults", {}) or {})
    method, optimizer = opts.get("method", "gradient"), opts.get("optimizer", "sgd")
    if concept != "nash" or method != "gradient" or optimizer not in OPTIMIZERS:
        raise ValidationError(
            "backend",
            "a nash cell with plain gradient play (sgd or adam) for backend 'actors'",
            f"{concept} ({method}, {optimizer})",
        )
    L = np.asarray(Lambda, dtype=float)
    if game.convex_own_cost:
        require_self_regard(
            L, range(game.n_agents), "nash needs lambda_jj > 0 (docs/theory.md#self-regard)"
        )
    n = game.n_agents
    own = pool is None
    pool = pool or ActorPool()
    actors = pool.get(n)
    try:
        cell = ray.put(kwargs)
        profile = ray.get([a.start.remote(cell, j, optimizer) for j, a in enumerate(actors)])
        hist, status, res, it = [], "max_steps", float("inf"), 0
        states: list = [None] * n  # each agent's optimiser state, to restore an actor Ray restarts
        for it in range(1, steps + 1):  # noqa: B007 - `it` is reported after the loop
            ref = ray.put(profile)
            replies = ray.get(
                [a.step.remote(ref, cell, j, optimizer, states[j]) for j, a in enumerate(actors)]
            )
            states = [rep[3] for rep in replies]
            e = replies[0][1]
            hist.append(e)
            if not np.isfinite(e).all() or not _finite(profile):
                status = "diverged"
                break
            profile = [rep[0] for rep in replies]
            res = math.sqrt(sum(rep[2] for rep in replies)) / (lr if optimizer == "sgd" else 1.0)
            if not math.isfinite(res):
                status = "diverged"
                break
            if res < tol:
                status = "converged"
                break
        if status != "diverged" and not _finite(profile):
            status = "diverged"
    finally:
        if own:
            pool.close()
    _load(game, profile)
    return finish(game, L, "nash", status, it, res, np.array(hist).reshape(len(hist), n))
