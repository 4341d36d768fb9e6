"""The book's rule for comparing two training recipes, declared before the numbers (chapters 3, 6 and 9).

A recipe is a model trained from several seeds. Two recipes are paired by seed (over the seeds both have); each
seed's difference is taken on the same test images; the mean difference gets a t-interval on seeds - 1 degrees
of freedom (``core.stats.seed_interval``, eq. ``seed-t``), and *higher* / *lower* is said only where Holm's
correction over the comparisons of one table rejects "no difference". The per-image paired interval
(``core.stats.paired``) stays beside it as the evaluation's own precision: it conditions on the trained models,
so it says how well the test images measure these models, not whether the recipe is better.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np
import pandas as pd

from cnode.core import stats

#: The rule as the chapters state it before their numbers.
RULE = ("each comparison of a recipe with a baseline pairs their models by seed; each seed's difference is taken "
        "on the same test images; the mean difference gets a 95 % t-interval over the seeds (seeds - 1 degrees of "
        "freedom), so it includes the variance of training. *Higher* or *lower* only when Holm's correction over "
        "the comparisons of the table rejects \"no difference\" at 5 %, else *within noise*. The per-image "
        "interval beside it is the evaluation's precision for these trained models, not a verdict.")


def cells(result: dict[str, Any]) -> list[tuple[str, float]]:
    """The (kind, level) cells of one stored evaluation, each measured once: clean, then every noise and attack
    level above 0 (an attack at eps 0 is the clean accuracy again, on fewer images)."""
    found = [("clean", 0.0)] + [(r["kind"], float(r["level"])) for r in result["rows"] if r["level"] > 0]
    return list(dict.fromkeys(found))


def outcomes(result: dict[str, Any], kind: str, level: float) -> np.ndarray | None:
    """Per-image outcomes (n,) bool of one evaluation row, on the images its accuracy was computed on (clean and
    noise: all ``n`` test images; attacks: the first ``n_attacked``), or None when the suite stored none."""
    from cnode.core.evaluate import unpack_bits

    if kind == "clean":
        bits = result.get("clean_correct")
        return None if bits is None else unpack_bits(bits, result["n"])
    row = next((r for r in result["rows"] if r["kind"] == kind and np.isclose(r["level"], level)), None)
    return None if row is None or "correct" not in row else unpack_bits(row["correct"], row["n"])


def accuracy(result: dict[str, Any], kind: str, level: float) -> float | None:
    """The stored accuracy of one evaluation row (clean: ``clean``), or None when the suite has no such row."""
    if kind == "clean":
        return float(result["clean"])
    row = next((r for r in result["rows"] if r["kind"] == kind and np.isclose(r["level"], level)), None)
    return None if row is None else float(row["acc"])


def compare(recipe: dict[int, dict[str, Any]], baseline: dict[int, dict[str, Any]], kind: str,
            level: float) -> dict[str, Any] | None:
    """One declared comparison: ``recipe`` and ``baseline`` map a seed to its stored evaluation under one suite
    (so every seed's two accuracies are on the same images). Returns the two mean accuracies over the shared
    seeds, the seed-level interval of their difference, and the per-image interval where the suite stored
    per-image outcomes (else NaN); None with fewer than two shared seeds or a missing row."""
    seeds = sorted(set(recipe) & set(baseline))
    a = [accuracy(recipe[s], kind, level) for s in seeds]
    b = [accuracy(baseline[s], kind, level) for s in seeds]
    if len(seeds) < 2 or any(x is None for x in a + b):
        return None
    found = stats.seed_interval(np.subtract(a, b))
    image_lo = image_hi = float("nan")
    bits_a = [outcomes(recipe[s], kind, level) for s in seeds]
    bits_b = [outcomes(baseline[s], kind, level) for s in seeds]
    if not any(x is None for x in bits_a + bits_b):
        image = stats.paired(np.stack(bits_a), np.stack(bits_b))
        image_lo, image_hi = image["lo"], image["hi"]
    return {"acc": float(np.mean(a)), "baseline acc": float(np.mean(b)), **found,
            "image lo": image_lo, "image hi": image_hi}


def table(groups: dict[tuple[Hashable, str], dict[int, dict[str, Any]]],
          pairs: Iterable[tuple[str, str]], family: tuple[str, ...] = ("where", "baseline"),
          kinds: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Every declared comparison of a table: ``groups`` maps (where, model) to its seeds' evaluations (``where``:
    a dataset, or (dataset, T)); ``pairs`` lists (model, baseline) names, compared wherever both exist, in every
    cell of the baseline's evaluation (``cells``; only perturbations in ``kinds`` when given, so that the family is
    the table shown). Holm's correction runs within each ``family`` (columns of the result). Columns: where,
    model, baseline, kind, level, acc, baseline acc, diff, lo, hi, p, seeds, df, image lo, image hi, verdict."""
    rows = []
    wheres = list(dict.fromkeys(w for w, _ in groups))
    for where in wheres:
        for model, base in pairs:
            if (where, model) not in groups or (where, base) not in groups:
                continue
            first = next(iter(groups[(where, base)].values()))
            for kind, level in cells(first):
                if kinds is not None and kind not in kinds:
                    continue
                found = compare(groups[(where, model)], groups[(where, base)], kind, level)
                if found is not None:
                    rows.append({"where": where, "model": model, "baseline": base, "kind": kind, "level": level,
                                 **found})
    frame = pd.DataFrame(rows)
    return with_verdicts(frame, list(family)) if len(frame) else frame


def with_verdicts(frame: pd.DataFrame, family: list[str]) -> pd.DataFrame:
    """``frame`` (columns diff, p) with a verdict column and Holm's adjusted p-value (``p holm``): Holm within each
    group of ``family``."""
    verdicts = pd.Series("within noise", index=frame.index)
    adjusted = pd.Series(1.0, index=frame.index)
    for _, part in frame.groupby(family, sort=False):
        rejected = stats.holm(part["p"].tolist())
        adjusted[part.index] = stats.holm_adjusted(part["p"].tolist())
        for i, r in zip(part.index, rejected, strict=True):
            if r:
                verdicts[i] = "higher" if frame.at[i, "diff"] > 0 else "lower"
    return frame.assign(verdict=verdicts, **{"p holm": adjusted})


def verdict_text(row: dict[str, Any] | pd.Series, label: str = "p") -> str:
    """'within noise, p 0.26': the verdict with Holm's adjusted p-value (named ``label``), as tables show it."""
    p = row["p holm"]
    return f"{row['verdict']}, {label} {p:.2g}" if p >= 0.01 else f"{row['verdict']}, {label} < 0.01"


def counts(frame: pd.DataFrame, kinds: tuple[str, ...]) -> tuple[int, int, int]:
    """(higher, lower, total) over the rows of ``frame`` whose perturbation is in ``kinds``."""
    rows = frame[frame["kind"].isin(kinds)]
    return int((rows["verdict"] == "higher").sum()), int((rows["verdict"] == "lower").sum()), len(rows)


def interval_text(row: dict[str, Any] | pd.Series, image: bool = False) -> str:
    """'+0.014 [+0.012, +0.017]': a difference with its seed-level (or, with ``image``, per-image) interval."""
    lo, hi = (row["image lo"], row["image hi"]) if image else (row["lo"], row["hi"])
    return f"{row['diff']:+.3f} [{lo:+.3f}, {hi:+.3f}]"
