"""Chapter 1 (the contraction conditions): its smoke run (papermill), what it glues, its rules."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from notebooks import smoke_run

#: the chapter's tiny parameters (seconds on 2 cores)
PARAMS = dict(kernels=6, starts=2, size=4, channels=2, rho=2.0)


def check(values: dict, store: Path) -> None:
    assert values["violations"] == 0
    assert values["gap_min"] >= 0
    assert values["conv_error"] == "below 1e-12"
    assert values["observed_rate"] >= 2.0  # the smoke run certifies rho = 2
    assert values["traj_lambda_max"] <= -2.0
    assert values["authors_init_rate"] == pytest.approx(-114.5)
    assert values["h_star"] < values["h_contracting"]
    assert values["shrink_paper"] == pytest.approx(math.exp(-0.2), abs=1e-3)


@pytest.mark.notebook
def test_smoke_run(tmp_path: Path, monkeypatch):
    smoke_run("01_contraction", PARAMS, check, tmp_path, monkeypatch)
