"""Helpers shared by the differential-game scenarios: particles with exact moments, agents from a policy kind,
and ``ParticleScenario``, the base of the scenarios played by linear or MFTT agents over a horizon ``T``."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from control.errors import ValidationError
from control.laws import LAW_OPTIONS

from ..agent import Agent, make_policy
from ..differential import DifferentialGame
from .base import Scenario

DTYPE = torch.float64


def particles(m0: float, v0: float, P: int, device: str | torch.device = "cpu") -> Tensor:
    """P deterministic particles ``[P, 1]`` with sample mean m0 and (population) variance v0 exactly."""
    z = torch.linspace(-1.0, 1.0, P, dtype=DTYPE, device=device)
    std = z.std(unbiased=False)
    z = z / std if float(std) > 0 else z
    return (m0 + math.sqrt(v0) * z).unsqueeze(-1)


def per_entity(field: str, v, n: int) -> np.ndarray:
    """A number or n finite numbers (one per player or population) as an array [n]; the error names ``field``."""
    a = np.atleast_1d(np.asarray(v, dtype=float))
    if a.ndim != 1 or a.shape[0] not in (1, n) or not np.isfinite(a).all():
        raise ValidationError(field, f"a number or {n} finite numbers", v)
    return np.broadcast_to(a, (n,)).copy()


def make_agents(
    names: list[str],
    roles: list[str],
    *,
    policy: str,
    law: str,
    d_obs: int,
    d_act: int,
    T: float,
    seed: int,
    mftt: dict | None,
    law_options: dict,
    init=0.0,
    device: str | torch.device = "cpu",
) -> list[Agent]:
    """One agent per name with a freshly seeded policy of kind ``policy`` and weight law ``law``."""
    agents = []
    for j, (name, role) in enumerate(zip(names, roles, strict=True)):
        torch.manual_seed(seed * 1009 + j)
        if policy == "linear":
            opts = dict(T=T, init=init, dtype=DTYPE, device=device)
            opts.update({k: v for k, v in law_options.items() if _law_accepts(law, k)})
        elif policy == "mftt":
            opts = dict(config=mftt, dtype=DTYPE, device=device)
        else:
            opts = dict(init=init, dtype=DTYPE, device=device)
        agents.append(Agent(name, role, make_policy(policy, d_obs, d_act, law, **opts)))
    return agents


def _law_accepts(law: str, key: str) -> bool:
    return key in LAW_OPTIONS[law]


class ParticleScenario(Scenario):
    """A fusable differential game of linear or MFTT agents (its dynamics and costs depend on its parameters
    only) whose parameters include the horizon ``T``, the ``n_steps`` of its time grid and the laws' ``order``."""

    fusable = True
    policies = ("linear", "mftt")

    def agents(
        self, name: str, role: str, d: int, policy: str, law: str, mftt, seed: int, device, init=0.0
    ) -> list[Agent]:
        """One agent per player, ``{name}{j}`` with ``role``, observing and acting in ``d`` dimensions."""
        p, n = self.params, self.n
        return make_agents(
            [f"{name}{j}" for j in range(n)],
            [role] * n,
            policy=policy,
            law=law,
            d_obs=d,
            d_act=d,
            T=float(p["T"]),
            seed=seed,
            mftt=mftt,
            law_options={"order": p["order"]},
            init=init,
            device=device,
        )

    def differential_game(
        self, agents: list[Agent], x0: Tensor, dynamics, running, terminal, **options
    ) -> DifferentialGame:
        """The ``DifferentialGame`` on the scenario's horizon ``T`` and grid of ``n_steps`` steps."""
        p = self.params
        T, n_steps = float(p["T"]), int(p["n_steps"])
        return DifferentialGame(
            agents, x0, dynamics, running, terminal, T=T, n_steps=n_steps, **options
        )
