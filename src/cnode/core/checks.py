"""Parameter validation shared by every layer: one clear line saying what is wrong.

Each helper returns the value so it can be used inline, and raises ``ValueError`` with a message of the
form ``rho must be > 0, got -1``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, get_origin


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


def at_least(name: str, value: int, minimum: int, why: str) -> int:
    """Require ``value >= minimum`` (a count, such as the number of seeds), saying ``why`` in the one-line error."""
    if value < minimum:
        raise ValueError(f"{name}: need at least {minimum}, got {value}; {why}")
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


#: Names IPython puts in a kernel's namespace; never parameters.
_KERNEL_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}
_PLAIN = (bool, int, float, str, list, dict, tuple, type(None))


class ParameterError(ValueError):
    """A chapter was run with a parameter it does not know, or of the wrong type."""


def parameters(namespace: dict[str, Any]) -> dict[str, Any]:
    """Validate a chapter's papermill parameters in its kernel ``namespace`` (pass ``globals()``); returns them.

    The known parameters are the annotated names of the chapter's ``parameters`` cell (one list: its
    ``__annotations__``). Papermill injects ``-p``/``-y`` values as plain assignments in a cell of their own, so a
    plain value (number, string, list, ...) bound to an unannotated public name is an unknown parameter. Types
    follow the annotations: an int is accepted (and converted) where a float is expected; a string where a list
    is expected gets a hint on how to pass a list.
    """
    annotations: dict[str, Any] = namespace.get("__annotations__", {})
    known = ", ".join(annotations)
    unknown = sorted(name for name, value in namespace.items()
                     if not name.startswith("_") and name not in _KERNEL_NAMES and name not in annotations
                     and isinstance(value, _PLAIN))
    if unknown:
        raise ParameterError(f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                             f"this chapter knows: {known}")
    for name, kind in annotations.items():
        value = namespace[name]
        kind = get_origin(kind) or kind  # list[int] -> list
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            namespace[name] = value = float(value)
        if kind is list and isinstance(value, str):
            raise ParameterError(f"{name} must be a list, got the string {value!r}: pass lists with -y, "
                                 f"e.g. -y '{name}: [0, 1]'")
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ParameterError(f"{name} must be {kind.__name__}, got {value!r}")
    return {name: namespace[name] for name in annotations}
