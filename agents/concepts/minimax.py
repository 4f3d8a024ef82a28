"""Two-player zero-sum saddle point min_u max_v L: quasi-Newton on the saddle field, or extragradient (docs/theory.md#static-games, docs/theory.md#hinf).

``method="auto"`` (default) takes ``newton`` on unconstrained games with few parameters (the linear policies of
the differential games: the time-law gains are badly scaled and coupled, so first-order play needs thousands of
steps) and ``extragradient`` otherwise. Every method stops when the residual (the norm of the players' own
gradients, or the projected step per unit learning rate) is below ``tol``; ``steps`` is the safety net.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from control.errors import ValidationError, choice

from ..empathy import require_self_regard
from ..equilibrium import Equilibrium
from ..game import Game
from ..learning import check_options, gradient_play, lambda_costs
from ._finish import finish

ALIASES = {
    "gda": "gradient",
    "extragradient": "extragradient",
    "optimistic": "optimistic",
    "gradient": "gradient",
    "newton": "newton",
    "auto": "auto",
}
NEWTON_MAX_PARAMS = 16  # the exact Hessian costs one double backward per parameter
NEWTON_TOL = (
    1e-6  # default residual tolerance of newton: the in-class duality gap is ~ tol²/curvature
)
MAX_HESSIANS = 3  # exact Hessians per newton run (the first one included)
STALL = 10  # newton gives up after this many iterations without a lower residual


def solve_minimax(
    game: Game,
    Lambda: np.ndarray,
    *,
    steps: int = 2000,
    lr: float = 0.05,
    method: str = "auto",
    tol: float | None = None,
    progress: bool = False,
    measure_exploitability: bool = False,
    br_steps: int = 300,
    br_lr: float | None = None,
) -> Equilibrium:
    """Saddle of a two-player game whose Λ-costs sum to zero: player 0 minimises L, player 1 maximises it.

    ``method``: "auto" (default: "newton" on an unconstrained game with at most 64 parameters, else
    "extragradient"), "newton" (regularised quasi-Newton on the gradient field, see ``newton_saddle``),
    "extragradient" (converges on monotone games incl. the bilinear L = uv), "optimistic", or "gda" /
    "gradient" (simultaneous gradient descent-ascent; rotates outward on uv). ``tol``: residual tolerance
    (default 1e-6 for newton, 1e-8 for the first-order methods).
    """
    if game.n_agents != 2:
        raise ValidationError("concept", "a two-player game for minimax", f"{game.n_agents} agents")
    m = ALIASES.get(method, method)
    choice("method", m, sorted(set(ALIASES.values())))
    if m == "auto":
        n_par = int(np.sum(game.n_params()))
        unconstrained = type(game).project is Game.project
        m = "newton" if unconstrained and n_par <= NEWTON_MAX_PARAMS else "extragradient"
    if tol is None:
        tol = NEWTON_TOL if m == "newton" else 1e-8
    check_options(steps, lr, "gradient" if m == "newton" else m, tol, "sgd")
    require_self_regard(
        Lambda,
        range(2),
        "minimax needs each player to minimise its own convex(-concave) cost: lambda_jj <= 0 "
        "turns the minimiser into a maximiser of its own cost (docs/theory.md#self-regard)",
    )
    with torch.no_grad():
        _, E = lambda_costs(game, Lambda)
    s, scale = float(E.sum()), float(E.abs().max()) + 1.0
    if abs(s) > 1e-8 * scale:
        raise ValidationError(
            "concept",
            "a zero-sum game for minimax (Λ-costs summing to 0)",
            f"sum {s:.3g}",
            reason="use concept='nash' for general-sum games",
        )
    info: dict = {"method": m}
    if m == "newton":
        status, it, res, hist, extra = newton_saddle(
            game, Lambda, steps=steps, tol=tol, progress=progress
        )
        info.update(extra)
    else:
        status, it, res, hist = gradient_play(
            game, Lambda, steps=steps, lr=lr, method=m, tol=tol, progress=progress
        )
    return finish(
        game,
        Lambda,
        "minimax",
        status,
        it,
        res,
        hist,
        info=info,
        message=info.get("message", ""),
        measure_exploitability=measure_exploitability,
        steps=br_steps,
        lr=br_lr or lr,
    )


# ------------------------------------------------------------------------------------------ newton
def _field(game: Game, Lambda: np.ndarray, ps: list[Tensor], create_graph: bool):
    """(Λ-costs [2] as numbers, ∇f over all parameters) with f = E_0 = −E_1 (the minimiser's Λ-cost)."""
    _, E = lambda_costs(game, Lambda)
    gs = torch.autograd.grad(E[0], ps, create_graph=create_graph, allow_unused=True)
    F = torch.cat(
        [(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(ps, gs, strict=True)]
    )
    return E.detach().cpu().numpy().astype(float), F


def _hessian(F: Tensor, ps: list[Tensor]) -> Tensor:
    """∂F/∂θ row by row (double backward), symmetrised; rows of constant entries are 0."""
    n = F.numel()
    H = F.new_zeros(n, n)
    for i in range(n):
        if not F[i].requires_grad:
            continue
        gs = torch.autograd.grad(F[i], ps, retain_graph=True, allow_unused=True)
        H[i] = torch.cat(
            [
                (torch.zeros_like(p) if g is None else g).reshape(-1)
                for p, g in zip(ps, gs, strict=True)
            ]
        )
    return 0.5 * (H + H.T).detach()


def _shift(ps: list[Tensor], d: Tensor) -> None:
    with torch.no_grad():
        at = 0
        for p in ps:
            p.add_(d[at : at + p.numel()].reshape(p.shape))
            at += p.numel()


def _newton_step(H: Tensor, F: Tensor, n0: int, regular: bool) -> Tensor:
    """Newton step −H⁻¹F, or (``regular`` or H singular) −(H + μS)⁻¹F with S = diag(+1 minimiser, −1 maximiser)
    and the least μ ≥ 0 making the minimiser's block positive and the maximiser's negative definite: a
    descent–ascent direction when the plain step fails."""
    if not regular:
        try:
            d = torch.linalg.solve(H, -F)
            if bool(torch.isfinite(d).all()):
                return d
        except RuntimeError:
            pass
    scale = float(H.abs().max()) + 1e-300
    lo = float(torch.linalg.eigvalsh(H[:n0, :n0])[0]) if n0 else scale
    hi = float(torch.linalg.eigvalsh(H[n0:, n0:])[-1]) if n0 < len(F) else -scale
    floor = 1e-8 * scale
    mu = max(0.0, floor - lo, hi + floor)
    S = torch.ones_like(F)
    S[n0:] = -1.0
    return torch.linalg.solve(H + mu * torch.diag(S), -F)


def newton_saddle(
    game: Game,
    Lambda: np.ndarray,
    *,
    steps: int = 200,
    tol: float = NEWTON_TOL,
    progress: bool = False,
    max_halvings: int = 6,
) -> tuple[str, int, float, np.ndarray, dict]:
    """Saddle of f = E_0 = −E_1 by a regularised quasi-Newton method on F = ∇f = 0 (zero-sum games).

    The Hessian is exact (double backward) at the start and when a step fails (at most ``MAX_HESSIANS``), and
    is updated in between by the symmetric (Powell) Broyden formula from one gradient per iteration. A step is
    halved until ‖F‖ decreases (a monotone merit: without it Newton wanders to other stationary points near
    γ* in the H∞ game); if the exact Newton step fails too, the step is regularised so that the minimiser
    descends and the maximiser ascends (``_newton_step``). Stops when ‖F‖ (the players' own-gradient norm)
    < ``tol``, or gives up (status max_steps, with a message) after ``STALL`` iterations without progress.
    Returns (status, iterations, residual, history [iterations, 2], info).
    """
    ps = game.parameters_of(0) + game.parameters_of(1)
    n0 = sum(p.numel() for p in game.parameters_of(0))
    hist: list[np.ndarray] = []
    n_hess = 0

    def exact() -> tuple[np.ndarray, Tensor, Tensor]:
        nonlocal n_hess
        n_hess += 1
        e, F = _field(game, Lambda, ps, create_graph=True)
        return e, F.detach(), _hessian(F, ps)

    try:
        e, F, H = exact()
    except (RuntimeError, ArithmeticError) as err:
        return "diverged", 1, math.inf, np.zeros((0, 2)), {"message": str(err).splitlines()[0]}
    res, status, it = float(F.norm()), "max_steps", 0
    best, since, msg = res, 0, ""
    for it in range(1, steps + 1):
        hist.append(e)
        if not (np.isfinite(e).all() and math.isfinite(res)):
            status = "diverged"
            break
        if res < tol:
            status = "converged"
            break
        if progress and (it % max(1, steps // 10) == 0 or it == 1):
            print(f"  iter {it:5d}  Λ-costs {np.array2string(e, precision=6)}  residual {res:.3e}")
        fresh, regular = False, False
        d, t = _newton_step(H, F, n0, regular), 1.0
        while True:
            _shift(ps, t * d)
            try:
                e2, F2 = _field(game, Lambda, ps, create_graph=False)
                r2 = float(F2.norm())
                ok = np.isfinite(e2).all() and math.isfinite(r2) and r2 < res
            except (RuntimeError, ArithmeticError):
                ok = False
            if ok:
                break
            _shift(ps, -t * d)
            t *= 0.5
            if t >= 0.5**max_halvings:
                continue
            if regular:  # even the regularised exact step fails: take its smallest step and go on
                _shift(ps, t * d)
                e2, F2 = _field(game, Lambda, ps, create_graph=False)
                r2 = float(F2.norm())
                break
            if (
                fresh or n_hess >= MAX_HESSIANS
            ):  # the Newton direction fails: descend–ascend instead
                regular = True
            else:  # the Broyden matrix is stale: recompute the exact Hessian here
                e, F, H = exact()
                fresh = True
            d, t = _newton_step(H, F, n0, regular), 1.0
        s, y = t * d, F2.detach() - F
        r, ss = y - H @ s, float(s @ s)
        if ss > 0:
            H = (
                H
                + (torch.outer(r, s) + torch.outer(s, r)) / ss
                - float(r @ s) * torch.outer(s, s) / ss**2
            )
        best, since = (r2, 0) if r2 < best else (best, since + 1)
        e, F, res = e2, F2.detach(), r2
        if since >= STALL:
            msg = f"newton stalled: no lower residual in {STALL} iterations (residual {res:.3g})"
            hist.append(e)
            break
    hist_arr = np.array(hist).reshape(len(hist), 2)
    return status, it, res, hist_arr, {"hessians": n_hess, "message": msg}
