"""Numbers and figures into the book's prose: round first, then ``myst_nb.glue`` (never typed by hand)."""

from __future__ import annotations

import io
import math
import re
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from cnode.book.tables import DATASET_NAMES


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


#: Below this, a float64 difference is round-off: its digits depend on the CPU's summation order (``glue_bound``)
ROUND_OFF = 1e-12


def glue_bound(name: str, value: float, floor: float = ROUND_OFF, digits: int = 2) -> str:
    """Glue ``value`` as text: "below 1e-12" when ``|value| < floor`` (round-off, whose digits differ between
    CPUs, so the page would change with the machine), else with ``digits`` significant digits; returns it."""
    from myst_nb import glue

    text = f"below {floor:g}" if abs(value) < floor else f"{value:.{digits}g}"
    glue(name, text, display=False)
    return text


#: Resolution of the PNGs glued for the book (pixels per inch of the figure's size).
FIGURE_DPI = 120


def figure_png(fig: Figure, dpi: int = FIGURE_DPI) -> bytes:
    """Render ``fig`` to PNG bytes with the Agg renderer, whatever backend is active; no timestamp or software
    metadata, so the same figure always gives the same bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def glue_figure(name: str, fig: Figure) -> Figure:
    """Glue ``fig`` as a rendered PNG image (shown where the text pastes it with ``{glue:figure}``), then close it.

    A live ``Figure`` would be recorded through the kernel's display machinery, which keeps only the text
    ``<Figure size ...>`` when the backend is not inline (e.g. ``MPLBACKEND=Agg``); an explicit PNG does not
    depend on the backend or the kernel. Returns the figure.
    """
    import matplotlib.pyplot as plt
    from IPython.display import Image
    from myst_nb import glue

    glue(name, Image(data=figure_png(fig), format="png"), display=False)
    plt.close(fig)
    return fig








def glue_text(name: str, text: str) -> str:
    """Glue a word or phrase computed by code (e.g. a verdict); paste with ``{glue:md}`name```."""
    from IPython.display import Markdown
    from myst_nb import glue

    glue(name, Markdown(text), display=False)
    return text




#: a number cell: a number, 'mean ± spread', an interval '+0.01 [-0.02, +0.03]', a range '92-100'
NUMBER_CELL = re.compile(r"^[-+−±\d.,%×x\[\]()e –→]*\d[-+−±\d.,%×x\[\]()e –→]*$")


def unbreakable(text: str) -> str:
    """A number cell on one line wherever the table is shown: its spaces non-breaking, a hyphen between digits
    non-breaking (a reader sees '0.959 ± 0.006', never '0.959 ±' over '0.006'); other text unchanged."""
    if not NUMBER_CELL.match(text):
        return text
    text = text.replace(" ± ", "\u202f±\u202f").replace(" ", "\u00a0")  # narrow no-break spaces around ±
    return re.sub(r"(?<=\d)-(?=\d)", "\u2011", text)


def markdown_table(frame: pd.DataFrame, digits: int | None = None) -> str:
    """``frame`` as a MyST pipe table, datasets by name (MNIST, FashionMNIST): index levels become the first
    columns (a value equal to the row above is left blank, as pandas shows a MultiIndex), column levels are joined
    by a space, numbers right-aligned; number cells never wrap (``unbreakable``). Index
    floats print as ``0.05``; value floats with ``digits`` decimals when given (so 0.900 keeps its zeros).

    A pipe table, unlike a DataFrame's HTML, can sit in a ``{table}`` directive: numbered, captioned, never cut.
    """
    flat = frame.copy()
    if "dataset" in flat.columns:
        flat["dataset"] = flat["dataset"].map(lambda d: DATASET_NAMES.get(d, d))
    if "dataset" in (flat.index.names or []):
        flat = flat.rename(index=DATASET_NAMES, level="dataset")
    if isinstance(flat.columns, pd.MultiIndex):
        flat.columns = [" ".join(DATASET_NAMES.get(str(part), str(part)) for part in col if str(part))
                        for col in flat.columns]
    index_names = [name or "" for name in flat.index.names]
    flat = flat.reset_index(names=[name or f"level_{i}" for i, name in enumerate(flat.index.names)])
    keys = flat.columns[:len(index_names)]
    shown = flat.astype(object).where(flat.notna(), "–")
    for depth in range(len(keys) - 1, -1, -1):  # blank repeated index values, outermost levels decide
        same = (flat[keys[:depth + 1]] == flat[keys[:depth + 1]].shift()).all(axis=1)
        shown.loc[same, keys[depth]] = ""
    header = [*index_names, *[str(c) for c in flat.columns[len(keys):]]]
    numeric = [pd.api.types.is_numeric_dtype(flat[c]) for c in flat.columns]

    def cell(value: Any, is_index: bool) -> str:
        if isinstance(value, float):
            text = f"{value:g}" if is_index or digits is None else f"{value:.{digits}f}"
        else:
            text = unbreakable(str(value))
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---:" if n else "---" for n in numeric) + " |"]
    lines += ["| " + " | ".join(cell(v, i < len(keys)) for i, v in enumerate(row)) + " |"
              for row in shown.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def glue_table(name: str, frame: pd.DataFrame, digits: int | None = None) -> pd.DataFrame:
    """Glue a (rounded) table as a pipe table; paste it inside a ``{table}`` directive (caption, ``:name:``) with
    a ``{glue:md}`` directive and ``:format: myst``, so it is numbered like a figure. Returns ``frame``."""
    from IPython.display import Markdown
    from myst_nb import glue

    glue(name, Markdown(markdown_table(frame, digits)), display=False)
    return frame


class Md(str):
    """A phrase to glue as Markdown (``glue_text``; pasted with ``{glue:md}``) in ``glue_all``."""


class Table:
    """A frame to glue as a table (``glue_table``) in ``glue_all``, rounded to ``digits`` if given."""

    def __init__(self, frame: pd.DataFrame, digits: int | None = None) -> None:
        self.frame, self.digits = frame, digits


def glue_all(values: dict[str, Any]) -> None:
    """Glue a chapter's numbers in one loop, in order: ``(value, digits)`` as ``glue_value`` rounds it, ``Md`` as
    Markdown, ``Table`` as a table, anything else (a string, an int) as plain text."""
    for name, value in values.items():
        if isinstance(value, Table):
            glue_table(name, value.frame, value.digits)
        elif isinstance(value, Md):
            glue_text(name, str(value))
        elif isinstance(value, tuple):
            glue_value(name, *value)
        else:
            glue_value(name, value)
