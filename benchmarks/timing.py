"""Timing helpers for the benchmarks: median of repeats, device-synchronised, threads under control."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from contextlib import contextmanager

import torch


def sync(device: torch.device | str) -> None:
    """Wait for queued device work (CUDA); a no-op on CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def cpu_clock(device="cpu") -> bool:
    """Whether to time with this process's CPU time: one CPU thread, so CPU time = wall time on an idle
    machine, and time lost to other processes on a shared one is not counted."""
    return torch.device(device).type == "cpu" and torch.get_num_threads() == 1


def clock(device="cpu") -> Callable[[], float]:
    """``time.process_time`` under ``cpu_clock``, else ``time.perf_counter`` (wall; multi-thread and GPU)."""
    return time.process_time if cpu_clock(device) else time.perf_counter


def bench(
    fn: Callable[[], object],
    *,
    device="cpu",
    repeat: int = 5,
    warmup: int = 1,
    min_time: float = 0.05,
) -> float:
    """Seconds of one call of ``fn``: the best of ``repeat`` repeats (calls batched to ``min_time`` each).

    The best repeat, not the median: on a shared machine the noise only ever adds time.
    """
    now = clock(device)
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = now()
    fn()
    sync(device)
    one = max(now() - t0, 1e-7)
    inner = max(1, int(min_time / one))
    times = []
    for _ in range(repeat):
        t0 = now()
        for _ in range(inner):
            fn()
        sync(device)
        times.append((now() - t0) / inner)
    return min(times)


def once(fn: Callable[[], object], *, device="cpu") -> float:
    """Seconds of a single synchronised call (for long runs that are not worth repeating)."""
    now = clock(device)
    sync(device)
    t0 = now()
    fn()
    sync(device)
    return now() - t0


@contextmanager
def threads(n: int):
    """Run a block with ``n`` torch intra-op threads, restoring the previous count."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (falls back to ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: str = "cpu") -> dict:
    """What the numbers were measured on: CPU, cores, torch, threads, load, and the CUDA device if used."""
    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 1,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "device": str(device),
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
