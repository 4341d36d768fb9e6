"""Chapter 04_rho_sweep: the rho sweep at a tiny setting (papermill), asserting on what it glues."""

from __future__ import annotations

from pathlib import Path

import pytest
from notebooks import smoke_run

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
