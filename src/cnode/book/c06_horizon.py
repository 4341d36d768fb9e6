"""Book chapter 6: the horizon T as an axis, and where robustness comes from.

Runs come from the chapter's plan (``plan`` below); evaluations and mechanism measurements are
read from the store (computed there first for the inline profiles). Everything the chapter prints or plots is
a frame built here; ``decide`` applies the decision rule the chapter states before its numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cnode.book import verdicts
from cnode.book.style import gain_panels, legend_below
from cnode.book.tables import DATASET_NAMES, accuracy, columns, mean_sd, model_label
from cnode.core import checks
from cnode.core.config import REGULARIZERS, RunConfig
from cnode.core.lipschitz import euler_limit
from cnode.runs import store
from cnode.runs.plans import Plan, checked_seeds

#: the accuracy columns of ``frame``: column -> (kind, level) of the evaluation rows
ACCURACIES = columns({"clean": "clean", "gauss 0.2": "g2", "gauss 0.3": "g3", "PGD 0.05": "pgd05", "PGD 0.1": "pgd1"})


def collect(plan: Plan) -> list[tuple[RunConfig, dict[str, Any], dict[str, Any]]]:
    """(config, evaluation, mechanism measurements) of every run of the plan, in plan order."""
    out = []
    for cfg in plan.runs:
        run = store.load_or_train(cfg)
        mech = {**store.load_or_measure(run, plan.mechanism), "euler_h_limit": euler_limit(run.model)}
        out.append((cfg, store.load_or_evaluate(run, plan.suite), mech))
    return out


def frame(collected: list[tuple[RunConfig, dict[str, Any], dict[str, Any]]], default_steps: int) -> pd.DataFrame:
    """One row per run: dataset, T, N, h, model, seed, the ``ACCURACIES``, and the mechanism measures with their
    predictions (medians over the images for measured gains)."""
    rows = []
    for cfg, ev, mech in collected:
        row: dict[str, Any] = {"dataset": cfg.dataset, "T": cfg.T, "N": cfg.steps, "h": cfg.h,
                               "model": model_label(cfg, default_steps=default_steps), "seed": cfg.seed}
        row.update({name: accuracy(ev, *where, default=float("nan")) for name, where in ACCURACIES.items()})
        row.update({
            "certified rate (min)": min(mech["certified_rate"]), "exp(-rho T)": mech["exp_rho_T"],
            # no certified rate at some step: no prediction (exp of a negative rate sum is not a bound on anything)
            "exp(-h sum rate)": mech["exp_certified"] if min(mech["certified_rate"]) > 0 else float("nan"),
            "Euler bound": mech["flow_bound"], "Euler h limit": mech["euler_h_limit"],
            "Euler map contracts": cfg.h < mech["euler_h_limit"],
            "lambda_max": mech["lambda_max"], "exp(h sum lambda)": mech["exp_lambda"],
            "flow gain (Gauss)": mech["gaussian"]["flow"]["median"], "flow gain (PGD)": mech["pgd"]["flow"]["median"],
            "flow gain (PGD) q90": mech["pgd"]["flow"]["q90"],
            "input gain (PGD)": mech["pgd"]["input"]["median"], "head gain (PGD)": mech["pgd"]["head"]["median"],
            "total gain (PGD)": mech["pgd"]["total"]["median"], "input bound": mech["input_bound"],
            "head bound": mech["head_bound"], "dense checks": mech["dense_checks"],
        })
        rows.append(row)
    return pd.DataFrame(rows)


def mean_sd_frame(data: pd.DataFrame, columns: list[str], fmt: str = ".3f") -> pd.DataFrame:
    """'mean ± sd' over seeds of ``columns`` per (dataset, T, model), each number in format ``fmt`` (".3g" for
    quantities that span orders of magnitude); rows by dataset and T, models in plan order within."""
    keys = ["dataset", "T", "model"]
    grouped = data.groupby(keys, sort=False)[columns]
    mean, sd = grouped.agg(lambda x: x.mean(skipna=False)), grouped.std(ddof=1).fillna(0.0)  # one NaN seed: none
    cells = {c: [mean_sd(a, b, fmt) for a, b in zip(mean[c], sd[c], strict=True)] for c in columns}
    return pd.DataFrame(cells, index=mean.index).sort_index(level=[0, 1], sort_remaining=False)


def euler_frame(data: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, T and model: the step size h, the largest h at which every Euler step contracts (mean over
    seeds; 0 without a certified rate) and in how many seeds the model's own Euler map contracts."""
    grouped = data.groupby(["dataset", "T", "model"], sort=False)
    return pd.DataFrame({"h": grouped["h"].first(), "h limit (mean)": grouped["Euler h limit"].mean(),
                         "Euler map contracts": [f"{int(v.sum())} of {len(v)} seeds"
                                                 for _, v in grouped["Euler map contracts"]]})


def paired_vs_vanilla(collected: list[tuple[RunConfig, dict[str, Any], dict[str, Any]]], default_steps: int,
                      columns: tuple[str, ...] = ("clean", "gauss 0.2", "PGD 0.05", "PGD 0.1")) -> pd.DataFrame:
    """Per dataset, T, model other than vanilla and accuracy column: the declared comparison with the vanilla CNODE
    of the same dataset and T, by the book's seed-level rule (``verdicts``; Holm over the table of one dataset).
    Columns dataset, T, model, accuracy, diff, lo, hi (seed-level), image lo, image hi, verdict."""
    groups: dict[tuple[tuple[str, float], str], dict[int, dict[str, Any]]] = {}
    for cfg, ev, _ in collected:
        groups.setdefault(((cfg.dataset, cfg.T), model_label(cfg, default_steps=default_steps)), {})[cfg.seed] = ev
    rows = []
    for (where, model), by_seed in groups.items():
        base = groups.get((where, "vanilla"))
        if model == "vanilla" or base is None:
            continue
        for column in columns:
            found = verdicts.compare(by_seed, base, *ACCURACIES[column])
            if found is not None:
                rows.append({"dataset": where[0], "T": where[1], "model": model, "accuracy": column, **found})
    frame = pd.DataFrame(rows)
    return verdicts.with_verdicts(frame, ["dataset"]) if len(frame) else frame


def decide(data: pd.DataFrame, compare: pd.DataFrame, eps_column: str = "PGD 0.05") -> pd.DataFrame:
    """The chapter's decision rule per dataset, T and model R other than the vanilla V (same T; the regularized
    models, and the weight-decay ablation that tests the rival explanation):
    (i) R is more robust (paired verdict "higher" at ``eps_column``); (ii) R's flow shrinks its own PGD
    perturbation more than V's (median flow gains, means over seeds); (iii) the flow accounts for at least half of
    the drop in output change: ``log(flow_R / flow_V) <= 0.5 log(total_R / total_V)`` with the latter < 0.
    Answer: 'nothing to explain' without (i); 'contraction explains it' with all three; else 'not contraction'."""
    gains = ["input gain (PGD)", "flow gain (PGD)", "head gain (PGD)", "total gain (PGD)"]
    means = data.groupby(["dataset", "T", "model"], sort=False)[gains].mean()
    rows = []
    for (dataset, T, model), m in means.iterrows():
        if model == "vanilla" or (dataset, T, "vanilla") not in means.index:
            continue
        v = means.loc[(dataset, T, "vanilla")]
        hit = compare[(compare["dataset"] == dataset) & (compare["T"] == T) & (compare["model"] == model)
                      & (compare["accuracy"] == eps_column)]
        robust = not hit.empty and hit["verdict"].iloc[0] == "higher"
        flow_ratio = m["flow gain (PGD)"] / v["flow gain (PGD)"]
        total_ratio = m["total gain (PGD)"] / v["total gain (PGD)"]
        shrinks = flow_ratio < 1
        share = np.log(flow_ratio) / np.log(total_ratio) if total_ratio < 1 else float("nan")
        accounts = bool(total_ratio < 1 and np.log(flow_ratio) <= 0.5 * np.log(total_ratio))
        answer = ("nothing to explain" if not robust else
                  "contraction explains it" if shrinks and accounts else "not contraction")
        rows.append({"dataset": dataset, "T": T, "model": model, "(i) more robust": robust,
                     "input gain R / V": m["input gain (PGD)"] / v["input gain (PGD)"],
                     "flow gain R / V": flow_ratio, "head gain R / V": m["head gain (PGD)"] / v["head gain (PGD)"],
                     "total gain R / V": total_ratio, "flow share of the drop": share,
                     "(ii) flow shrinks more": bool(shrinks), "(iii) flow accounts": accounts, "answer": answer})
    return pd.DataFrame(rows)


def decision_display(decision: pd.DataFrame) -> pd.DataFrame:
    """``decide``'s frame as the chapter shows it: indexed by (dataset, T, model), short headers (gains as
    regularized / vanilla, "R/V"), yes/no for the three tests; the input and head gains are left to the gains'
    own table."""
    short = {"(i) more robust": "(i) robust", "input gain R / V": "input R/V", "flow gain R / V": "flow R/V",
             "total gain R / V": "total R/V", "flow share of the drop": "flow share",
             "(ii) flow shrinks more": "(ii) shrinks", "(iii) flow accounts": "(iii) accounts"}
    shown = decision.drop(columns=["input gain R / V", "head gain R / V"]).rename(columns=short)
    shown = shown.set_index(["dataset", "T", "model"])
    tests = [c for c in shown.columns if c.startswith("(")]
    shown[tests] = shown[tests].map(lambda v: "yes" if v else "no")
    return shown


def answer_lines(decision: pd.DataFrame, compare: pd.DataFrame, eps_column: str) -> str:
    """One markdown bullet per row of ``decide``: the answer with its numbers (paired difference at
    ``eps_column`` with its interval, flow and total gain ratios)."""
    lines = []
    for row in decision.to_dict("records"):
        hit = compare[(compare["dataset"] == row["dataset"]) & (compare["T"] == row["T"])
                      & (compare["model"] == row["model"]) & (compare["accuracy"] == eps_column)].iloc[0]
        name = DATASET_NAMES.get(row["dataset"], row["dataset"])
        lines.append(f"- **{name}, T = {row['T']:g}, {row['model']}**: {row['answer']}. {eps_column} "
                     f"accuracy {hit['diff']:+.3f} [{hit['lo']:+.3f}, {hit['hi']:+.3f}] against vanilla "
                     f"({verdicts.verdict_text(hit, 'Holm p')}); flow gain {row['flow gain R / V']:.2f}x and "
                     f"total gain {row['total gain R / V']:.2f}x vanilla's.")
    return "\n".join(lines) + "\n"


def gain_means(decision: pd.DataFrame) -> dict[float, dict[str, float]]:
    """Per horizon, the geometric means over the regularized models (the weight-decay ablation left out) of the
    gains of the input layer, the flow, the head and the whole network relative to vanilla's."""
    part = decision[~decision["model"].str.endswith("+ wd")]
    return {float(T): {name: float(np.exp(np.log(g[f"{name} gain R / V"]).mean()))
                       for name in ("input", "flow", "head", "total")} for T, g in part.groupby("T", sort=True)}


def rivals(decision: pd.DataFrame, compare: pd.DataFrame, eps_column: str) -> list[dict[str, Any]]:
    """Per (dataset, horizon) of the weight-decay ablation: its mean gain over vanilla at ``eps_column`` and in
    clean accuracy, against the best regularized model's of the same dataset and horizon (``best``: None where
    there is none), and its flow and total gains."""
    gains = compare[compare["accuracy"] == eps_column].set_index(["dataset", "T", "model"])["diff"]
    clean = compare[compare["accuracy"] == "clean"].set_index(["dataset", "T", "model"])["diff"]
    out = []
    for row in decision[decision["model"].str.endswith("+ wd")].to_dict("records"):
        key = (row["dataset"], row["T"])
        others = {m: d for (ds, t, m), d in gains.items() if (ds, t) == key and m != "vanilla"
                  and not m.endswith("+ wd")}
        best = max(others, key=others.get) if others else None
        out.append({"dataset": row["dataset"], "T": row["T"], "model": row["model"], "best": best,
                    "gain": gains[(*key, row["model"])], "best_gain": others[best] if best else float("nan"),
                    "clean": clean[(*key, row["model"])], "best_clean": clean[(*key, best)] if best else float("nan"),
                    "flow": row["flow gain R / V"], "total": row["total gain R / V"],
                    "beats": bool(best and gains[(*key, row["model"])] > others[best])})
    return out


def findings(decision: pd.DataFrame, compare: pd.DataFrame, eps_column: str, T: float) -> dict[str, str]:
    """Two sentences for the book's intro, from the measurements at horizon ``T``: whether the flow carries the
    robustness (its gain relative to vanilla's below 1, with the input layer's and the total's), and whether
    weight decay alone buys more ``eps_column`` robustness than the best regularized model."""
    ratios = gain_means(decision).get(float(T))
    out = {}
    if ratios:
        carries = "contributes to" if ratios["flow"] < 1 else "does not carry"
        out["flow"] = (f"At T = {T:g} the flow {carries} the robustness: the regularized models' flow passes on "
                       f"{ratios['flow']:.2f} times as much of a worst-case perturbation as the vanilla CNODE's, "
                       f"their input layer {ratios['input']:.2f} times, the whole network {ratios['total']:.2f} times")
    found = [r for r in rivals(decision, compare, eps_column) if r["T"] == T and r["best"]]
    if found:
        beats = sum(r["beats"] for r in found)
        names = "; ".join(f"{DATASET_NAMES.get(r['dataset'], r['dataset'])} {r['gain']:+.3f} against "
                          f"{r['best_gain']:+.3f}, its clean accuracy {r['clean']:+.3f}" for r in found)
        out["rival"] = (f"At T = {T:g} a vanilla CNODE trained with weight decay gains more {eps_column} accuracy "
                        f"over the vanilla CNODE than the best regularized model in {beats} of {len(found)} datasets "
                        f"({names})")
    return out


def summary_lines(decision: pd.DataFrame, compare: pd.DataFrame, eps_column: str) -> str:
    """Per horizon, the rule's answers counted over the regularized models, with the gain ratios of the three
    parts and the total (``gain_means``): where the drop in output change comes from, measured whatever the
    verdicts; then the rival explanation (``rivals``). One markdown bullet each."""
    lines = []
    means = gain_means(decision)
    for T, part in decision[~decision["model"].str.endswith("+ wd")].groupby("T", sort=True):
        counts = part["answer"].value_counts()
        said = ", ".join(f"{counts.get(a, 0)} {a}" for a in ("contraction explains it", "not contraction",
                                                              "nothing to explain"))
        ratios = means[float(T)]
        flow = ("passes on less of the perturbation than vanilla's flow" if ratios["flow"] < 1 else
                "passes on more of the perturbation than vanilla's flow, so the flow does not carry the robustness")
        lines.append(f"- **T = {T:g}**, regularized models ({len(part)}): {said}. Measured on every one of them "
                     f"(geometric means of the gains relative to vanilla's): input layer {ratios['input']:.2f}x, "
                     f"flow {ratios['flow']:.2f}x, head {ratios['head']:.2f}x, total {ratios['total']:.2f}x; "
                     f"their flow {flow}.")
    found = rivals(decision, compare, eps_column)
    for r in found:
        than = (f", against {r['best_gain']:+.3f} for the best regularized model ({r['best']}); clean accuracy "
                f"{r['clean']:+.3f} against {r['best_clean']:+.3f}" if r["best"] else "")
        lines.append(f"- **Rival explanation, {DATASET_NAMES.get(r['dataset'], r['dataset'])}, T = {r['T']:g}**: "
                     f"the vanilla CNODE with weight decay gains {r['gain']:+.3f} in {eps_column} accuracy over "
                     f"vanilla{than}; its flow gain is {r['flow']:.2f}x and its total gain {r['total']:.2f}x "
                     f"vanilla's.")
    if found:
        lines.append(f"- Weight decay alone gains more than the best regularized model in "
                     f"{sum(r['beats'] for r in found)} of {len(found)} (dataset, horizon) pairs (mean differences, "
                     f"at a lower clean accuracy): there, smaller weights buy more {eps_column} robustness than the "
                     f"contraction-promoting regularizers do.")
    return "\n".join(lines) + "\n"


def dense_frame(data: pd.DataFrame) -> pd.DataFrame:
    """The dense re-checks of the Lanczos ``lambda_max`` stored with the measurements: one row per check, with
    the relative error (Lanczos never exceeds the true value)."""
    rows = [{"dataset": r["dataset"], "T": r["T"], "model": r["model"], "seed": r["seed"], "step": c["step"] + 1,
             "Lanczos": c["lanczos"], "dense": c["dense"],
             "relative error": abs(c["lanczos"] - c["dense"]) / max(abs(c["dense"]), 1e-12)}
            for r in data.to_dict("records") for c in r["dense checks"]]
    return pd.DataFrame(rows)


def horizon_runs(profile: str, datasets: list[str], seeds: list[int], horizons: list[float], rho: float,
                 fine_T: float, fine_steps: int, fine_dataset: str, fine_regularizer: str, weight_decay: float,
                 device: str = "auto") -> dict[str, list[RunConfig]]:
    """Chapter 6: the horizon T as an axis, in the order a sweep should train them.

    ``main``: vanilla, weight- and Jacobian-regularized CNODEs (N of the profile) at every T, dataset and seed;
    ``fine``: one configuration at ``fine_T`` with ``fine_steps`` steps, to separate T from h = T / N;
    ``decay``: the vanilla CNODE with ``weight_decay`` at every T, dataset and seed (the rival explanation:
    smaller weights, not contraction).
    """
    checks.positive("rho", rho)
    checks.positive("weight_decay", weight_decay)
    checks.positive_int("fine_steps", fine_steps)
    checks.one_of("fine_regularizer", fine_regularizer, REGULARIZERS)
    if not horizons:
        raise ValueError("horizons must be a non-empty list of positive numbers, got []")
    for T in horizons:
        checks.positive("T", T)
    main, decay = [], []
    for T in horizons:
        for dataset in datasets:
            for seed in checked_seeds(seeds):
                common = dict(dataset=dataset, seed=seed, device=device, T=T)
                main.append(RunConfig.from_profile(profile, **common))
                main += [RunConfig.from_profile(profile, regularizer=reg, rho=rho, **common)
                         for reg in ("weight", "jacobian")]
                decay.append(RunConfig.from_profile(profile, weight_decay=weight_decay, **common))
    fine = [RunConfig.from_profile(profile, dataset=fine_dataset, regularizer=fine_regularizer, rho=rho, seed=seed,
                                   T=fine_T, steps=fine_steps, device=device) for seed in checked_seeds(seeds)]
    return {"main": main, "fine": fine, "decay": decay}


def flow_gain_figure(data: pd.DataFrame) -> Figure:
    """Chapter 6: the measured median flow gain under each model's own PGD perturbation (one dot per seed)
    against three predictions: exp(-rho T) (dashed), exp(-h sum rate_k) from the certified rates (down
    triangles) and the product of the Euler step bounds (up triangles, guaranteed). Log axis; 1 is no change."""
    fig, panels = gain_panels(data)
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
    return legend_below(fig, panels[0][0], 4)


def gain_parts_figure(data: pd.DataFrame) -> Figure:
    """Chapter 6: median gains of the input layer, the flow and the head under each model's own PGD
    perturbation (means over seeds), per model. Log axis: the total gain is their product."""
    fig, panels = gain_panels(data)
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
    return legend_below(fig, panels[0][0], 3)


def plan(p: Mapping[str, Any]) -> Plan:
    """Every horizon's runs, the fine-step runs and the weight-decay rival, evaluated under ``suite`` and measured
    under ``mechanism``."""
    runs = horizon_runs(p["profile"], p["datasets"], p["seeds"], p["horizons"], p["rho"], p["fine_T"],
                        p["fine_steps"], p["fine_dataset"], p["fine_regularizer"], p["weight_decay"], p["device"])
    return Plan("06_horizon", tuple(runs["main"] + runs["fine"] + runs["decay"]), p["suite"], p["mechanism"])
