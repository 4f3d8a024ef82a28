"""``fit``: minimise a scalar cost over any module's parameters (docs/theory.md#training, docs/theory.md#depth-ode: training as control).

Adam or L-BFGS, an optional rich progress bar, early stop when the best loss stops improving by more than
``tol`` (relative) over ``patience`` steps, and checkpoint/resume to one file written atomically
(temporary file in the same folder, then ``os.replace``), so a killed run never leaves a torn checkpoint.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from .errors import ValidationError, choice, number

OPTIMIZERS: dict[str, Callable] = {
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
    "lbfgs": lambda params, lr: torch.optim.LBFGS(
        params, lr=lr, max_iter=10, history_size=20, line_search_fn="strong_wolfe"
    ),
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
}
DEFAULT_LR = {"adam": 1e-2, "lbfgs": 1.0, "sgd": 1e-2}
STATUSES = ("converged", "max_steps", "diverged", "stopped")


@dataclass(frozen=True)
class FitResult:
    """History of a fit: ``losses[k]`` is the loss before update k; ``status`` is one of ``STATUSES``."""

    losses: list[float]
    steps: int
    converged: bool
    status: str
    final_loss: float
    best_loss: float = math.inf
    resumed_from: int = 0
    extra: dict = field(default_factory=dict)


def _params(params_or_module) -> list[Tensor]:
    if isinstance(params_or_module, nn.Module):
        ps: list[Tensor] = [p for p in params_or_module.parameters() if p.requires_grad]
    elif isinstance(params_or_module, Tensor):
        ps = [params_or_module]
    elif isinstance(params_or_module, Iterable):
        ps = list(params_or_module)
    else:
        raise ValidationError(
            "params_or_module",
            "an nn.Module or an iterable of tensors",
            type(params_or_module).__name__,
        )
    if not ps or not all(isinstance(p, Tensor) and p.requires_grad for p in ps):
        raise ValidationError(
            "params_or_module", "at least one tensor, each with requires_grad=True", len(ps)
        )
    return ps


def _save_atomic(path: Path, state: dict) -> None:
    """torch.save to a temporary file beside ``path``, then ``os.replace`` (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _state(params: list[Tensor], opt, losses: list[float], step: int, best: float) -> dict:
    return {
        "params": [p.detach().clone() for p in params],
        "optimizer": opt.state_dict(),
        "losses": list(losses),
        "step": step,
        "best": best,
        "rng": torch.get_rng_state(),
    }


def fit(
    params_or_module,
    loss_fn: Callable[[], Tensor],
    *,
    steps: int = 200,
    lr: float | None = None,
    optimizer: str = "adam",
    tol: float = 0.0,
    patience: int = 20,
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 50,
    resume: bool = True,
    callback: Callable[[int, float], bool | None] | None = None,
) -> FitResult:
    """Minimise ``loss_fn()`` over the parameters; returns the loss history (docs/theory.md#training).

    ``lr=None`` means 1e-2 for Adam and 1.0 for L-BFGS (strong-Wolfe line search, 10 inner iterations per
    step). With ``tol > 0`` the fit stops ("converged") once the best loss has improved by less than
    ``tol·max(1, |best|)`` over the last ``patience`` steps. A non-finite loss stops it with status
    "diverged" and the parameters of the last finite step. ``callback(step, loss)`` returning True stops it.
    ``checkpoint``: a file; with ``resume=True`` an existing one is loaded and the run continues from its step.
    """
    params = _params(params_or_module)
    choice("optimizer", optimizer, OPTIMIZERS)
    steps = number("steps", steps, low=0, integer=True)
    lr = DEFAULT_LR[optimizer] if lr is None else number("lr", lr, low=0.0, strict_low=True)
    tol = number("tol", tol, low=0.0)
    patience = number("patience", patience, low=1, integer=True)
    checkpoint_every = number("checkpoint_every", checkpoint_every, low=1, integer=True)
    if not callable(loss_fn):
        raise ValidationError(
            "loss_fn", "a callable returning a scalar tensor", type(loss_fn).__name__
        )
    opt = OPTIMIZERS[optimizer](params, lr)
    path = Path(checkpoint) if checkpoint is not None else None

    losses: list[float] = []
    start, best = 0, math.inf
    if path is not None and resume and path.exists():
        state = torch.load(path, map_location=params[0].device, weights_only=True)
        if len(state["params"]) != len(params) or any(
            s.shape != p.shape for s, p in zip(state["params"], params, strict=True)
        ):
            raise ValidationError(
                "checkpoint", "a checkpoint of the same parameter shapes", str(path)
            )
        with torch.no_grad():
            for p, s in zip(params, state["params"], strict=True):
                p.copy_(s)
        opt.load_state_dict(state["optimizer"])
        losses, start, best = list(state["losses"]), int(state["step"]), float(state["best"])
        torch.set_rng_state(state["rng"])
    resumed_from = start

    def closure() -> Tensor:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValidationError("loss_fn", "a scalar tensor", getattr(loss, "shape", loss))
        if torch.isfinite(loss):
            loss.backward()
        return loss

    status, step = "max_steps", start
    last_good = [p.detach().clone() for p in params]
    bar = _Bar(progress, steps, start, optimizer)
    try:
        for step in range(start, steps):
            loss = opt.step(closure) if optimizer == "lbfgs" else _plain_step(opt, closure)
            value = float(loss.detach())
            if not math.isfinite(value):
                with torch.no_grad():
                    for p, s in zip(params, last_good, strict=True):
                        p.copy_(s)
                status = "diverged"
                break
            losses.append(value)
            for p, s in zip(params, last_good, strict=True):
                s.copy_(p.detach())
            best = min(best, value)
            bar.update(step + 1, value, best)
            if callback is not None and callback(step, value):
                status, step = "stopped", step + 1
                break
            if tol > 0 and len(losses) > patience:
                before = min(losses[:-patience])
                if before - best <= tol * max(1.0, abs(best)):
                    status, step = "converged", step + 1
                    break
            if path is not None and (step + 1) % checkpoint_every == 0:
                _save_atomic(path, _state(params, opt, losses, step + 1, best))
        else:
            step = steps
    finally:
        bar.close()
    if path is not None:
        _save_atomic(path, _state(params, opt, losses, step, best))
    with torch.no_grad():
        out = loss_fn()
    final = float(out.detach()) if isinstance(out, Tensor) else float(out)
    if status == "max_steps" and not math.isfinite(final):
        status = "diverged"
    return FitResult(
        losses=losses,
        steps=step,
        converged=status == "converged",
        status=status,
        final_loss=final,
        best_loss=min(best, final) if math.isfinite(final) else best,
        resumed_from=resumed_from,
    )


def _plain_step(opt, closure) -> Tensor:
    loss = closure()
    if torch.isfinite(loss):
        opt.step()
    return loss


class _Bar:
    """A rich progress bar showing the loss, or nothing."""

    def __init__(self, on: bool, total: int, start: int, name: str):
        self.progress = None
        if not on:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            TextColumn(f"[bold]fit[/] {name}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss [cyan]{task.fields[loss]}[/] best [green]{task.fields[best]}[/]"),
            TimeElapsedColumn(),
            transient=True,
        )
        self.task = self.progress.add_task("fit", total=total, completed=start, loss="-", best="-")
        self.progress.start()

    def update(self, done: int, loss: float, best: float) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done, loss=f"{loss:.6g}", best=f"{best:.6g}")

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
