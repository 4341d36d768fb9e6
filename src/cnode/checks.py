"""Parameter validation shared by every layer: one clear line saying what is wrong.

Each helper returns the value so it can be used inline, and raises ``ValueError`` with a message of the
form ``rho must be > 0, got -1``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def positive(name: str, value: float) -> float:
    """Require ``value > 0``."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def nonnegative(name: str, value: float) -> float:
    """Require ``value >= 0``."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return value


def positive_int(name: str, value: int) -> int:
    """Require an integer ``>= 1``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def one_of(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Require ``value`` in ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def slopes(a: float, b: float) -> tuple[float, float]:
    """Require ``0 < a <= b``: the activation's slope bounds (paper section 2)."""
    positive("a", a)
    positive("b", b)
    if a > b:
        raise ValueError(f"slope bounds need a <= b, got a={a!r}, b={b!r}")
    return a, b
