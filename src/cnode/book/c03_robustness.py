"""Chapter 3, robustness to noise and attacks: its runs, the accuracy frames, the declared comparisons and
their verdicts, the summary cells the introduction pastes, and the figures."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from cnode.book.tables import CELLS, KIND_NAMES, mean_sd, mean_sd_text, model_name, robustness_frame
from cnode.core.config import RunConfig
from cnode.runs.plans import Plan, model_grid


def robustness_runs(profile: str, datasets: list[str], seeds: list[int], rhos: list[float],
                    device: str = "auto") -> list[RunConfig]:
    """Chapter 3: per dataset and seed, the vanilla CNODE, the CNN baseline, and both regularizers per rho."""
    return model_grid(profile, datasets, seeds, rhos, device, with_cnn=True)


def level_order(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``frame`` (columns kind, level) in the book's order: perturbations as in KIND_NAMES, levels
    ascending as numbers (never as strings: 0.05 before 0.1)."""
    rank = {kind: i for i, kind in enumerate(KIND_NAMES)}
    return frame.assign(_rank=frame["kind"].map(rank)).sort_values(["_rank", "level"], kind="stable").drop(
        columns="_rank")


def mean_std_table(frame: pd.DataFrame, dataset: str, levels_zero: bool = False) -> pd.DataFrame:
    """Rows (perturbation, level) in numeric order, columns models; cells 'mean ± std' accuracy over seeds
    (std: ddof 1)."""
    part = frame[(frame["dataset"] == dataset) & ((frame["level"] > 0) | (frame["kind"] == "clean") | levels_zero)]
    stats = part.groupby(["kind", "level", "model"], sort=False)["acc"].agg(["mean", "std", "count"])
    cells = stats.apply(lambda r: mean_sd(r["mean"], r["std"]), axis=1)
    table = cells.unstack("model")
    order = level_order(pd.DataFrame(list(table.index), columns=["kind", "level"]))
    table = table.loc[[tuple(row) for row in order.itertuples(index=False)], list(dict.fromkeys(part["model"]))]
    table.index = pd.MultiIndex.from_tuples([(KIND_NAMES[k], lvl) for k, lvl in table.index],
                                            names=["perturbation", "level"])
    return table


def robustness_table(frame: pd.DataFrame) -> pd.DataFrame:
    """``mean_std_table`` of every dataset side by side: rows (perturbation, level), columns (dataset, model)."""
    datasets = list(dict.fromkeys(frame["dataset"]))
    return pd.concat({dataset: mean_std_table(frame, dataset) for dataset in datasets}, axis=1)


def mean_accuracy(frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Mean accuracy over seeds, rows 'perturbation level' in the book's order, columns models (for heatmaps)."""
    part = level_order(frame[(frame["dataset"] == dataset) & ((frame["level"] > 0) | (frame["kind"] == "clean"))])
    part = part.assign(row=[KIND_NAMES[k] if k == "clean" else f"{KIND_NAMES[k]} {lvl:g}"
                            for k, lvl in zip(part["kind"], part["level"], strict=True)])
    table = part.groupby(["row", "model"], sort=False)["acc"].mean().unstack("model")
    return table.loc[list(dict.fromkeys(part["row"])), list(dict.fromkeys(part["model"]))]


def comparison(frame: pd.DataFrame, baseline: str = "vanilla") -> pd.DataFrame:
    """Per dataset, perturbation and level: the baseline's mean accuracy, the best contractive model's, their
    difference, the larger of the two seed standard deviations, and a verdict: 'higher' / 'lower' when the
    difference exceeds two standard deviations, else 'within seed spread'."""
    stats = frame.groupby(["dataset", "kind", "level", "model"])["acc"].agg(["mean", "std"]).reset_index()
    rows = []
    for (dataset, kind, level), group in stats.groupby(["dataset", "kind", "level"], sort=False):
        base = group[group["model"] == baseline]
        contractive = group[group["model"].str.startswith(("weight", "jacobian"))]
        if base.empty or contractive.empty:
            continue
        best = contractive.loc[contractive["mean"].idxmax()]
        spread = float(np.nanmax([base["std"].iloc[0], best["std"], 0.0]))
        diff = float(best["mean"] - base["mean"].iloc[0])
        verdict = "higher" if diff > 2 * spread else "lower" if diff < -2 * spread else "within seed spread"
        rows.append({"dataset": dataset, "kind": kind, "level": level, baseline: float(base["mean"].iloc[0]),
                     "best contractive": best["model"], "its accuracy": float(best["mean"]), "difference": diff,
                     "spread": spread, "verdict": verdict})
    return pd.DataFrame(rows)


def outcomes(result: dict[str, Any], kind: str, level: float) -> np.ndarray | None:
    """Per-image outcomes of one evaluation row, on the images its accuracy was computed on (clean and noise: all
    ``n`` test images; attacks: the first ``n_attacked``), or None without them: a difference is computed on the
    images of the accuracies printed beside it."""
    from cnode.core.evaluate import unpack_bits

    if kind == "clean":
        bits = result.get("clean_correct")
        return None if bits is None else unpack_bits(bits, result["n"])
    row = next((r for r in result["rows"] if r["kind"] == kind and np.isclose(r["level"], level)), None)
    return None if row is None or "correct" not in row else unpack_bits(row["correct"], row["n"])


def paired_comparison(results: list[tuple[RunConfig, dict[str, Any]]], baseline: str = "vanilla") -> pd.DataFrame:
    """``comparison`` with paired per-image verdicts (``stats.paired``: the seed-averaged per-image difference
    with its 95 % interval; 'higher'/'lower' when it excludes 0 and every seed agrees, else 'within noise').
    Needs evaluations with per-image outcomes (suites with ``per_image``); the best contractive model is the one
    with the highest mean accuracy, as in ``comparison``."""
    from cnode.core import stats

    by: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for cfg, result in results:
        by.setdefault((cfg.dataset, model_name(cfg)), {})[cfg.seed] = result
    frame = robustness_frame(results)
    means = frame.groupby(["dataset", "kind", "level", "model"], sort=False)["acc"].mean()
    rows = []
    for (dataset, kind, level), part in means.groupby(level=[0, 1, 2], sort=False):
        models = part.droplevel([0, 1, 2])
        contractive = models[models.index.str.startswith(("weight", "jacobian"))]
        if baseline not in models.index or contractive.empty:
            continue
        best = contractive.idxmax()
        seeds = sorted(set(by[(dataset, best)]) & set(by[(dataset, baseline)]))
        a = [outcomes(by[(dataset, best)][s], kind, level) for s in seeds]
        b = [outcomes(by[(dataset, baseline)][s], kind, level) for s in seeds]
        if any(x is None for x in a + b):
            continue
        found = stats.paired(np.stack(a), np.stack(b))
        rows.append({"dataset": dataset, "kind": kind, "level": level, baseline: float(models[baseline]),
                     "best contractive": best, "its accuracy": float(contractive.max()), "difference": found["diff"],
                     "interval": f"[{found['lo']:+.3f}, {found['hi']:+.3f}]", "verdict": found["verdict"]})
    return pd.DataFrame(rows)


#: The comparison rules, as the chapters state them before their numbers.
RULES = {
    "paired": ("paired per-image comparison on the same test images: per image, the two models' outcomes "
               "averaged over seeds and subtracted; *higher* (or *lower*) when the 95 % interval of the mean "
               "difference (normal approximation over images, `cnode.core.stats.paired`) excludes 0 **and** "
               "every seed's own difference has the same sign, else *within noise*."),
    "spread": ("a difference counts only when it exceeds twice the larger of the two seed standard deviations; "
               "otherwise the verdict is *within seed spread* (this suite stores no per-image outcomes)."),
}


def compare(results: list[tuple[RunConfig, dict[str, Any]]], baseline: str, per_image: bool) -> pd.DataFrame:
    """The best contractive model against ``baseline`` by the rule the suite allows: paired per-image verdicts
    (``paired_comparison``) where the suite stored per-image outcomes, else the seed-spread rule (``comparison``)."""
    return paired_comparison(results, baseline) if per_image else comparison(robustness_frame(results), baseline)


def verdict_counts(compare: pd.DataFrame, kinds: tuple[str, ...]) -> tuple[int, int, int]:
    """(higher, lower, total) over the rows of ``compare`` whose perturbation is in ``kinds`` (level > 0)."""
    rows = compare[compare["kind"].isin(kinds) & (compare["level"] > 0)]
    return int((rows["verdict"] == "higher").sum()), int((rows["verdict"] == "lower").sum()), len(rows)


def conclusion(versus_vanilla: pd.DataFrame, versus_cnn: pd.DataFrame, frame: pd.DataFrame) -> str:
    """The chapter's conclusion from the verdicts, not from expectation: per baseline, in how many noise and
    attack cells the best contractive model is higher and lower; and the best accuracy any model keeps at the
    strongest PGD level."""
    noise, attack = ("gaussian", "gaussian_noclip", "salt_pepper"), ("fgsm", "pgd")
    parts = []
    for name, compare in (("the vanilla CNODE", versus_vanilla), ("the CNN", versus_cnn)):
        (nh, nl, nt), (ah, al, at) = verdict_counts(compare, noise), verdict_counts(compare, attack)
        parts.append(f"against {name} it is higher in {nh} and lower in {nl} of {nt} noise cells, higher in {ah} "
                     f"and lower in {al} of {at} attack cells")
    pgd = frame[frame["kind"] == "pgd"]
    strongest = pgd["level"].max()
    best = pgd[np.isclose(pgd["level"], strongest)].groupby(["dataset", "model"])["acc"].mean()
    (dataset, model), acc = best.idxmax(), best.max()
    return (f"The best contractive model, {parts[0]}; {parts[1]}. At the strongest attack (PGD, eps = "
            f"{strongest:g}) no model keeps more than {acc:.3f} on average (the most accurate: {model} on {dataset}).")


def change_cells(label: str, frame: pd.DataFrame, versus_vanilla: pd.DataFrame, versus_cnn: pd.DataFrame,
                 certificates: pd.DataFrame) -> dict[str, str]:
    """The intro's "what changed" cells of one profile (``label``: "cpu" or "paper"), per dataset: clean accuracy
    of vanilla, CNN and the regularized CNODEs; verdict counts of the best contractive model against the vanilla
    CNODE and the CNN over noise and attack cells; the weight regularizer's final value and certified channels.
    Keys ``chg_<label>_<dataset>_<clean | vanilla | cnn | rw>``."""
    noise, attack = ("gaussian", "gaussian_noclip", "salt_pepper"), ("fgsm", "pgd")
    out = {}
    clean = frame[frame["kind"] == "clean"].groupby(["dataset", "model"])["acc"].mean()
    for dataset in frame["dataset"].unique():
        models = sorted(clean[dataset].index, key=lambda m: (m != "vanilla", m != "CNN", m))
        out[f"chg_{label}_{dataset}_clean"] = ", ".join(f"{m} {clean[dataset][m]:.3f}" for m in models)
        for name, compare in (("vanilla", versus_vanilla), ("cnn", versus_cnn)):
            part = compare[compare["dataset"] == dataset]
            (nh, nl, nt), (ah, al, at) = verdict_counts(part, noise), verdict_counts(part, attack)
            out[f"chg_{label}_{dataset}_{name}"] = (f"noise: higher {nh}, lower {nl} of {nt}; attacks: higher {ah}, "
                                                   f"lower {al} of {at}")
        weight = certificates[(certificates["dataset"] == dataset) & (certificates["regularizer"] == "weight")]
        out[f"chg_{label}_{dataset}_rw"] = (f"R_W {weight['R_W'].mean():.3g}, certified rate "
                                            f"{weight['certified rate'].mean():.3g}")
    return out


def comparison_display(compare: pd.DataFrame) -> pd.DataFrame:
    """``comparison``'s frame for the page: indexed by dataset, perturbation (book names) and level, rows in the
    book's order."""
    ordered = pd.concat([level_order(part) for _, part in compare.groupby("dataset", sort=False)])
    ordered = ordered.assign(kind=[KIND_NAMES[k] if k == "clean" else f"{KIND_NAMES[k]} {lvl:g}"
                                   for k, lvl in zip(ordered["kind"], ordered["level"], strict=True)])
    ordered = ordered.drop(columns="level").rename(columns={"kind": "perturbation"})
    if "interval" in ordered:  # paired: one column for the difference and its interval, so the table fits the page
        ordered = ordered.assign(difference=[f"{d:+.3f} {i}" for d, i in zip(ordered["difference"], ordered["interval"],
                                                                             strict=True)])
        ordered = ordered.drop(columns="interval").rename(columns={"difference": "difference [95 % interval]",
                                                                   "its accuracy": "its acc."})
    return ordered.set_index(["dataset", "perturbation"])


#: The levels the intro's summary table shows, (kind, level), with the short keys of their glue names (the intro
#: pastes ``sum_<dataset>_<level key>_<model key>``).
SUMMARY_KEYS = {cell: key for key, cell in CELLS.items()}


SUMMARY_LEVELS = list(SUMMARY_KEYS)


def summary(frame: pd.DataFrame, levels: list[tuple[str, float]] = SUMMARY_LEVELS) -> pd.DataFrame:
    """Mean accuracy over seeds at a few headline levels: rows (dataset, perturbation), columns models."""
    picked = pd.concat([frame[(frame["kind"] == k) & np.isclose(frame["level"], lvl)] for k, lvl in levels])
    picked = picked.assign(perturbation=[f"{KIND_NAMES[k]} {lvl:g}" if k != "clean" else "clean"
                                         for k, lvl in zip(picked["kind"], picked["level"], strict=True)])
    table = picked.groupby(["dataset", "perturbation", "model"], sort=False)["acc"].mean().round(3)
    return table.unstack("model")


def summary_cells(frame: pd.DataFrame) -> dict[str, str]:
    """``{"sum_<dataset>_<level key>_<model key>": "0.912 ± 0.004"}``: mean ± seed std (ddof 1) at the summary's
    levels, model keys ``vanilla``, ``cnn``, ``weight``, ``jacobian`` (the first rho of each regularizer)."""
    out: dict[str, str] = {}
    for (dataset, kind, level, regularizer, model), part in frame.groupby(
            ["dataset", "kind", "level", "regularizer", "model"], sort=False):
        key = SUMMARY_KEYS.get((kind, level))
        model_key = "cnn" if model == "CNN" else "vanilla" if regularizer == "none" else regularizer
        name = f"sum_{dataset}_{key}_{model_key}"
        if key is None or name in out:
            continue
        out[name] = mean_sd_text(part["acc"])
    return out


#: The cells the robustness chapter discusses in prose: glue-name suffix -> (kind, level).
HEADLINES = {key: CELLS[key] for key in ("clean", "g2", "g3", "fgsm1", "pgd05", "pgd1")}


def headlines(compare: pd.DataFrame) -> dict[str, float | str]:
    """Flat ``{"<dataset>_<suffix>_van" | _best | _who | _verdict: value}`` for the HEADLINES cells present."""
    out: dict[str, float | str] = {}
    for dataset in compare["dataset"].unique():
        for suffix, (kind, level) in HEADLINES.items():
            hit = compare[(compare["dataset"] == dataset) & (compare["kind"] == kind)
                          & np.isclose(compare["level"], level)]
            if hit.empty:
                continue
            row = hit.iloc[0]
            out[f"{dataset}_{suffix}_van"] = float(row["vanilla"])
            out[f"{dataset}_{suffix}_best"] = float(row["its accuracy"])
            out[f"{dataset}_{suffix}_who"] = str(row["best contractive"])
            out[f"{dataset}_{suffix}_verdict"] = str(row["verdict"])
    return out


def settings_frame(cfg: RunConfig, suite: Any, seeds: list[int]) -> pd.DataFrame:
    """The settings behind a results table, as a one-column table (for the intro's summary)."""
    n_test = suite.test_subset or 10_000
    return pd.DataFrame({"setting": {
        "training": f"{cfg.train_subset or 60_000} images, {cfg.epochs} epochs, batch {cfg.batch_size}, "
                    f"Adam lr {cfg.lr:g} (StepLR {cfg.lr_decay:g}/epoch)",
        "model": f"C = {cfg.channels}, {cfg.solver}, {cfg.steps} steps of h = {cfg.h:g} on [0, {cfg.T:g}]",
        "regularized models": f"rho = {cfg.rho:g} unless stated, gamma = {cfg.gamma:g}",
        "seeds": ", ".join(str(s) for s in seeds),
        "test images": f"first {n_test} of the test split" + (
            f" (attacks: the first {suite.attack_subset})" if getattr(suite, "attack_subset", None) else ""),
        "noise": "Gaussian std on [0, 1] pixels (clipped); salt-and-pepper: fraction of pixels",
        "attacks": f"L-inf eps on [0, 1] pixels; PGD-{suite.pgd_steps}, random start, {suite.pgd_restarts} restart(s)",
    }})


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


def plan(p: Mapping[str, Any]) -> Plan:
    """Vanilla CNODE, CNN and both regularizers per dataset, seed and rate, each evaluated under ``suite``."""
    return Plan("03_robustness", tuple(robustness_runs(p["profile"], p["datasets"], p["seeds"], p["rhos"],
                                                       p["device"])), p["suite"])
