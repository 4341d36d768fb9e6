"""Chapter 03_robustness: the robustness chapter at a tiny setting (papermill), asserting on what it glues."""

from __future__ import annotations

from pathlib import Path

import pytest
from notebooks import smoke_run, stored

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
