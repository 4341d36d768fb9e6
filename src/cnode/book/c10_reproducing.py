"""Chapter 10, reproducing this book: the bfloat16 check's runs and frames, and the ledger of what the paper grid
took (the engineering detail behind chapter 5, whose benchmark frames it reuses)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

from cnode.core import checks
from cnode.core.config import REGULARIZERS, RunConfig
from cnode.runs import store
from cnode.runs.plans import Plan, checked_seeds


def precision_runs_frame(results: list[tuple[RunConfig, dict[str, Any], dict[str, Any]]]) -> pd.DataFrame:
    """One row per run of the precision check: precision, seed, clean accuracy, accuracy under the suite's
    first Gaussian level and under PGD at each of its radii, and the run's median epoch seconds.
    ``results``: (config, metrics of the run, its evaluation) triples."""
    rows = []
    for cfg, metrics, ev in results:
        row = {"precision": cfg.precision, "seed": cfg.seed, "clean": ev["clean"]}
        gauss = [r for r in ev["rows"] if r["kind"] == "gaussian"]
        if gauss:
            row[f"Gaussian {gauss[0]['level']:g}"] = gauss[0]["acc"]
        row.update({f"PGD {r['level']:g}": r["acc"] for r in ev["rows"] if r["kind"] == "pgd" and r["level"] > 0})
        row["epoch s"] = float(pd.Series([h["seconds"] for h in metrics["history"]]).median())
        rows.append(row)
    return pd.DataFrame(rows)


def precision_table(runs: pd.DataFrame) -> pd.DataFrame:
    """``precision_runs_frame`` per precision: seeds, then each accuracy in % as 'mean (min-max)' over seeds,
    and the median epoch seconds."""
    out = {}
    for precision, group in runs.groupby("precision", sort=False):
        row: dict[str, Any] = {"seeds": len(group)}
        for col in [c for c in runs.columns if c not in ("precision", "seed", "epoch s")]:
            v = 100 * group[col]
            row[f"{col} (%)"] = f"{v.mean():.1f} ({v.min():.1f}-{v.max():.1f})"
        row["epoch s"] = f"{group['epoch s'].median():.1f}"
        out[precision] = row
    return pd.DataFrame.from_dict(out, orient="index").rename_axis("precision")


def precision_runs(profile: str, dataset: str, regularizer: str, rho: float, seeds: list[int],
                   device: str = "auto") -> dict[str, list[RunConfig]]:
    """The bfloat16 check: one configuration trained in float32 (the default) and with bfloat16 autocast, per seed."""
    checks.one_of("regularizer", regularizer, REGULARIZERS)
    return {precision: [RunConfig.from_profile(profile, dataset=dataset, regularizer=regularizer, rho=rho, seed=seed,
                                               device=device, precision=precision) for seed in checked_seeds(seeds)]
            for precision in ("float32", "bfloat16")}


def ledger(grids: list[Any]) -> pd.DataFrame:
    """What a grid took, from the stored runs themselves: per (chapter, device that finished the run) the runs
    stored, the training hours (sum of the runs' epoch seconds, whatever else ran beside them) and the evaluation
    hours under the plan's suite; ``grids``: ``plans.Plan`` objects. A run shared by chapters counts once, in
    the first; 'resumed' counts runs whose training continued on another process (a stop and a rerun)."""

    seen: set[str] = set()
    rows = []

    for plan in grids:
        chapter, suite = plan.chapter, plan.suite
        eval_name = store.eval_file(suite) if suite else None
        for cfg in plan.runs:
            folder = store.run_dir(cfg)
            if cfg.key() in seen or not (folder / store.METRICS).exists():
                continue
            seen.add(cfg.key())
            metrics = json.loads((folder / store.METRICS).read_text())
            evaluated = eval_name and (folder / eval_name).exists()
            rows.append({"chapter": chapter, "device": metrics["provenance"]["device"],
                         "train_h": sum(r["seconds"] for r in metrics["history"]) / 3600,
                         "eval_h": json.loads((folder / eval_name).read_text())["seconds"] / 3600 if evaluated else 0.0,
                         "resumed": metrics.get("resumed_at_epoch") is not None})
    frame = pd.DataFrame(rows, columns=["chapter", "device", "train_h", "eval_h", "resumed"])
    out = frame.groupby(["chapter", "device"], sort=False).agg(
        runs=("train_h", "size"), train_h=("train_h", "sum"), eval_h=("eval_h", "sum"), resumed=("resumed", "sum"))
    return out


def plan(p: Mapping[str, Any]) -> Plan:
    """The precision check: its runs in float32 and bfloat16, each evaluated under ``precision_suite``."""
    runs = precision_runs(p["precision_profile"], p["precision_dataset"], p["precision_regularizer"],
                          p["precision_rho"], p["precision_seeds"])
    return Plan("10_reproducing", tuple(cfg for cfgs in runs.values() for cfg in cfgs), p["precision_suite"])
