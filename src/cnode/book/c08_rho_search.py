"""Chapter 8's declared rho search: does some setting make rho matter?

A *setting* is (regularizer, T, gamma); the search trains it at several rho and seeds (``rho_search_runs``). The
rule, stated in the chapter before any number: a setting makes rho matter when (a) its clean accuracy depends on
rho: the slope of accuracy against log10 rho over every seed's point has a 95 % interval that excludes 0
(``core.stats.log_slope``), and (b) at some rho every seed reaches its own regularizer's target with mean clean
accuracy >= ``min_clean``: for the weight regularizer final R_W = 0, every channel certified and certified rate
>= rho; for the Jacobian regularizer ``lambda_max <= -rho`` at 95 % of the (test image, step) pairs
(``core.target``), which never asks for the weight condition.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from cnode.book.tables import accuracy, columns, mean_sd_text
from cnode.core import checks
from cnode.core.config import RunConfig
from cnode.core.runtime import machine_id, machine_of
from cnode.core.stats import log_slope
from cnode.runs.plans import Plan, checked_seeds

#: The accuracies the search reports per run: column name -> (kind, level) of the evaluation suite.
COLUMNS = columns({"clean": "clean", "Gaussian 0.2": "g2", "PGD 0.05": "pgd05"})


def setting_name(cfg: RunConfig) -> str:
    """'weight, T = 1, gamma = 10': the setting a search run belongs to."""
    return f"{cfg.regularizer}, T = {cfg.T:g}, gamma = {cfg.gamma:g}"


def frame(results: list[tuple[RunConfig, dict[str, Any]]], finals: list[tuple[RunConfig, dict[str, Any]]],
          targets: Mapping[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per run: setting, rho, seed, the ``COLUMNS`` accuracies, final R_W, certified channels (fraction),
    the certified rate (smallest over the layers), the share of (image, step) pairs at the Jacobian target
    (``targets``: run key -> ``store.load_or_target``; NaN for weight runs) and ``reached``: the run's own
    regularizer's target met (weight: R_W = 0, all channels, rate >= rho; Jacobian: ``core.target``'s ``met``)."""
    last = {cfg.key(): record for cfg, record in finals}
    rows = []
    for cfg, result in results:
        record = last[cfg.key()]
        rate = min(record["certified_rate"])
        channels = record["certified_channels"] / record["channels_total"]
        target = targets.get(cfg.key()) if cfg.regularizer == "jacobian" else None
        if cfg.regularizer == "jacobian" and target is None:
            raise ValueError(f"{cfg.label()} ({setting_name(cfg)}): no Jacobian target measurement; measure it with "
                             "store.load_or_target before building the frame")
        reached = (bool(target["met"]) if target is not None else
                   bool(record["weight_reg"] == 0 and channels == 1.0 and rate >= cfg.rho))
        rows.append({"setting": setting_name(cfg), "regularizer": cfg.regularizer, "T": cfg.T, "gamma": cfg.gamma,
                     "rho": cfg.rho, "seed": cfg.seed, **{c: accuracy(result, *kl) for c, kl in COLUMNS.items()},
                     "R_W": record["weight_reg"], "channels": channels, "rate": rate,
                     "at target": target["share"] if target is not None else float("nan"), "reached": reached})
    return pd.DataFrame(rows)


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """Every setting and rho tried (index: setting, rho): mean ± seed sd of the accuracies, the mean final R_W,
    share of certified channels (``channels``), certified rate of the worst layer (``rate``), the mean share of
    (image, step) pairs at the Jacobian target (``at target``, Jacobian runs), and how many seeds met their own
    regularizer's target (``met``)."""
    order = {setting: i for i, setting in enumerate(dict.fromkeys(runs["setting"]))}
    runs = runs.sort_values(["setting", "rho"], key=lambda c: c.map(order) if c.name == "setting" else c, kind="stable")
    grouped = runs.groupby(["setting", "rho"], sort=False)  # each setting's rates together, in declared order
    out = pd.DataFrame({c: grouped[c].apply(mean_sd_text) for c in COLUMNS})
    out["R_W"] = grouped["R_W"].mean().map(lambda v: f"{v:.3g}")
    out["channels"] = grouped["channels"].mean().map(lambda v: f"{v:.0%}")
    out["rate"] = grouped["rate"].mean().map(lambda v: f"{v:.3g}")
    out["at target"] = grouped["at target"].mean().map(lambda v: "" if np.isnan(v) else f"{v:.0%}")
    out["met"] = grouped["reached"].agg(lambda v: f"{int(v.sum())}/{len(v)}")
    return out


def verdicts(runs: pd.DataFrame, min_clean: float) -> pd.DataFrame:
    """Per setting: (a) the slope of clean accuracy per decade of rho over every seed's point, its 95 % interval
    and whether it excludes 0 (``stats.log_slope``); (b) the rhos where every seed reached its regularizer's target
    at mean clean accuracy >= ``min_clean``; and whether rho matters (a and b)."""
    rows = []
    for setting, part in runs.groupby("setting", sort=False):
        if part["rho"].nunique() < 2:  # one rate tried: no slope to test, so (a) cannot hold
            slope = {"slope": float("nan"), "lo": float("nan"), "hi": float("nan"), "verdict": "flat within noise"}
        else:
            slope = log_slope(part["rho"].tolist(), part["clean"].tolist())
        means = part.groupby("rho")["clean"].mean()
        reached = part.groupby("rho")["reached"].all()
        good = [float(rho) for rho in means.index if reached[rho] and means[rho] >= min_clean]
        depends = slope["verdict"] != "flat within noise"
        rows.append({"setting": setting, "clean slope per decade": slope["slope"],
                     "95 % interval": (f"[{slope['lo']:+.4f}, {slope['hi']:+.4f}]" if np.isfinite(slope["lo"])
                                       else "one rate"), "depends on rho": depends,
                     "rhos with targets reached": ", ".join(f"{r:g}" for r in good) or "none",
                     "rho matters": depends and bool(good)})
    return pd.DataFrame(rows).set_index("setting")


def identical_models(stored: list[tuple[RunConfig, dict[str, Any]]]) -> pd.DataFrame:
    """Rates that did not change training: per setting, each group of rhos whose runs of one seed stored the same
    model (``model_sha256`` of their metrics, i.e. the weights bit for bit), and for how many seeds that holds.

    The regularizers are hinges (eqs. ``reg-weight``, ``reg-jacobian``): while every term is active, the gradient
    of ReLU(2 rho + m) or ReLU(lambda + rho) is that of m or lambda, free of rho, so the same seed trains the same
    weights. Columns: setting, rhos ("16 = 64"), seeds ("3/3"); empty when every rate gave its own model."""
    by_run: dict[tuple[str, int], dict[str, list[float]]] = {}  # (setting, seed) -> model hash -> rhos
    for cfg, metrics in stored:
        by_run.setdefault((setting_name(cfg), cfg.seed), {}).setdefault(metrics["model_sha256"], []).append(cfg.rho)
    seeds: dict[tuple[str, tuple[float, ...]], set[int]] = {}
    for (setting, seed), groups in by_run.items():
        for rhos in groups.values():
            if len(rhos) > 1:
                seeds.setdefault((setting, tuple(sorted(rhos))), set()).add(seed)
    total = Counter(setting for setting, _ in by_run)  # seeds per setting
    rows = [{"setting": setting, "rhos": " = ".join(f"{r:g}" for r in rhos),
             "seeds": f"{len(found)}/{total[setting]}"} for (setting, rhos), found in seeds.items()]
    return pd.DataFrame(rows, columns=["setting", "rhos", "seeds"])


def one_machine(stored: list[tuple[RunConfig, dict[str, Any]]]) -> tuple[int, int]:
    """(settings and seeds whose runs all name one recorded machine, all settings and seeds): only within those
    do unequal hashes show that rho changed the training (elsewhere rounding on two machines may explain them)."""
    machines: dict[tuple[str, int], set[str | None]] = {}
    for cfg, metrics in stored:
        machines.setdefault((setting_name(cfg), cfg.seed), set()).add(machine_id(machine_of(metrics)))
    return sum(None not in found and len(found) == 1 for found in machines.values()), len(machines)


def identical_text(same: pd.DataFrame, stored: list[tuple[RunConfig, dict[str, Any]]]) -> str:
    """``identical_models`` as a sentence for the chapter, and what unequal hashes can show (``one_machine``)."""
    known, total = one_machine(stored)
    if known == total:
        rest = "every other pair of rates trained on one machine and differs, so there rho changed the training"
    else:
        rest = (f"for {total - known} of the {total} (setting, seed) groups the runs' machine was not recorded or "
                "differs, so whether unequal hashes there come from rho or from rounding is unknown")
    if same.empty:
        return f"no two stored models of one seed are the same; {rest}"
    return ("some rates trained the very same weights, bit for bit: " + "; ".join(
        f"{row.setting} at rho {row.rhos} ({row.seeds} seeds)" for row in same.itertuples()) + f"; {rest}")


def horizon_gamma(cfg: RunConfig) -> str:
    """'T = 1, gamma = 10': the part of a setting the figure's rows show (the regularizer is the hue)."""
    return setting_name(cfg).split(", ", 1)[1]


def figure_frame(results: list[tuple[RunConfig, dict[str, Any]]], rows: list[str]) -> pd.DataFrame:
    """``tables.robustness_frame`` of the runs whose ``horizon_gamma`` is in ``rows``, that label in the
    ``dataset`` column, so that ``plots.rho_sweep_figure`` draws one row of panels per (T, gamma)."""
    from cnode.book.tables import robustness_frame

    parts = [robustness_frame([(cfg, r)]).assign(dataset=horizon_gamma(cfg)) for cfg, r in results
             if horizon_gamma(cfg) in rows]
    return pd.concat(parts, ignore_index=True)


def answer(found: pd.DataFrame) -> str:
    """The search's answer in one sentence, from ``verdicts``."""
    good = found[found["rho matters"]]
    if len(good):
        return (f"ρ matters, by the search's rule, in {len(good)} of {len(found)} settings: "
                + "; ".join(f"{s} (clean accuracy {found.at[s, 'clean slope per decade']:+.3f} per decade of ρ "
                            f"{found.at[s, '95 % interval']}, every seed at its regularizer's target at ρ = {r})"
                            for s, r in good["rhos with targets reached"].items()) + ".")
    depending = found[found["depends on rho"]]
    reached = found[found["rhos with targets reached"] != "none"]
    where = "; ".join(f"{s}: {row['clean slope per decade']:+.4f} per decade {row['95 % interval']}"
                      for s, row in depending.iterrows())
    where = f" ({where})" if where else ""
    ending = ", but never both in one setting." if len(depending) and len(reached) else "."
    return (f"No setting of the search makes ρ matter by its rule: clean accuracy depends on ρ in "
            f"{len(depending)} of {len(found)} settings{where}, and every seed reaches its regularizer's target at "
            f"the accuracy floor at some ρ in {len(reached)}{ending}")


def showcase(found: pd.DataFrame, authors: str) -> list[str]:
    """The figure's rows (``horizon_gamma`` labels): the authors' setting, and beside it the (T, gamma) of the
    qualifying setting with the steepest clean-accuracy slope (else of the steepest overall)."""
    pool = found[found["rho matters"]] if found["rho matters"].any() else found
    best = pool["clean slope per decade"].abs().idxmax().split(", ", 1)[1]
    return [authors] if best == authors else [authors, best]


def rho_search_runs(profile: str, dataset: str, seeds: list[int], rhos: list[float], long_rhos: list[float],
                    long_T: float, gammas: list[float], long_gammas: list[float] | None = None,
                    device: str = "auto") -> list[RunConfig]:
    """Chapter 8's declared rho search: both regularizers on ``dataset``, per seed, at every rho
    of ``rhos`` with the profile's T for every gamma of ``gammas``, and at every rho of ``long_rhos`` at ``long_T``
    (the profile's N steps, so h = long_T / N) for every gamma of ``long_gammas`` (``gammas`` when None). Every
    setting tried is reported."""
    checks.positive("long_T", long_T)
    runs = []
    long_gammas = gammas if long_gammas is None else long_gammas
    for T, values, weights in ((None, rhos, gammas), (long_T, long_rhos, long_gammas)):
        for gamma in weights:
            checks.positive("gamma", gamma)
            for rho in values:
                checks.positive("rho", rho)
                for reg in ("weight", "jacobian"):
                    for seed in checked_seeds(seeds):
                        extra = {} if T is None else {"T": T}
                        runs.append(RunConfig.from_profile(profile, dataset=dataset, regularizer=reg, rho=rho,
                                                           gamma=gamma, seed=seed, device=device, **extra))
    return runs


def plan(p: Mapping[str, Any]) -> Plan:
    """The declared search: both regularizers at every rate, horizon and weight, evaluated under ``suite``."""
    return Plan("08_rho_search", tuple(rho_search_runs(p["profile"], p["dataset"], p["seeds"], p["rhos"],
                                                       p["long_rhos"], p["long_T"], p["gammas"], p["long_gammas"],
                                                       p["device"])), p["suite"])
