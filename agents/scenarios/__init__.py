"""Built-in scenarios, one file each, registered by name in ``SCENARIOS`` (see ``base.Scenario``)."""

import importlib
import pkgutil

from .base import SCENARIOS, Scenario, get_scenario, register

for _m in pkgutil.iter_modules(__path__):
    if _m.name != "base":
        importlib.import_module(f"{__name__}.{_m.name}")

__all__ = ["SCENARIOS", "Scenario", "get_scenario", "register"]
