"""Item 1: this machine's fp32 matmul rate (1 and all threads) and memory bandwidth — the peaks ratios refer to."""

from __future__ import annotations

import os

import torch

from .timing import bench, threads


def matmul_gflops(
    n: int = 1024, *, n_threads: int | None = None, device="cpu", dtype=torch.float32
) -> float:
    """GFLOP/s of one dense ``n×n @ n×n`` product (2n³ flops), median of repeats."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    with threads(n_threads or torch.get_num_threads()):
        s = bench(lambda: a @ b, device=device, repeat=5)
    return 2 * n**3 / s / 1e9


def peak_gflops(device="cpu", *, quick: bool = False, n_threads: int | None = None) -> float:
    """The best fp32 matmul rate over a few sizes at the current (or given) thread count."""
    return max(matmul_gflops(n, n_threads=n_threads, device=device) for n in sizes(device, quick))


def sizes(device="cpu", quick: bool = False) -> list[int]:
    """Square matmul sizes to try: large enough to reach the peak, small enough to be quick."""
    if quick:
        return [256]
    return [512, 1024, 2048] if torch.device(device).type == "cpu" else [2048, 4096, 8192]


def bandwidth_gbs(n_bytes: int = 256 * 2**20, device="cpu") -> float:
    """Copy bandwidth: read + write of a large fp32 buffer."""
    x = torch.empty(n_bytes // 4, device=device)
    y = torch.empty_like(x)
    s = bench(lambda: y.copy_(x), device=device, repeat=5)
    return 2 * n_bytes / s / 1e9


def run(device="cpu", quick: bool = False) -> dict:
    """Matmul GFLOP/s with 1 and all threads, the thread count used, and copy bandwidth in GB/s."""
    cores = os.cpu_count() or 1
    one = peak_gflops(device, quick=quick, n_threads=1)
    allt = peak_gflops(device, quick=quick, n_threads=cores)
    nbytes = (16 if quick else 256) * 2**20
    return {
        "matmul_gflops_1thread": one,
        "matmul_gflops_all": allt,
        "threads": cores,
        "bandwidth_gbs": bandwidth_gbs(nbytes, device=device),
    }
