"""Chapter 2, training with each regularizer: its runs, the per-epoch and per-layer frames and figures."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cnode.core import checks
from cnode.core.config import REGULARIZERS, RunConfig
from cnode.runs.plans import Plan


def training_runs(profile: str, dataset: str, rho: float, seed: int, device: str = "auto",
                  epochs: int = 0) -> dict[str, RunConfig]:
    """Chapter 2: vanilla, weight- and Jacobian-regularized CNODEs, identical but for the regularizer.

    ``epochs = 0`` keeps the profile's number of epochs.
    """
    checks.nonnegative("epochs", epochs)
    extra = {"epochs": epochs} if epochs else {}
    return {reg: RunConfig.from_profile(profile, dataset=dataset, regularizer=reg, rho=rho, seed=seed,
                                        device=device, **extra) for reg in REGULARIZERS}


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


def config_table(cfgs: dict[str, Any]) -> pd.DataFrame:
    """The settings shared by ``cfgs`` (one column) and those that differ (one column per config)."""
    frame = pd.DataFrame({name: cfg.to_dict() for name, cfg in cfgs.items()})
    same = frame.nunique(axis=1) == 1
    shared = frame[same].iloc[:, :1].rename(columns={frame.columns[0]: "all runs"})
    return pd.concat([shared, frame[~same]]).astype(str)


def training_curves(frame: pd.DataFrame) -> Figure:
    """Per-epoch cross-entropy, test accuracy, regularizer value and smallest certified rate, one line per run."""
    panels = [("ce", "cross-entropy (train)", False), ("test_acc", "test accuracy", False),
              ("reg", "regularizer value (train mean)", True),
              ("certified_rate_min", "certified rate, min layer", False)]
    fig, axes = plt.subplots(1, 4, figsize=(13.0, 3.2))
    for ax, (column, title, log) in zip(axes, panels, strict=True):
        for name, group in frame.groupby("run", sort=False):
            if log and not (group[column] > 0).any():  # an unregularized run has nothing to show on a log axis
                ax.plot([], [], marker="o", ms=4, label=name)
                continue
            ax.plot(group["epoch"], group[column], marker="o", ms=4, label=name)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if log:
            ax.set_yscale("log")
    axes[0].legend(fontsize="small")
    fig.tight_layout()
    return fig


def layer_rates_figure(frame: pd.DataFrame, rho: float) -> Figure:
    """Final certified rate of each NODE layer (time step), grouped by run; the target rho dashed."""
    fig, ax = plt.subplots(figsize=(7.0, 3.2))
    sns.barplot(data=frame, x="layer", y="certified_rate", hue="run", ax=ax)
    ax.axhline(rho, color="k", ls="--", lw=1, label=rf"target $\rho={rho:g}$")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel("NODE layer (solver step)")
    ax.set_ylabel("certified rate (symlog)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return fig


def plan(p: Mapping[str, Any]) -> Plan:
    """The chapter's three runs (no regularizer, R_W, R_J) for its parameters ``p``; nothing is evaluated."""
    runs = training_runs(p["profile"], p["dataset"], p["rho"], p["seed"], p["device"], p["epochs"])
    return Plan("02_training", tuple(runs.values()), None)
