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
