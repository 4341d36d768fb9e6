"""Chapter 4 (accuracy against the rate): its smoke run (papermill), what it glues, its rules."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from notebooks import smoke_run

from cnode.book import c04_rho_sweep

#: the chapter's tiny parameters (seconds on 2 cores)
PARAMS = dict(datasets=["mnist"], profile="smoke", seeds=[0], rhos=[0.5, 2.0], suite="smoke")


def check(values: dict, store: Path) -> None:
    assert values["n_runs"] == 5 and values["rho_min"] == 0.5 and values["rho_max"] == 2.0
    for reg in ("weight", "jacobian"):
        assert 0.1 < values[f"clean_mnist_{reg}_lo"] <= 1 and 0.1 < values[f"clean_mnist_{reg}_hi"] <= 1
        assert values[f"clean_mnist_{reg}_verdict"] in ("rises", "falls", "flat within seed spread")
    assert values["channels_total"] == 16
    assert values["hinge_jacobian"].startswith("The final R_J values at the two rates differ by")
    assert values["hinge_weight"].startswith("The weight-regularized models reached their target")
    assert values["hinge_knob"].startswith("Between the smallest and the largest rate")


@pytest.mark.notebook
def test_smoke_run(tmp_path: Path, monkeypatch):
    smoke_run("04_rho_sweep", PARAMS, check, tmp_path, monkeypatch)


def test_the_hinge_reads_a_parameter_difference_only_between_runs_of_one_machine():

    pairs = pd.DataFrame({"max_param_difference": [0.0, 2.5, 3.0], "same machine": ["unknown", "yes", "unknown"]})
    text = c04_rho_sweep.identical_pairs(pairs)
    assert text.startswith("Of the 3 pairs, 1 are bitwise identical; the others differ by at most 3")
    assert "(1 of them trained on one machine" in text and "for 1 of them the machine was not recorded" in text
    assert c04_rho_sweep.identical_pairs(pairs.iloc[:1]) == "Of the 1 pairs, 1 are bitwise identical."
