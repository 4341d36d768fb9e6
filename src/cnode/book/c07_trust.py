"""Book chapter 7: the frames of its tables and figures, from the stored masking cards.

``collect`` reads (or, for inline profiles, computes) every card of the chapter's plan; the rest turns cards into
tidy frames: the Lipschitz bound by factors, certified against empirical L2 accuracy, the card per model and
radius with its masking verdict, and what the card changes in chapter 3's PGD numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from cnode.book.glue import Md, Table
from cnode.book.style import PALETTE, legend_below
from cnode.book.tables import model_label
from cnode.core import audit, checks
from cnode.core.config import RunConfig
from cnode.runs import store
from cnode.runs.plans import Plan, checked_seeds

#: attack columns of the card table, in the order the chapter shows them
ATTACKS = {"pgd20": "PGD-20", "pgd_strong": "PGD-100×5", "autoattack": "AutoAttack",
           "transfer_cnn": "from CNN", "transfer_vanilla": "from vanilla", "square": "Square"}


#: the solver checks' columns as the page shows them: "crafted on -> evaluated on"
SOLVER_COLUMNS = {"clean": "clean", "crafted_train_eval_variant": "train -> variant",
                  "crafted_variant_eval_variant": "variant -> variant",
                  "crafted_variant_eval_train": "variant -> train", "new_breaks": "new breaks"}


def collect(plan: Plan) -> list[tuple[RunConfig, str, dict[str, Any]]]:
    """(config, model name, card) for every run of the plan, then (config, name + ' quantized' (its input), the
    control's card) for each run the positive control wraps."""
    base_T = RunConfig.from_profile(plan.runs[0].profile).T
    out = []
    for cfg in plan.runs:
        out.append((cfg, model_label(cfg, base_T=base_T), store.load_or_audit(store.load_or_train(cfg), plan.audit)))
    for cfg in plan.controls():
        name = f"{model_label(cfg, base_T=base_T)} quantized"
        out.append((cfg, name, store.load_or_audit(store.load_or_train(cfg), plan.audit, plan.control_levels)))
    return out


def bound_frame(cards: list[tuple[RunConfig, str, dict[str, Any]]]) -> pd.DataFrame:
    """Per model with a certificate: the factors of its Lipschitz bound, the bound, the largest exact local gain
    found on the images (a lower bound), and the median certified L2 radius (and its L-inf equivalent, /28)."""
    rows = []
    for cfg, name, card in cards:
        cert = card.get("certificate")
        if cert is None:
            continue
        b = cert["bound"]
        radius = np.array(cert["radius"])
        rows.append({"dataset": cfg.dataset, "model": name, "seed": cfg.seed, "input": b["input"], "flow / layers":
                     b["flow"], "head": b["head"], "bound L": b["total"], "largest local gain":
                     cert["max_local_gain"], "median certified L2 radius": float(np.median(radius)),
                     "its L-inf radius (/28)": float(np.median(radius)) / 28})
    return pd.DataFrame(rows)


def bound_display(bounds: pd.DataFrame) -> pd.DataFrame:
    """``bound_frame`` for the page: indexed by dataset and model, numbers to 3 significant digits (bounds span
    orders of magnitude), the L-inf radius left to the text."""
    shown = bounds.drop(columns=["seed", "its L-inf radius (/28)"]).set_index(["dataset", "model"])
    return shown.map(lambda v: f"{v:.3g}")


def certified_frame(cards: list[tuple[RunConfig, str, dict[str, Any]]], points: int = 40) -> pd.DataFrame:
    """Per model: certified accuracy (certified radius >= r) on a log grid of ``points`` radii from 1e-3 to the
    largest audited radius, plus the audited radii (kind 'certified'), and the empirical L2 PGD accuracy at each
    audited radius (kind 'L2 PGD'); columns dataset, model, seed, radius, kind, acc."""
    rows = []
    for cfg, name, card in cards:
        cert = card.get("certificate")
        if cert is None:
            continue
        radius = np.array(cert["radius"])
        audited = [float(r) for r in cert["l2_pgd"]]
        common = {"dataset": cfg.dataset, "model": name, "seed": cfg.seed}
        for r in sorted({*np.geomspace(1e-3, max(audited), points).tolist(), *audited}):
            rows.append({**common, "radius": r, "kind": "certified", "acc": float((radius >= r).mean())})
        rows += [{**common, "radius": float(r), "kind": "L2 PGD", "acc": acc} for r, acc in cert["l2_pgd"].items()]
    return pd.DataFrame(rows)


def card_frame(cards: list[tuple[RunConfig, str, dict[str, Any]]], tolerance: float) -> pd.DataFrame:
    """One row per model and L-inf eps: clean accuracy, every attack's accuracy, the white-box minimum, the card's
    per-image minimum, the share broken only by black-box attacks, whether the card is a control, and the masking
    verdict's reasons."""
    rows = []
    for cfg, name, card in cards:
        for eps, entry in card["eps"].items():
            reasons = audit.verdict(entry, tolerance)
            rows.append({"dataset": cfg.dataset, "model": name, "eps": float(eps),
                         "control": card.get("control_levels") is not None, "clean": card["clean_acc"],
                         **{label: entry["acc"].get(key, float("nan")) for key, label in ATTACKS.items()},
                         "white-box min": entry["white_box_min"], "card min": entry["card_min"],
                         "black-box only": entry["broken_only_by_black_box"],
                         "AA Square stage": audit.square_stage_breaks(entry["autoattack"].get("after", {})),
                         "verdict": f"masking suspected ({len(reasons)} sign{'s' * (len(reasons) > 1)})" if reasons
                         else "none found",
                         "masking": "; ".join(reasons) if reasons else "none found"})
    return pd.DataFrame(rows)


def audit_minutes(cards: list[tuple[RunConfig, str, dict[str, Any]]]) -> float:
    """Compute minutes of all ``cards`` as stored with them: every attack at every eps plus the certificate (the
    machine and what else it ran at the time are the run's; this is their sum, not a benchmark)."""
    seconds = sum(sum(entry["seconds"].values()) for _, _, card in cards for entry in card["eps"].values())
    return (seconds + sum(card.get("certificate", {}).get("seconds", 0.0) for _, _, card in cards)) / 60


def solver_frame(cards: list[tuple[RunConfig, str, dict[str, Any]]]) -> pd.DataFrame:
    """Per CNODE, eps and solver variant: clean accuracy with the variant, PGD-20 crafted on the training solver
    and evaluated on the variant, crafted and evaluated on the variant, crafted on the variant and evaluated on
    the training solver, and the images that last attack newly breaks."""
    rows = []
    for cfg, name, card in cards:
        for eps, entry in card["eps"].items():
            for kind, check in entry.get("solvers", {}).items():
                rows.append({"dataset": cfg.dataset, "model": name, "eps": float(eps), "solver": kind,
                             **{SOLVER_COLUMNS[k]: v for k, v in check.items()}})
    return pd.DataFrame(rows)


def corrections(frame: pd.DataFrame) -> pd.DataFrame:
    """What the card changes in chapter 3's PGD-20 on the same images: PGD-20, the card's minimum, and their
    difference (how much chapter 3's number overstated robust accuracy)."""
    out = frame[["dataset", "model", "eps", "PGD-20", "card min"]].copy()
    out["overstated by"] = out["PGD-20"] - out["card min"]
    return out


def flagged_text(frame: pd.DataFrame) -> str:
    """One clause per flagged card of ``card_frame`` (controls excluded): model, dataset, eps, the rule's reasons,
    and the card's minimum beside PGD-20 and AutoAttack, so the reader can weigh the flag; "none" if none."""
    real = frame[~frame["control"] & (frame["verdict"] != "none found")]
    return "; ".join(f"the {row.model} on {row.dataset} at eps {row.eps:g} ({row.masking}; card minimum "
                     f"{row['card min']:.3f}, PGD-20 {row['PGD-20']:.3f}, AutoAttack {row['AutoAttack']:.3f})"
                     for _, row in real.iterrows()) or "none"


def flag_count(frame: pd.DataFrame) -> tuple[int, int]:
    """(flagged, cards): the cards of real models in ``card_frame`` (one per dataset and model, over all its eps;
    controls excluded) and how many of them the masking rule flags at one eps or more."""
    real = frame[~frame["control"]]
    flagged = (real["verdict"] != "none found").groupby([real["dataset"], real["model"]]).any()
    return int(flagged.sum()), len(flagged)


def solver_clean_drop(cards: list[tuple[RunConfig, str, dict[str, Any]]]) -> pd.DataFrame:
    """Per CNODE and solver variant: clean accuracy with the training solver and with the variant on the audited
    images, and the drop (how much the trained model depends on its Euler discretization rather than the flow)."""
    rows = []
    for cfg, name, card in cards:
        entry = next(iter(card["eps"].values()))
        for kind, check in entry.get("solvers", {}).items():
            rows.append({"dataset": cfg.dataset, "model": name, "solver": kind, "clean (training solver)":
                         card["clean_acc"], "clean (variant)": check["clean"],
                         "drop": card["clean_acc"] - check["clean"]})
    return pd.DataFrame(rows)


def trust_runs(profile: str, datasets: list[str], seeds: list[int], rho: float, long_T: float,
               device: str = "auto") -> list[RunConfig]:
    """Chapter 7: the headline models the audit cards cover, per dataset and seed: the vanilla, weight- and
    Jacobian-regularized CNODEs and the CNN of chapter 3 (the profile's T), and the weight-regularized CNODE at
    ``long_T`` (chapter 6)."""
    checks.positive("rho", rho)
    checks.positive("long_T", long_T)
    runs = []
    for dataset in datasets:
        for seed in checked_seeds(seeds):
            common = dict(dataset=dataset, seed=seed, device=device)
            runs += [RunConfig.from_profile(profile, **common), RunConfig.from_profile(profile, model="cnn", **common)]
            runs += [RunConfig.from_profile(profile, regularizer=reg, rho=rho, **common)
                     for reg in ("weight", "jacobian")]
            runs.append(RunConfig.from_profile(profile, regularizer="weight", rho=rho, T=long_T, **common))
    return runs


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
    return legend_below(fig, axes[0][0], 2)


def plan(p: Mapping[str, Any]) -> Plan:
    """Every headline model, each with its masking card under ``audit`` (and the positive control's)."""
    runs = trust_runs(p["profile"], p["datasets"], p["seeds"], p["rho"], p["long_T"], p["device"])
    return Plan("07_trust", tuple(runs), None, None, p["audit"], p["control_levels"])


def numbers(cards: list[tuple[RunConfig, str, dict[str, Any]]], settings: Any, control_levels: int) -> dict[str, Any]:
    """Everything the chapter glues from its cards (``glue.glue_all``): the audit's settings, the card, minima,
    verdict, solver and correction tables, the control's and the plain model's verdicts, the flag count, the
    solver checks' extremes and the overstatement of PGD-20."""
    import pyautoattack

    card_table = card_frame(cards, settings.tolerance)
    solver_table = solver_frame(cards)
    by_eps = card_table.set_index(["dataset", "model", "eps"])
    controls = card_table[card_table["control"]]
    plain = card_table[card_table["model"] == "vanilla"]
    real = card_table[~card_table["control"]]
    flagged, n_cards = flag_count(card_table)
    drops = solver_clean_drop(cards)
    worst = drops.loc[drops["drop"].idxmax()]
    return {
        "t_images": (settings.images, 0), "t_eps": Md(", ".join(f"{e:g}" for e in settings.eps)),
        "t_square": (settings.square_queries, 0), "t_tol": Md(f"{settings.tolerance:.0%}"),
        "t_levels": (control_levels, 0), "t_aa_version": Md(pyautoattack.__version__),
        "tbl_t_cards": Table(by_eps[["clean", "PGD-20", "PGD-100×5", "AutoAttack", "white-box min"]], 3),
        "tbl_t_minima": Table(by_eps[["from CNN", "from vanilla", "Square", "card min", "black-box only",
                                      "AA Square stage"]], 3),
        "tbl_t_verdicts": Table(by_eps[["verdict", "masking"]]),
        "tbl_t_solvers": Table(solver_table.set_index(["dataset", "model", "eps", "solver"]), 3),
        "t_control": "flagged" if (controls["verdict"] != "none found").all() else "NOT flagged at every radius",
        "t_plain": Md("not flagged" if (plain["verdict"] == "none found").all() else "flagged"),
        "t_flagged": (flagged, 0), "t_cards": (n_cards, 0), "t_flagged_list": Md(flagged_text(card_table)),
        "t_newbreak_max": (solver_table["new breaks"].max(), 3),
        "t_drop_model": Md(f"the {worst['model']} CNODE on {worst['dataset']} with {worst['solver']}"),
        "t_drop_max": (worst["drop"], 3), "t_drop_from": (worst["clean (training solver)"], 3),
        "t_drop_to": (worst["clean (variant)"], 3),
        "tbl_t_corrections": Table(corrections(real).set_index(["dataset", "model", "eps"]), 3),
        "t_overstated": (corrections(real)["overstated by"].max(), 3), "t_minutes": (audit_minutes(cards), 0),
    }
