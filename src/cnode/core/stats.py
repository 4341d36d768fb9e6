"""Finite-sample intervals and paired comparisons of per-image outcomes.

Two models evaluated on the same test images are compared image by image: averaging each image's outcome over
the seeds, then the paired differences over the images, separates the finite-sample noise of the test set
(which a seed standard deviation alone does not show) from the seed spread (reported beside it).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.stats import beta

Z95 = 1.959963984540054


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval for a binomial proportion: k successes in n trials (eq. ``cp``)."""
    if not 0 <= k <= n or n <= 0:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    alpha = 1 - level
    lo = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lo, hi


def paired(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Paired comparison of per-image outcomes ``a`` and ``b``, each (seeds, n) bool on the same n images.

    ``diff``: mean accuracy of a minus b; ``lo, hi``: its 95 % interval from the n per-image differences of
    seed-averaged outcomes (normal approximation, eq. ``paired``); ``per_seed``: each seed's difference (seed i
    of a against seed i of b); ``verdict``: "higher" (a above b) or "lower" when the interval excludes 0 and every
    seed's difference has that sign, else "within noise".
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"a and b must both be (seeds, images), got {a.shape} and {b.shape}")
    d = a.mean(0) - b.mean(0)
    n = d.size
    half = Z95 * d.std(ddof=1) / math.sqrt(n) if n > 1 else math.inf
    per_seed = (a.mean(1) - b.mean(1)).tolist()
    diff = float(d.mean())
    lo, hi = diff - half, diff + half
    verdict = "within noise"
    if lo > 0 and all(s > 0 for s in per_seed):
        verdict = "higher"
    elif hi < 0 and all(s < 0 for s in per_seed):
        verdict = "lower"
    return {"diff": diff, "lo": lo, "hi": hi, "per_seed": per_seed,
            "seed_sd": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0, "n": n, "verdict": verdict}


def seed_interval(per_seed: list[float] | np.ndarray, level: float = 0.95) -> dict[str, Any]:
    """A comparison of two training recipes from their per-seed differences (each seed's difference of the two
    recipes' accuracies on the same images): the mean, its t-interval on ``seeds - 1`` degrees of freedom (eq.
    ``seed-t``), and the p-value of "mean difference = 0". The seeds are the replicates of a recipe, so this
    interval includes training's variance, which a per-image interval conditioned on the trained models omits.
    Needs at least two seeds."""
    from scipy.stats import t as student

    d = np.asarray(per_seed, dtype=float)
    if d.ndim != 1 or d.size < 2:
        raise ValueError(f"a seed-level interval needs at least 2 per-seed differences, got {d.size}")
    mean, sem = float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size))
    df = d.size - 1
    half = float(student.ppf(0.5 + level / 2, df)) * sem
    p = 1.0 if sem == 0 and mean == 0 else 0.0 if sem == 0 else float(2 * student.sf(abs(mean) / sem, df))
    return {"diff": mean, "lo": mean - half, "hi": mean + half, "p": p, "seeds": int(d.size), "df": df}


def holm(p_values: list[float], alpha: float = 0.05) -> list[bool]:
    """Holm's step-down correction (controls the family-wise error at ``alpha`` over the declared comparisons of
    one table): which null hypotheses are rejected, in the input's order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    for rank, i in enumerate(order):
        if p_values[i] > alpha / (len(p_values) - rank):
            break
        rejected[i] = True
    return rejected


def holm_adjusted(p_values: list[float]) -> list[float]:
    """Holm's adjusted p-values, in the input's order: ``holm`` rejects exactly those at or below ``alpha``;
    shown beside a verdict so that an interval excluding 0 with the verdict *within noise* explains itself."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [1.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def seed_verdicts(per_seed: list[list[float]], alpha: float = 0.05) -> list[dict[str, Any]]:
    """The book's rule for a table of recipe comparisons, declared before the numbers: each comparison's
    ``seed_interval``, and "higher" or "lower" only when Holm's correction over the table rejects "no
    difference" (the interval at the corrected level then excludes 0), else "within noise"."""
    found = [seed_interval(d) for d in per_seed]
    rejected = holm([f["p"] for f in found], alpha)
    for f, r in zip(found, rejected, strict=True):
        f["verdict"] = ("higher" if f["diff"] > 0 else "lower") if r else "within noise"
    return found


def log_slope(rhos: list[float], values: list[float], level: float = 0.95) -> dict[str, Any]:
    """Whether a quantity depends on rho: the least-squares slope of ``values`` against log10(rho) over every
    seed's point, its ``level`` interval (t on n - 2 degrees of freedom) and a verdict ("rises", "falls" when the
    interval excludes 0, else "flat within noise")."""
    from scipy.stats import linregress
    from scipy.stats import t as student

    x, y = np.log10(np.asarray(rhos, dtype=float)), np.asarray(values, dtype=float)
    if x.size < 3 or np.ptp(x) == 0:
        raise ValueError("a slope against log rho needs at least 3 points at 2 or more rates")
    fit = linregress(x, y)
    half = float(student.ppf(0.5 + level / 2, x.size - 2)) * fit.stderr
    lo, hi = fit.slope - half, fit.slope + half
    verdict = "rises" if lo > 0 else "falls" if hi < 0 else "flat within noise"
    return {"slope": float(fit.slope), "lo": float(lo), "hi": float(hi), "n": int(x.size), "verdict": verdict}
