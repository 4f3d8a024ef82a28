"""control.dopri extends torchdiffeq's private ``_impl`` classes: fail loudly, naming the pinned range, if they move."""

import importlib
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
import torch

from control import dopri

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _pinned() -> str:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    (req,) = (d for d in deps if re.match(r"torchdiffeq\b", d))
    return req


def _hint() -> str:
    return (
        f"torchdiffeq {version('torchdiffeq')} is installed; control.dopri is tested with {_pinned()!r} "
        "(pyproject.toml). Install a version in that range, or update control/dopri.py to the new internals."
    )


def test_pin_has_an_upper_bound_that_admits_the_installed_version():
    req = _pinned()
    low = re.search(r">=\s*([\d.]+)", req)
    high = re.search(r"<\s*([\d.]+)", req)
    assert low and high, f"torchdiffeq needs a tested range, got {req!r}"

    def key(v):
        return tuple(int(x) for x in v.split(".")[:3])

    installed = key(version("torchdiffeq"))
    assert key(low.group(1)) <= installed < key(high.group(1)), _hint()


@pytest.mark.parametrize(
    ("module", "name"), [*dopri.PRIVATE, ("torchdiffeq._impl.odeint", "SOLVERS")]
)
def test_private_names_exist(module, name):
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        pytest.fail(f"{module} is gone ({e}). {_hint()}")
    assert hasattr(mod, name), f"{module}.{name} is gone. {_hint()}"


def test_the_solver_internals_dopri_reads_exist():
    from torchdiffeq._impl.dopri5 import Dopri5Solver

    tab = Dopri5Solver.tableau
    for field in ("alpha", "beta", "c_sol", "c_error"):
        assert hasattr(tab, field), f"Dopri5Solver.tableau.{field} is gone. {_hint()}"
    from torchdiffeq._impl.misc import _rms_norm

    y0 = torch.ones(3, dtype=torch.float64)
    solver = Dopri5Solver(lambda t, y: -y, y0, rtol=1e-6, atol=1e-8, norm=_rms_norm)
    names = (
        "func y0 dtype rtol atol norm safety ifactor dfactor order min_step max_step max_num_steps"
    )
    for attr in (*names.split(), "_before_integrate", "integrate"):
        assert hasattr(solver, attr), f"Dopri5Solver().{attr} is gone. {_hint()}"


def test_register_is_explicit_and_idempotent():
    from torchdiffeq._impl.odeint import SOLVERS

    assert dopri.register() == dopri.NAME == dopri.register()
    assert SOLVERS[dopri.NAME] is dopri.StageMajorDopri5
