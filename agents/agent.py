"""Agents and their policies: an MFTT, a linear feedback law from ``control``, or a direct action (docs/theory.md#agents, docs/theory.md#mean-field).

A policy maps an observation ``obs [P, d_obs]`` (the particles of a population, or the states of the other agents,
seen as tokens) at time ``t`` to actions ``[P, d_act]``. Every agent owns its own leaf parameters (the concepts
descend them agent by agent); ``PolicyStack`` evaluates many agents' policies as one batched call per group of
same-structured policies, by stacking their parameters into a batched template (no Python loop over agents).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.func import functional_call

import mftt
from control import WEIGHT_LAWS, make_law
from control import meanfield as mf
from control.errors import ValidationError, choice
from control.laws import FEATURES, FeedbackLaw, MeanFieldLaw, TimeLaw, UntiedLaw, legendre

POLICIES: tuple[str, ...] = ("mftt", "linear", "direct")
LAWS: tuple[str, ...] = tuple(WEIGHT_LAWS)  # the weight-law registry, by name
# the laws whose time parts LinearPolicy precomputes per rollout (θ₀, the untied pieces, Legendre terms)
TABULATED = ("constant", "untied", "time", "feedback", "meanfield")
# LinearPolicy's table: stage time -> index, θ at the stage times, (U(t), features φ) and U_μ(t) of the
# feedback/meanfield laws (None for the others), and a last slot that is always None
_Table = tuple[
    dict[float, int], Tensor, tuple[Tensor, Callable[[Tensor], Tensor]] | None, Tensor | None, None
]


class Policy(nn.Module):
    """Base class: ``forward(t, obs [*batch, P, d_obs]) -> actions [*batch, P, d_act]``."""

    kind: str = "?"

    def __init__(self, d_obs: int, d_act: int, law: str, batch: Sequence[int] = ()):
        super().__init__()
        self.d_obs, self.d_act, self.law, self.batch = int(d_obs), int(d_act), law, tuple(batch)

    @property
    def n_params(self) -> int:
        """Trainable scalars of this policy."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def signature(self) -> tuple:
        """Policies with equal signatures can be evaluated as one batch."""
        return (type(self).__name__,) + tuple(
            (n, tuple(p.shape)) for n, p in self.named_parameters()
        )

    def template(self, k: int) -> Policy:
        """A policy of the same structure with leading ``batch=(k,)`` (its own values are unused)."""
        raise NotImplementedError

    def tabulate(self, times: Tensor | None) -> None:
        """Precompute what depends on time only on the solver's stage ``times`` (None: drop it); default none."""


class LinearPolicy(Policy):
    """u = −(Θ₁(x − Ex) + Θ₂ Ex), Θ = law(t, x, μ) ∈ ℝ^{2×m×d}: linear state-and-mean feedback (docs/theory.md#mean-field, docs/theory.md#lq-control).

    With the ``time`` law the gains are open-loop functions of time (the Riccati form of docs/theory.md#lq-control, docs/theory.md#lq-game);
    ``constant`` gives constant gains; ``feedback``/``meanfield`` make the gains depend on the state/the law.
    """

    kind = "linear"

    def __init__(
        self,
        d_obs: int = 1,
        d_act: int = 1,
        law: str = "time",
        *,
        T: float = 1.0,
        init: float | Tensor | None = 0.0,
        batch: Sequence[int] = (),
        device=None,
        dtype=None,
        **law_options,
    ):
        super().__init__(d_obs, d_act, law, batch)
        choice("law", law, LAWS)
        self.T, self.init, self.law_options = float(T), init, dict(law_options)
        self.dtype = dtype
        self.gains = make_law(
            law,
            (2, self.d_act, self.d_obs),
            self.d_obs,
            T=T,
            init=None if init is None else torch.as_tensor(init, dtype=dtype),
            batch=self.batch,
            device=device,
            dtype=dtype,
            **law_options,
        )

    def template(self, k: int) -> LinearPolicy:
        p = next(self.parameters())
        return LinearPolicy(
            self.d_obs,
            self.d_act,
            self.law,
            T=self.T,
            init=0.0,
            batch=(k,),
            device=p.device,
            dtype=p.dtype,
            **self.law_options,
        )

    def tabulate(self, times: Tensor | None) -> None:
        """Precompute the time parts of the law on the solver's stage times, once per rollout (speed).

        θ(t) (and U(t), U_μ(t) of the feedback/meanfield laws) depend on t only; per evaluation only the
        state-dependent low-rank terms remain. Times outside the table fall back to the law itself.
        """
        self._table = None
        if times is None or self.law not in TABULATED:
            return  # other laws (e.g. untied) are evaluated as they are

        law, b = self.gains, len(self.batch)
        theta = law.theta0.unsqueeze(b)  # [*batch, 1, *shape]
        if self.law == "constant":
            self._table = ({}, theta, None, None, None)
            return
        if self.law == "untied":  # piecewise constant in t: the pieces at the stage times
            assert isinstance(law, UntiedLaw)
            keys = {round(float(tk), 12): k for k, tk in enumerate(times)}
            self._table = (keys, law.theta_t(times), None, None, None)
            return
        assert isinstance(law, TimeLaw)  # time, feedback, meanfield
        s = 2 * times / law.T - 1
        basis = legendre(s, law.order)  # [K, order]
        c = law.coef.flatten(b + 1)  # [*batch, order, size]
        theta = theta + (basis @ c).reshape(self.batch + (len(times),) + law.shape)
        U: tuple[Tensor, Callable[[Tensor], Tensor]] | None = None
        Umu: Tensor | None = None
        if self.law in ("feedback", "meanfield"):
            assert isinstance(law, FeedbackLaw)
            basis0 = torch.cat([torch.ones_like(s).unsqueeze(-1), basis], -1)  # [K, order+1]
            Uk = torch.einsum("kq,...qpr->...kpr", basis0, law.U)
            if self.law == "meanfield":
                assert isinstance(law, MeanFieldLaw)
                Umu = torch.einsum("kq,...qpr->...kpr", basis0, law.Umu)
            U = (Uk, FEATURES[law.features])
        keys = {round(float(tk), 12): k for k, tk in enumerate(times)}
        self._table = (keys, theta, U, Umu, None)

    _table: _Table | None = None

    def _theta(self, t: Tensor | float, obs: Tensor) -> Tensor:
        """Θ(t, x, μ) ``[*batch, P or 1, 2, m, d]``, from the table when t is a tabulated time."""
        tab = self._table
        k = None
        if tab is not None:
            keys, theta, U, Umu, _ = tab
            k = 0 if self.law == "constant" else keys.get(round(float(t), 12))
        if k is None:
            mu = mf.MeanField.of(obs) if self.law == "meanfield" else None
            return self.gains(t, obs, mu)
        b, law = len(self.batch), self.gains
        th = theta.select(b, k).unsqueeze(b)  # [*batch, 1, *shape]
        if U is None:
            return th
        assert isinstance(law, FeedbackLaw)  # only the feedback/meanfield laws tabulate U
        Ut, phi = U[0].select(b, k), U[1]  # [*batch, size, rank]
        delta = (phi(obs) @ law.V.transpose(-1, -2)) @ Ut.transpose(-1, -2)  # [*batch, P, size]
        if Umu is not None:
            assert isinstance(law, MeanFieldLaw)
            m = obs.mean(-2, keepdim=True)
            psi = torch.cat([m, (obs - m).square().mean(-2, keepdim=True)], -1)  # [*batch, 1, 2d]
            delta = delta + (psi @ law.Vmu.transpose(-1, -2)) @ Umu.select(b, k).transpose(-1, -2)
        return th.flatten(-len(law.shape)).add(delta).reshape(obs.shape[:-1] + law.shape)

    def forward(self, t: Tensor | float, obs: Tensor) -> Tensor:
        theta = self._theta(t, obs)  # [*batch, P or 1, 2, m, d]
        m = obs.mean(-2, keepdim=True)  # [*batch, 1, d]
        y = obs - m
        u = theta[..., 0, :, :] @ y.unsqueeze(-1) + theta[..., 1, :, :] @ m.unsqueeze(-1)
        return -u.squeeze(-1)


class DirectPolicy(Policy):
    """A direct action a ∈ ℝ^m, the same for every observation (static games, open-loop constants)."""

    kind = "direct"

    def __init__(
        self,
        d_obs: int = 1,
        d_act: int = 1,
        law: str = "constant",
        *,
        init: float | Tensor = 0.0,
        batch: Sequence[int] = (),
        device=None,
        dtype=None,
        **_: object,
    ):
        super().__init__(d_obs, d_act, law, batch)
        a = torch.as_tensor(init, dtype=dtype, device=device).expand(self.batch + (self.d_act,))
        self.action = nn.Parameter(a.clone())

    def template(self, k: int) -> DirectPolicy:
        p = self.action
        return DirectPolicy(self.d_obs, self.d_act, batch=(k,), device=p.device, dtype=p.dtype)

    def forward(self, t: Tensor | float, obs: Tensor) -> Tensor:
        a = self.action.unsqueeze(-2)  # [*batch, 1, m]
        return a.expand(obs.shape[:-1] + (self.d_act,))


class MFTTPolicy(Policy):
    """An MFTT whose tokens are the observed states (+ time): attention is the mean-field interaction (docs/theory.md#mean-field).

    The read-in/out maps (``d_in``/``d_out``) take the raw token features to actions; the weight law of every
    layer is ``law`` (constant / time / feedback / meanfield, docs/theory.md#weight-laws).
    """

    kind = "mftt"
    DEFAULTS = dict(d_model=8, heads=2, d_ff=16, depth=1, norm="soft")

    def __init__(
        self,
        d_obs: int = 1,
        d_act: int = 1,
        law: str = "constant",
        *,
        config: dict | None = None,
        batch: Sequence[int] = (),
        device=None,
        dtype=None,
        **_: object,
    ):
        super().__init__(d_obs, d_act, law, batch)
        choice("law", law, LAWS)

        self.config = {**self.DEFAULTS, **(config or {})}
        for k in ("d_in", "d_out", "weights", "causal"):
            if k in self.config:
                raise ValidationError(f"mftt.{k}", "left to the agent (set by the game)", k)
        try:
            cfg = mftt.MFTTConfig(**self.config, weights=law, d_in=self.d_obs + 1, d_out=self.d_act)
        except TypeError as err:
            raise ValidationError("mftt", "options of mftt.MFTTConfig", str(err)) from None
        self.model = mftt.MeanFieldTypeTransformer(
            cfg, device=device, dtype=dtype, batch=self.batch
        )
        self.scale = 0.1  # small initial actions: the game starts near u = 0

    def template(self, k: int) -> MFTTPolicy:
        p = next(self.parameters())
        return MFTTPolicy(
            self.d_obs,
            self.d_act,
            self.law,
            config=self.config,
            batch=(k,),
            device=p.device,
            dtype=p.dtype,
        )

    def forward(self, t: Tensor | float, obs: Tensor) -> Tensor:
        tt = torch.as_tensor(t, dtype=obs.dtype, device=obs.device).expand(obs.shape[:-1] + (1,))
        return self.scale * self.model(torch.cat([obs, tt], -1))


POLICY_CLASSES: dict[str, type[Policy]] = {
    "linear": LinearPolicy,
    "direct": DirectPolicy,
    "mftt": MFTTPolicy,
}


def make_policy(kind: str, d_obs: int, d_act: int, law: str, **options) -> Policy:
    """Build ``POLICY_CLASSES[kind](d_obs, d_act, law, **options)``; unknown kinds list the allowed ones."""
    choice("policy", kind, POLICY_CLASSES)
    choice("law", law, LAWS)
    return POLICY_CLASSES[kind](d_obs, d_act, law, **options)


@dataclass(eq=False)
class Agent:
    """A decision maker: ``name``, ``role`` (e.g. ``firm``, ``attacker``) and its ``policy`` (an ``nn.Module``)."""

    name: str
    role: str
    policy: Policy
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValidationError("agent.name", "a non-empty string", self.name)
        if not isinstance(self.policy, Policy):
            raise ValidationError(
                f"agents.{self.name}.policy",
                "a Policy (LinearPolicy, MFTTPolicy, DirectPolicy)",
                type(self.policy).__name__,
            )

    @property
    def law(self) -> str:
        return self.policy.law

    @property
    def kind(self) -> str:
        return self.policy.kind

    def parameters(self) -> list[Tensor]:
        """The agent's decision variables (leaf tensors)."""
        return [p for p in self.policy.parameters() if p.requires_grad]

    @property
    def n_params(self) -> int:
        return self.policy.n_params


class _Run(nn.Module):
    """Container of the batched templates; ``forward(fn)`` runs ``fn`` while they hold the stacked parameters."""

    def __init__(self, templates: Sequence[Policy]):
        super().__init__()
        self.templates = nn.ModuleList(templates)

    def forward(self, fn):
        return fn()


class PolicyStack:
    """Evaluate all agents' policies: one batched call per group of same-structured policies.

    ``run(fn)`` stacks the agents' current leaf parameters (differentiably) into the batched templates once and
    runs ``fn`` (a whole rollout) with them; inside, ``__call__(t, obs)`` maps ``obs [n, P, d_obs]`` to actions
    ``[n, P, d_act]`` in agent order.
    """

    def __init__(self, policies: Sequence[Policy]):
        self.policies = list(policies)
        groups: dict[tuple, list[int]] = {}
        for j, p in enumerate(self.policies):
            groups.setdefault(p.signature(), []).append(j)
        self.groups = list(groups.values())
        self.runner = _Run([self.policies[g[0]].template(len(g)) for g in self.groups])
        self.runner.requires_grad_(False)
        self.templates = list(self.runner.templates)
        order = torch.tensor([j for g in self.groups for j in g])
        self.inverse = torch.argsort(order)
        self.single = len(self.groups) == 1 and self.groups[0] == list(range(len(self.policies)))

    def stacked(self) -> dict[str, Tensor]:
        """The current parameters of each group stacked on a leading agent axis (autograd-linked)."""
        out = {}
        for k, g in enumerate(self.groups):
            named = [dict(self.policies[j].named_parameters()) for j in g]
            for n in named[0]:
                out[f"templates.{k}.{n}"] = torch.stack([d[n] for d in named])
        return out

    def run(self, fn, times: Tensor | None = None):
        """Run ``fn()`` with the templates holding the stacked parameters (open-loop laws tabulated on ``times``)."""

        def wrapped():
            for tpl in self.templates:
                tpl.tabulate(times)
            try:
                return fn()
            finally:
                for tpl in self.templates:
                    tpl.tabulate(None)

        return functional_call(self.runner, self.stacked(), (wrapped,))

    def __call__(self, t: Tensor | float, obs: Tensor) -> Tensor:
        if self.single:
            return self.templates[0](t, obs)
        outs = [tpl(t, obs[g]) for g, tpl in zip(self.groups, self.templates, strict=True)]
        return torch.cat(outs, 0)[self.inverse.to(obs.device)]
