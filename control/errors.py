"""One validation error family for the whole platform: one line naming the field, what was expected, what came."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal, overload

import numpy as np


class ValidationError(ValueError):
    """Bad input. ``str(err)`` is one line: ``field: expected ..., got ...``."""

    def __init__(self, field: str, expected: str, got: Any = None, *, reason: str | None = None):
        self.field, self.expected, self.got, self.reason = field, expected, got, reason
        msg = f"{field}: expected {expected}"
        if got is not None or reason is None:
            msg += f", got {_short(got)}"
        if reason:
            msg += f" ({reason})"
        super().__init__(" ".join(msg.split()))

    def under(
        self,
        prefix: str = "",
        *,
        field: str | None = None,
        kind: type[ValidationError] | None = None,
    ):
        """The same error named by a wider field path: ``e.under("sweep")`` reads ``sweep.<field>: ...``.

        ``field`` replaces the path outright; ``kind`` re-raises as a subclass (e.g. a config's error type).
        """
        path = field if field is not None else (f"{prefix}.{self.field}" if prefix else self.field)
        return (kind or type(self))(path, self.expected, self.got, reason=self.reason)


class DivergenceError(RuntimeError):
    """A solve produced a non-finite state; ``t`` is the last time reached."""

    def __init__(self, t: float, what: str = "state", message: str | None = None):
        self.t = float(t)
        super().__init__(message or f"non-finite {what} at t={self.t:.6g}: the solution diverged")


def _short(v: Any, limit: int = 60) -> str:
    s = repr(v)
    s = " ".join(s.split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def choice(field: str, value: Any, allowed: Iterable[str]) -> str:
    """Check ``value`` is one of ``allowed`` names; the error lists them."""
    allowed = list(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(field, f"one of {', '.join(allowed)}", value)
    return value


@overload
def number(
    field: str,
    value: Any,
    *,
    low: float | None = ...,
    high: float | None = ...,
    strict_low: bool = ...,
    integer: Literal[True],
) -> int: ...
@overload
def number(
    field: str,
    value: Any,
    *,
    low: float | None = ...,
    high: float | None = ...,
    strict_low: bool = ...,
    integer: bool = ...,
) -> float: ...
def number(
    field: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    strict_low: bool = False,
    integer: bool = False,
) -> float:
    """Check a finite real (or integer) number inside optional bounds."""
    kind = "an integer" if integer else "a finite number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, np.generic) and np.ndim(value) == 0:
            value = value.item()
        else:
            raise ValidationError(field, kind, value)
    if integer and not float(value).is_integer():
        raise ValidationError(field, kind, value)
    if not math.isfinite(value):
        raise ValidationError(field, kind, value)
    if low is not None and (value <= low if strict_low else value < low):
        raise ValidationError(field, f"{kind} {'>' if strict_low else '>='} {low}", value)
    if high is not None and value > high:
        raise ValidationError(field, f"{kind} <= {high}", value)
    return int(value) if integer else value


def no_unknown(field: str, kwargs: dict, allowed: Iterable[str]) -> None:
    """Refuse unknown keyword arguments, listing the allowed ones."""
    allowed = sorted(allowed)
    for k in kwargs:
        if k not in allowed:
            raise ValidationError(
                f"{field}.{k}", f"a known option ({', '.join(allowed) or 'none'})", "unknown option"
            )
