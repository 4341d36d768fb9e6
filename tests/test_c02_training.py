"""Chapter 2 (training with each regularizer): its smoke run (papermill), what it glues, its rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from notebooks import smoke_run

#: the chapter's tiny parameters (seconds on 2 cores)
PARAMS = dict(profile="smoke", epochs=1)


def check(values: dict, store: Path) -> None:
    for name in ("none", "weight", "jacobian"):
        assert 0.1 < values[f"acc_{name}"] <= 1.0
    assert values["epochs_used"] == 1 and values["subset_used"] == 512
    assert values["chosen_rw"] >= 0 and 0 <= values["chosen_certified"] <= values["channels_total"] == 16
    assert values["jac_cost"] > 1  # the Jacobian regularizer costs more than a vanilla epoch


@pytest.mark.notebook
def test_smoke_run(tmp_path: Path, monkeypatch):
    smoke_run("02_training", PARAMS, check, tmp_path, monkeypatch)
