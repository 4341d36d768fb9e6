"""Chapter 9's rule, declared before the numbers, and its answer in words: a contractive recipe C beats the
baselines when its robust accuracy exceeds that of the best baseline whose mean clean accuracy is at least C's
minus ``MATCH``, by a seed-level interval that excludes 0 after Holm's correction over the contractive recipes of
one front. Kept apart from ``c09_front`` (the runs, points and figures) so that each stays readable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from cnode.book.tables import DATASET_NAMES
from cnode.core import stats
from cnode.core.config import RunConfig

#: a baseline is matched to a contractive recipe when its mean clean accuracy is at least the recipe's minus this
MATCH = 0.005

COLUMNS = ["recipe", "clean", "robust", "best matched baseline", "baseline robust", "matched", "diff", "lo", "hi",
           "p", "closest", "below", "below gap", "below robust"]


def family(cfg: RunConfig) -> str:
    """'contractive' when a contraction regularizer is in the loss (with or without adversarial training), else
    'baseline' (any init, any weight decay, the CNN, adversarial training alone)."""
    return "contractive" if cfg.model == "cnode" and cfg.regularizer != "none" else "baseline"


def one_sided(p: float, diff: float) -> float:
    """The one-sided p-value of "C is no better than its baseline" from the two-sided ``p`` of the seed-level
    t-test and the sign of the mean difference ``diff``."""
    return p / 2 if diff > 0 else 1 - p / 2


def beats_baselines(points: pd.DataFrame, margin: float = MATCH, alpha: float = 0.05) -> pd.DataFrame:
    """The chapter's rule on one front. ``points``: one row per (recipe, seed) with columns recipe, family, seed,
    clean, robust (the robust accuracy of every seed on the same images). Per contractive recipe C: its matched
    baselines (mean clean >= C's - ``margin``), the best of them by mean robust accuracy, the seed-level interval of
    C's robust accuracy minus that baseline's over their shared seeds, and the verdict after Holm's correction over
    the contractive recipes that have a matched baseline: 'beats the baselines', 'not shown', 'no matched
    baseline' (C is more accurate than every baseline, so the rule cannot compare it) or 'too few seeds' (fewer
    than two shared with that baseline). Beside it: ``closest``, the most accurate baseline (named when none is
    matched); ``below``, the most robust baseline under the margin when it is more robust than the best matched
    one, with its clean-accuracy gap to C and its robust accuracy (what the match leaves out); ``p_holm_one``,
    Holm over one-sided p-values, the second reading in which a recipe worse than its baseline never counts."""
    means = points.groupby("recipe", sort=False)[["clean", "robust"]].mean()
    kinds = points.groupby("recipe", sort=False)["family"].first()
    base = means[kinds == "baseline"]
    by_seed = points.set_index(["recipe", "seed"])["robust"]
    rows = []
    for recipe in means.index[kinds == "contractive"]:
        clean = means.loc[recipe, "clean"]
        matched, under = base[base["clean"] >= clean - margin], base[base["clean"] < clean - margin]
        row = {"recipe": recipe, "clean": clean, "robust": means.loc[recipe, "robust"], "matched": len(matched),
               "closest": base["clean"].idxmax() if len(base) else "none", "below": "none"}
        best_robust = matched["robust"].max() if len(matched) else -np.inf
        if len(under) and under["robust"].max() > best_robust:
            below = under["robust"].idxmax()
            row.update({"below": below, "below gap": clean - under.loc[below, "clean"],
                        "below robust": under.loc[below, "robust"]})
        if matched.empty:
            rows.append({**row, "best matched baseline": "none"})
            continue
        best = matched["robust"].idxmax()
        seeds = sorted(set(by_seed[recipe].index) & set(by_seed[best].index))
        diffs = [by_seed[(recipe, s)] - by_seed[(best, s)] for s in seeds]
        found = stats.seed_interval(diffs) if len(diffs) > 1 else {"diff": float(np.mean(diffs)), "p": np.nan}
        rows.append({**row, "best matched baseline": best, "baseline robust": matched.loc[best, "robust"],
                     **{k: found.get(k, np.nan) for k in ("diff", "lo", "hi", "p")}})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    tested = frame["p"].notna()
    rejected = dict(zip(frame.index[tested], stats.holm(frame.loc[tested, "p"].tolist(), alpha), strict=True))
    frame["p_holm"], frame["p_holm_one"] = np.nan, np.nan
    frame.loc[tested, "p_holm"] = stats.holm_adjusted(frame.loc[tested, "p"].tolist())
    frame.loc[tested, "p_holm_one"] = stats.holm_adjusted(
        [one_sided(p, d) for p, d in zip(frame.loc[tested, "p"], frame.loc[tested, "diff"], strict=True)])
    frame["verdict"] = ["no matched baseline" if frame.at[i, "matched"] == 0 else "too few seeds" if not tested[i] else
                        "beats the baselines" if rejected[i] and frame.at[i, "diff"] > 0 else "not shown"
                        for i in frame.index]
    return frame


def rule_display(found: pd.DataFrame) -> pd.DataFrame:
    """``beats_baselines``'s frame for the page: per contractive recipe its best matched baseline, the difference
    in robust accuracy with its seed-level interval (a dash without a matched baseline), Holm's adjusted p-value
    two-sided (the rule) and one-sided, and the verdict."""
    text = ["–" if np.isnan(r.diff) else f"{r.diff:+.3f} [{r.lo:+.3f}, {r.hi:+.3f}]" for r in found.itertuples()]
    holm = ["–" if np.isnan(p) else f"{fmt_p(p)} / {fmt_p(q)}" for p, q in zip(found["p_holm"], found["p_holm_one"],
                                                                          strict=True)]
    return found.assign(**{"difference [seed 95 %]": text, "Holm p (two- / one-sided)": holm}).set_index("recipe")[
        ["best matched baseline", "difference [seed 95 %]", "Holm p (two- / one-sided)", "verdict"]]


def fmt_p(p: float) -> str:
    """A p-value in two significant digits, four decimals near 0.05 (so that 0.0503 is not shown as 0.05)."""
    return f"{p:.4f}" if abs(p - 0.05) < 0.005 else f"{p:.2g}"


def one_sided_wins(found: pd.DataFrame, alpha: float = 0.05) -> pd.Series:
    """Which recipes of ``beats_baselines``'s frame would beat their baseline by Holm over one-sided p-values."""
    return (found["p_holm_one"] <= alpha) & (found["diff"] > 0)


def wins(found: pd.DataFrame, alpha: float = 0.05) -> tuple[int, int]:
    """(recipes that beat the baselines by the rule, recipes that would by Holm over one-sided p-values)."""
    return int((found["verdict"] == "beats the baselines").sum()), int(one_sided_wins(found, alpha).sum())


def below_text(found: pd.DataFrame) -> str:
    """For the winners, the baselines the match leaves out: each winner beside the most robust baseline that is
    less accurate than the match allows and more robust than its matched one (empty when there is none)."""
    rows = found[(found["verdict"] == "beats the baselines") & (found["below"] != "none")]
    if rows.empty:
        return ""
    return (" Some baselines less accurate than the match allows are more robust than a winner's matched one: "
            + "; ".join(f"beside the {r['recipe']} model (robust {r['robust']:.3f}) the {r['below']} reaches "
                        f"{r['below robust']:.3f}, {r['below gap']:.3f} less accurate" for _, r in rows.iterrows())
            + ".")


def uncorrected_text(found: pd.DataFrame, named: frozenset[str] | set[str] = frozenset()) -> str:
    """The recipes whose seed-level interval lies above 0 before Holm's correction but that do not beat their
    baseline after it (other than those in ``named``), each with its difference, interval and Holm p-values: a
    near miss the reader sees in the table and should not read as a win (empty when there is none)."""
    rows = found[(found["lo"] > 0) & (found["verdict"] != "beats the baselines") & ~found["recipe"].isin(named)]
    if rows.empty:
        return ""
    n = int(found["p"].notna().sum())
    more = "more " if named or (found["verdict"] == "beats the baselines").any() else ""
    return (f" Before Holm's correction over the {n} recipes, {len(rows)} {more}ha{'s' if len(rows) == 1 else 've'}"
            " an interval above 0: " + "; ".join(
                f"the {r['recipe']} model, {r['diff']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}] over the "
                f"{r['best matched baseline']} (Holm p {fmt_p(r['p_holm'])} two-sided, {fmt_p(r['p_holm_one'])} "
                "one-sided)" for _, r in rows.iterrows()) + ".")


def on_each(found: Mapping[str, pd.DataFrame], text_of: Callable[[pd.DataFrame], str], none: str) -> str:
    """``text_of`` each dataset's ``beats_baselines`` frame (``found``: dataset -> frame), each sentence opened by
    the dataset's name; ``none`` when no dataset has one (the answer box's per-dataset lines)."""
    texts = {d: text_of(frame).strip() for d, frame in found.items()}
    return " ".join(f"On {DATASET_NAMES.get(d, d)}, {t[0].lower()}{t[1:]}" for d, t in texts.items() if t) or none


def answer_text(found: pd.DataFrame, own: pd.DataFrame, dataset: str, paper: tuple[str, ...], means: pd.DataFrame
                ) -> str:
    """The rule's answer on one front in words, from ``beats_baselines``'s frame: how many contractive recipes
    were compared and how many beat their best matched baseline (and how many by the one-sided reading, where it
    differs), the baselines the match leaves out beside the winners (``below_text``), the near misses
    (``uncorrected_text``), then each recipe of the paper's setting (``paper``) from ``own`` (the rule on the
    paper's recipes alone: Holm over them) against that baseline with the difference, its seed-level interval and
    Holm p, or, unmatched, the closest baseline below the margin (``means``: ``summary``'s clean and robust per
    recipe)."""
    compared = found[found["p"].notna()]
    won, won_one = wins(found)
    n, rest = len(compared), len(found) - len(compared)
    text = (f"On {DATASET_NAMES.get(dataset, dataset)}, {won} of the {n} contractive "
            f"recipe{'s' if n != 1 else ''} with a matched baseline beat{'s' if n == 1 else ''} it")
    differ = found[one_sided_wins(found) & (found["verdict"] != "beats the baselines")]
    if won_one != won:
        text += (f" ({won_one} by Holm over one-sided p-values" + "".join(
            f"; the {r['recipe']} model, one-sided p {fmt_p(r['p_holm_one'])} against two-sided {fmt_p(r['p_holm'])}"
            for _, r in differ.iterrows()) + ")")
    if rest:
        text += (f" ({rest} more {'is' if rest == 1 else 'are'} not compared: more accurate than every baseline, or "
                 "fewer than two seeds)")
    text += "." + below_text(found) + uncorrected_text(found, set(differ["recipe"]))
    parts = []
    for _, r in own[own["recipe"].isin(paper)].iterrows():
        if np.isnan(r["p"]):
            if r["verdict"] == "no matched baseline" and r["closest"] in means.index:
                near = means.loc[r["closest"]]
                why = (f"has no baseline of matched clean accuracy (the closest, the {r['closest']}, is "
                       f"{r['clean'] - near['clean']:.3f} less accurate and reaches {near['robust']:.3f} robust "
                       "accuracy)")
            else:
                why = ("has no baseline of matched clean accuracy" if r["verdict"] == "no matched baseline" else
                       f"shares fewer than two seeds with its best matched baseline ({r['best matched baseline']})")
            parts.append(f"the {r['recipe']} model (robust {r['robust']:.3f}) {why}")
            continue
        verdict = ("it beats it" if r["verdict"] == "beats the baselines" else "not a win by the rule") + \
            f" (Holm p {fmt_p(r['p_holm'])})"
        parts.append(f"the {r['recipe']} model reaches {r['robust']:.3f} robust accuracy against "
                     f"{r['baseline robust']:.3f} for the {r['best matched baseline']} baseline, "
                     f"{r['diff']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}] over seeds: {verdict}")
    return text + (" At the paper's setting " + "; ".join(parts) + "." if parts else "")


def finding_text(found: Mapping[str, pd.DataFrame], own: Mapping[str, pd.DataFrame], paper: tuple[str, ...],
                 baselines: list[str]) -> str:
    """The intro's finding from ``beats_baselines``'s frame per dataset: on each front, how many contractive
    recipes beat the most robust baseline of matched clean accuracy, of those compared; the same for ``paper``
    from ``own`` (the rule on the paper's recipes alone); ``baselines`` names the baseline families."""
    def count(frame: pd.DataFrame) -> str:
        return f"{int((frame['verdict'] == 'beats the baselines').sum())} of {int(frame['p'].notna().sum())}"

    names = [DATASET_NAMES.get(d, d) for d in found]
    every = " and ".join(f"{count(f)} on {n}" for n, f in zip(names, found.values(), strict=True))
    at_paper = " and ".join(f"{count(f[f['recipe'].isin(paper)])} on {n}"
                            for n, f in zip(names, own.values(), strict=True))
    return (f"At matched clean accuracy, the contractive recipes that beat the most robust baseline "
            f"({', '.join(baselines)}) by the seed-level rule: {every}; at the paper's own setting {at_paper}")


def paper_rule(points: pd.DataFrame, paper: tuple[str, ...]) -> pd.DataFrame:
    """``beats_baselines`` on the baselines and the recipes of the paper's setting (``paper``) alone: the
    separate answer for the paper's own setting, Holm over its recipes only."""
    return beats_baselines(points[(points["family"] == "baseline") | points["recipe"].isin(paper)])


def worth_it(verdicts: pd.DataFrame) -> bool:
    """Contractivity is worth it on a front when some contractive recipe beats the baselines."""
    return bool((verdicts["verdict"] == "beats the baselines").any())


def non_dominated(means: pd.DataFrame) -> list[str]:
    """The recipes (index of ``means``, columns clean and robust) no other recipe beats in both accuracies at
    once (at least as good in both, better in one), ordered by clean accuracy: the front's line."""
    keep = []
    for name, row in means.iterrows():
        others = means.drop(index=name)
        dominated = ((others["clean"] >= row["clean"]) & (others["robust"] >= row["robust"])
                     & ((others["clean"] > row["clean"]) | (others["robust"] > row["robust"]))).any()
        if not dominated:
            keep.append(name)
    return sorted(keep, key=lambda n: means.loc[n, "clean"])


def on_top(points: pd.DataFrame, with_: str, without: str) -> dict[str, dict[str, float]] | None:
    """What recipe ``with_`` adds over ``without`` on one front (the weight regularizer on top of adversarial
    training): per shared seed the difference of robust and of clean accuracy (same images), each with its
    seed-level interval (``stats.seed_interval``); None when they share fewer than two seeds."""
    by = points.set_index(["recipe", "seed"])[["robust", "clean"]]
    if with_ not in by.index.get_level_values(0) or without not in by.index.get_level_values(0):
        return None
    seeds = sorted(set(by.loc[with_].index) & set(by.loc[without].index))
    if len(seeds) < 2:
        return None
    return {col: stats.seed_interval([by.loc[(with_, s), col] - by.loc[(without, s), col] for s in seeds])
            for col in ("robust", "clean")}


def on_top_text(points: pd.DataFrame, datasets: list[str], alpha: float = 0.05) -> str:
    """The adversarial-training section's declared comparison in words: per dataset, the contractive adversarially
    trained recipe against the vanilla one (``on_top``), robust and clean accuracy with their seed-level intervals,
    Holm over the datasets, and on which datasets the regularizer adds robustness beyond the variance of training."""
    tops = {}
    for d in datasets:
        part = points[points["dataset"] == d]
        names = part[part["group"] == "adversarial training"].drop_duplicates("recipe").set_index("recipe")["family"]
        reg = [n for n, f in names.items() if f == "contractive"]
        van = [n for n in names.index if n.startswith("vanilla")]
        found = on_top(part, reg[0], van[0]) if reg and van else None
        if found:
            tops[d] = found
    if not tops:
        return "The weight regularizer on top of adversarial training is not compared yet (its runs did not finish)."
    holm = dict(zip(tops, stats.holm_adjusted([t["robust"]["p"] for t in tops.values()]), strict=True))
    parts = [f"on {DATASET_NAMES.get(d, d)}, robust accuracy {t['robust']['diff']:+.3f} [{t['robust']['lo']:+.3f}, "
             f"{t['robust']['hi']:+.3f}] (Holm p {fmt_p(holm[d])}) and clean accuracy {t['clean']['diff']:+.3f} "
             f"[{t['clean']['lo']:+.3f}, {t['clean']['hi']:+.3f}]" for d, t in tops.items()]
    gains = [DATASET_NAMES.get(d, d) for d, t in tops.items() if holm[d] <= alpha and t["robust"]["diff"] > 0]
    return ("The weight regularizer on top of adversarial training, against adversarial training alone: "
            + "; ".join(parts) + ". It adds robustness beyond the variance of training on "
            + (" and ".join(gains) if gains else "no dataset") + ".")
