"""Memory of a training step (benchmarks/run.py): bytes autograd saves, and peak memory above setup."""

from __future__ import annotations

import resource
from collections.abc import Callable
from typing import Any

import torch


def saved_megabytes(step: Callable[[int], Any]) -> float:
    """Megabytes autograd keeps for the backward pass of one ``step(0)`` (distinct storages of saved tensors)."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step(0)
    return sum(storages.values()) / 2**20


def peak_megabytes(step: Callable[[int], Any], device: torch.device) -> float:
    """Peak memory of 3 calls of ``step`` above the state after setup and a first call, in this (fresh) process."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        for r in range(3):
            step(r)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    step(0)  # compilation is setup, not the step's memory
    base = _reset_peak_rss()
    for r in range(3):
        step(r)
    return (_peak_kib() - base) / 1024


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def _peak_kib() -> int:
    """Resident high-water mark in KiB (Linux); ``ru_maxrss`` elsewhere."""
    try:
        return _status_kib("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak_rss() -> int:
    """Reset the kernel's resident high-water mark (Linux ``clear_refs`` 5) and return the current RSS in KiB;
    where that is impossible, return the high-water mark so far (the peak then includes setup)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _status_kib("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
