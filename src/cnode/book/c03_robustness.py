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

from cnode.book import verdicts
from cnode.book.glue import unbreakable
from cnode.book.tables import CELLS, DATASET_NAMES, KIND_NAMES, SHORT_NAMES, mean_sd, mean_sd_text, model_name
from cnode.core.config import RunConfig
from cnode.runs.plans import Plan, model_grid

#: the perturbations counted as noise and as attacks in the chapter's verdict counts
NOISE_KINDS, ATTACK_KINDS = ("gaussian", "gaussian_noclip", "salt_pepper"), ("fgsm", "pgd")


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
    table.index = pd.MultiIndex.from_tuples([(SHORT_NAMES[k], lvl) for k, lvl in table.index],
                                            names=["perturbation", "level"])
    return table


def robustness_table(frame: pd.DataFrame) -> pd.DataFrame:
    """``mean_std_table`` of every dataset, one below the other (a table that fits the page): rows (dataset,
    perturbation, level), columns models."""
    datasets = list(dict.fromkeys(frame["dataset"]))
    return pd.concat({dataset: mean_std_table(frame, dataset) for dataset in datasets}, names=["dataset"])


def mean_accuracy(frame: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Mean accuracy over seeds, rows 'perturbation level' in the book's order, columns models (for heatmaps)."""
    part = level_order(frame[(frame["dataset"] == dataset) & ((frame["level"] > 0) | (frame["kind"] == "clean"))])
    part = part.assign(row=[KIND_NAMES[k] if k == "clean" else f"{KIND_NAMES[k]} {lvl:g}"
                            for k, lvl in zip(part["kind"], part["level"], strict=True)])
    table = part.groupby(["row", "model"], sort=False)["acc"].mean().unstack("model")
    return table.loc[list(dict.fromkeys(part["row"])), list(dict.fromkeys(part["model"]))]


def groups(results: list[tuple[RunConfig, dict[str, Any]]]) -> dict[tuple[str, str], dict[int, dict[str, Any]]]:
    """The chapter's recipes: (dataset, model name) -> {seed: evaluation}."""
    found: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for cfg, result in results:
        found.setdefault((cfg.dataset, model_name(cfg)), {})[cfg.seed] = result
    return found


def declared(results: list[tuple[RunConfig, dict[str, Any]]], baseline: str,
             kinds: tuple[str, ...] | None = None) -> pd.DataFrame:
    """The comparisons declared before the numbers: each regularized CNODE (every regularizer and rate) against
    ``baseline`` ("vanilla" or "CNN"), per dataset, in every cell measured once (clean once, noise and attack
    levels above 0; only the perturbations in ``kinds`` when given); verdicts by the seed-level rule
    (``verdicts.RULE``), Holm within each dataset's table."""
    found = groups(results)
    models = list(dict.fromkeys(m for _, m in found if m.startswith(("weight", "jacobian"))))
    frame = verdicts.table(found, [(m, baseline) for m in models], family=("where", "baseline"), kinds=kinds)
    return frame.rename(columns={"where": "dataset"})


def conclusion(versus_vanilla: pd.DataFrame, versus_cnn: pd.DataFrame, frame: pd.DataFrame) -> str:
    """The chapter's conclusion from the verdicts, not from expectation: per regularized model and baseline, in how
    many noise and attack cells it is higher and lower (over both datasets); and what the strongest PGD level
    leaves of any model."""
    noise, attack = NOISE_KINDS, ATTACK_KINDS
    parts = []
    for model in dict.fromkeys(versus_vanilla["model"]):
        said = []
        for name, compare in (("the vanilla CNODE", versus_vanilla), ("the CNN", versus_cnn)):
            part = compare[compare["model"] == model]
            (nh, nl, nt), (ah, al, at) = verdicts.counts(part, noise), verdicts.counts(part, attack)
            said.append(f"against {name} higher in {nh} and lower in {nl} of {nt} noise cells and higher in {ah} "
                        f"and lower in {al} of {at} attack cells")
        parts.append(f"The {model} CNODE is {'; '.join(said)}")
    pgd = frame[frame["kind"] == "pgd"]
    strongest = pgd["level"].max()
    best = pgd[np.isclose(pgd["level"], strongest)].groupby(["dataset", "model"])["acc"].mean()
    (dataset, model), acc = best.idxmax(), best.max()
    left = ("no model keeps any accuracy on average (all below 0.0005)" if acc < 5e-4 else
            f"the most robust model, {model} on {DATASET_NAMES.get(dataset, dataset)}, keeps {acc:.3f} on average")
    return f"{'. '.join(parts)} (over the datasets). At the strongest attack (PGD, eps = {strongest:g}) {left}."


def share_words(count: int, total: int) -> str:
    """'none', 'fewer than half', 'half', 'most' or 'all' of ``total``: a verdict count in words."""
    if count == 0:
        return "none"
    if count == total:
        return "all"
    return "fewer than half" if 2 * count < total else "half" if 2 * count == total else "most"


def finding(versus: pd.DataFrame, baseline: str) -> str:
    """The chapter's finding in one sentence, from the verdicts: in how many of the declared comparisons with
    ``baseline`` (noise and attack cells, both regularizers, both datasets) the regularized CNODEs are higher."""
    (nh, _, nt), (ah, _, at) = verdicts.counts(versus, NOISE_KINDS), verdicts.counts(versus, ATTACK_KINDS)
    return (f"Against {baseline}, the regularized CNODEs are more robust in {share_words(nh + ah, nt + at)} of the "
            f"declared comparisons: higher in {nh} of {nt} under noise and in {ah} of {at} under attack, once the "
            f"seed-to-seed variance of training is counted")


def change_cells(label: str, frame: pd.DataFrame, versus_vanilla: pd.DataFrame, versus_cnn: pd.DataFrame,
                 certificates: pd.DataFrame) -> dict[str, str]:
    """The intro's "what changed" cells of one profile (``label``: "cpu" or "paper"), per dataset: clean accuracy
    of vanilla, CNN and the regularized CNODEs; per regularized model, its verdict counts against the vanilla
    CNODE and the CNN over noise and attack cells; the weight regularizer's final value and certified channels.
    Keys ``chg_<label>_<dataset>_<clean | vanilla | cnn | rw>``."""
    noise, attack = ("gaussian", "gaussian_noclip", "salt_pepper"), ("fgsm", "pgd")
    out = {}
    clean = frame[frame["kind"] == "clean"].groupby(["dataset", "model"])["acc"].mean()
    for dataset in frame["dataset"].unique():
        models = sorted(clean[dataset].index, key=lambda m: (m != "vanilla", m != "CNN", m))
        out[f"chg_{label}_{dataset}_clean"] = ", ".join(f"{m} {clean[dataset][m]:.3f}" for m in models)
        for name, compare in (("vanilla", versus_vanilla), ("cnn", versus_cnn)):
            said = []
            for model, part in compare[compare["dataset"] == dataset].groupby("model", sort=False):
                (nh, nl, nt), (ah, al, at) = verdicts.counts(part, noise), verdicts.counts(part, attack)
                said.append(f"{model.split()[0]}: noise higher {nh}, lower {nl} of {nt}; attacks higher {ah}, "
                            f"lower {al} of {at}")
            out[f"chg_{label}_{dataset}_{name}"] = "; ".join(said)
        weight = certificates[(certificates["dataset"] == dataset) & (certificates["regularizer"] == "weight")]
        out[f"chg_{label}_{dataset}_rw"] = (f"R_W {weight['R_W'].mean():.3g}, certified rate "
                                            f"{weight['certified rate'].mean():.3g}")
    return out


def comparison_display(compare: pd.DataFrame, image: bool = True) -> pd.DataFrame:
    """``declared``'s frame for the page: indexed by dataset, perturbation (book names, with the level) and model,
    rows in the book's order; the baseline's and the model's accuracy ('0.964 → 0.972'), the difference with its
    seed-level interval, the per-image interval, the verdict with Holm's adjusted p-value; models named without
    their rate when they share one (the caption gives it). ``image=False`` leaves the per-image interval out (the
    narrower tables folded under the main one, which shows it)."""
    ordered = pd.concat([level_order(part) for _, part in compare.groupby("dataset", sort=False)])
    perturbation = [SHORT_NAMES[k] if k == "clean" else f"{SHORT_NAMES[k]} {lvl:g}"
                    for k, lvl in zip(ordered["kind"], ordered["level"], strict=True)]
    base = ordered["baseline"].iloc[0]
    rates = ordered["model"].str.extract(r"( rho=\S+)$")[0]
    models = ordered["model"].str.replace(r" rho=\S+$", "", regex=True) if rates.nunique() == 1 else ordered["model"]
    shown = pd.DataFrame({
        "dataset": [DATASET_NAMES.get(d, d) for d in ordered["dataset"]], "perturbation": perturbation,
        "model": models,
        f"{base} → model": [unbreakable(f"{b:.3f} → {a:.3f}")
                            for b, a in zip(ordered["baseline acc"], ordered["acc"], strict=True)],
        "difference [seed 95 %]": [verdicts.interval_text(r) for _, r in ordered.iterrows()],
        "per-image 95 %": [f"[{lo:+.3f}, {hi:+.3f}]" if np.isfinite(lo) else "n/a"
                           for lo, hi in zip(ordered["image lo"], ordered["image hi"], strict=True)],
        "verdict (Holm p)": [verdicts.verdict_text(r) for _, r in ordered.iterrows()]})
    if not image:
        shown = shown.drop(columns="per-image 95 %")
    return shown.set_index(["dataset", "perturbation", "model"])


def target_table(targets: list[tuple[RunConfig, dict[str, Any]]]) -> pd.DataFrame:
    """The Jacobian regularizer against its own target (``core.target``), per dataset and model: the share of
    (test image, step) pairs with lambda_max <= -rho (accurate Lanczos after the dense re-checks' largest
    underestimate, and by the estimator the run was trained with), the worst and the median lambda_max (means
    ± sd over seeds), the dense re-checks that disagreed with Lanczos about the target, and in how many seeds the
    target is met."""
    rows = [{"dataset": DATASET_NAMES.get(cfg.dataset, cfg.dataset), "model": model_name(cfg), "share": t["share"],
             "training": t["training_share"], "under": t["underestimate"], "worst": t["lambda_max"],
             "median": t["lambda_median"], "disagree": t["dense_disagree"], "checks": len(t["dense"]),
             "met": t["met"]} for cfg, t in targets]
    frame = pd.DataFrame(rows)
    grouped = frame.groupby(["dataset", "model"], sort=False)
    out = pd.DataFrame({name: grouped[column].agg(lambda v, fmt=fmt: mean_sd(v.mean(), v.std(ddof=1), fmt))
                        for name, column, fmt in (("at target", "share", ".3f"),
                                                  ("training's estimate", "training", ".3f"),
                                                  ("worst λmax", "worst", ".2f"),
                                                  ("median λmax", "median", ".2f"))})
    out["dense disagree"] = [f"{int(d.sum())} of {int(c.sum())}" for (_, d), (_, c)
                             in zip(grouped["disagree"], grouped["checks"], strict=True)]
    out["met"] = [f"{int(v.sum())} of {len(v)} seeds" for _, v in grouped["met"]]
    return out


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
    levels, model keys ``vanilla``, ``cnn``, ``weight``, ``jacobian`` (the first rho of each regularizer); on one
    line wherever the intro's table shows them (``glue.unbreakable``)."""
    out: dict[str, str] = {}
    for (dataset, kind, level, regularizer, model), part in frame.groupby(
            ["dataset", "kind", "level", "regularizer", "model"], sort=False):
        key = SUMMARY_KEYS.get((kind, level))
        model_key = "cnn" if model == "CNN" else "vanilla" if regularizer == "none" else regularizer
        name = f"sum_{dataset}_{key}_{model_key}"
        if key is None or name in out:
            continue
        out[name] = unbreakable(mean_sd_text(part["acc"]))
    return out


#: The cells the robustness chapter discusses in prose: glue-name suffix -> (kind, level).
HEADLINES = {key: CELLS[key] for key in ("clean", "g2", "g3", "fgsm1", "pgd05", "pgd1")}


def headlines(compare: pd.DataFrame) -> dict[str, float | str]:
    """Flat ``{"<dataset>_<suffix>_<weight | jacobian>_<diff | verdict>": value}`` for the HEADLINES cells present
    in ``declared``'s frame (first rate of each regularizer)."""
    out: dict[str, float | str] = {}
    for row in compare.to_dict("records"):
        suffix = next((k for k, (kind, level) in HEADLINES.items()
                       if kind == row["kind"] and np.isclose(level, row["level"])), None)
        name = f"{row['dataset']}_{suffix}_{row['model'].split()[0]}"
        if suffix is None or f"{name}_diff" in out:
            continue
        out[f"{name}_diff"] = verdicts.interval_text(row)
        out[f"{name}_verdict"] = row["verdict"]
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
