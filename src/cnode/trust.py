"""Book chapter 7 (issue 14): the frames of its tables and figures, from the stored masking cards.

``collect`` reads (or, for inline profiles, computes) every card of the chapter's plan; the rest turns cards into
tidy frames: the Lipschitz bound by factors, certified against empirical L2 accuracy, the card per model and
radius with its masking verdict, and what the card changes in chapter 3's PGD numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cnode import audit, store
from cnode.config import RunConfig
from cnode.plans import Plan

#: attack columns of the card table, in the order the chapter shows them
ATTACKS = {"pgd20": "PGD-20", "pgd_strong": "PGD-100×5", "autoattack": "AutoAttack",
           "transfer_cnn": "from CNN", "transfer_vanilla": "from vanilla", "square": "Square"}


#: the solver checks' columns as the page shows them: "crafted on -> evaluated on"
SOLVER_COLUMNS = {"clean": "clean", "crafted_train_eval_variant": "train -> variant",
                  "crafted_variant_eval_variant": "variant -> variant",
                  "crafted_variant_eval_train": "variant -> train", "new_breaks": "new breaks"}


def model_name(cfg: RunConfig, base_T: float) -> str:
    """'CNN', 'vanilla', 'weight', 'jacobian', with ' T=1' where the horizon is not the profile's."""
    name = "CNN" if cfg.model == "cnn" else "vanilla" if cfg.regularizer == "none" else cfg.regularizer
    return name if cfg.model == "cnn" or cfg.T == base_T else f"{name} T={cfg.T:g}"


def collect(plan: Plan) -> list[tuple[RunConfig, str, dict[str, Any]]]:
    """(config, model name, card) for every run of the plan, then (config, name + ' quantized' (its input), the
    control's card) for each run the positive control wraps."""
    base_T = RunConfig.from_profile(plan.runs[0].profile).T
    out = []
    for cfg in plan.runs:
        out.append((cfg, model_name(cfg, base_T), store.load_or_audit(store.load_or_train(cfg), plan.audit)))
    for cfg in plan.controls():
        name = f"{model_name(cfg, base_T)} quantized"
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
