"""An MFTT as a population's shared policy: each agent attends to a fixed sample of its population.

Agent i of population k reads the tokens (x_i − m_k, m_k) and (x_s − m_k, m_k) for the S sampled agents s
of its population; the MFTT maps them to actions and the agent plays the action of its own token. A step
costs O(N · S²) per population, never O(N²), and in the mean-field gradient the sample is part of the frozen
law. One model per population (``parameters_of(k)`` are its leaves). See docs/populations.md#populations.
"""

from __future__ import annotations

import torch
from torch import Tensor

from control.errors import ValidationError

from .agent import MFTTPolicy
from .population_policy import Law


class MFTTPopulationPolicy:
    """u_i = MFTT_k(tokens of i and of the S sampled agents)[own token]; ``law`` any MFTT weight law."""

    kind = "mftt"

    def __init__(
        self,
        K: int,
        d: int,
        m: int,
        *,
        law: str = "feedback",
        config: dict | None = None,
        samples: int = 8,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ):
        if samples < 1:
            raise ValidationError("samples", "an integer ≥ 1 (agents each one attends to)", samples)
        self.K, self.d, self.m, self.samples = K, d, m, int(samples)
        self.nets = []
        for k in range(K):
            torch.manual_seed(int(seed) * 1009 + k)
            self.nets.append(
                MFTTPolicy(2 * d, m, law, config=config, batch=(1,), dtype=dtype, device=device)
            )

    def parameters_of(self, k: int) -> list[Tensor]:
        return [p for p in self.nets[k].parameters() if p.requires_grad]

    def n_params(self) -> int:
        return sum(p.numel() for k in range(self.K) for p in self.parameters_of(k))

    def __call__(self, t: Tensor, x: Tensor, law: Law, W: Tensor | None = None) -> Tensor:
        """Actions ``[R, K, N, m]`` for states ``x [R, K, N, d]``."""
        if W is not None:
            raise ValidationError(
                "gradient", "mean_field or population with an MFTT policy", "exact"
            )
        if law.sample is None:
            raise ValidationError(
                "law", "a law carrying a sample of agents (PopulationGame.law)", None
            )
        R, K, N, d = x.shape
        m = law.mean.unsqueeze(2)  # [R, K, 1, d]
        own = torch.cat([x - m, m.expand(R, K, N, d)], -1)  # [R, K, N, 2d]
        S = law.sample.shape[2]
        smp = torch.cat([law.sample - m, m.expand(R, K, S, d)], -1)  # [R, K, S, 2d]
        out = []
        for k in range(K):
            tokens = (
                torch.cat(  # [R·N, 1, 1 + S, 2d]: agent batch first, the model's own batch (1) next
                    [own[:, k].unsqueeze(2), smp[:, k].unsqueeze(1).expand(R, N, S, 2 * d)], 2
                ).reshape(R * N, 1, 1 + S, 2 * d)
            )
            out.append(self.nets[k](t, tokens)[:, 0, 0].reshape(R, N, self.m))
        return torch.stack(out, 1)
