"""Chapter 10 (reproducing the book): its smoke run (papermill), what it glues, its ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from notebooks import ROOT, smoke_run

from cnode.book import c10_reproducing, registry
from cnode.runs import plans

#: the chapter's tiny parameters (seconds on 2 cores)
PARAMS = dict(precision_profile="smoke", precision_seeds=[0], precision_suite="smoke")


def check(values: dict, store: Path) -> None:
    bench = json.loads((ROOT / plans.chapter_defaults("10_reproducing")["benchmark"]).read_text())
    runs = bench["runs"]
    assert values["n_runs"] == len(runs)
    assert values["pgd_total"] == 4 * bench["pgd"][0]["images"]
    assert values["pgd_differing"] == sum(r["differing_images"] for r in bench["pgd"] if r["path"] == "new")
    others = [json.loads(p.read_text()) for p in (ROOT / "benchmarks" / "results").glob("cpu-*.json")]
    assert values["n_other_runs"] == sum(len(b["runs"]) for b in others) - len(runs)  # every other machine's run
    assert 0 < values["clean_fp32"] <= 100 and 0 < values["clean_bf16"] <= 100  # the smoke precision runs
    assert 0 <= values["pgd_fp32"] <= values["clean_fp32"] and 0 <= values["pgd_bf16"] <= values["clean_bf16"]
    assert values["epoch_fp32"] > 0 and values["epoch_bf16"] > 0


@pytest.mark.notebook
def test_smoke_run(tmp_path: Path, monkeypatch):
    smoke_run("10_reproducing", PARAMS, check, tmp_path, monkeypatch)


def test_the_ledger_counts_a_shared_run_once_and_reads_its_own_seconds(tmp_path, monkeypatch):
    from cnode.runs import store

    monkeypatch.setenv("CNODE_RESULTS", str(tmp_path))
    plan3 = registry.plan("03_robustness", {"profile": "smoke", "suite": "smoke", "seeds": [0], "datasets": ["mnist"]})
    plan4 = registry.plan("04_rho_sweep", {"profile": "smoke", "suite": "smoke", "seeds": [0], "datasets": ["mnist"]})
    run = store.load_or_train(plan3.runs[0])  # the vanilla CNODE, in both plans
    took = c10_reproducing.ledger([plan3, plan4])
    assert list(took.index) == [("03_robustness", "cpu")]
    assert took.loc[("03_robustness", "cpu"), "runs"] == 1 and took["eval_h"].sum() == 0
    assert took["train_h"].sum() == pytest.approx(sum(r["seconds"] for r in run.metrics["history"]) / 3600)
