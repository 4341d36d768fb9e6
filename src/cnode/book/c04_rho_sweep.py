"""Chapter 4's question: does rho change training at all? The regularizers are hinges ``ReLU(g + rho)``: while a
term is active its gradient is that of ``g`` whatever rho is, so two runs that differ only in rho can follow the
same path. ``evidence`` compares the runs at the smallest and the largest rho; ``story`` turns the comparison
into the chapter's sentences, so that the prose says what these runs show, at whatever profile they were trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from cnode.book.tables import DATASET_NAMES, SHORT_NAMES, mean_sd_text
from cnode.core.config import RunConfig
from cnode.core.runtime import machine_of, same_machine
from cnode.core.stats import log_slope
from cnode.runs import store
from cnode.runs.plans import Plan, model_grid


def evidence(cfgs: list[RunConfig]) -> pd.DataFrame:
    """Does rho change training at all? Per (dataset, regularizer, seed), between the smallest and largest rho:
    the final-epoch regularizer values, their difference, the largest parameter difference of the trained models,
    and ``same machine`` (``runtime.same_machine`` of their records: "yes", "no", or "unknown" for runs stored
    before machines were recorded). Float sums are summed in another order on another machine, so a difference
    between models is evidence about rho only between runs of one machine; identical weights are identical
    anywhere. With a hinge ``ReLU(g + rho)`` whose every term stays active, the gradient does not depend on rho:
    the values differ by the rho difference (R_J) and models trained on one machine coincide."""
    rows = []
    groups: dict[tuple, dict[float, RunConfig]] = {}
    for cfg in cfgs:
        if cfg.model == "cnode" and cfg.regularizer != "none":
            groups.setdefault((cfg.dataset, cfg.regularizer, cfg.seed), {})[cfg.rho] = cfg
    for (dataset, reg, seed), by_rho in groups.items():
        lo, hi = by_rho[min(by_rho)], by_rho[max(by_rho)]
        run_lo, run_hi = store.load(lo), store.load(hi)
        diff = max((p - q).abs().max().item()
                   for p, q in zip(run_lo.model.parameters(), run_hi.model.parameters(), strict=True))
        same = same_machine(machine_of(run_lo.metrics), machine_of(run_hi.metrics))
        rows.append({"dataset": dataset, "regularizer": reg, "seed": seed, "rho_min": lo.rho, "rho_max": hi.rho,
                     "reg_at_min": run_lo.final["reg"], "reg_at_max": run_hi.final["reg"],
                     "reg_difference": run_hi.final["reg"] - run_lo.final["reg"], "max_param_difference": diff,
                     "same machine": {True: "yes", False: "no", None: "unknown"}[same]})
    return pd.DataFrame(rows)

def identical_pairs(pairs: pd.DataFrame) -> str:
    """How many of ``evidence``'s pairs are bitwise identical, and what the others' differences can show: only
    pairs of one machine can be told apart from float rounding."""
    identical = pairs["max_param_difference"] == 0
    differing = pairs[~identical]
    text = f"Of the {len(pairs)} pairs, {int(identical.sum())} are bitwise identical"
    if differing.empty:
        return text + "."
    mine = differing[differing["same machine"] == "yes"]
    unknown = int((differing["same machine"] == "unknown").sum())
    text += f"; the others differ by at most {differing['max_param_difference'].max():.3g}"
    if len(mine):
        text += f" ({len(mine)} of them trained on one machine, where rounding cannot explain a difference)"
    if unknown:
        text += (f"; for {unknown} of them the machine was not recorded, so whether rounding on two machines "
                 "explains the difference is unknown")
    return text + "."


def story(hinge: pd.DataFrame, certificates: pd.DataFrame, trends: dict[str, pd.DataFrame]) -> dict[str, str]:
    """The chapter's sentences from the evidence: ``jacobian`` (did rho enter R_J's gradient?), ``lambda`` (what
    the final R_J bounds: the mean penalized lambda_max is at most R_J - rho, since ReLU(x) >= x), ``weight``
    (did R_W reach its target at every rate?) and ``knob`` (what the rho trends of ``trends``, name -> a
    ``tables.rho_trend`` frame, say). Each is a plain sentence or two, glued as Markdown."""
    jac, wgt = hinge[hinge["regularizer"] == "jacobian"], hinge[hinge["regularizer"] == "weight"]
    out: dict[str, str] = {}
    if len(jac):
        gap = float((jac["rho_max"] - jac["rho_min"]).iloc[0])
        ratio = jac["reg_difference"] / gap
        if ratio.min() > 0.99:
            out["jacobian"] = (
                f"The final R_J values at the two rates differ by {jac['reg_difference'].min():.4g} to "
                f"{jac['reg_difference'].max():.4g}, the rate difference being {gap:g}: every penalized term stayed "
                f"active, so rho never entered the gradient. {identical_pairs(jac)}")
        else:
            out["jacobian"] = (
                f"The final R_J values at the two rates differ by {jac['reg_difference'].min():.4g} to "
                f"{jac['reg_difference'].max():.4g}, well short of the rate difference {gap:g}. Had every term stayed "
                "active, both runs would follow one path and end exactly the rate difference apart; so terms fell "
                "below their hinge and switched off, rho entered the gradient, and the trained models differ "
                f"(largest parameter difference {jac['max_param_difference'].max():.3g}).")
        bound = float((jac["reg_at_min"] - jac["rho_min"]).mean())
        out["lambda"] = (
            f"Since ReLU(x) >= x, the final value at the smallest rate minus that rate bounds the mean penalized "
            f"lambda_max from above (with every term active, it equals it): at most {bound:.3g} (mean over the "
            "pairs)"
            + (", negative: at the states the data visit these models contract in the Euclidean norm, on average."
               if bound < 0 else
               ", positive: the models may have expanding directions at the states the data visit."))
    if len(wgt):
        w = certificates[certificates["regularizer"] == "weight"]
        reached = int(((w["R_W"] == 0) & (w["certified rate"] >= w["rho"])).sum())
        out["weight"] = (
            f"The weight-regularized models reached their target (final R_W = 0 and certified rate >= rho) in "
            f"{reached} of {len(w)} runs"
            + (": the hinge switched off at every rate, so rho decides where training stops pushing the kernels, "
               if reached == len(w) else
               "; where it did not, some terms stayed active to the end, and while a term is active rho only "
               "shifts its penalty, ")
            + f"and the models at the two rates differ by at least {wgt['max_param_difference'].min():.3g} in some "
            "parameter.")
    moving = {name: frame[frame["verdict"].isin(["rises", "falls"])] for name, frame in trends.items()}
    changes = [f"{name} {row.verdict} with rho for {row.regularizer} on {DATASET_NAMES.get(row.dataset, row.dataset)} "
               f"({row.slope:+.3f} per decade, 95 % interval [{row.lo:+.3f}, {row.hi:+.3f}])"
               for name, frame in moving.items() for row in frame.itertuples()]
    out["knob"] = ("Over the rates tried, by the slope of accuracy against log rho: " + "; ".join(changes) + "."
                   if changes else
                   "Over the rates tried no accuracy has a slope against log rho whose 95 % interval excludes 0: at "
                   "this budget rho is not the knob the paper's figure suggests.")
    return out


def sweep_runs(profile: str, datasets: list[str], seeds: list[int], rhos: list[float],
               device: str = "auto") -> list[RunConfig]:
    """Chapter 4: both regularizers at every rho, plus the vanilla CNODE (its mean is the plots' reference)."""
    return model_grid(profile, datasets, seeds, rhos, device, with_cnn=False)


def sweep_table(frame: pd.DataFrame, picks: list[tuple[str, float]]) -> pd.DataFrame:
    """Rows (dataset, regularizer, rho); columns mean +- std accuracy at ``picks``."""
    cols = {}
    for kind, level in picks:
        part = frame[(frame["kind"] == kind) & np.isclose(frame["level"], level) & (frame["regularizer"] != "none")]
        name = "clean" if kind == "clean" else f"{SHORT_NAMES[kind]} {level:g}"
        cols[name] = part.groupby(["dataset", "regularizer", "rho"])["acc"].apply(mean_sd_text)
    return pd.DataFrame(cols)


def certificate_table(certificates: pd.DataFrame) -> pd.DataFrame:
    """Rows (dataset, regularizer, rho); the certificate the runs reached, means over seeds: the smallest
    certified rate over the layers, the final R_W, the certified channels."""
    return certificates.groupby(["dataset", "regularizer", "rho"]).agg(
        **{"certified rate": ("certified rate", "mean"), "final R_W": ("R_W", "mean"),
           "certified channels": ("certified channels", "mean")}).round(3)


def trend_table(trends: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Rows (dataset, regularizer, measure) of ``rho_trend`` frames (``trends``: measure -> frame): the mean
    accuracy at the smallest and the largest rate, the slope per decade of rho with its 95 % interval, the
    verdict."""
    rows = []
    for measure, trend in trends.items():
        for r in trend.itertuples():
            rows.append({"dataset": r.dataset, "regularizer": r.regularizer, "measure": measure,
                         "smallest → largest ρ": f"{r.acc_at_min:.3f} → {r.acc_at_max:.3f}",
                         "slope per decade [95 %]": f"{r.slope:+.3f} [{r.lo:+.3f}, {r.hi:+.3f}]",
                         "verdict": r.verdict})
    order = {m: i for i, m in enumerate(trends)}
    out = pd.DataFrame(rows).sort_values(["dataset", "regularizer", "measure"], key=lambda c: c.map(order)
                                         if c.name == "measure" else c, ascending=[False, False, True])
    return out.set_index(["dataset", "regularizer", "measure"])


def rho_trend(frame: pd.DataFrame, kind: str, level: float) -> pd.DataFrame:
    """Per dataset and regularizer: mean accuracy at the smallest and largest rho, and whether accuracy depends on
    rho: the slope per decade of rho over every seed's point with its 95 % interval (``stats.log_slope``), verdict
    'rises' / 'falls' where the interval excludes 0, else 'flat within noise'."""
    part = frame[(frame["kind"] == kind) & np.isclose(frame["level"], level) & (frame["regularizer"] != "none")]
    rows = []
    for (dataset, reg), group in part.groupby(["dataset", "regularizer"]):
        means = group.groupby("rho")["acc"].mean().sort_index()
        if len(group) < 3 or group["rho"].nunique() < 2:  # a rehearsal with one seed at two rates: no test
            slope = {"slope": float("nan"), "lo": float("nan"), "hi": float("nan"), "verdict": "too few points"}
        else:
            slope = log_slope(group["rho"].tolist(), group["acc"].tolist())
        rows.append({"dataset": dataset, "regularizer": reg, "rho_min": means.index[0], "acc_at_min": means.iloc[0],
                     "rho_max": means.index[-1], "acc_at_max": means.iloc[-1], "slope": slope["slope"],
                     "lo": slope["lo"], "hi": slope["hi"], "verdict": slope["verdict"]})
    return pd.DataFrame(rows)


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


def plan(p: Mapping[str, Any]) -> Plan:
    """Both regularizers at every rate (and the vanilla CNODE), each evaluated under ``suite``."""
    return Plan("04_rho_sweep", tuple(sweep_runs(p["profile"], p["datasets"], p["seeds"], p["rhos"], p["device"])),
                p["suite"])
