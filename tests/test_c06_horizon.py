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
    # one dense re-check per smoke model whose step h >= 0.1 (the T = 1 runs: 5 recipes x 2 seeds)
    assert values["h_dense_n"] == 10 and 0 <= values["h_dense_err"] < 0.05
    lines = [line for line in values["h_answers"].splitlines() if line.startswith("- ")]
    assert len(lines) == 7  # weight, jacobian, vanilla + wd at both T, and weight (N=8) at T = 1
    answers = ("nothing to explain", "contraction explains it", "not contraction")
    assert all(sum(a in line for a in answers) == 1 for line in lines)
    assert sum("T = 1, weight (N=8)" in line for line in lines) == 1


@pytest.mark.notebook
def test_smoke_run(tmp_path: Path, monkeypatch):
    smoke_run("06_horizon", PARAMS, check, tmp_path, monkeypatch)


def _rule_inputs(robust: str, flow: float, total: float):
    import pandas as pd

    gains = {"input gain (PGD)": 1.0, "head gain (PGD)": 1.0}
    data = pd.DataFrame([{"dataset": "mnist", "T": 1.0, "model": "vanilla", **gains, "flow gain (PGD)": 1.0,
                          "total gain (PGD)": 1.0},
                         {"dataset": "mnist", "T": 1.0, "model": "weight", **gains, "flow gain (PGD)": flow,
                          "total gain (PGD)": total}])
    compare = pd.DataFrame([{"dataset": "mnist", "T": 1.0, "model": "weight", "accuracy": "PGD 0.05",
                             "diff": 0.2, "lo": 0.1, "hi": 0.3, "verdict": robust}])
    return data, compare


@pytest.mark.parametrize("robust, flow, total, answer", [
    ("within noise", 0.1, 0.1, "nothing to explain"),  # (i) fails: however much the flow shrinks
    ("higher", 0.3, 0.25, "contraction explains it"),  # log 0.3 <= 0.5 log 0.25
    ("higher", 0.6, 0.25, "not contraction"),  # the flow shrinks, but accounts for less than half of the drop
    ("higher", 1.2, 0.25, "not contraction"),  # the flow passes on more than vanilla's
])
def test_the_decision_rule_on_synthetic_measurements(robust, flow, total, answer):
    from cnode.book import c06_horizon

    data, compare = _rule_inputs(robust, flow, total)
    assert c06_horizon.decide(data, compare, "PGD 0.05")["answer"].tolist() == [answer]


def test_the_intro_findings_follow_the_measurements():
    import pandas as pd

    from cnode.book import c06_horizon

    def decision(flow: float) -> pd.DataFrame:
        rows = [{"dataset": "mnist", "T": 0.1, "model": m, "input gain R / V": 0.4, "flow gain R / V": f,
                 "head gain R / V": 0.7, "total gain R / V": 0.3} for m, f in (("weight", flow), ("jacobian", flow))]
        rows.append({"dataset": "mnist", "T": 0.1, "model": "vanilla + wd", "input gain R / V": 0.5,
                     "flow gain R / V": 1.8, "head gain R / V": 0.1, "total gain R / V": 0.07})
        return pd.DataFrame(rows)

    compare = pd.DataFrame([{"dataset": "mnist", "T": 0.1, "model": m, "accuracy": a, "diff": d}
                            for m, pgd, clean in (("weight", 0.2, 0.01), ("jacobian", 0.3, 0.0),
                                                  ("vanilla + wd", 0.5, -0.08))
                            for a, d in (("PGD 0.05", pgd), ("clean", clean))])
    said = c06_horizon.findings(decision(1.2), compare, "PGD 0.05", 0.1)
    assert "does not carry" in said["flow"] and "1.20 times" in said["flow"]
    assert "in 1 of 1 datasets" in said["rival"] and "MNIST +0.500 against +0.300" in said["rival"]
    assert "contributes to" in c06_horizon.findings(decision(0.5), compare, "PGD 0.05", 0.1)["flow"]
    compare.loc[(compare.model == "vanilla + wd") & (compare.accuracy == "PGD 0.05"), "diff"] = 0.1
    assert "in 0 of 1 datasets" in c06_horizon.findings(decision(1.2), compare, "PGD 0.05", 0.1)["rival"]
