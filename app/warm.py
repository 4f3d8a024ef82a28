"""Heavy imports (torch, xarray, the platform) warmed in one background thread while the server starts.

Started by ``app/serve.py``; the app waits for it before any page imports them, so the same modules are
never imported by two threads at once (a concurrent first import can fail half-way).
"""

from __future__ import annotations

import threading

_done = threading.Event()
_started = False


def _run() -> None:
    try:
        import agents  # noqa: F401
        import mftt  # noqa: F401
        from app import figures, panels, state  # noqa: F401
    finally:
        _done.set()


def start() -> None:
    """Begin the imports in a daemon thread (once)."""
    global _started
    if not _started:
        _started = True
        threading.Thread(target=_run, daemon=True, name="mftt-warm-imports").start()


def ready() -> bool:
    """True when nothing is being warmed (not started, or finished)."""
    return not _started or _done.is_set()


def wait(timeout: float = 300.0) -> None:
    """Block until the warm-up has finished (no-op when it was never started)."""
    if _started:
        _done.wait(timeout)
