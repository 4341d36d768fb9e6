"""Chapter 6 (the horizon): its smoke run (papermill), what it glues, its rules."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from notebooks import smoke_run

#: the chapter's tiny parameters (seconds on 2 cores)
PARAMS = dict(profile="smoke", datasets=["mnist"], seeds=[0, 1], suite="smoke", mechanism="smoke",
                        fine_steps=8, decision_eps=0.1)


def check(values: dict, store: Path) -> None:
    assert values["h_exp_short"] == pytest.approx(math.exp(-0.1), abs=1e-3)
    assert values["h_exp_long"] == pytest.approx(math.exp(-1.0), abs=1e-3)
    assert values["h_dense_n"] == 18 and 0 <= values["h_dense_err"] < 0.05  # one re-check per smoke model
    lines = [line for line in values["h_answers"].splitlines() if line.startswith("- ")]
    assert len(lines) == 7  # weight, jacobian, vanilla + wd at both T, and weight (N=8) at T = 1
    answers = ("nothing to explain", "contraction explains it", "not contraction")
    assert all(sum(a in line for a in answers) == 1 for line in lines)
    assert sum("T = 1, weight (N=8)" in line for line in lines) == 1


@pytest.mark.notebook
def test_smoke_run(tmp_path: Path, monkeypatch):
    smoke_run("06_horizon", PARAMS, check, tmp_path, monkeypatch)
