"""Numbers and figures into the book's prose: round first, then ``myst_nb.glue`` (never typed by hand)."""

from __future__ import annotations

import io
import math
from typing import Any

import pandas as pd
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


def history_frame(runs: dict[str, Any]) -> pd.DataFrame:
    """Long table of every run's per-epoch history: one row per (run, epoch), with ``run`` the dict key.

    Adds ``certified_rate_min``: the smallest certified rate over the NODE's layers (the model's certificate).
    """
    rows = []
    for name, run in runs.items():
        for record in run.history:
            row = {"run": name, **{k: v for k, v in record.items() if k != "certified_rate"}}
            if record.get("certified_rate"):
                row["certified_rate_min"] = min(record["certified_rate"])
            rows.append(row)
    return pd.DataFrame(rows)


def layer_frame(runs: dict[str, Any]) -> pd.DataFrame:
    """Final certified rate of every NODE layer (time step) of every run: columns run, layer, certified_rate."""
    return pd.DataFrame([{"run": name, "layer": i, "certified_rate": rate}
                         for name, run in runs.items() for i, rate in enumerate(run.final["certified_rate"])])


def final_table(runs: dict[str, Any]) -> pd.DataFrame:
    """One row per run: final accuracies, regularizer, certificate and cost (rounded for display)."""
    rows = []
    for name, run in runs.items():
        last = run.final
        rows.append({
            "run": name, "test acc": round(last["test_acc"], 3), "train acc": round(last["train_acc"], 3),
            "final CE": round(last["ce"], 3), "final reg": round(last["reg"], 3),
            "R_W at rho": round(last["weight_reg"], 2),
            "certified channels": f"{last['certified_channels']}/{last['channels_total']}",
            "certified rate (min layer)": round(min(last["certified_rate"]), 3),
            "s/epoch": round(sum(h["seconds"] for h in run.history) / len(run.history), 1),
        })
    return pd.DataFrame(rows).set_index("run")


def glue_text(name: str, text: str) -> str:
    """Glue a word or phrase computed by code (e.g. a verdict); paste with ``{glue:md}`name```."""
    from IPython.display import Markdown
    from myst_nb import glue

    glue(name, Markdown(text), display=False)
    return text


def config_table(cfgs: dict[str, Any]) -> pd.DataFrame:
    """The settings shared by ``cfgs`` (one column) and those that differ (one column per config)."""
    frame = pd.DataFrame({name: cfg.to_dict() for name, cfg in cfgs.items()})
    same = frame.nunique(axis=1) == 1
    shared = frame[same].iloc[:, :1].rename(columns={frame.columns[0]: "all runs"})
    return pd.concat([shared, frame[~same]]).astype(str)


def markdown_table(frame: pd.DataFrame, digits: int | None = None) -> str:
    """``frame`` as a MyST pipe table: index levels become the first columns (a value equal to the row above is
    left blank, as pandas shows a MultiIndex), column levels are joined by a space, numbers right-aligned. Index
    floats print as ``0.05``; value floats with ``digits`` decimals when given (so 0.900 keeps its zeros).

    A pipe table, unlike a DataFrame's HTML, can sit in a ``{table}`` directive: numbered, captioned, never cut.
    """
    flat = frame.copy()
    if isinstance(flat.columns, pd.MultiIndex):
        flat.columns = [" ".join(str(part) for part in col if str(part)) for col in flat.columns]
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
            text = str(value)
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
