"""Shared machinery of the concepts: own-gradients of the Λ-costs and simultaneous gradient play (docs/theory.md#empathy, docs/theory.md#training)."""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor

from control.errors import ValidationError, choice, number

from .empathy import empathetic_costs
from .game import Game

METHODS = ("gradient", "extragradient", "optimistic")
OPTIMIZERS = ("sgd", "adam")
BLOWUP = 1e12
RTOL = 1e-3  # residual relative to the first one, the default stopping rule of gradient play
POLISH_RTOL = 1e-2  # gradient play before best-response rounds only needs to get near


class Learned(NamedTuple):
    """What a learning run ends with: its status (converged / max_steps / diverged), the iterations used,
    the last residual (or best-response gain after polishing) and the history [iterations, n] of Λ-costs."""

    status: str
    iterations: int
    residual: float
    history: np.ndarray


# progress(step, total, costs) of the learning running in this context (``reporting``); costs are the
# Λ-costs at that step, [n] for one game, [cells, n] for a game of independent cells
_REPORT: contextvars.ContextVar[tuple[Callable, int] | None] = contextvars.ContextVar(
    "mftt_learning_progress", default=None
)


@contextlib.contextmanager
def reporting(progress: Callable | None, total: int) -> Iterator[None]:
    """Within the block, the learning loops (``gradient_play_cells``, ``polish``) whose step budget is ``total``
    call ``progress(step, total, costs)`` once per step; loops with another budget (a Stackelberg
    follower's inner play, best-response searches) stay silent. ``None``: nothing is reported.
    The callable only observes: the numbers of the learning do not change."""
    token = _REPORT.set(None if progress is None else (progress, int(total)))
    try:
        yield
    finally:
        _REPORT.reset(token)


def _report(step: int, total: int, costs) -> None:
    hook = _REPORT.get()
    if hook is not None and hook[1] == int(total):
        hook[0](int(step), int(total), np.asarray(costs, dtype=float))


def own_grads(
    game: Game, E: Tensor, agents: Sequence[int], *, create_graph: bool = False
) -> list[list[Tensor]]:
    """∂E_j/∂θ_j for each listed agent j: the diagonal blocks of the Λ-cost Jacobian (one backward per agent)."""
    out = []
    for j in agents:
        ps = game.parameters_of(j)
        gs = torch.autograd.grad(
            E[j], ps, retain_graph=True, create_graph=create_graph, allow_unused=True
        )
        out.append([torch.zeros_like(p) if g is None else g for p, g in zip(ps, gs, strict=True)])
    return out


def lambda_costs(game: Game, Lambda: np.ndarray) -> tuple[Tensor, Tensor]:
    """(material costs L [n], empathetic costs Λ L [n]) at the current variables."""
    L = game.costs()
    return L, empathetic_costs(Lambda, L)


def _norm(gs: list[list[Tensor]]) -> float:
    return math.sqrt(sum(float((g.detach() ** 2).sum()) for gl in gs for g in gl))


def _params(game: Game, agents: Sequence[int]) -> list[list[Tensor]]:
    return [game.parameters_of(j) for j in agents]


def _apply(ps: list[list[Tensor]], gs: list[list[Tensor]], lr: float) -> None:
    with torch.no_grad():
        for pl, gl in zip(ps, gs, strict=True):
            for p, g in zip(pl, gl, strict=True):
                p.sub_(lr * g)


def squared_step(params: Sequence[Tensor], before: Sequence[Tensor]) -> float:
    """‖θ − θ_before‖²: the squared length of the step just taken (the residual is its root over lr)."""
    return sum(float(((p.detach() - b) ** 2).sum()) for p, b in zip(params, before, strict=True))


def print_progress(it: int, steps: int, costs: np.ndarray, residual: float) -> None:
    """The learning loops' progress line, printed at the first step and every tenth of the budget."""
    if it % max(1, steps // 10) == 0 or it == 1:
        print(
            f"  iter {it:5d}  Λ-costs {np.array2string(costs, precision=5)}  residual {residual:.3e}"
        )


def _finite(ps: list[list[Tensor]]) -> bool:
    return all(
        bool(torch.isfinite(p).all()) and float(p.detach().abs().max()) < BLOWUP
        for pl in ps
        for p in pl
    )


class Adam:
    """Minimal Adam (Kingma & Ba) on given tensors; avoids ``torch.optim``'s slow first import (~10 s)."""

    def __init__(self, params: list[Tensor], lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params, self.lr, (self.b1, self.b2), self.eps, self.t = params, lr, betas, eps, 0
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self, grads: list[Tensor]) -> None:
        """One update θ ← θ − lr m̂/(√v̂ + ε) with the given gradients."""
        self.t += 1
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m.mul_(self.b1).add_(g, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            p.sub_(self.lr * (m / c1) / ((v / c2).sqrt() + self.eps))

    def state(self) -> list[tuple[float, np.ndarray, np.ndarray]] | None:
        """(steps taken, first moment, second moment) per tensor, None before the first step: what a
        restarted copy needs (``load``) to continue exactly."""
        if self.t == 0:
            return None
        return [
            (float(self.t), m.cpu().numpy().copy(), v.cpu().numpy().copy())
            for m, v in zip(self.m, self.v, strict=True)
        ]

    def load(self, state: list | None) -> None:
        """Restore the moments saved by ``state`` (None: keep the fresh state)."""
        if state:
            self.t = int(state[0][0])
            pairs = list(zip(self.params, state, strict=True))  # copies: ``state`` may be read-only
            self.m = [torch.tensor(st[1], dtype=p.dtype, device=p.device) for p, st in pairs]
            self.v = [torch.tensor(st[2], dtype=p.dtype, device=p.device) for p, st in pairs]


class Descent:
    """The plain gradient step θ ← θ − lr g on given tensors (optimiser ``sgd``); it carries no state."""

    def __init__(self, params: list[Tensor], lr: float):
        self.params, self.lr = params, lr

    def step(self, grads: list[Tensor]) -> None:
        """One update θ ← θ − lr g with the given gradients."""
        _apply([self.params], [grads], self.lr)

    def state(self) -> None:
        """Plain gradient steps carry no state."""
        return None

    def load(self, state: object) -> None:
        """Nothing to restore."""


def make_optimizer(name: str, params: list[Tensor], lr: float) -> Adam | Descent:
    """The optimiser ``name`` (one of ``OPTIMIZERS``) on the given tensors: ``step(grads)``, ``state()``,
    ``load(state)``; the learning loops and the per-agent actors use these same classes."""
    choice("optimizer", name, OPTIMIZERS)
    return Adam(params, lr) if name == "adam" else Descent(params, lr)


def check_options(steps: int, lr: float, method: str, tol: float, optimizer: str) -> None:
    """Validate the common learning options (one-line errors naming the option)."""
    number("steps", steps, low=1, integer=True)
    number("lr", lr, low=0.0, strict_low=True)
    number("tol", tol, low=0.0)
    choice("method", method, METHODS)
    choice("optimizer", optimizer, OPTIMIZERS)
    if optimizer == "adam" and method != "gradient":
        raise ValidationError(
            "optimizer",
            "sgd with extragradient/optimistic",
            optimizer,
            reason="adam is available for method='gradient' only",
        )


def gradient_play(
    game: Game, Lambda: np.ndarray, agents: Sequence[int] | None = None, **options: Any
) -> Learned:
    """Simultaneous gradient play of the listed agents on their Λ-costs (the others stay frozen).

    gradient: θ ← P(θ − η g(θ)); extragradient: θ ← P(θ − η g(P(θ − η g(θ)))); optimistic:
    θ ← P(θ − η(2g_t − g_{t−1})). Stops when the step length / η (the projected-gradient residual) is
    below ``tol``. ``options``: those of ``gradient_play_cells`` (steps, lr, method, tol, optimizer,
    progress, rtol, anneal), with its defaults. Returns ``Learned(status, iterations, residual,
    history [iterations, n] of Λ-costs)``.
    """
    if game.n_cells != 1:
        raise ValidationError(
            "game", "a single game (use gradient_play_cells)", type(game).__name__
        )
    return gradient_play_cells(game, Lambda, agents, **options)[0]


def _cell_grads(game: Game, E: Tensor, agents: Sequence[int], n: int) -> dict[int, list[Tensor]]:
    """Own-gradients of the listed agents of a game made of independent cells of n agents each.

    Agent k = c·n + j influences only cell c, so one backward of Σ_c E[c·n + j] gives every cell's ∂E_k/∂θ_k.
    """
    by_j: dict[int, list[int]] = {}
    for k in agents:
        by_j.setdefault(k % n, []).append(k)
    out: dict[int, list[Tensor]] = {}
    for ks in by_j.values():
        target = E[ks[0]] if len(ks) == 1 else E[ks].sum()
        ps = [p for k in ks for p in game.parameters_of(k)]
        raw = torch.autograd.grad(target, ps, retain_graph=True, allow_unused=True)
        gs = [torch.zeros_like(p) if g is None else g for p, g in zip(ps, raw, strict=True)]
        at = 0
        for k in ks:
            m = len(game.parameters_of(k))
            out[k], at = gs[at : at + m], at + m
    return out


def gradient_play_cells(
    game: Game,
    Lambda: np.ndarray,
    agents: Sequence[int] | None = None,
    *,
    steps: int = 500,
    lr: float = 0.05,
    method: str = "gradient",
    tol: float = 1e-8,
    optimizer: str = "sgd",
    progress: bool = False,
    rtol: float | None = None,
    anneal: bool = True,
) -> list[Learned]:
    """``gradient_play`` on a game of ``game.n_cells`` independent cells (default 1), one result per cell.

    Every cell keeps its own optimiser state, stopping rule, status and history, so a cell's numbers are
    those of playing it alone; a cell that has converged or diverged is frozen while the others go on.
    Stopping rule: residual < ``tol`` + ``rtol`` × the first residual (``rtol`` default: ``RTOL`` with Adam,
    whose residual is a gradient norm of badly scaled policy parameters; 0 otherwise). With Adam and ``anneal``, the rate follows a
    cosine from ``lr`` to ``lr``/100 over the step budget (Adam at a fixed rate hovers instead of converging).
    """
    C = int(game.n_cells)
    n = game.n_agents // C
    agents = list(range(game.n_agents)) if agents is None else list(agents)
    mine = [[k for k in agents if k // n == c] for c in range(C)]
    ps = [[game.parameters_of(k) for k in ks] for ks in mine]
    flat = [[p for pl in pc for p in pl] for pc in ps]
    opt = [Adam(f, lr) if optimizer == "adam" else None for f in flat]
    hist: list[list[np.ndarray]] = [[] for _ in range(C)]
    status, res, its = ["max_steps"] * C, [float("inf")] * C, [0] * C
    live = [c for c in range(C) if mine[c]]
    prev: dict[int, list[Tensor]] = {}
    res0 = [math.nan] * C
    rtol = (RTOL if optimizer == "adam" else 0.0) if rtol is None else float(rtol)
    for it in range(1, steps + 1):
        if not live:
            break
        _, E = lambda_costs(game, Lambda)
        e = E.detach().cpu().numpy().reshape(C, n)
        for c in live:
            its[c] = it
            hist[c].append(e[c])
            if not np.isfinite(e[c]).all() or not _finite(ps[c]):
                status[c] = "diverged"
        _report(it, steps, e[0] if C == 1 else e)
        live = [c for c in live if status[c] != "diverged"]
        if not live:
            break
        ks = [k for c in live for k in mine[c]]
        g = _cell_grads(game, E, ks, n)
        before = {c: [p.detach().clone() for p in flat[c]] for c in live}
        moving = [game.parameters_of(k) for k in ks]
        if method == "extragradient":
            _apply(moving, [g[k] for k in ks], lr)
            game.project()
            _, Eh = lambda_costs(game, Lambda)
            gh = _cell_grads(game, Eh, ks, n)
            with torch.no_grad():
                for c in live:
                    for p, b in zip(flat[c], before[c], strict=True):
                        p.copy_(b)
            _apply(moving, [gh[k] for k in ks], lr)
        elif method == "optimistic":
            d = [
                g[k] if k not in prev else [2 * a - b for a, b in zip(g[k], prev[k], strict=True)]
                for k in ks
            ]
            _apply(moving, d, lr)
            prev.update({k: g[k] for k in ks})
        elif optimizer == "adam":
            for c in live:
                oc = opt[c]
                assert oc is not None  # one Adam per cell with the adam optimizer
                oc.step([x.detach() for k in mine[c] for x in g[k]])
        else:
            _apply(moving, [g[k] for k in ks], lr)
        game.project()
        for c in live:
            if optimizer == "adam":
                res[c] = _norm([g[k] for k in mine[c]])
            else:
                res[c] = math.sqrt(squared_step(flat[c], before[c])) / lr
            if math.isnan(res0[c]):
                res0[c] = res[c]
            if not math.isfinite(res[c]):
                status[c] = "diverged"
            elif res[c] < tol + rtol * res0[c]:
                status[c] = "converged"
            elif (oc := opt[c]) is not None and anneal:  # cosine to 1 % of lr over the budget
                oc.lr = lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * it / steps)))
        if progress:
            print_progress(it, steps, e[live[0]], max(res[c] for c in live))
        live = [c for c in live if status[c] == "max_steps"]
    out = []
    for c in range(C):
        if status[c] != "diverged" and not _finite(ps[c]):
            status[c] = "diverged"
        h = np.array(hist[c]).reshape(len(hist[c]), n)
        out.append(Learned(status[c], its[c], res[c], h))
    return out


def polish(
    game: Game,
    Lambda: np.ndarray,
    history: np.ndarray,
    *,
    rounds: int = 6,
    rtol: float = 2e-4,
    max_iter: int = 25,
    budget: int | None = None,
    step0: int | None = None,
) -> tuple[bool, int, float, np.ndarray]:
    """Gauss–Seidel best responses in each agent's own class (L-BFGS-B over its parameters, others frozen).

    Gradient play gets near an equilibrium slowly; best-response rounds finish the job where they contract
    (LQ-type games). Stops when, in a full round, no agent lowers its Λ-cost by more than ``rtol`` × the
    cost scale: the profile is then an equilibrium of the policy classes up to that gain. ``budget`` caps the
    L-BFGS iterations of all rounds together (the learning's step budget left). Returns (converged, L-BFGS
    iterations used, largest gain of the last round, history with one row per round appended).
    """
    n = game.n_agents
    rows = [np.asarray(history, float).reshape(-1, n)]
    gain = math.inf
    left = math.inf if budget is None else int(budget)
    used = 0
    for _ in range(rounds):
        gain = 0.0
        for j in range(n):
            ps = game.parameters_of(j)
            if not ps or left <= 0:
                continue
            others = [p for k in range(n) if k != j for p in game.parameters_of(k)]
            flags = [p.requires_grad for p in others]
            sizes = [p.numel() for p in ps]

            def fg(v: np.ndarray, j=j, ps=ps, sizes=sizes) -> tuple[float, np.ndarray]:
                with torch.no_grad():
                    at = 0
                    for p, m in zip(ps, sizes, strict=True):
                        p.copy_(torch.as_tensor(v[at : at + m], dtype=p.dtype).reshape(p.shape))
                        at += m
                try:
                    f = lambda_costs(game, Lambda)[1][j]
                except (RuntimeError, ArithmeticError):
                    return math.inf, np.zeros_like(v)
                if not torch.isfinite(f):
                    return math.inf, np.zeros_like(v)
                gs = torch.autograd.grad(f, ps, allow_unused=True)
                g = [torch.zeros_like(p) if x is None else x for p, x in zip(ps, gs, strict=True)]
                return float(f.detach()), torch.cat([x.reshape(-1) for x in g]).cpu().numpy()

            x0 = torch.cat([p.detach().reshape(-1) for p in ps]).cpu().numpy().astype(float)
            try:
                for p in others:
                    p.requires_grad_(False)
                f0, _ = fg(x0)
                res = minimize(
                    fg,
                    x0,
                    jac=True,
                    method="L-BFGS-B",
                    options={"maxiter": int(min(max_iter, left)), "gtol": 1e-10},
                )
                left, used = left - max(1, res.nit), used + max(1, res.nit)
                best = res.x if res.fun <= f0 else x0
                f1, _ = fg(best)
            finally:
                for p, f in zip(others, flags, strict=True):
                    p.requires_grad_(f)
            if not (math.isfinite(f0) and math.isfinite(f1)):
                fg(x0)
                return False, used, math.inf, np.concatenate(rows)
            gain = max(gain, f0 - f1)
        with torch.no_grad():
            E = lambda_costs(game, Lambda)[1].detach().cpu().numpy().astype(float)
        rows.append(E[None])
        if gain <= rtol * max(float(np.abs(E).max()), 1e-9) and left >= 0:
            return True, used, gain, np.concatenate(rows)
        if left <= 0:
            break
    return False, used, gain, np.concatenate(rows)


def polished(
    game: Game,
    Lambda: np.ndarray,
    learned: Learned,
    rounds: int,
    steps: int,
) -> Learned:
    """Gradient play's (status, iterations, residual, history) followed by ``polish`` with the steps left
    (each L-BFGS iteration counts as a step): converged when it is."""
    status, it, res, hist = learned
    unfinished = "max_steps" if status == "converged" else status
    if steps - it <= 0:
        return Learned(unfinished, it, res, hist)
    ok, r, gain, hist = polish(game, Lambda, hist, rounds=rounds, budget=steps - it, step0=it)
    return Learned("converged" if ok else unfinished, it + r, gain, hist)
