"""Chapter 5 (the cost ledger): its smoke run (papermill), what it glues, its rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from notebooks import ROOT, smoke_run

from cnode.runs import plans

#: the chapter's tiny parameters (seconds on 2 cores)
PARAMS = dict(grid_seeds=[0, 1, 2])


def check(values: dict, store: Path) -> None:
    bench = json.loads((ROOT / plans.chapter_defaults("05_cost")["benchmark"]).read_text())  # what the chapter reads
    targets = bench["targets"]
    assert values["speedup_ref"] == pytest.approx(targets["speedup_over_reference"], abs=1e-2)
    assert values["ratio_jac"] == pytest.approx(targets["jacobian_ratio"], abs=1e-2)
    assert values["err_jac"] == pytest.approx(targets["jacobian_max_rel_error"], abs=1e-3)
    assert values["default_iters"] == bench["settings"]["jacobian_default_iters"]
    runs = bench["runs"]
    assert values["n_runs"] == len(runs) and values["met_weight"].endswith(f"of {len(runs)} runs")
    ok = sum(r["targets"]["weight_ratio"] <= 1.05 and r["targets"]["weight_q75_ratio"] <= 1.05 for r in runs)
    assert values["met_weight"] == f"met in {ok} of {len(runs)} runs"
    assert values["grid_runs"] == 48 and values["grid_train_h"] > 0
    rates = [r["images_per_s"] for r in bench["pgd"] if r["path"] == "new"]
    assert values["pgd_fastest"] == pytest.approx(max(rates), abs=0.5)
    assert values["pgd_slowest"] <= values["pgd_fastest"]


@pytest.mark.notebook
def test_smoke_run(tmp_path: Path, monkeypatch):
    smoke_run("05_cost", PARAMS, check, tmp_path, monkeypatch)
