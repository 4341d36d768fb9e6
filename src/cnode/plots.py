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
from matplotlib.ticker import MaxNLocator, NullLocator

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


def robustness_curves(frame: pd.DataFrame, kind_names: dict[str, str]) -> Figure:
    """Accuracy against perturbation level, one panel per (dataset, perturbation), mean and seed sd per model."""
    kinds = [k for k in kind_names if k != "clean" and k in set(frame["kind"])]
    datasets = list(dict.fromkeys(frame["dataset"]))
    fig, axes = plt.subplots(len(datasets), len(kinds), figsize=(3.0 * len(kinds), 2.8 * len(datasets)),
                             squeeze=False, sharey=True)
    for r, dataset in enumerate(datasets):
        for c, kind in enumerate(kinds):
            ax = axes[r][c]
            part = frame[(frame["dataset"] == dataset) & (frame["kind"] == kind)]
            sns.lineplot(data=part, x="level", y="acc", hue="model", errorbar="sd", marker="o", ms=4, ax=ax,
                         legend=(r == 0 and c == 0))
            ax.set_title(f"{dataset}: {kind_names[kind]}", fontsize="small")
            ax.set_xlabel("level")
            ax.set_ylabel("accuracy" if c == 0 else "")
            ax.set_ylim(-0.02, 1.02)
    if axes[0][0].get_legend() is not None:
        axes[0][0].legend(fontsize="x-small")
    fig.tight_layout()
    return fig


def robustness_heatmap(tables: dict[str, pd.DataFrame]) -> Figure:
    """The robustness table at a glance: one heatmap per dataset of mean accuracy (rows perturbation and level,
    columns models), every cell annotated; ``tables`` maps a dataset to ``tables.mean_accuracy``'s frame."""
    rows = max(len(t) for t in tables.values())
    fig, axes = plt.subplots(1, len(tables), figsize=(3.2 + 1.2 * sum(t.shape[1] for t in tables.values()),
                                                      1.0 + 0.24 * rows), squeeze=False)
    for i, (ax, (dataset, table)) in enumerate(zip(axes[0], tables.items(), strict=True)):
        sns.heatmap(table, vmin=0, vmax=1, cmap="viridis", annot=True, fmt=".2f", annot_kws={"fontsize": 7},
                    cbar=i == len(tables) - 1, cbar_kws={"label": "mean accuracy"}, ax=ax,
                    yticklabels=i == 0, linewidths=0.3, linecolor="white")
        ax.set_title(dataset, fontsize="small")
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.tick_params(axis="both", labelsize=7)
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def example_grid(images: dict[str, dict[str, np.ndarray]], preds: dict[str, dict[str, int]], label: int) -> Figure:
    """Rows models, columns perturbations: each model's own perturbed image, titled with its prediction."""
    models = list(images)
    kinds = list(images[models[0]])
    fig, axes = plt.subplots(len(models), len(kinds), figsize=(1.9 * len(kinds), 2.0 * len(models)), squeeze=False)
    for r, model in enumerate(models):
        for c, kind in enumerate(kinds):
            ax = axes[r][c]
            ax.imshow(np.clip(images[model][kind], 0, 1), cmap="gray", vmin=0, vmax=1)
            pred = preds[model][kind]
            ax.set_title(f"{kind}\npred {pred}", fontsize="x-small", color="tab:green" if pred == label else "tab:red")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if c == 0:
                ax.set_ylabel(model, fontsize="small")
    fig.tight_layout()
    return fig


def rho_sweep_figure(frame: pd.DataFrame, picks: list[tuple[str, float]], kind_names: dict[str, str]) -> Figure:
    """Accuracy against rho (log axis) per regularizer, mean and seed sd; the vanilla CNODE's mean dashed.

    One row per dataset, one column per (kind, level) in ``picks`` (the first is the clean accuracy)."""
    datasets = list(dict.fromkeys(frame["dataset"]))
    fig, axes = plt.subplots(len(datasets), len(picks), figsize=(3.3 * len(picks), 2.9 * len(datasets)),
                             squeeze=False)
    for r, dataset in enumerate(datasets):
        for c, (kind, level) in enumerate(picks):
            ax = axes[r][c]
            part = frame[(frame["dataset"] == dataset) & (frame["kind"] == kind) & np.isclose(frame["level"], level)]
            reg = part[part["regularizer"] != "none"]
            sns.lineplot(data=reg, x="rho", y="acc", hue="regularizer", errorbar="sd", marker="o", ms=5, ax=ax,
                         legend=(r == 0 and c == 0))
            vanilla = part[part["regularizer"] == "none"]["acc"]
            if len(vanilla):
                ax.axhline(vanilla.mean(), color="k", ls="--", lw=1, label="vanilla (mean)")
            ax.set_xscale("log")
            levels = sorted(reg["rho"].unique())
            ax.set_xticks(levels, [f"{v:g}" for v in levels])
            ax.xaxis.set_minor_locator(NullLocator())
            title = "clean" if kind == "clean" else f"{kind_names[kind]} {level:g}"
            ax.set_title(f"{dataset}: {title}", fontsize="small")
            ax.set_xlabel(r"$\rho$")
            ax.set_ylabel("accuracy" if c == 0 else "")
    axes[0][0].legend(fontsize="x-small")
    fig.tight_layout()
    return fig


def cost_figure(steps: pd.DataFrame, estimates: pd.DataFrame, default_iters: int, tolerance: float = 0.05) -> Figure:
    """Chapter 5: step cost of R_J against Lanczos products (left) and the largest relative error of the
    lambda_max estimate against the dense value per model, warm (solid) and random (dotted) start (right, log
    axis; the tolerance dashed)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 3.8))
    same = steps.index.isin(["jacobian"]) | steps.index.str.match(r"jacobian-it\d+$")
    jac = steps[same].sort_values("Lanczos products")
    left.plot(jac["Lanczos products"], jac["x vanilla"], marker="o", label="Jacobian regularizer (sampled)")
    left.axhline(1.0, color="k", lw=1, label="vanilla")
    left.axhline(steps.loc["weight", "x vanilla"], color="C2", ls=":", lw=1.5, label="weight regularizer")
    left.axvline(default_iters, color="grey", ls="--", lw=1)
    left.set_xlabel("Lanczos products per estimate")
    left.set_ylabel("step time / vanilla step")
    left.legend(fontsize="x-small")
    for i, (model, part) in enumerate(estimates.groupby("model")):
        for start, style in (("warm", "-"), ("random", ":")):
            line = part[part["start"] == start]
            right.plot(line["iters"], line["max_error"].clip(lower=1e-8), marker="o", ms=4, ls=style, color=f"C{i}",
                       label=f"{model}, {start} start")
    right.axhline(tolerance, color="k", ls="--", lw=1, label=f"{tolerance:.0%}")
    right.axvline(default_iters, color="grey", ls="--", lw=1)
    right.set_yscale("log")
    right.set_xlabel("Lanczos products per estimate")
    right.set_ylabel("max relative error of lambda_max")
    right.legend(fontsize="x-small", title="trained model", title_fontsize="x-small")
    fig.tight_layout()
    return fig


def _panels(data: pd.DataFrame) -> tuple[Figure, list[tuple[object, str, float, pd.DataFrame]]]:
    """One panel per (dataset, T) of ``data``: rows datasets, columns horizons."""
    datasets, horizons = list(dict.fromkeys(data["dataset"])), sorted(data["T"].unique())
    fig, axes = plt.subplots(len(datasets), len(horizons), figsize=(3.6 * len(horizons), 3.0 * len(datasets)),
                             squeeze=False)
    return fig, [(axes[r][c], d, T, data[(data["dataset"] == d) & (data["T"] == T)])
                 for r, d in enumerate(datasets) for c, T in enumerate(horizons)]


def _legend_below(fig: Figure, ax: object, columns: int) -> Figure:
    """One legend for the figure, from ``ax``'s entries, centred below the panels."""
    handles, labels = ax.get_legend_handles_labels()
    rows = -(-len(labels) // columns)
    fig.tight_layout(rect=(0, min(0.4, 0.06 * rows + 0.02), 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize="x-small", frameon=False)
    return fig


def flow_gain_figure(data: pd.DataFrame) -> Figure:
    """Chapter 6: the measured median flow gain under each model's own PGD perturbation (one dot per seed)
    against three predictions: exp(-rho T) (dashed), exp(-h sum rate_k) from the certified rates (down
    triangles) and the product of the Euler step bounds (up triangles, guaranteed). Log axis; 1 is no change."""
    fig, panels = _panels(data)
    for ax, dataset, T, part in panels:
        models = list(dict.fromkeys(part["model"]))
        x = {m: i for i, m in enumerate(models)}
        ax.scatter([x[m] for m in part["model"]], part["flow gain (PGD)"], s=18, color="C0", label="measured")
        means = part.groupby("model", sort=False)[["exp(-h sum rate)", "Euler bound"]].mean()
        ax.scatter([x[m] for m in means.index], means["exp(-h sum rate)"], marker="v", color="C2",
                   label="exp(-h sum rate)")
        ax.scatter([x[m] for m in means.index], means["Euler bound"], marker="^", color="C3", label="Euler bound")
        ax.axhline(part["exp(-rho T)"].iloc[0], color="k", ls="--", lw=1, label=r"exp($-\rho T$)")
        ax.axhline(1.0, color="0.6", lw=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(models)), models, rotation=30, ha="right", fontsize="x-small")
        ax.set_title(f"{dataset}, T = {T:g}", fontsize="small")
        ax.set_ylabel("flow gain")
    return _legend_below(fig, panels[0][0], 4)


def gain_parts_figure(data: pd.DataFrame) -> Figure:
    """Chapter 6: median gains of the input layer, the flow and the head under each model's own PGD
    perturbation (means over seeds), per model. Log axis: the total gain is their product."""
    fig, panels = _panels(data)
    parts = ["input gain (PGD)", "flow gain (PGD)", "head gain (PGD)"]
    for ax, dataset, T, part in panels:
        means = part.groupby("model", sort=False)[parts].mean()
        width = 0.8 / len(parts)
        for i, column in enumerate(parts):
            ax.bar(np.arange(len(means)) + (i - 1) * width, means[column], width, label=column.split(" ")[0])
        ax.set_yscale("log")
        ax.axhline(1.0, color="0.6", lw=0.8)
        ax.set_xticks(range(len(means)), list(means.index), rotation=30, ha="right", fontsize="x-small")
        ax.set_title(f"{dataset}, T = {T:g}", fontsize="small")
        ax.set_ylabel("gain")
    return _legend_below(fig, panels[0][0], 3)


def certified_figure(frame: pd.DataFrame) -> Figure:
    """Chapter 7: certified L2 accuracy (solid, from the Lipschitz bound) and empirical L2 PGD accuracy (dashed)
    against the radius on [0, 1] pixels, one colour per model, one panel per dataset; log radius axis."""
    datasets = list(dict.fromkeys(frame["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.4 * len(datasets), 3.3), squeeze=False)
    models = list(dict.fromkeys(frame["model"]))
    colors = dict(zip(models, sns.color_palette(PALETTE, len(models)), strict=True))
    for ax, dataset in zip(axes[0], datasets, strict=True):
        part = frame[frame["dataset"] == dataset]
        for (model, kind), group in part.groupby(["model", "kind"], sort=False):
            mean = group.groupby("radius")["acc"].mean()
            ax.plot(mean.index, mean.values, ls="-" if kind == "certified" else "--",
                    marker=None if kind == "certified" else "o", ms=3, color=colors[model], label=f"{model} ({kind})")
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(dataset, fontsize="small")
        ax.set_xlabel("L2 radius on [0, 1] pixels")
        ax.set_ylabel("accuracy")
    return _legend_below(fig, axes[0][0], 2)
