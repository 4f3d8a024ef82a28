"""Process helpers for fault injection, from /proc only (no psutil): descendants, titles, RSS, sockets.

Only processes the tests start are ever signalled, by PID (never ``ray stop``, never by name).
"""

from __future__ import annotations

import os
import signal
import socket
import struct
from pathlib import Path


def children(pid: int) -> list[int]:
    out = []
    task = Path(f"/proc/{pid}/task")
    try:
        for t in task.iterdir():
            try:
                out += [int(c) for c in (t / "children").read_text().split()]
            except OSError:
                pass
    except OSError:
        pass
    return out


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (depth first)."""
    seen, stack = [], [pid]
    while stack:
        for c in children(stack.pop()):
            if c not in seen:
                seen.append(c)
                stack.append(c)
    return seen


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def rss_mb(pid: int) -> float:
    """Resident set size of one process in MiB (0 when gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_rss_mb(pid: int) -> float:
    return sum(rss_mb(p) for p in [pid, *descendants(pid)])


def kill_tree(pid: int, tree: list[int] | None = None) -> None:
    """SIGKILL ``pid`` and the descendants recorded in ``tree`` (and any still found), by PID."""
    pids = set(tree or []) | set(descendants(pid)) | {pid}
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _socket_inodes(pid: int) -> set[int]:
    out = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:["):
                out.add(int(link[8:-1]))
    except OSError:
        pass
    return out


def _addr(hexaddr: str) -> str:
    ip, port = hexaddr.split(":")
    if len(ip) == 8:
        host = socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(ip, 16)))
    else:
        raw = b"".join(struct.pack("<I", int(ip[i : i + 8], 16)) for i in range(0, 32, 8))
        host = socket.inet_ntop(socket.AF_INET6, raw)
    return f"{host}:{int(port, 16)}"


def listening(pids: list[int]) -> list[tuple[int, str, str]]:
    """(pid, proto, local address) of every listening TCP socket and bound UDP socket held by ``pids``."""
    owner = {}
    for p in pids:
        for ino in _socket_inodes(p):
            owner[ino] = p
    out = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            local, state, inode = f[1], f[3], int(f[9])
            if inode in owner and (state == "0A" if proto.startswith("tcp") else True):
                out.append((owner[inode], proto, _addr(local)))
    return out


def is_loopback(addr: str) -> bool:
    host = addr.rsplit(":", 1)[0]
    return (
        host.startswith("127.")
        or host in ("::1", "::ffff:127.0.0.1")
        or host.startswith("::ffff:127.")
    )
