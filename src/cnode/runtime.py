"""Process-wide numerics every process that trains, evaluates or benchmarks needs; applied on import.

Denormal floats (|x| < 1.2e-38 in float32) take a slow path on x86 CPUs: steps stalled 3-4x at random when a
few activations or gradients underflowed into that range (measured for issue 11). ``torch.set_flush_denormal``
makes the CPU treat them as zero, which changes no result that is not already below float32's normal range.
``cnode.data`` and ``cnode.models`` import this module, so chapter kernels, the CLI, sweep workers and the
benchmark all get it without a call of their own.
"""

from __future__ import annotations

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
