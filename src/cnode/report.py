"""Numbers and figures into the book's prose: round first, then ``myst_nb.glue`` (never typed by hand)."""

from __future__ import annotations

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


def glue_figure(name: str, fig: Figure) -> Figure:
    """Glue a figure (shown where the text pastes it with ``{glue:figure}``), then close it so the notebook
    does not show it a second time; returns it."""
    import matplotlib.pyplot as plt
    from myst_nb import glue

    glue(name, fig, display=False)
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


def glue_table(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Glue a (rounded) table; paste it on any page with the ``{glue}`` directive and ``:doc:``."""
    from myst_nb import glue

    glue(name, frame, display=False)
    return frame
