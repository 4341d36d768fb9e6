"""Process-wide numerics every process that trains, evaluates or benchmarks needs; applied on import.

Denormal floats (|x| < 1.2e-38 in float32) take a slow path on x86 CPUs: steps stalled 3-4x at random when a
few activations or gradients underflowed into that range (measured). ``torch.set_flush_denormal``
makes the CPU treat them as zero, which changes no result that is not already below float32's normal range.
``cnode.core.data`` and ``cnode.core.models`` import this module, so chapter kernels, the CLI, sweep workers and the
benchmark all get it without a call of their own. ``machine`` names the machine a result was computed on, so that
results are compared bit for bit only between records of one machine.
"""

from __future__ import annotations

import hashlib
import platform
from typing import Any

import torch


def flush_denormals() -> bool:
    """Flush denormals to zero in this process; False where the CPU cannot (then nothing changes)."""
    return torch.set_flush_denormal(True)


def strict_float32() -> None:
    """Keep float32 float32 on NVIDIA GPUs: no TF32 in matrix products or cuDNN convolutions (PyTorch allows
    TF32 convolutions by default, a 10-bit mantissa), so a run's ``precision`` means the same on every device."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


FLUSHING = flush_denormals()
strict_float32()


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (Linux); empty elsewhere."""
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read().split("\n\n")[0]
    except OSError:
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines()) if k.strip()}


def machine(device: torch.device | str = "cpu") -> dict[str, Any]:
    """What a result was computed on, as far as it decides float rounding: the CPU's model name, the instruction
    set level PyTorch dispatches to (``AVX512``, ``AVX2``, ...), a hash of the CPU's feature flags (oneDNN picks
    its kernels by them: two CPUs sold under one name in a VM can differ), the GPU's name on CUDA, the torch
    version and the thread count. No host names or paths."""
    device = torch.device(device)
    info = _cpuinfo()
    flags = " ".join(sorted(info.get("flags", "").split()))
    return {"cpu": info.get("model name") or platform.processor() or platform.machine(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_flags": hashlib.sha256(flags.encode()).hexdigest()[:12] if flags else None,
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def machine_of(record: dict[str, Any]) -> dict[str, Any] | None:
    """The ``machine`` record of a stored run's metrics (under its provenance) or of a derived JSON (evaluation,
    measurement, audit); None for results stored before machines were recorded (machine unknown)."""
    return record.get("provenance", record).get("machine")


def machine_id(found: dict[str, Any] | None) -> str | None:
    """One line naming a ``machine()`` record ("Intel(R) Xeon(R) Processor, AVX512, flags 0123456789ab, torch
    2.14.1, 2 threads"); None for a record without one (stored before machines were recorded: unknown)."""
    if not found:
        return None
    parts = [found["cpu"], found["cpu_capability"], f"flags {found['cpu_flags']}"]
    if found.get("gpu"):
        parts.append(found["gpu"])
    return ", ".join([*parts, f"torch {found['torch']}", f"{found['threads']} threads"])


def machine_label(record: dict[str, Any]) -> str:
    """A name for the machine of a benchmark run or a run's provenance: its ``machine_id``, or, for a record
    stored before machines were recorded, the device kind and name it gave ("cpu: AMD EPYC"). Groups benchmark
    runs by machine; whether two results may be compared bit for bit is ``same_machine``'s to say."""
    return machine_id(record.get("machine")) or f"{record['device']}: {record['device_name']}"


def same_machine(first: dict[str, Any] | None, second: dict[str, Any] | None) -> bool | None:
    """Whether two ``machine()`` records name the same machine (then float sums were summed alike, and results
    may be compared bit for bit); None when either is unknown."""
    if not first or not second:
        return None
    return machine_id(first) == machine_id(second)
