"""Shared pieces of the reliability fuzz tests: strategies of definitely-invalid values, the error check."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from control.errors import DivergenceError, ValidationError

FAMILY = (ValidationError, DivergenceError)
NAN, INF = float("nan"), float("inf")

# values that are never a finite real number
not_number = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=6),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from([NAN, INF, -INF, 1 + 2j, b"1", object()]),
)
# never a positive integer
not_pos_int = st.one_of(
    not_number,
    st.integers(max_value=0),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not float(x).is_integer()),
)
# never a non-negative integer
not_nonneg_int = st.one_of(
    not_number,
    st.integers(max_value=-1),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not float(x).is_integer()),
)
# never a strictly positive finite number
not_pos_float = st.one_of(not_number, st.floats(max_value=0.0, allow_nan=False))
text_not_number = st.text(min_size=1, max_size=4).filter(lambda s: not _is_float(s))
absurd = st.integers(min_value=10**7, max_value=10**18)


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def not_name(allowed) -> st.SearchStrategy:
    """Values that are not one of the ``allowed`` names (strings and non-strings)."""
    allowed = set(allowed)
    return st.one_of(
        st.text(max_size=12).filter(lambda s: s not in allowed),
        st.none(),
        st.integers(),
        st.lists(st.sampled_from(sorted(allowed) or ["x"]), min_size=2, max_size=2),
    )


def bad_matrix(n: int) -> st.SearchStrategy:
    """Never a finite n×n real matrix: wrong shape, non-square, NaN/inf entries, text, ragged."""
    return st.one_of(
        st.integers(1, 4).filter(lambda k: k != n).map(lambda k: np.eye(k).tolist()),
        st.tuples(st.integers(1, 4), st.integers(1, 4))
        .filter(lambda s: s[0] != s[1])
        .map(lambda s: np.ones(s).tolist()),
        st.tuples(
            st.integers(0, n - 1), st.integers(0, n - 1), st.sampled_from([NAN, INF, -INF])
        ).map(lambda a: _poke(np.eye(n), a[0], a[1], a[2]).tolist()),
        st.just([[1.0] * n] * (n - 1) + [[1.0] * (n + 1)]),  # ragged
        st.just(np.ones((n, n, 2)).tolist()),
        st.just([["a"] * n] * n),
        st.just([]),
        st.just(np.ones(n).tolist()),
    )


def _poke(a: np.ndarray, i: int, j: int, v: float) -> np.ndarray:
    a = a.copy()
    a[i, j] = v
    return a


def expect_family(call, fields, *, must_raise: bool = True):
    """Run ``call()``: only the validation family may escape, its message one line naming a field in ``fields``.

    ``fields``: accepted field-path prefixes (a message "agents.n: expected ..." names ``agents.n``).
    Returns the error (None when the call succeeded and ``must_raise`` is False).
    """
    try:
        call()
    except ValidationError as e:
        msg = str(e)
        assert msg and "\n" not in msg, f"not one line: {msg!r}"
        head = msg.split(":", 1)[0]
        assert head == e.field, f"message does not start with the field path: {msg!r}"
        assert any(e.field == f or e.field.startswith(f) for f in fields), (
            f"error names {e.field!r}, expected one of {sorted(fields)}: {msg}"
        )
        return e
    except DivergenceError as e:
        msg = str(e)
        assert "\n" not in msg and math.isfinite(e.t), msg
        return e
    if must_raise:
        raise AssertionError(f"accepted invalid input (expected a ValidationError on {fields})")
    return None
