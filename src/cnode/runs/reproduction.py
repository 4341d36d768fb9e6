"""Does retraining reproduce a stored epoch? Bit for bit on the machine that stored it; within a stated tolerance
on any other, since another CPU sums floats in another order (oneDNN picks its kernels by instruction set).

The tolerance was measured on the first epoch of chapter 2's weight-regularized laptop run (79 Adam steps):
retrained under seven summation orders (1 or 2 threads, compiled or eager, oneDNN on or off, on an Intel
Sapphire Rapids CPU; stored on an AMD EPYC), no two records differed by more than 1.9e-6 relative in any loss or
regularizer value, 3.2e-7 in a certified rate, or one image in an accuracy. ``REL_TOL`` is 50 times the largest
of these, and still 100 times finer than the 3 decimals the book prints; ``IMAGES`` allows a few flipped images.
"""

from __future__ import annotations

import math
from typing import Any

from cnode.core.runtime import same_machine

#: relative tolerance of every float of an epoch record (losses, regularizer values, certified rates)
REL_TOL = 1e-4
#: absolute slack for floats at zero (a regularizer that reached 0 on one machine and 1e-12 on another)
ABS_TOL = 1e-9
#: images by which an accuracy may differ (a prediction at a tie can flip with the last bit of a logit)
IMAGES = 3
#: channels by which the certified count may differ (a rate within rounding of rho)
CHANNELS = 1
#: fields that are equal on every machine: counters and the schedule
EXACT = ("epoch", "lr", "channels_total")
#: fields left out of every comparison (wall time)
IGNORED = ("seconds",)


def mode(stored_machine: dict[str, Any] | None, this_machine: dict[str, Any]) -> str:
    """"bitwise" when the record names this machine (``runtime.same_machine``), else "tolerance" (another
    machine, or a record stored before machines were recorded)."""
    return "bitwise" if same_machine(stored_machine, this_machine) else "tolerance"


def _close(mine: float, theirs: float) -> bool:
    return math.isclose(mine, theirs, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def differences(mine: dict[str, Any], theirs: dict[str, Any], how: str, images: dict[str, int]) -> list[str]:
    """The fields in which epoch record ``mine`` differs from ``theirs`` beyond what ``how`` ("bitwise" or
    "tolerance") allows, one line each; empty when it reproduces. ``images``: the number of images behind each
    accuracy field ({"test_acc": 2000, "train_acc": 10000}), so that a difference is counted in images."""
    if how not in ("bitwise", "tolerance"):
        raise ValueError(f"mode must be 'bitwise' or 'tolerance', got {how!r}")
    keys = sorted((set(mine) | set(theirs)) - set(IGNORED))
    out = [f"{k}: only in {'the retrained' if k in mine else 'the stored'} record" for k in keys
           if (k in mine) != (k in theirs)]
    for k in (k for k in keys if k in mine and k in theirs):
        a, b = mine[k], theirs[k]
        if how == "bitwise" or k in EXACT:
            ok = a == b
        elif k in images:
            ok = abs(a - b) * images[k] <= IMAGES + 1e-6
        elif k == "certified_channels":
            ok = abs(a - b) <= CHANNELS
        elif isinstance(a, list):
            ok = len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
        else:
            ok = _close(float(a), float(b))
        if not ok:
            out.append(f"{k}: {a!r} retrained, {b!r} stored ({how})")
    return out
