"""ValidationError.under re-scopes an error's field path and keeps its one-line message otherwise."""

from __future__ import annotations

import pytest

from control.errors import ValidationError, number


class ConfigError(ValidationError):
    pass


def test_under_prefixes_the_field_and_keeps_the_rest():
    with pytest.raises(ValidationError) as info:
        number("steps", -3, low=1, integer=True)
    e = info.value
    wide = e.under("training")
    assert wide.field == "training.steps" and type(wide) is ValidationError
    assert str(wide) == "training." + str(e)
    assert (wide.expected, wide.got, wide.reason) == (e.expected, e.got, e.reason)
    assert str(e.under()) == str(e)  # no prefix: the same path


def test_under_replaces_the_path_and_changes_the_kind():
    e = ValidationError("n_agents", "a positive integer", 0, reason="no agents")
    moved = e.under(field="agents.n", kind=ConfigError)
    assert isinstance(moved, ConfigError) and isinstance(moved, ValueError)
    assert str(moved) == "agents.n: expected a positive integer, got 0 (no agents)"
