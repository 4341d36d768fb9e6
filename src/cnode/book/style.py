"""One style for every figure of the book; each function draws one figure from a tidy DataFrame.

Functions return the matplotlib Figure so notebooks can ``glue`` or display it; nothing is saved here. Figures of
data computed while a chapter runs (chapter 1) draw it through ``shown``: rounded to the precision a figure can
show, so that round-off that differs between CPUs does not change a pixel, and the committed PNGs stay the same on
every machine.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

PALETTE = "colorblind"


def use_style() -> None:
    """The book's plotting style: seaborn whitegrid, colorblind palette, compact figures; tables shown whole
    (pandas would cut long cells to 50 characters)."""
    sns.set_theme(style="whitegrid", palette=PALETTE, context="notebook")
    pd.set_option("display.max_colwidth", None)
    plt.rcParams.update({"figure.figsize": (6.0, 3.6), "figure.dpi": 100, "savefig.bbox": "tight",
                         "axes.titlesize": "medium"})


#: significant digits a figure's data keeps (``shown``): far finer than a pixel of a 1000-pixel axis
SHOWN_DIGITS = 6


def shown(data: np.ndarray | pd.DataFrame, digits: int = SHOWN_DIGITS) -> np.ndarray | pd.DataFrame:
    """``data`` with every float rounded to ``digits`` significant digits (other columns kept): what a figure
    draws, so that float round-off (1e-16 relative, larger after an ODE solve) leaves its pixels alone."""
    if isinstance(data, pd.DataFrame):
        return data.apply(lambda col: shown(col.to_numpy(), digits) if col.dtype.kind == "f" else col)
    values = np.asarray(data, dtype=float)
    scale = 10.0 ** (digits - 1 - np.floor(np.log10(np.abs(np.where(values == 0, 1.0, values)))))
    return np.where(np.isfinite(values), np.round(values * scale) / scale, values)
























def gain_panels(data: pd.DataFrame) -> tuple[Figure, list[tuple[object, str, float, pd.DataFrame]]]:
    """One panel per (dataset, T) of ``data``: rows datasets, columns horizons."""
    datasets, horizons = list(dict.fromkeys(data["dataset"])), sorted(data["T"].unique())
    fig, axes = plt.subplots(len(datasets), len(horizons), figsize=(3.6 * len(horizons), 3.0 * len(datasets)),
                             squeeze=False)
    return fig, [(axes[r][c], d, T, data[(data["dataset"] == d) & (data["T"] == T)])
                 for r, d in enumerate(datasets) for c, T in enumerate(horizons)]


def legend_below(fig: Figure, ax: object, columns: int) -> Figure:
    """One legend for the figure, from ``ax``'s entries, centred below the panels."""
    handles, labels = ax.get_legend_handles_labels()
    rows = -(-len(labels) // columns)
    fig.tight_layout(rect=(0, min(0.4, 0.06 * rows + 0.02), 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize="x-small", frameon=False)
    return fig






