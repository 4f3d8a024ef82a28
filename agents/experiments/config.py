"""Experiments as data: TOML ⇄ frozen dataclasses, validated with one-line errors naming the field path.

An experiment is a grid. Its cells are the product of the scenarios, the Λ labels (presets and named
matrices), the weight laws, the seeds and any ``[sweep]`` field; each cell is one ``agents.play`` call
(docs/architecture.md). Example (``examples/configs/demo.toml``)::

    name = "demo"
    seeds = [0, 1]
    [scenarios.lq_game]            # a scenario and its parameters (empty table: the defaults)
    [scenarios.cournot]
    a = 10.0
    [agents]
    n = 2                          # omit: each scenario's default
    weights = ["constant", "feedback", "meanfield"]
    [Lambda]
    presets = ["selfish", "altruistic"]
    alpha = 0.5
    [training]
    steps = 60
    [sweep]
    "agents.n" = [2, 4]

Configs are data: parsed with ``tomllib``, never evaluated; unknown keys are refused.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from dataclasses import fields as dc_fields
from pathlib import Path
from typing import Any

import numpy as np

from control.errors import ValidationError, choice, number
from control.limits import device
from mftt import MFTTConfig

from ..agent import LAWS
from ..concepts import SOLUTION_CONCEPTS
from ..empathy import PRESETS
from ..scenarios import SCENARIOS, get_scenario
from .budget import check as check_budget
from .budget import estimate as estimate_budget
from .outputs import check_output

BACKENDS = ("ray", "local", "actors")
# friendly dimension names for common swept fields; any other path uses dots → underscores
SWEEP_DIMS = {
    "agents.n": "n_agents",
    "training.steps": "steps",
    "training.lr": "lr",
    "Lambda.alpha": "Lambda_alpha",
}
GRID_DIMS = ("scenario", "Lambda", "law", "seed")
# fields that already are grid dimensions: sweeping them would duplicate a dimension
_NOT_SWEEPABLE = (
    "scenarios",
    "Lambda.presets",
    "Lambda.matrices",
    "agents.weights",
    "seeds",
    "sweep",
    "fuse",
)


class ExperimentError(ValidationError):
    """A bad experiment config (one line: field path, what was expected, what came)."""


def _err(path: str, expected: str, got: Any = None, reason: str | None = None) -> ExperimentError:
    return ExperimentError(path, expected, got, reason=reason)


def _table(path: str, value: Any) -> dict:
    if not isinstance(value, Mapping):
        raise _err(path, "a table", value)
    return dict(value)


def _printable(k: Any) -> str:
    """A key from a config as printable text (control characters would garble the one-line error)."""
    return "".join(c if c.isprintable() else "?" for c in str(k))[:100]


def _keys(path: str, d: Mapping, allowed: tuple[str, ...]) -> None:
    for k in d:
        if k not in allowed:
            k = _printable(k)
            where = f"{path}.{k}" if path else k
            raise _err(where, f"a known key ({', '.join(allowed)})", "unknown key")


def _str(path: str, value: Any, *, empty: bool = False) -> str:
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise _err(path, "a non-empty string" if not empty else "a string", value)
    return value


def _names(path: str, value: Any, allowed: tuple[str, ...] | None) -> tuple[str, ...]:
    """A name or a non-empty list of distinct names, each checked against ``allowed``."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise _err(path, "a name or a non-empty list of names", value)
    out = []
    for i, v in enumerate(items):
        if allowed is not None:
            try:
                choice(path, v, allowed)
            except ValidationError as e:
                raise _err(path, e.expected, v) from None
        else:
            _str(f"{path}[{i}]", v)
        if v in out:
            raise _err(path, "distinct names", v, reason="duplicate")
        out.append(v)
    return tuple(out)


def _int(path: str, value: Any, low: int | None = None) -> int:
    try:
        return number(path, value, low=low, integer=True)
    except ValidationError as e:
        raise _err(path, e.expected, value) from None
    except OverflowError:
        raise _err(path, "an integer of a sane size", "too large") from None


MAX_CONFIG_BYTES = 10 * 2**20
MAX_SEED = 2**32 - 1  # numpy's seed range


def _seed(path: str, value: Any) -> int:
    try:
        return number(path, value, low=0, high=MAX_SEED, integer=True)
    except (ValidationError, OverflowError):
        raise _err(path, f"an integer in [0, {MAX_SEED}]", value) from None


def _float(path: str, value: Any, low: float | None = None, strict: bool = False) -> float:
    try:
        return float(number(path, value, low=low, strict_low=strict))
    except ValidationError as e:
        raise _err(path, e.expected, value) from None


MAX_DEPTH = 16  # nesting of lists/tables in a parameter (a payoff tensor needs n + 1)


def _plain(path: str, value: Any, depth: int = 0) -> Any:
    """Scalars, strings and (nested) lists/tables of them, finite — what a scenario/mftt option may hold."""
    if depth > MAX_DEPTH:
        raise _err(path, f"lists or tables nested at most {MAX_DEPTH} deep", "deeper")
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return _float(path, value) if isinstance(value, float) else value
    if isinstance(value, list | tuple):
        return [_plain(f"{path}[{i}]", v, depth + 1) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(k): _plain(f"{path}.{_printable(k)}", v, depth + 1) for k, v in value.items()}
    raise _err(path, "a number, string, boolean, list or table", value)


def _registry(kind: str) -> tuple[str, ...] | None:
    """Names known to the agents package."""
    if kind == "scenario":
        return tuple(sorted(SCENARIOS)) or None
    if kind == "preset":
        return tuple(PRESETS) or None
    if kind == "concept":
        return tuple(SOLUTION_CONCEPTS) or None
    return None


SCENARIO_OPTIONS = ("policy", "steps", "lr")
# value ranges of scenario parameters the scenario classes only meet when a cell runs, checked here
# so that a bad value fails before anything runs:
# parameter -> (scenarios it applies to, None: all that have it; check; what is expected)
_ANY = None
_RANGES: dict[str, tuple[tuple[str, ...] | None, Any, str]] = {
    "T": (("lq_game", "security", "consensus", "commons"), lambda v: v > 0, "a horizon > 0"),
    "beta": (("cournot", "stackelberg"), lambda v: v > 0, "a demand slope > 0"),
    "r": (("lq_game", "security", "consensus", "berge"), lambda v: v > 0, "control costs > 0"),
    "gamma": (("security",), lambda v: v > 0, "a number > 0"),
    "K": (("commons",), lambda v: v > 0, "a capacity > 0"),
    "h": (("berge",), lambda v: v != 0, "a non-zero number"),
    "v0": (_ANY, lambda v: v >= 0, "a variance >= 0"),
    "spread": (("cournot",), lambda v: v >= 0, "a number >= 0"),
    "noise": (("cournot",), lambda v: v >= 0, "a number >= 0"),
    "q_max": (("cournot",), lambda v: v > 0, "a number > 0 (or leave it out)"),
    "u_max": (("berge",), lambda v: v > 0, "a number > 0 (or leave it out)"),
    "e_max": (("commons",), lambda v: v > 0, "a number > 0"),
    **{
        k: (_ANY, lambda v: v >= 1 and float(v).is_integer(), "an integer >= 1")
        for k in ("particles", "n_steps", "markets", "window", "dim", "order")
    },
}
MAX_PARAM = 1e12  # |a scenario parameter|: beyond it the closed forms and ODEs only overflow


def _check_ranges(scenario: str, params: Mapping[str, Any]) -> None:
    """Types and value ranges of a scenario's parameters, named ``scenarios.<scenario>.<param>``."""
    for k, v in params.items():
        where = f"scenarios.{scenario}.{_printable(k)}"
        if k in ("n_agents", "n"):
            raise _err(where, "no agent count here (set agents.n)", v)
        vals = list(v) if isinstance(v, list) else [v]  # a copy: the walk below pops it
        flat = []
        while vals:
            x = vals.pop()
            if isinstance(x, list):
                vals.extend(x)
            elif isinstance(x, int | float) and not isinstance(x, bool):
                flat.append(x)
        if any(abs(x) > MAX_PARAM for x in flat):
            raise _err(where, f"numbers of magnitude at most {MAX_PARAM:g}", v)
        rule = _RANGES.get(k)
        if rule is None or (rule[0] is not None and scenario not in rule[0]) or v is None:
            continue
        if isinstance(v, str | bool) or not flat or not all(rule[1](x) for x in flat):
            raise _err(where, rule[2], v)


@dataclass(frozen=True)
class ScenarioSpec:
    """One scenario of the grid and its parameter overrides (``[scenarios.<name>]``)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        known = _registry("scenario")
        if known is not None and self.name not in known:
            raise _err("scenarios", f"one of {', '.join(known)}", self.name)
        object.__setattr__(self, "params", _plain(f"scenarios.{self.name}", dict(self.params)))
        _check_ranges(self.name, self.params)

    @property
    def options(self) -> dict[str, Any]:
        """Per-scenario cell options (``policy``, ``steps``, ``lr``) overriding ``[agents]``/``[training]``."""
        return {k: v for k, v in self.params.items() if k in SCENARIO_OPTIONS}

    @property
    def scenario_params(self) -> dict[str, Any]:
        """The scenario's own parameters (everything but the cell options)."""
        return {k: v for k, v in self.params.items() if k not in SCENARIO_OPTIONS}

    def n_agents(self, n: int | None) -> int:
        """Players of this scenario for ``agents.n = n`` (agents, or populations); validates params."""
        cls = get_scenario(self.name)
        opts = self.options
        where = f"scenarios.{self.name}"
        if "policy" in opts:
            _names(f"{where}.policy", [opts["policy"]], cls.policies)
        if "steps" in opts:
            _int(f"{where}.steps", opts["steps"], low=1)
        if "lr" in opts and not (
            isinstance(opts["lr"], (int, float))
            and not isinstance(opts["lr"], bool)
            and 0 < opts["lr"] < float("inf")
        ):
            raise _err(f"{where}.lr", "a positive finite number", opts["lr"])
        try:
            return cls(n_agents=n, **self.scenario_params).n_players
        except ValidationError as e:
            tail = e.field.split(".", 1)[-1]
            where = "agents.n" if tail == "n_agents" else f"scenarios.{self.name}.{tail}"
            raise e.under(field=where, kind=ExperimentError) from None


DRY_BUILD_AGENTS = (
    8  # configs with more agents skip the trial build (it would cost more than it finds)
)


def _frozen(d: Mapping[str, Any]) -> str:
    return json.dumps(dict(d), sort_keys=True)


@functools.lru_cache(maxsize=256)
def _dry_build(scenario: str, params: str, n: int, law: str, policy: str | None, mftt: str) -> None:
    """Build the scenario's game once on the CPU, so values its code refuses (``game = "nope"``) are
    refused at load, named ``scenarios.<scenario>.<param>``; cached per distinct arguments."""
    cls = get_scenario(scenario)
    try:
        sc = cls(n, **json.loads(params))
        sc.game(
            Lambda=np.eye(n),
            law=law,
            policy=policy or cls.default_policy,
            mftt=json.loads(mftt) or None,
            seed=0,
            device="cpu",
        )
    except ValidationError as e:
        tail = e.field.split(".", 1)[-1]
        where = f"scenarios.{scenario}.{tail}" if tail in cls.defaults else e.field
        raise e.under(field=where, kind=ExperimentError) from None
    except Exception as e:  # the scenario's own code failed on these values
        first = (str(e).splitlines() or [""])[0][:120]
        raise _err(
            f"scenarios.{scenario}",
            "parameters its game can be built from",
            reason=f"{type(e).__name__}: {first}",
        ) from None


def _check_mftt_options(opts: dict) -> None:
    """MFTT options are MFTTConfig fields with valid values (the cell sets weights, d_in, d_out)."""
    if not opts:
        return
    known = sorted(
        f.name for f in dc_fields(MFTTConfig) if f.name not in ("weights", "d_in", "d_out")
    )
    for k in opts:
        if k not in known:
            k = _printable(k)
            raise _err(f"agents.mftt.{k}", f"an MFTT option ({', '.join(known)})", "unknown option")
        v = opts[k]
        if isinstance(v, int | float) and not isinstance(v, bool) and abs(v) > 2**31:
            raise _err(f"agents.mftt.{k}", "a size of at most 2**31", v)
    try:
        MFTTConfig(**opts)
    except ValidationError as e:
        raise e.under("agents.mftt", kind=ExperimentError) from None
    except (ArithmeticError, TypeError) as e:  # a size too large to compute with
        raise _err(
            "agents.mftt", "sizes that fit in memory", opts, reason=type(e).__name__
        ) from None


@dataclass(frozen=True)
class AgentsSpec:
    """The agents: count (None: scenario default), policy, weight laws (a grid dimension), MFTT options."""

    n: int | None = None
    policy: str | None = None
    weights: tuple[str, ...] = ("feedback",)
    mftt: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.n is not None:
            object.__setattr__(self, "n", _int("agents.n", self.n, low=1))
        if self.policy is not None:
            _str("agents.policy", self.policy)
        object.__setattr__(self, "weights", _names("agents.weights", self.weights, LAWS))
        object.__setattr__(self, "mftt", _plain("agents.mftt", _table("agents.mftt", self.mftt)))
        _check_mftt_options(self.mftt)


MAX_WEIGHT = 1e6  # |an empathy weight|: larger ones only overflow the linear algebra (LAPACK noise)


def _weight(path: str, value: Any) -> float:
    v = _float(path, value)
    if abs(v) > MAX_WEIGHT:
        raise _err(path, f"a weight of magnitude at most {MAX_WEIGHT:g}", value)
    return v


@dataclass(frozen=True)
class LambdaSpec:
    """Empathy matrices Λ: preset names (built for each scenario's n with ``alpha``) and named matrices."""

    presets: tuple[str, ...] = ("selfish",)
    alpha: float = 0.5
    matrices: dict[str, list[list[float]]] = field(default_factory=dict)

    def __post_init__(self):
        empty = isinstance(self.presets, list | tuple) and not self.presets
        presets = () if empty and self.matrices else self.presets
        if not (empty and self.matrices):
            presets = _names("Lambda.presets", presets, _registry("preset"))
        object.__setattr__(self, "presets", tuple(presets))
        object.__setattr__(self, "alpha", _weight("Lambda.alpha", self.alpha))
        mats = {}
        for name, m in _table("Lambda.matrices", self.matrices).items():
            p = f"Lambda.matrices.{name}"
            if name in self.presets:
                raise _err(p, "a name different from the presets", name)
            rows = m.tolist() if hasattr(m, "tolist") else m
            if not isinstance(rows, list | tuple) or not rows:
                raise _err(p, "a square matrix (list of rows)", m)
            k = len(rows)
            if any(not isinstance(r, list | tuple) or len(r) != k for r in rows):
                raise _err(p, f"a square {k}x{k} matrix", m)
            mats[str(name)] = [
                [_weight(f"{p}[{i}][{j}]", v) for j, v in enumerate(r)] for i, r in enumerate(rows)
            ]
        object.__setattr__(self, "matrices", mats)
        if not self.presets and not mats:
            raise _err("Lambda", "at least one preset or matrix", "none")

    @property
    def labels(self) -> tuple[str, ...]:
        """The Λ coordinate labels: presets, then matrix names."""
        return tuple(self.presets) + tuple(self.matrices)


@dataclass(frozen=True)
class ConceptSpec:
    """Solution concept (None: each scenario's default) and its options."""

    name: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.name is not None:
            known = _registry("concept")
            if known is not None:
                try:
                    choice("concept.name", self.name, known)
                except ValidationError as e:
                    raise _err("concept.name", e.expected, self.name) from None
            else:
                _str("concept.name", self.name)
        opts = _plain("concept.options", _table("concept.options", self.options))
        if opts:
            raise _err("concept.options", "no options (agents.play takes none yet)", opts)
        object.__setattr__(self, "options", opts)


@dataclass(frozen=True)
class TrainingSpec:
    """Learning: iterations and learning rate (None: the scenario's default); ``init_noise`` > 0 perturbs every
    agent's initial parameters by a seeded Gaussian of that standard deviation (``agents.play``), so that the
    seed reaches laws whose initialisation is otherwise deterministic (linear gains start at 0)."""

    steps: int | None = None
    lr: float | None = None
    init_noise: float = 0.0

    def __post_init__(self):
        if self.steps is not None:
            object.__setattr__(self, "steps", _int("training.steps", self.steps, low=1))
        if self.lr is not None:
            object.__setattr__(self, "lr", _float("training.lr", self.lr, low=0, strict=True))
        object.__setattr__(
            self, "init_noise", _float("training.init_noise", self.init_noise, low=0)
        )


@dataclass(frozen=True)
class RaySpec:
    """Where and how cells run: cluster address (None: embedded local Ray on 127.0.0.1) and the resources of
    each task (a cell, or a fused group of cells)."""

    address: str | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_retries: int = 3

    def __post_init__(self):
        if self.address is not None:
            _str("ray.address", self.address)
        # 0 CPUs per task would let Ray start a worker per task at once
        object.__setattr__(
            self, "num_cpus", _float("ray.num_cpus", self.num_cpus, low=0, strict=True)
        )
        object.__setattr__(self, "num_gpus", _float("ray.num_gpus", self.num_gpus, low=0))
        object.__setattr__(self, "max_retries", _int("ray.max_retries", self.max_retries, low=0))


@dataclass(frozen=True)
class BudgetSpec:
    """Refuse experiments larger than this up front (resource bounds)."""

    max_cells: int = 20_000
    max_memory_mb: float = 4096.0

    def __post_init__(self):
        object.__setattr__(self, "max_cells", _int("budget.max_cells", self.max_cells, low=1))
        object.__setattr__(
            self,
            "max_memory_mb",
            _float("budget.max_memory_mb", self.max_memory_mb, low=0, strict=True),
        )


@dataclass(frozen=True)
class Cell:
    """One grid cell: its index, its coordinates (dim → label) and the ``agents.play`` keyword arguments."""

    index: int
    coords: dict[str, Any]
    kwargs: dict[str, Any]

    @property
    def key(self) -> str:
        """Content hash of the play arguments: names this cell's partial file, so a changed config never reuses it."""
        blob = json.dumps(self.kwargs, sort_keys=True, default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]

    @property
    def label(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.coords.items())


_TOP = (
    "name",
    "description",
    "scenarios",
    "agents",
    "Lambda",
    "concept",
    "training",
    "seeds",
    "sweep",
    "output",
    "backend",
    "device",
    "fuse",
    "ray",
    "budget",
)


@dataclass(frozen=True)
class Experiment:
    """A whole experiment (docs/architecture.md). Build from TOML with ``Experiment.from_toml`` or directly."""

    scenarios: tuple[ScenarioSpec, ...]
    name: str = "experiment"
    description: str = ""
    agents: AgentsSpec = field(default_factory=AgentsSpec)
    Lambda: LambdaSpec = field(default_factory=LambdaSpec)
    concept: ConceptSpec = field(default_factory=ConceptSpec)
    training: TrainingSpec = field(default_factory=TrainingSpec)
    seeds: tuple[int, ...] = (0,)
    sweep: dict[str, tuple] = field(default_factory=dict)
    output: str | None = None
    backend: str = "ray"
    device: str = "cpu"
    fuse: int = 8
    ray: RaySpec = field(default_factory=RaySpec)
    budget: BudgetSpec = field(default_factory=BudgetSpec)

    def __post_init__(self):
        _str("name", self.name)
        if not all(c.isalnum() or c in "-_." for c in self.name):
            raise _err("name", "letters, digits, '-', '_' or '.'", self.name)
        _str("description", self.description, empty=True)
        scen = self.scenarios
        if isinstance(scen, str):
            scen = (scen,)
        if not isinstance(scen, list | tuple) or not scen:
            raise _err("scenarios", "a non-empty list of scenarios", self.scenarios)
        scen = tuple(
            s if isinstance(s, ScenarioSpec) else ScenarioSpec(_str("scenarios", s)) for s in scen
        )
        names = [s.name for s in scen]
        if len(set(names)) != len(names):
            raise _err("scenarios", "distinct scenario names", names, reason="duplicate")
        object.__setattr__(self, "scenarios", scen)
        seeds = (
            (self.seeds,)
            if isinstance(self.seeds, int) and not isinstance(self.seeds, bool)
            else self.seeds
        )
        if not isinstance(seeds, list | tuple) or not seeds:
            raise _err("seeds", "a non-empty list of integers", self.seeds)
        seeds = tuple(_seed(f"seeds[{i}]", s) for i, s in enumerate(seeds))
        if len(set(seeds)) != len(seeds):
            raise _err("seeds", "distinct seeds", list(seeds), reason="duplicate")
        object.__setattr__(self, "seeds", seeds)
        for k, v in (
            ("agents", AgentsSpec),
            ("Lambda", LambdaSpec),
            ("concept", ConceptSpec),
            ("training", TrainingSpec),
            ("ray", RaySpec),
            ("budget", BudgetSpec),
        ):
            if not isinstance(getattr(self, k), v):
                raise _err(k, f"a {v.__name__}", getattr(self, k))
        sweep = {}
        for path, vals in _table("sweep", self.sweep).items():
            p = f"sweep.{_printable(path)}"
            names = path.split(".")
            scenario_param = (
                len(names) == 3
                and names[0] == "scenarios"
                and names[1] in {s.name for s in self.scenarios}
                and bool(names[2])
            )
            if not scenario_param and (
                names[0] not in _TOP
                or any(path == n or path.startswith(n + ".") for n in _NOT_SWEEPABLE)
            ):
                raise _err(
                    p,
                    "a dotted config field that is not already a grid dimension "
                    "(e.g. agents.n, training.steps, scenarios.<name>.<param>)",
                    path,
                )
            if not isinstance(vals, list | tuple) or not vals:
                raise _err(p, "a non-empty list of values", vals)
            sweep[path] = tuple(_plain(p, v) for v in vals)
        object.__setattr__(self, "sweep", sweep)
        if self.output is not None:  # the name only: the folder is checked when a run writes it
            check_output(_str("output", self.output), field="output", fs=False)
        choice("backend", self.backend, BACKENDS)
        # up to `fuse` cells differing only in seed and Λ are solved as one ODE per task (agents.experiments.fusion)
        object.__setattr__(self, "fuse", _int("fuse", self.fuse, low=1))
        _str("device", self.device)
        kind, _, index = self.device.partition(":")
        if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()):
            raise _err("device", "cpu, cuda, cuda:<index> or mps", self.device)
        if self.ray.address is None:  # cells run on this machine: the device must exist here
            device("device", self.device)
        self._check_grid()
        self._check_sweep()

    # ---- the grid ------------------------------------------------------------------------
    @property
    def dims(self) -> tuple[str, ...]:
        """Grid dimension names: scenario, Lambda, law, seed, then one per swept field."""
        return GRID_DIMS + tuple(sweep_dim(p) for p in self.sweep)

    @property
    def coords(self) -> dict[str, list]:
        """Grid coordinate labels, one list per dimension."""
        out = {
            "scenario": [s.name for s in self.scenarios],
            "Lambda": list(self.Lambda.labels),
            "law": list(self.agents.weights),
            "seed": list(self.seeds),
        }
        for p, vals in self.sweep.items():
            out[sweep_dim(p)] = list(vals)
        return out

    @property
    def n_cells(self) -> int:
        return math.prod(len(v) for v in self.coords.values())

    def _variants(self) -> list[tuple[dict[str, Any], Experiment]]:
        """One experiment per sweep combination, each with the swept values set (and validated)."""
        if not self.sweep:
            return [({}, self)]
        base = self.to_dict()
        base.pop("sweep")
        out = []
        for combo in itertools.product(*self.sweep.values()):
            d = json.loads(json.dumps(base))
            for path, v in zip(self.sweep, combo, strict=True):
                _set_path(d, path, v)
            try:
                exp = Experiment.from_dict(d)
            except ValidationError as e:
                raise e.under("sweep", kind=ExperimentError) from None
            out.append(({sweep_dim(p): v for p, v in zip(self.sweep, combo, strict=True)}, exp))
        return out

    def cells(self) -> list[Cell]:
        """All grid cells in C order over ``dims`` (scenario slowest, last swept field fastest)."""
        variants = self._variants()
        cells: list[Cell] = []
        for s_i, lam, law, seed in itertools.product(
            range(len(self.scenarios)), self.Lambda.labels, self.agents.weights, self.seeds
        ):
            for sweep_coords, exp in variants:
                scen = exp.scenarios[s_i]
                L: Any = lam
                if lam in exp.Lambda.matrices:
                    L = exp.Lambda.matrices[lam]
                kwargs = {
                    "scenario": scen.name,
                    "n_agents": exp.agents.n,
                    "Lambda": L,
                    "Lambda_alpha": exp.Lambda.alpha,
                    "law": law,
                    "policy": scen.options.get("policy", exp.agents.policy),
                    "concept": exp.concept.name,
                    "steps": scen.options.get("steps", exp.training.steps),
                    "lr": scen.options.get("lr", exp.training.lr),
                    "seed": seed,
                    "params": scen.scenario_params or None,
                    "mftt": dict(exp.agents.mftt) or None,
                    "device": exp.device,
                }
                # only when set: the other cells keep their kwargs (and their fusion keys)
                if exp.training.init_noise:
                    kwargs["init_noise"] = exp.training.init_noise
                coords = {
                    "scenario": scen.name,
                    "Lambda": lam,
                    "law": law,
                    "seed": seed,
                    **sweep_coords,
                }
                cells.append(Cell(len(cells), coords, kwargs))
        return cells

    def estimate_memory_mb(self) -> float:
        """Estimated memory of the run in MB (``agents.experiments.budget.estimate``: results + running cells)."""
        return estimate_budget(self).memory_mb

    def _check_sweep(self) -> None:
        """Every swept value is valid on its own (the config with that one value set): refused at load,
        not when its cells run."""
        if not self.sweep:
            return
        base = self.to_dict()
        base.pop("sweep")
        for path, vals in self.sweep.items():
            if path == "agents.n":  # checked per scenario by _check_grid
                continue
            for v in vals:
                d = json.loads(json.dumps(base))
                try:
                    _set_path(d, path, v)
                    Experiment.from_dict(d)
                except ValidationError as e:
                    raise e.under("sweep", kind=ExperimentError) from None

    def _check_grid(self) -> None:
        try:
            check_budget(self)  # cells and memory vs [budget], refused before anything runs
        except ValidationError as e:
            raise e.under(kind=ExperimentError) from None
        if _registry("scenario") is None:
            return
        if self.agents.policy is not None:
            for s in self.scenarios:
                allowed = tuple(get_scenario(s.name).policies)
                if "policy" not in s.options and self.agents.policy not in allowed:
                    raise _err(
                        "agents.policy",
                        f"one of {', '.join(allowed)} (the policies of scenario {s.name})",
                        self.agents.policy,
                    )
        ns = [(self.agents.n, "")] + [(v, "sweep.") for v in self.sweep.get("agents.n", ())]
        for s in self.scenarios:
            for nn, where in ns:
                try:
                    k = s.n_agents(nn if isinstance(nn, int) else None)
                except ValidationError as e:  # a swept value is named by its sweep path
                    raise e.under(field=where + e.field, kind=ExperimentError) from None
                for name, m in self.Lambda.matrices.items():
                    if len(m) != k:
                        raise _err(
                            f"Lambda.matrices.{name}",
                            f"a {k}x{k} matrix for scenario {s.name} ({k} agents)",
                            f"{len(m)}x{len(m)}",
                        )
                if k <= DRY_BUILD_AGENTS:
                    policy = s.options.get("policy", self.agents.policy)
                    _dry_build(
                        s.name,
                        _frozen(s.scenario_params),
                        k,
                        self.agents.weights[0],
                        policy,
                        _frozen(self.agents.mftt),
                    )

    # ---- TOML / dict -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (the TOML layout); ``from_dict(to_dict())`` round-trips."""
        d: dict[str, Any] = {"name": self.name}
        if self.description:
            d["description"] = self.description
        d["seeds"] = list(self.seeds)
        d["backend"] = self.backend
        d["device"] = self.device
        d["fuse"] = self.fuse
        if self.output is not None:
            d["output"] = self.output
        d["scenarios"] = {s.name: dict(s.params) for s in self.scenarios}
        a: dict[str, Any] = {"weights": list(self.agents.weights)}
        if self.agents.n is not None:
            a["n"] = self.agents.n
        if self.agents.policy is not None:
            a["policy"] = self.agents.policy
        if self.agents.mftt:
            a["mftt"] = dict(self.agents.mftt)
        d["agents"] = a
        lam: dict[str, Any] = {"presets": list(self.Lambda.presets), "alpha": self.Lambda.alpha}
        if self.Lambda.matrices:
            lam["matrices"] = {k: [list(r) for r in v] for k, v in self.Lambda.matrices.items()}
        d["Lambda"] = lam
        c: dict[str, Any] = {}
        if self.concept.name is not None:
            c["name"] = self.concept.name
        if self.concept.options:
            c["options"] = dict(self.concept.options)
        d["concept"] = c
        t: dict[str, Any] = {}
        if self.training.steps is not None:
            t["steps"] = self.training.steps
        if self.training.lr is not None:
            t["lr"] = self.training.lr
        if self.training.init_noise:
            t["init_noise"] = self.training.init_noise
        d["training"] = t
        r: dict[str, Any] = {
            "num_cpus": self.ray.num_cpus,
            "num_gpus": self.ray.num_gpus,
            "max_retries": self.ray.max_retries,
        }
        if self.ray.address is not None:
            r["address"] = self.ray.address
        d["ray"] = r
        d["budget"] = {
            "max_cells": self.budget.max_cells,
            "max_memory_mb": self.budget.max_memory_mb,
        }
        d["sweep"] = {k: list(v) for k, v in self.sweep.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Experiment:
        """Build and validate from a nested dict (the TOML layout); unknown keys are refused by path."""
        d = _table("config", d)
        _keys("", d, _TOP)
        if "scenarios" not in d:
            raise _err(
                "scenarios", "a list of scenario names or [scenarios.<name>] tables", "missing"
            )
        sc = d["scenarios"]
        if isinstance(sc, str):
            sc = [sc]
        if isinstance(sc, list):
            specs = tuple(ScenarioSpec(_str(f"scenarios[{i}]", s)) for i, s in enumerate(sc))
        elif isinstance(sc, Mapping):
            specs = tuple(ScenarioSpec(k, _table(f"scenarios.{k}", v)) for k, v in sc.items())
        else:
            raise _err("scenarios", "a list of scenario names or [scenarios.<name>] tables", sc)

        def sub(key: str, spec: type, allowed: tuple[str, ...]) -> Any:
            t = _table(key, d.get(key, {}))
            _keys(key, t, allowed)
            return spec(**t)

        kw: dict[str, Any] = {"scenarios": specs}
        kw["agents"] = sub("agents", AgentsSpec, ("n", "policy", "weights", "mftt"))
        kw["Lambda"] = sub("Lambda", LambdaSpec, ("presets", "alpha", "matrices"))
        kw["concept"] = sub("concept", ConceptSpec, ("name", "options"))
        kw["training"] = sub("training", TrainingSpec, ("steps", "lr", "init_noise"))
        kw["ray"] = sub("ray", RaySpec, ("address", "num_cpus", "num_gpus", "max_retries"))
        kw["budget"] = sub("budget", BudgetSpec, ("max_cells", "max_memory_mb"))
        for k in ("name", "description", "seeds", "sweep", "output", "backend", "device", "fuse"):
            if k in d:
                kw[k] = d[k]
        return cls(**kw)

    @classmethod
    def from_toml(cls, source: str | Path) -> Experiment:
        """Parse TOML text, or a config file (a ``Path``, or a one-line string naming an existing file).

        A file is read as UTF-8 with or without a BOM; a name not ending in ``.toml`` warns but its content
        is parsed. Errors name the field (or the TOML line).
        """
        if isinstance(source, bytes | bytearray) or not isinstance(source, str | Path):
            raise _err("config", "TOML text or a path to a config file", type(source).__name__)
        if isinstance(source, str) and "\x00" in source:
            raise _err("config", "TOML text or a path without NUL characters", "NUL")
        is_path = isinstance(source, Path) or (
            "\n" not in source
            and len(source) < 4096
            and (source.strip().endswith(".toml") or Path(source).is_file())
        )
        if is_path:
            path = Path(source)
            if not path.is_file():
                raise _err("config", "an existing config file", str(source))
            if path.suffix.lower() != ".toml":
                warnings.warn(
                    f"config: {path.name} does not end in .toml; parsing its content as TOML",
                    stacklevel=2,
                )
            try:
                if path.stat().st_size > MAX_CONFIG_BYTES:
                    raise _err("config", f"a file of at most {MAX_CONFIG_BYTES} bytes", str(path))
                source = path.read_text(encoding="utf-8-sig")
            except (OSError, UnicodeDecodeError) as e:
                raise _err(
                    "config", "a readable UTF-8 file", str(path), reason=type(e).__name__
                ) from None
        source = source.removeprefix("\ufeff")
        try:
            data = tomllib.loads(source)
        except tomllib.TOMLDecodeError as e:
            raise _err("config", "valid TOML", reason=str(e)) from None
        except RecursionError:
            raise _err("config", "valid TOML", reason="nested too deeply") from None
        return cls.from_dict(data)

    def to_toml(self) -> str:
        """TOML text of this experiment (``from_toml(to_toml())`` gives an equal experiment)."""
        return dumps_toml(self.to_dict())

    def replace(self, **changes: Any) -> Experiment:
        """A copy with top-level fields changed (``dataclasses.replace``), validated again."""
        return dataclasses.replace(self, **changes)

    def with_values(self, values: Mapping[str, Any]) -> Experiment:
        """A copy with dotted fields set, e.g. ``{"training.steps": 5, "agents.n": 3}`` (validated)."""
        d = self.to_dict()
        for path, v in values.items():
            _set_path(d, path, v)
        return Experiment.from_dict(d)


def load_experiment(source: str | Path) -> Experiment:
    """``Experiment.from_toml`` under a verb: a path or TOML text (anything else: one-line error)."""
    return Experiment.from_toml(source)


def sweep_dim(path: str) -> str:
    """Dimension name of a swept dotted field (``agents.n`` → ``n_agents``)."""
    return SWEEP_DIMS.get(path, path.replace(".", "_"))


def parse_value(text: str) -> Any:
    """A CLI value as TOML would read it (``2`` → int, ``0.1`` → float, ``true``, else the string)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set_path(d: dict, path: str, value: Any) -> None:
    parts = path.split(".")
    cur = d
    for i, p in enumerate(parts[:-1]):
        nxt = cur.get(p)
        if nxt is None:
            nxt = cur[p] = {}
        if not isinstance(nxt, dict):
            raise _err(".".join(parts[: i + 1]), "a table", nxt)
        cur = nxt
    cur[parts[-1]] = value


# ---- a small TOML writer (tomllib only reads) ---------------------------------------------
def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if v != v else ("inf" if v > 0 else "-inf"))
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _toml_key(k: str) -> str:
    return k if k and all(c.isalnum() or c in "-_" for c in k) else json.dumps(k)


def dumps_toml(d: Mapping[str, Any], _prefix: str = "") -> str:
    """Nested dict → TOML text: scalars and lists inline, sub-tables as ``[a.b]`` sections."""
    lines, tables = [], []
    for k, v in d.items():
        if isinstance(v, Mapping):
            tables.append((k, v))
        else:
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    out = "\n".join(lines)
    for k, v in tables:
        name = f"{_prefix}{_toml_key(k)}"
        body = dumps_toml(v, name + ".")
        out += ("\n\n" if out else "") + f"[{name}]" + ("\n" + body if body else "")
    return out + ("\n" if not _prefix else "")
