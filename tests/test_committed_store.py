"""The committed store (results/) serves every run and evaluation the chapters need at their default
parameters, so re-executing the book never retrains. A changed config key shows up here, not as an hour of
training inside nbval."""

from __future__ import annotations

import ast

import nbformat
import pytest
from notebooks import BOOK

from cnode import experiments
from cnode.evaluate import SUITES
from cnode.paths import results_dir
from cnode.store import run_dir


def defaults(stem: str) -> dict:
    """The literal values of a chapter's parameters cell."""
    nb = nbformat.read(BOOK / f"{stem}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    out = {}
    for node in ast.parse(cell.source).body:
        target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0]
        out[target.id] = ast.literal_eval(node.value)
    return out


def needed() -> list[tuple[str, list, str | None]]:
    p2, p3, p4 = defaults("02_training"), defaults("03_robustness"), defaults("04_rho_sweep")
    p5 = defaults("05_cost")
    precision = experiments.precision_runs(p5["precision_profile"], p5["precision_dataset"],
                                           p5["precision_regularizer"], p5["precision_rho"], p5["precision_seeds"])
    return [
        ("02_training", list(experiments.training_runs(p2["profile"], p2["dataset"], p2["rho"], p2["seed"],
                                                         p2["device"], p2["epochs"]).values()), None),
        ("03_robustness", experiments.robustness_runs(p3["profile"], p3["datasets"], p3["seeds"], p3["rhos"]),
         p3["suite"]),
        ("04_rho_sweep", experiments.sweep_runs(p4["profile"], p4["datasets"], p4["seeds"], p4["rhos"]), p4["suite"]),
        ("05_cost", [cfg for cfgs in precision.values() for cfg in cfgs], p5["precision_suite"]),
    ]


@pytest.mark.parametrize("stem, cfgs, suite", needed(), ids=lambda v: v if isinstance(v, str) else "")
def test_committed_store_serves_the_chapter_defaults(stem, cfgs, suite):
    assert str(results_dir()).endswith("results"), "run without CNODE_RESULTS to check the committed store"
    missing = [cfg.label() for cfg in cfgs if not (run_dir(cfg) / "metrics.json").exists()]
    assert not missing, f"{stem}: runs missing from results/ (retrain with `make chapters`): {missing}"
    if suite is not None:
        name = f"eval-{SUITES[suite].key()}.json"
        unevaluated = [cfg.label() for cfg in cfgs if not (run_dir(cfg) / name).exists()]
        assert not unevaluated, f"{stem}: evaluations missing from results/: {unevaluated}"
