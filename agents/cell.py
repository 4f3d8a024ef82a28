"""A grid cell as data: ``CellSpec`` holds one cell's settings, validated once, and ``build`` makes its game.

Every way of playing a cell — ``agents.play``, the fusion of cells into one game, the per-agent Ray actors,
the app's pre-run check — builds from a ``CellSpec``, so the scenario, Λ, seeds, initial perturbation and
options are resolved in one place and the layers below trust them (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from control import limits
from control.errors import ValidationError, choice, number
from mftt import MFTTConfig

from .agent import LAWS
from .concepts import SOLUTION_CONCEPTS
from .empathy import as_Lambda
from .game import Game
from .scenarios import Scenario, get_scenario

# play()'s keyword arguments that describe the cell (the rest — progress, solver, tolerance — say how to play it)
FIELDS = (
    "scenario",
    "n_agents",
    "Lambda",
    "Lambda_alpha",
    "law",
    "policy",
    "concept",
    "steps",
    "lr",
    "seed",
    "params",
    "mftt",
    "device",
    "init_noise",
)


@dataclass(frozen=True)
class CellSpec:
    """One cell's settings with the scenario's defaults filled in; ``CellSpec.of(...)`` validates them.

    ``Lambda`` is kept as given (a preset name or a matrix) and resolved against the scenario's player count
    by ``build``; everything else is final.
    """

    scenario: str
    n_agents: int | None = None
    Lambda: Any = "selfish"
    Lambda_alpha: float = 0.5
    law: str = "feedback"
    policy: str = ""
    concept: str = ""
    steps: int = 0
    lr: float = 0.0
    seed: int = 0
    params: dict = field(default_factory=dict)
    mftt: dict | None = None
    device: str = "cpu"
    init_noise: float = 0.0

    @classmethod
    def of(cls, kwargs: Mapping[str, Any] | None = None, /, **kw: Any) -> CellSpec:
        """Validate ``play``-style keyword arguments (a mapping and/or keywords; None: the scenario's default).

        Unknown keys are ignored here (``play`` names its own); bad values raise one-line ``ValidationError``s.
        """
        kw = {**(kwargs or {}), **kw}
        if "scenario" not in kw:
            raise ValidationError("scenario", "a scenario name", None)
        sc = get_scenario(kw["scenario"])
        law = choice("law", kw.get("law", "feedback"), LAWS)
        policy = kw.get("policy")
        policy = sc.default_policy if policy is None else policy
        choice("policy", policy, sc.policies)
        concept = kw.get("concept")
        concept = sc.default_concept if concept is None else concept
        choice("concept", concept, sorted(SOLUTION_CONCEPTS))
        steps = kw.get("steps")
        steps = int(
            number("steps", sc.default_steps if steps is None else steps, low=1, integer=True)
        )
        lr = kw.get("lr")
        lr = float(number("lr", sc.default_lr if lr is None else lr, low=0.0, strict_low=True))
        seed = kw.get("seed", 0)
        try:  # numpy and torch seeds are 32-bit; 2**70 would overflow inside a cell
            seed = int(number("seed", seed, low=0, high=2**32 - 1, integer=True))
        except OverflowError:
            raise ValidationError("seed", f"an integer in [0, {2**32 - 1}]", seed) from None
        alpha = float(number("Lambda_alpha", kw.get("Lambda_alpha", 0.5)))
        params = kw.get("params")
        if params is not None and not isinstance(params, dict):
            raise ValidationError("params", "a dict of scenario parameters", type(params).__name__)
        for k in ("n_agents", "n"):
            if params and k in params:  # would clash with play's own n_agents
                raise ValidationError(
                    f"params.{k}", "no agent count here (pass n_agents)", params[k]
                )
        mftt = kw.get("mftt")
        if mftt is not None and not isinstance(mftt, dict):
            raise ValidationError("mftt", "a dict of MFTTConfig options", type(mftt).__name__)
        check_mftt(mftt)
        device = str(limits.device("device", kw.get("device", "cpu")))
        if torch.device(device).type not in ("cpu", "cuda", "mps", "xpu"):
            raise ValidationError("device", "a compute device (cpu, cuda[:k], mps, xpu)", device)
        init_noise = float(number("init_noise", kw.get("init_noise", 0.0), low=0.0))
        return cls(
            scenario=sc.name,
            n_agents=kw.get("n_agents"),
            Lambda=kw.get("Lambda", "selfish"),
            Lambda_alpha=alpha,
            law=law,
            policy=policy,
            concept=concept,
            steps=steps,
            lr=lr,
            seed=seed,
            params=dict(params or {}),
            mftt=mftt,
            device=device,
            init_noise=init_noise,
        )

    @property
    def scenario_class(self) -> type[Scenario]:
        return get_scenario(self.scenario)

    def kwargs(self) -> dict[str, Any]:
        """The spec as ``play`` keyword arguments."""
        return {k: getattr(self, k) for k in FIELDS}

    def build(self) -> tuple[Scenario, np.ndarray, Game]:
        """(scenario instance, Λ, game): the scenario with its parameters, Λ resolved for its players, the
        game with the cell's agents — seeded by ``seed`` and perturbed by ``init_noise`` (``perturb``)."""
        sc = self.scenario_class(self.n_agents, **self.params)
        L = as_Lambda(self.Lambda, sc.n_players, self.Lambda_alpha)
        torch.manual_seed(self.seed)
        np.random.seed(self.seed)
        game = sc.game(
            Lambda=L,
            law=self.law,
            policy=self.policy,
            mftt=self.mftt,
            seed=self.seed,
            device=self.device,
        )
        perturb(game, self.seed, self.init_noise)
        return sc, L, game


def check_mftt(opts: dict | None) -> None:
    """Validate MFTT options up front, naming them ``mftt.<field>``."""
    if not opts:
        return
    known = {f.name for f in fields(MFTTConfig)}
    for k in opts:
        if k in ("weights", "d_in", "d_out"):
            raise ValidationError(
                f"mftt.{k}", "not set (the cell's law and the game set it)", opts[k]
            )
        if k not in known:
            raise ValidationError(
                f"mftt.{k}", f"an MFTTConfig field ({', '.join(sorted(known))})", "unknown option"
            )
    try:
        MFTTConfig(**opts)
    except (OverflowError, TypeError) as e:
        raise ValidationError("mftt", "finite MFTTConfig options", type(e).__name__) from None
    except ValidationError as e:
        raise e.under("mftt") from None


def perturb(game: Game, seed: int, scale: float) -> None:
    """Add scale·N(0, 1) to every trainable parameter of every agent, drawn from a generator seeded by ``seed``
    (the global RNG is left alone). No-op for scale = 0 or a game without agents (static/finite games)."""
    if not scale:
        return
    g = torch.Generator(device="cpu").manual_seed(int(seed) * 7919 + 104729)
    with torch.no_grad():
        for a in getattr(game, "agents", ()):
            for p in a.policy.parameters():
                if p.requires_grad:
                    z = torch.randn(p.shape, generator=g, dtype=torch.float64)
                    p.add_(z.to(dtype=p.dtype, device=p.device), alpha=scale)
