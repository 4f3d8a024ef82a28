"""Timing helpers for the benchmarks: median of repeats, device-synchronised, threads under control."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager

import torch


def sync(device: torch.device | str) -> None:
    """Wait for queued device work (CUDA); a no-op on CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def bench(
    fn: Callable[[], object],
    *,
    device="cpu",
    repeat: int = 5,
    warmup: int = 1,
    min_time: float = 0.05,
) -> float:
    """Median wall seconds of one call of ``fn`` (calls are batched until ``min_time`` per repeat)."""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    one = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(min_time / one))
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        sync(device)
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


def once(fn: Callable[[], object], *, device="cpu") -> float:
    """Wall seconds of a single synchronised call (for long runs that are not worth repeating)."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


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
