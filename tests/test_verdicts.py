"""The book's rule for comparing training recipes (``cnode.book.verdicts``) on synthetic evaluations with known
answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnode.book import verdicts
from cnode.core.evaluate import pack_bits


def _evaluation(rng: np.random.Generator, p_clean: float, p_pgd: float, bits: bool = True, n: int = 400) -> dict:
    clean, pgd = rng.random(n) < p_clean, rng.random(n) < p_pgd
    rows = [{"kind": "pgd", "level": 0.0, "acc": float(clean.mean()), "n": n},
            {"kind": "pgd", "level": 0.1, "acc": float(pgd.mean()), "n": n}]
    out = {"clean": float(clean.mean()), "rows": rows, "n": n, "n_attacked": n}
    if bits:
        rows[1]["correct"] = pack_bits(torch.tensor(pgd))
        rows[0]["correct"] = out["clean_correct"] = pack_bits(torch.tensor(clean))
    return out


def test_each_cell_is_compared_once_and_the_difference_is_that_of_the_accuracies_beside_it():
    rng = np.random.default_rng(2)
    groups = {("mnist", "vanilla"): {s: _evaluation(rng, 0.9, 0.2) for s in range(3)},
              ("mnist", "weight"): {s: _evaluation(rng, 0.9, 0.6) for s in range(3)}}
    found = verdicts.table(groups, [("weight", "vanilla")])
    assert list(zip(found["kind"], found["level"], strict=True)) == [("clean", 0.0), ("pgd", 0.1)]  # eps 0: clean again
    pgd = found.set_index("kind").loc["pgd"]
    assert pgd["verdict"] == "higher" and pgd["seeds"] == 3 and pgd["df"] == 2
    assert pgd["diff"] == pytest.approx(pgd["acc"] - pgd["baseline acc"])
    assert pgd["acc"] == pytest.approx(np.mean([groups[("mnist", "weight")][s]["rows"][1]["acc"] for s in range(3)]))


def test_without_per_image_outcomes_the_verdict_stands_and_the_image_interval_is_missing():
    rng = np.random.default_rng(3)
    groups = {("mnist", "vanilla"): {s: _evaluation(rng, 0.9, 0.2, bits=False) for s in range(3)},
              ("mnist", "weight"): {s: _evaluation(rng, 0.9, 0.6, bits=False) for s in range(3)}}
    pgd = verdicts.table(groups, [("weight", "vanilla")]).set_index("kind").loc["pgd"]
    assert pgd["verdict"] == "higher" and np.isnan(pgd["image lo"])


def test_seed_to_seed_variance_overrules_a_tight_per_image_interval():
    """The issue's case: three seeds of +0.203, +0.151, +0.412 give a per-image interval far from 0 but a
    seed-level one that contains it."""
    def fixed(acc: float) -> dict:
        correct = np.arange(1000) < round(acc * 1000)
        return {"clean": float(correct.mean()), "rows": [], "n": 1000, "n_attacked": 1000,
                "clean_correct": pack_bits(torch.tensor(correct))}

    groups = {("mnist", "vanilla"): {0: fixed(0.5), 1: fixed(0.5), 2: fixed(0.5)},
              ("mnist", "jacobian"): {0: fixed(0.703), 1: fixed(0.651), 2: fixed(0.912)}}
    row = verdicts.table(groups, [("jacobian", "vanilla")]).iloc[0]
    assert row["image lo"] > 0.2 and row["lo"] < 0 < row["hi"] and row["verdict"] == "within noise"
    assert verdicts.interval_text(row) == f"+0.255 [{row['lo']:+.3f}, {row['hi']:+.3f}]"


def test_holm_runs_within_a_family_not_across_tables():
    frame = verdicts.with_verdicts(
        __import__("pandas").DataFrame({"where": ["a", "a", "b"], "baseline": ["v"] * 3,
                                        "diff": [0.1, -0.1, 0.1], "p": [0.03, 0.03, 0.03]}), ["where", "baseline"])
    assert list(frame["verdict"]) == ["within noise", "within noise", "higher"]  # 2 in family a: 0.03 > 0.025
