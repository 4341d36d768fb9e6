"""Numbers and figures into the book's prose: round first, then ``myst_nb.glue`` (never typed by hand)."""

from __future__ import annotations

import math
from typing import Any

from matplotlib.figure import Figure


def glue_value(name: str, value: Any, digits: int = 3, significant: bool = False) -> float | int | str:
    """Round ``value`` to ``digits`` decimals (or significant digits), glue it, and return it.

    Ints and strings pass through. Paste as ``{glue:text}`name``` in the prose.
    """
    from myst_nb import glue

    if isinstance(value, bool) or isinstance(value, str):
        out: Any = value
    elif isinstance(value, int) or (hasattr(value, "dtype") and "int" in str(value.dtype)):
        out = int(value)
    else:
        number = float(value)
        if not math.isfinite(number):
            out = number
        elif significant:
            out = float(f"{number:.{max(digits - 1, 0)}e}")
        else:
            out = round(number, digits)
        if digits == 0 and math.isfinite(out):
            out = int(out)
    glue(name, out, display=False)
    return out


def glue_figure(name: str, fig: Figure) -> Figure:
    """Glue a figure (shown where the text pastes it with ``{glue:figure}``) and return it."""
    from myst_nb import glue

    glue(name, fig, display=False)
    return fig
