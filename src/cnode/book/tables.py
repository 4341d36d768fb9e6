"""Robustness results as tidy frames and the book's tables: mean +- std over seeds, and comparisons."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cnode.core.config import RunConfig

#: Datasets as a reader knows them.
DATASET_NAMES = {"mnist": "MNIST", "fashion": "FashionMNIST"}

KIND_NAMES = {"clean": "clean", "gaussian": "Gaussian std (clipped)", "gaussian_noclip": "Gaussian std (not clipped)",
              "salt_pepper": "salt-and-pepper fraction", "fgsm": "FGSM eps", "pgd": "PGD eps"}
#: the same in a table's column header, where the caption says std (clipped) or eps
SHORT_NAMES = {"clean": "clean", "gaussian": "Gaussian", "gaussian_noclip": "Gaussian (not clipped)",
               "salt_pepper": "salt-and-pepper", "fgsm": "FGSM", "pgd": "PGD"}


#: The (perturbation, level) cells the book discusses, once, by short key (glue names end in it: sum_mnist_g2_weight)
CELLS: dict[str, tuple[str, float]] = {"clean": ("clean", 0.0), "g2": ("gaussian", 0.2), "g3": ("gaussian", 0.3),
                                       "sp1": ("salt_pepper", 0.1), "fgsm1": ("fgsm", 0.1), "pgd05": ("pgd", 0.05),
                                       "pgd1": ("pgd", 0.1)}


def columns(labels: dict[str, str]) -> dict[str, tuple[str, float]]:
    """A chapter's columns: its display label -> the (kind, level) of the ``CELLS`` key it names."""
    return {label: CELLS[key] for label, key in labels.items()}


def model_label(cfg: RunConfig, with_rho: bool = False, base_T: float | None = None,
                default_steps: int | None = None) -> str:
    """The one name of a trained model on the page: 'CNN', 'vanilla' or the regularizer ('weight', 'jacobian'),
    then ' + wd' with weight decay, ' rho=1' with ``with_rho`` (regularized models), ' T=1' where the horizon is not
    ``base_T``, ' (N=100)' where the solver steps are not ``default_steps`` (none of these for the CNN)."""
    if cfg.model == "cnn":
        return "CNN"
    name = "vanilla" if cfg.regularizer == "none" else cfg.regularizer
    if cfg.weight_decay:
        name += " + wd"
    if with_rho and cfg.regularizer != "none":
        name += f" rho={cfg.rho:g}"
    if base_T is not None and cfg.T != base_T:
        name += f" T={cfg.T:g}"
    if default_steps is not None and cfg.steps != default_steps:
        name += f" (N={cfg.steps})"
    return name


def model_name(cfg: RunConfig) -> str:
    """'vanilla', 'CNN', 'weight rho=1', 'jacobian rho=1': chapters 3 and 4's label (``model_label`` with rho)."""
    return model_label(cfg, with_rho=True)


def accuracy(result: dict[str, Any], kind: str, level: float, default: float | None = None) -> float:
    """The accuracy of one stored evaluation (``core.evaluate.robustness``) under ``kind`` at ``level`` ('clean'
    at any level); ``default`` when the evaluation has no such row, else a ``KeyError`` that names it."""
    if kind == "clean":
        return float(result["clean"])
    for row in result["rows"]:
        if row["kind"] == kind and np.isclose(row["level"], level):
            return float(row["acc"])
    if default is not None:
        return default
    raise KeyError(f"the evaluation has no {kind} row at level {level:g}")


def mean_sd(mean: float, sd: float, fmt: str = ".3f") -> str:
    """'0.912 ± 0.004': a mean and its seed standard deviation (a missing sd, one seed, is 0), in format ``fmt``;
    'none' for a missing mean (a quantity some seed does not have, such as a bound without a certificate)."""
    if mean is None or np.isnan(mean):
        return "none"
    return f"{mean:{fmt}} ± {0.0 if sd is None or np.isnan(sd) else sd:{fmt}}"


def robustness_frame(results: list[tuple[RunConfig, dict[str, Any]]]) -> pd.DataFrame:
    """One row per (run, perturbation, level): dataset, model, regularizer, rho, seed, kind, level, acc.

    The clean accuracy appears as kind ``clean`` at level 0.
    """
    rows = []
    for cfg, result in results:
        base = {"dataset": cfg.dataset, "model": model_name(cfg), "regularizer": cfg.regularizer,
                "rho": cfg.rho if cfg.regularizer != "none" else 0.0, "seed": cfg.seed}
        rows.append({**base, "kind": "clean", "level": 0.0, "acc": result["clean"]})
        rows.extend({**base, **row} for row in result["rows"])
    return pd.DataFrame(rows)






































def certificate_frame(finals: list[tuple[RunConfig, dict[str, Any]]]) -> pd.DataFrame:
    """Per run: dataset, regularizer, rho, seed, final R_W at its rho, certified channels and certified rate."""
    return pd.DataFrame([{"dataset": cfg.dataset, "regularizer": cfg.regularizer, "rho": cfg.rho, "seed": cfg.seed,
                          "R_W": last["weight_reg"], "certified channels": last["certified_channels"],
                          "certified rate": min(last["certified_rate"])}
                         for cfg, last in finals if cfg.model == "cnode" and cfg.regularizer != "none"])


def mean_sd_text(values: pd.Series) -> str:
    """'0.912 ± 0.004': mean ± seed standard deviation (0 for a single seed) of a table cell."""
    return mean_sd(values.mean(), values.std() if len(values) > 1 else 0.0)








