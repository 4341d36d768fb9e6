"""Chapter 3 (robustness to noise and attacks): its smoke run (papermill), what it glues, its rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from notebooks import smoke_run, stored

from cnode.book import c03_robustness


def _compare(verdicts: dict[tuple[str, float], str], dataset: str = "mnist", model: str = "weight rho=1"
             ) -> pd.DataFrame:
    return pd.DataFrame([{"dataset": dataset, "model": model, "kind": k, "level": lvl, "verdict": v}
                         for (k, lvl), v in verdicts.items()])


#: the chapter's tiny parameters (seconds on 2 cores)
PARAMS = dict(datasets=["mnist"], profile="smoke", seeds=[0, 1], suite="smoke", noise_suite="smoke_noclip",
              target="smoke")


def check(values: dict, store: Path) -> None:
    assert values["n_runs"] == 8 and values["n_seeds"] == 2 and values["n_test"] == 128
    # 2 regularizers x (clean + 2 Gaussian clipped + 2 not + 1 salt-and-pepper + 3 FGSM + 3 PGD levels above 0):
    # each cell once, none at eps 0
    assert values["van_n"] == values["van_higher"] + values["van_lower"] + values["van_within"] == 2 * 12
    assert values["cnn_n"] == 24 and values["n_noise_test"] == 128
    assert values["noclip_n"] == 4  # 2 regularizers x 2 unclipped levels, its own table
    assert values["mnist_clean_weight_verdict"] in ("higher", "lower", "within noise")
    assert values["n_warnings"] == sum(len(r["warnings"]) for r in stored(store, "eval-*.json"))  # the store's count
    assert "±" in values["sum_mnist_clean_vanilla"] and values["set_seeds"] == "0, 1"


@pytest.mark.notebook
def test_smoke_run(tmp_path: Path, monkeypatch):
    smoke_run("03_robustness", PARAMS, check, tmp_path, monkeypatch)


def test_one_seed_is_refused_with_a_reason():
    from cnode.core import checks

    with pytest.raises(ValueError, match="seeds: need at least 2, got 1; a verdict"):
        checks.at_least("seeds", 1, 2, "a verdict between training recipes needs the spread of two or more seeds")


def test_the_conclusion_and_the_change_cells_follow_the_verdicts():
    vanilla = _compare({("gaussian", 0.2): "higher", ("pgd", 0.1): "higher"})
    cnn = _compare({("gaussian", 0.2): "within noise", ("pgd", 0.1): "lower"})
    frame = pd.DataFrame([{"dataset": "mnist", "model": m, "kind": k, "level": lvl, "acc": a}
                          for m, a in (("vanilla", 0.0), ("CNN", 0.07), ("weight rho=1", 0.02))
                          for k, lvl in (("pgd", 0.1), ("clean", 0.0))])
    text = c03_robustness.conclusion(vanilla, cnn, frame)
    assert ("The weight rho=1 CNODE is against the vanilla CNODE higher in 1 and lower in 0 of 1 noise cells and "
            "higher in 1 and lower in 0 of 1 attack cells; against the CNN higher in 0 and lower in 0 of 1 noise "
            "cells and higher in 0 and lower in 1 of 1 attack cells") in text
    assert "the most robust model, CNN on MNIST, keeps 0.070 on average" in text
    nothing = c03_robustness.conclusion(vanilla, cnn, frame.assign(acc=0.0))
    assert "no model keeps any accuracy on average" in nothing and "keeps 0.000" not in nothing
    certificates = pd.DataFrame([{"dataset": "mnist", "regularizer": "weight", "R_W": 0.0, "certified rate": 1.02}])
    cells = c03_robustness.change_cells("paper", frame, vanilla, cnn, certificates)
    assert cells["chg_paper_mnist_clean"].startswith("vanilla 0.000, CNN 0.070")
    assert cells["chg_paper_mnist_cnn"] == "weight: noise higher 0, lower 0 of 1; attacks higher 0, lower 1 of 1"
    assert cells["chg_paper_mnist_rw"] == "R_W 0, certified rate 1.02"


def _result(correct: list[bool], n_attacked: int) -> dict:
    from cnode.core.evaluate import pack_bits

    return {"clean": float(np.mean(correct)), "n": len(correct), "n_attacked": n_attacked,
            "clean_correct": pack_bits(torch.tensor(correct)), "rows": []}


def test_a_clean_difference_is_computed_on_the_images_of_the_accuracies_beside_it():
    """The clean accuracy is over all n test images, so the clean difference is too (it was once taken on the
    attacked subset only: +0.019 printed beside accuracies whose difference was +0.014)."""
    from cnode.core.config import RunConfig

    vanilla = [True] * 4 + [False] * 6  # 0.4 on all 10, 1.0 on the first 4 (the attacked ones)
    weight = [True] * 4 + [True] * 3 + [False] * 3  # 0.7 on all 10, 1.0 on the first 4
    runs = [(RunConfig.from_profile("smoke", regularizer="none", seed=s), _result(vanilla, 4)) for s in (0, 1)]
    runs += [(RunConfig.from_profile("smoke", regularizer="weight", seed=s), _result(weight[:9] + [s == 1], 4))
             for s in (0, 1)]
    row = c03_robustness.declared(runs, "vanilla").iloc[0]
    assert (row["kind"], row["model"]) == ("clean", "weight rho=1")
    assert row["diff"] == pytest.approx(row["acc"] - row["baseline acc"]) == pytest.approx(0.35)
    shown = c03_robustness.comparison_display(c03_robustness.declared(runs, "vanilla"))
    assert shown.iloc[0]["vanilla → model"] == "0.400\u00a0→\u00a00.750"


def test_the_finding_counts_verdicts_in_words():
    import pandas as pd

    from cnode.book import c03_robustness

    assert [c03_robustness.share_words(c, 4) for c in (0, 1, 2, 3, 4)] == [
        "none", "fewer than half", "half", "most", "all"]
    versus = pd.DataFrame({"kind": ["gaussian", "salt_pepper", "fgsm", "pgd", "clean"],
                           "verdict": ["higher", "within noise", "within noise", "higher", "higher"]})
    said = c03_robustness.finding(versus, "a vanilla CNODE")
    assert "in half of the declared" in said and "1 of 2 under noise and in 1 of 2 under attack" in said
