"""The status vocabulary of a played cell: what a number may be cited as (see the README, "What the numbers mean").

A cell is ``ok`` only when the learning met its stopping rule *and* the certified exploitability is below the
declared tolerance relative to the cost scale. Every other outcome says what went wrong instead.
"""

from __future__ import annotations

STATUSES: dict[str, str] = {
    "ok": "learning converged and no best response gains more than the exploitability tolerance",
    "not_converged": "the learning stopped at its step budget while still moving",
    "not_equilibrium": "the learning converged but a best response improves on it beyond the tolerance",
    "diverged": "non-finite state or cost, or costs beyond the blow-up bound of the starting profile",
    "unbounded": "a best response improves without bound: no equilibrium in the offered policy space",
    "failed": "the cell raised an error (message says which)",
    "missing": "not run (yet)",
}

# a cell whose numbers are not usable at all (a config with any of these exits non-zero)
FAILED = ("diverged", "failed")
# statuses whose costs are finite numbers of a played profile (may still not be an equilibrium)
PLAYED = ("ok", "not_converged", "not_equilibrium", "unbounded")
