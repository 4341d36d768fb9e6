"""Where benchmark numbers come from (benchmarks/run.py): the machine, and its copy bandwidth and matmul rate."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import time
from collections.abc import Callable
from statistics import median
from typing import Any

import torch

from cnode.core import runtime
from cnode.core.paths import repo_root


def _sync(device: torch.device) -> None:
    """Wait for the GPU's queued work (a no-op on CPU), so that a timer measures the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def machine_rates(device: torch.device, quick: bool) -> dict[str, float]:
    """Copy bandwidth (GB/s, bytes read + written by ``copy_`` of a 256 MiB float32 tensor) and float32
    matmul rate (GFLOP/s, 2048 x 2048): medians of 10 after 2 warm-ups."""
    n = (1 << 20) if quick else (64 << 20)
    src, dst = torch.randn(n, device=device), torch.empty(n, device=device)
    size = 256 if quick else 2048
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)

    def rate(fn: Callable[[], Any], work: float) -> float:
        out = []
        for i in range(12):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            if i >= 2:
                out.append(work / (time.perf_counter() - start) / 1e9)
        return median(out)
    return {"copy_gb_s": rate(lambda: dst.copy_(src), 2 * 4 * n), "matmul_gflop_s": rate(lambda: a @ b, 2 * size**3)}


def machine(device: torch.device, threads: int) -> dict[str, Any]:
    """Where the numbers come from (no host names or paths): ``cnode.core.runtime.machine`` (CPU model, instruction set
    level, feature flags, GPU, torch, threads) under ``machine``, plus the fields the book prints."""
    found = {**runtime.machine(device), "threads": threads}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo_root(), capture_output=True,
                            text=True).stdout.strip() or None
    return {"device": device.type, "device_name": found["gpu"] or found["cpu"], "cpu": found["cpu"],
            "cores": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "python": platform.python_version(), "git_commit": commit, "date": datetime.date.today().isoformat(),
            "machine": found}
