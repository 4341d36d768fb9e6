"""Chapter 4 (accuracy against the rate): its smoke run (papermill), what it glues, its rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
        assert values[f"clean_mnist_{reg}_verdict"] in ("rises", "falls", "flat within noise", "too few points")
    assert values["channels_total"] == 16
    assert values["hinge_jacobian"].startswith("The final R_J values at the two rates differ by")
    assert values["hinge_weight"].startswith("The weight-regularized models reached their target")
    assert values["hinge_knob"].startswith("Over the rates tried")


@pytest.mark.notebook
def test_smoke_run(tmp_path: Path, monkeypatch):
    smoke_run("04_rho_sweep", PARAMS, check, tmp_path, monkeypatch)


def test_the_hinge_reads_a_parameter_difference_only_between_runs_of_one_machine():

    pairs = pd.DataFrame({"max_param_difference": [0.0, 2.5, 3.0], "same machine": ["unknown", "yes", "unknown"]})
    text = c04_rho_sweep.identical_pairs(pairs)
    assert text.startswith("Of the 3 pairs, 1 are bitwise identical; the others differ by at most 3")
    assert "(1 of them trained on one machine" in text and "for 1 of them the machine was not recorded" in text
    assert c04_rho_sweep.identical_pairs(pairs.iloc[:1]) == "Of the 1 pairs, 1 are bitwise identical."


def _hinge(reg_min: list[float], reg_max: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"regularizer": "jacobian", "rho_min": 0.25, "rho_max": 4.0, "reg_at_min": reg_min,
                         "reg_at_max": reg_max, "reg_difference": np.subtract(reg_max, reg_min),
                         "max_param_difference": 0.0, "same machine": "yes"})


def test_the_hinge_reading_on_synthetic_regularizer_values():
    """Every term active: the two rates end exactly the rate difference apart, and rho never entered the gradient;
    terms switched off: the gap falls short of it."""
    empty = pd.DataFrame(columns=["regularizer", "R_W", "certified rate", "rho"])
    active = c04_rho_sweep.story(_hinge([0.3, 0.35], [4.05, 4.1]), empty, {})
    assert "every penalized term stayed active, so rho never entered the gradient" in active["jacobian"]
    assert "at most 0.075" in active["lambda"] and "positive" in active["lambda"]
    off = c04_rho_sweep.story(_hinge([0.01, 0.02], [1.0, 1.2]), empty, {})
    assert "well short of the rate difference 3.75" in off["jacobian"] and "negative" in off["lambda"]


def test_the_rho_trend_is_a_slope_over_every_seed():
    rows = [{"dataset": "mnist", "regularizer": "weight", "kind": "clean", "level": 0.0, "rho": rho, "seed": s,
             "acc": 0.97 - 0.01 * np.log10(rho / 0.25) + 0.001 * s} for rho in (0.25, 1.0, 4.0) for s in range(3)]
    rows += [{**r, "regularizer": "jacobian", "acc": 0.95 + (0.004 if r["seed"] == 1 else -0.002)} for r in rows]
    trend = c04_rho_sweep.rho_trend(pd.DataFrame(rows), "clean", 0.0).set_index("regularizer")
    assert trend.loc["weight", "verdict"] == "falls" and trend.loc["weight", "slope"] == pytest.approx(-0.01)
    assert trend.loc["jacobian", "verdict"] == "flat within noise"
    knob = c04_rho_sweep.story(_hinge([0.3], [4.05]).iloc[:0], pd.DataFrame(), {"clean accuracy": trend.reset_index()})
    assert knob["knob"].startswith("Over the rates tried, by the slope of accuracy against log rho: clean accuracy "
                                   "falls with rho for weight on MNIST (-0.010 per decade")
