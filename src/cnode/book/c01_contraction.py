"""Chapter 1, the contraction conditions checked numerically: the figures of its experiments (``cnode.core.theory``)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from cnode.book.style import shown


def conv_matrix_figure(matrix: np.ndarray, channels: int, height: int, width: int) -> Figure:
    """Heatmap of a conv matrix with lines between channel blocks (chapter 1, figure 1)."""
    matrix = shown(matrix)
    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    lim = float(np.abs(matrix).max())
    im = ax.imshow(matrix, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    block = height * width
    for k in range(1, channels):
        ax.axhline(k * block - 0.5, color="k", lw=0.8)
        ax.axvline(k * block - 0.5, color="k", lw=0.8)
    ax.set_xlabel("input index j of vec(x)")
    ax.set_ylabel("output index i")
    ax.grid(False)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def conservativeness_figure(frame: pd.DataFrame) -> Figure:
    """Certified rate (x) against the worst-case rate found over D (y); the theorem puts every point above y=x."""
    frame = shown(frame)
    fig, ax = plt.subplots()
    sns.scatterplot(data=frame, x="certified", y="found", s=18, ax=ax, edgecolor="none")
    lo = float(min(frame["certified"].min(), frame["found"].min()))
    hi = float(max(frame["certified"].max(), frame["found"].max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="found = certified")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel(r"certified rate $-\max_i m_i/2$")
    ax.set_ylabel(r"rate found: $-\max_D \mu_2(DK)$ (vertex ascent)")
    ax.legend(loc="upper left")
    return fig


def trajectory_figure(frame: pd.DataFrame, rho: float) -> Figure:
    """Distance between two solutions relative to its start, against ``exp(-rho t)`` (log scale)."""
    frame = shown(frame)
    fig, ax = plt.subplots()
    ax.semilogy(frame["t"], frame["ratio"], marker="o", ms=3, label=r"$|x(t)-y(t)| / |x(0)-y(0)|$")
    ax.semilogy(frame["t"], frame["bound"], "k--", label=rf"certified bound $e^{{-\rho t}}$, $\rho={rho:g}$")
    ax.set_xlabel("time t")
    ax.set_ylabel("relative distance")
    ax.legend()
    return fig


def euler_rate_figure(frame: pd.DataFrame, rho: float) -> Figure:
    """Contraction rate per unit time kept by one forward Euler step, against the step size h."""
    frame = shown(frame)
    fig, ax = plt.subplots()
    ax.semilogx(frame["h"], frame["rate"], marker="o", ms=3, label=r"worst step found: $-\log\|I+hDK\|_2 / h$")
    ax.semilogx(frame["h"], frame["bound_rate"], marker="s", ms=3,
                label=r"bound: $-\log(1-2h\rho+h^2L^2)/(2h)$")
    ax.axhline(rho, color="k", ls="--", lw=1, label=rf"flow's certified rate $\rho={rho:g}$")
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("Euler step size h")
    ax.set_ylabel("rate per unit time")
    ax.set_ylim(bottom=max(-40.0, float(frame[["rate", "bound_rate"]].min().min()) - 1))
    ax.legend(fontsize="small")
    return fig
