"""Chapter 3 (robustness to noise and attacks): its smoke run (papermill), what it glues, its rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from notebooks import smoke_run, stored

from cnode.book import c03_robustness


def _compare(verdicts: dict[tuple[str, float], str], dataset: str = "mnist") -> pd.DataFrame:
    return pd.DataFrame([{"dataset": dataset, "kind": k, "level": lvl, "verdict": v}
                         for (k, lvl), v in verdicts.items()])


#: the chapter's tiny parameters (seconds on 2 cores)
PARAMS = dict(datasets=["mnist"], profile="smoke", seeds=[0], suite="smoke")


def check(values: dict, store: Path) -> None:
    assert values["n_runs"] == 4 and values["n_seeds"] == 1 and values["n_test"] == 128
    assert values["n_levels"] == values["n_higher"] + values["n_lower"] + values["n_within"] > 0
    assert 0.1 < values["mnist_clean_van"] <= 1 and 0 <= values["mnist_pgd1_best"] <= 1
    assert values["mnist_pgd1_van"] <= values["mnist_clean_van"]
    assert values["mnist_clean_verdict"] in ("higher", "lower", "within seed spread")
    assert values["n_warnings"] == sum(len(r["warnings"]) for r in stored(store, "eval-*.json"))  # the store's count
    assert "±" in values["sum_mnist_clean_vanilla"] and values["set_seeds"] == "0"


@pytest.mark.notebook
def test_smoke_run(tmp_path: Path, monkeypatch):
    smoke_run("03_robustness", PARAMS, check, tmp_path, monkeypatch)


def test_verdict_counts_split_noise_from_attacks_and_skip_level_zero():
    compare = _compare({("clean", 0.0): "higher", ("gaussian", 0.2): "higher", ("salt_pepper", 0.1): "lower",
                        ("fgsm", 0.0): "higher", ("fgsm", 0.1): "within noise", ("pgd", 0.1): "lower"})
    assert c03_robustness.verdict_counts(compare, ("gaussian", "salt_pepper")) == (1, 1, 2)
    assert c03_robustness.verdict_counts(compare, ("fgsm", "pgd")) == (0, 1, 2)


def test_the_conclusion_and_the_change_cells_follow_the_verdicts():
    vanilla = _compare({("gaussian", 0.2): "higher", ("pgd", 0.1): "higher"})
    cnn = _compare({("gaussian", 0.2): "within noise", ("pgd", 0.1): "lower"})
    frame = pd.DataFrame([{"dataset": "mnist", "model": m, "kind": k, "level": lvl, "acc": a}
                          for m, a in (("vanilla", 0.0), ("CNN", 0.07), ("weight rho=1", 0.02))
                          for k, lvl in (("pgd", 0.1), ("clean", 0.0))])
    text = c03_robustness.conclusion(vanilla, cnn, frame)
    assert "higher in 1 and lower in 0 of 1 noise cells, higher in 1 and lower in 0 of 1 attack cells" in text
    assert "against the CNN it is higher in 0 and lower in 0 of 1 noise cells, higher in 0 and lower in 1" in text
    assert "no model keeps more than 0.070" in text and "CNN on mnist" in text
    certificates = pd.DataFrame([{"dataset": "mnist", "regularizer": "weight", "R_W": 0.0, "certified rate": 1.02}])
    cells = c03_robustness.change_cells("paper", frame, vanilla, cnn, certificates)
    assert cells["chg_paper_mnist_clean"].startswith("vanilla 0.000, CNN 0.070")
    assert cells["chg_paper_mnist_cnn"] == "noise: higher 0, lower 0 of 1; attacks: higher 0, lower 1 of 1"
    assert cells["chg_paper_mnist_rw"] == "R_W 0, certified rate 1.02"


def test_a_clean_difference_is_computed_on_the_images_of_the_accuracies_beside_it():
    """The clean accuracy is over all n test images, so the paired clean difference is too (it was once taken on
    the attacked subset only: +0.019 printed beside accuracies whose difference was +0.014)."""
    from cnode.core.config import RunConfig
    from cnode.core.evaluate import pack_bits

    n, attacked = 10, 4
    def result(correct: list[bool]) -> dict:
        return {"clean": float(np.mean(correct)), "n": n, "n_attacked": attacked,
                "clean_correct": pack_bits(torch.tensor(correct)), "rows": []}

    vanilla = [True] * 4 + [False] * 6  # 0.4 on all 10, 1.0 on the first 4
    weight = [True] * 4 + [True] * 3 + [False] * 3  # 0.7 on all 10, 1.0 on the first 4
    assert len(c03_robustness.outcomes(result(vanilla), "clean", 0.0)) == n
    runs = [(RunConfig.from_profile("smoke", regularizer="none", seed=s), result(vanilla)) for s in (0, 1)]
    runs += [(RunConfig.from_profile("smoke", regularizer="weight", seed=s), result(weight)) for s in (0, 1)]
    row = c03_robustness.paired_comparison(runs).iloc[0]
    assert row["difference"] == pytest.approx(row["its accuracy"] - row["vanilla"]) == pytest.approx(0.3)
