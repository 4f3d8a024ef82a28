"""Our packages, not the PyPI packages of the same names (``control``, ``agents``), are the ones imported."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_packages_resolve_inside_repository():
    import agents
    import control
    import mftt

    for mod in (control, mftt, agents):
        assert Path(mod.__file__).resolve().is_relative_to(ROOT), mod.__file__
