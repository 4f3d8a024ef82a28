"""Output files of a run: validated before any cell runs, locked against a second run, cleaned after a kill.

``check_output`` refuses a path that could never be written (a directory, a device, a FIFO, a symlink, a name
that is too long or holds a NUL, a folder without write access, a name not ending in ``.nc``), so a run never
computes every cell and then fails at the final write. ``output_guard`` holds ``<out>.lock`` (an exclusive
``flock`` naming the holder's pid) for the whole run, removes temporary files left by a killed run and turns
SIGTERM/SIGHUP into ``KeyboardInterrupt`` so the atomic writers delete their temporary files on the way out.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from control.errors import ValidationError

__all__ = ["OutputLocked", "check_output", "clean_stale", "lock_path", "output_guard"]

MAX_NAME_BYTES = (
    200  # leaves room for ".parts", ".lock" and the ".<name>.<random>.tmp" of atomic writes
)
MAX_PATH_BYTES = 3000  # well under PATH_MAX (4096) with those suffixes
_KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
}


class RunCancelled(RuntimeError):
    """The run was cancelled; finished cells stay in the partial files (resume later)."""


class OutputLocked(ValidationError):
    """Another run holds the output's lock file (its pid is named in the message)."""


def _bad(field: str, expected: str, got: Any, reason: str | None = None) -> ValidationError:
    return ValidationError(field, expected, got, reason=reason)


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def check_output(
    path: Any, *, field: str = "out", suffixes: tuple[str, ...] = (".nc",), fs: bool = True
) -> Path:
    """``path`` as a ``Path`` if a run can write it; else one-line ``ValidationError`` naming ``field``.

    ``fs=False`` checks only the name (type, NUL and control characters, length, suffix): for configs that
    may be run on another machine.
    """
    want = f"a path to a {' or '.join(suffixes)} file"
    if isinstance(path, bytes | bytearray) or not isinstance(path, str | os.PathLike):
        raise _bad(field, want, type(path).__name__)
    try:
        text = os.fspath(path)
    except TypeError:
        raise _bad(field, want, type(path).__name__) from None
    if not isinstance(text, str) or not text.strip():
        raise _bad(field, want, text if isinstance(text, str) else type(text).__name__)
    if "\x00" in text:
        raise _bad(field, "a path without NUL characters", text.replace("\x00", "\\0"))
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise _bad(field, "a path without control characters", text)
    p = Path(text)
    if p.suffix.lower() not in suffixes or p.name in suffixes:
        raise _bad(field, f"a file name ending in {' or '.join(suffixes)}", text)
    try:
        name_bytes, full_bytes = len(os.fsencode(p.name)), len(os.fsencode(str(p.absolute())))
    except (UnicodeError, OSError):
        raise _bad(field, "a path the file system can encode", text) from None
    if name_bytes > MAX_NAME_BYTES or full_bytes > MAX_PATH_BYTES:
        raise _bad(
            field,
            f"a file name of at most {MAX_NAME_BYTES} bytes (path {MAX_PATH_BYTES})",
            f"{name_bytes} bytes",
        )
    if any(len(os.fsencode(part)) > 255 for part in p.parts):
        raise _bad(field, "folder names of at most 255 bytes", text)
    if fs:
        _check_fs(p, field)
    return p


def _check_fs(p: Path, field: str) -> None:
    """The file (if any) is a regular file, not a symlink; the nearest existing folder is writable."""
    for q, what in ((p, "a regular file"), (lock_path(p), "a regular lock file")):
        try:
            st = os.lstat(q)
        except FileNotFoundError:
            continue
        except NotADirectoryError:
            raise _bad(field, "a path whose folders are directories", str(q)) from None
        except OSError as e:
            raise _bad(field, "an accessible path", str(q), reason=type(e).__name__) from None
        if stat.S_ISLNK(st.st_mode):
            raise _bad(field, f"{what} (not a symlink)", str(q))
        if not stat.S_ISREG(st.st_mode):
            raise _bad(field, what, str(q), reason=_kind(st.st_mode))
    parts = Path(str(p) + ".parts")
    with contextlib.suppress(FileNotFoundError):
        st = os.lstat(parts)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise _bad(field, "a parts folder that is a real directory", str(parts))
    folder = p.absolute().parent
    while True:
        try:
            st = os.stat(folder)
            break
        except FileNotFoundError:
            if folder.parent == folder:
                break
            folder = folder.parent
        except OSError as e:
            raise _bad(
                field, "an accessible folder", str(folder), reason=type(e).__name__
            ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise _bad(
            field, "a path whose folders are directories", str(folder), reason=_kind(st.st_mode)
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _bad(field, "a path in a writable folder", str(folder), reason="permission denied")


def lock_path(out: str | Path) -> Path:
    """``<out>.lock``: held (``flock``) by the run writing ``out``; it holds that run's pid."""
    return Path(str(out) + ".lock")


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        if text.isdigit():
            return text
    return "unknown"


def _acquire(out: Path, wait: bool, cancel: threading.Event | None) -> int:
    """Open and ``flock`` ``<out>.lock`` (the file we lock must still be the one at the path); returns its fd."""
    lock = lock_path(out)
    lock.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    while True:
        try:
            fd = os.open(lock, flags, 0o644)
        except OSError as e:
            raise _bad("out", "a lockable output", str(lock), reason=type(e).__name__) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            os.close(fd)
            if not wait:
                raise OutputLocked(
                    "out",
                    "an output that no other run is writing",
                    str(out),
                    reason=f"locked by pid {pid} through {lock.name}; pass --wait to wait for it",
                ) from None
            if cancel is not None and cancel.is_set():
                raise RunCancelled("run cancelled") from None
            time.sleep(0.2)
            continue
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if not same:  # the holder removed it between our open and our lock: take the new one
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd


def _release(out: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(lock_path(out))
    with contextlib.suppress(OSError):
        os.close(fd)


def clean_stale(out: str | Path) -> int:
    """Remove temporary files a killed run left beside ``out`` and in ``<out>.parts/``; returns how many.

    Only called while holding the output's lock, so no live writer's temporary file is removed.
    """
    out = Path(out)
    name, stem = _glob_escape(out.name), _glob_escape(out.stem)
    found = list(out.parent.glob(f".{name}.*.tmp"))
    # the default figures beside it: .<stem>.html.<random>.tmp and .<stem>.png.tmp.png
    found += list(out.parent.glob(f".{stem}.html.*.tmp")) + list(
        out.parent.glob(f".{stem}.png.tmp.png")
    )
    parts = Path(str(out) + ".parts")
    if parts.is_dir() and not parts.is_symlink():
        found += list(parts.glob(".cell-*.tmp"))
    n = 0
    for f in found:
        with contextlib.suppress(OSError):
            if stat.S_ISREG(os.lstat(f).st_mode) or f.is_symlink():
                f.unlink()
                n += 1
    return n


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


@contextlib.contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    """In the main thread: SIGTERM and SIGHUP raise ``KeyboardInterrupt`` so ``finally`` blocks clean up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):
            old[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, h in old.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, h)


@contextlib.contextmanager
def output_guard(
    out: str | Path, *, wait: bool = False, cancel: threading.Event | None = None
) -> Iterator[Path]:
    """Hold the lock of ``out`` for a run, after removing stale temporary files; always released."""
    out = Path(out)
    fd = _acquire(out, wait, cancel)
    try:
        clean_stale(out)
        with _signals_as_interrupt():
            yield out
    finally:
        _release(out, fd)
