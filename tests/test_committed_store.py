"""The committed store (results/) serves every run, evaluation, mechanism measurement and audit card the chapters
need at their default parameters, so re-executing the book never retrains. A changed config key shows up here,
not as an hour of training inside nbval."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cnode.book import registry
from cnode.core.paths import repo_root, results_dir
from cnode.runs import plans, store


def shown_plans() -> list[plans.Plan]:
    """The plan of every chapter the book shows (``_toc.yml``) at its default parameters (``cnode.runs.plans``: the
    list the chapters use). A chapter still being written, not yet in the table of contents, is not checked."""
    toc = yaml.safe_load((repo_root() / "_toc.yml").read_text())
    shown = {Path(entry["file"]).name for entry in toc["chapters"]}
    return [p for p in map(registry.plan, registry.with_runs()) if p.chapter in shown]


#: chapters that show what their grid has stored so far and list the rest as not run (chapter 9's front)
PARTIAL = {"09_front"}


@pytest.mark.parametrize("plan", shown_plans(), ids=lambda p: p.chapter)
def test_committed_store_serves_the_chapter_defaults(plan: plans.Plan):
    assert str(results_dir()).endswith("results"), "run without CNODE_RESULTS to check the committed store"
    if plan.chapter in PARTIAL:
        return _check_partial(plan)
    missing = [f"{cfg.dataset} {cfg.label()} T={cfg.T:g}" for cfg in plan.todo()]  # untrained, or a file missing
    assert not missing, f"{plan.chapter}: {len(missing)} runs lack a file in results/: {missing}"


def _check_partial(plan: plans.Plan) -> None:
    """Chapter 9 shows a recipe once all its seeds are stored with their front: those runs are committed with
    their model, and each Jacobian one with an own-target measurement (else the chapter would measure it)."""
    from cnode.book import c09_front

    shown, _ = c09_front.split_stored(list(plan.runs), plan.suite, plan.front)
    assert shown, f"{plan.chapter}: no run is stored with its front"
    lacking = [f"{cfg.dataset} {cfg.label()}" for cfg in shown if not (store.run_dir(cfg) / "model.pt").exists()
               or cfg.regularizer == "jacobian" and not any((store.run_dir(cfg) / store.target_file(name)).exists()
                                                            for name in ("paper", "search"))]
    assert not lacking, f"{plan.chapter}: shown runs lack their model or own-target measurement: {lacking}"


def test_the_check_sees_a_missing_audit_and_a_missing_measurement(tmp_path):
    """``todo`` is what the test above relies on: with every run trained and evaluated, a run whose audit card
    or mechanism measurement is missing is still to do, and is done once the file is there."""
    from cnode.runs.store import audit_file, run_dir

    trust = registry.plan("07_trust", {"profile": "smoke", "datasets": ["mnist"], "audit": "smoke"})
    horizon = registry.plan("06_horizon", {"profile": "smoke", "datasets": ["mnist"], "seeds": [0], "suite": "smoke",
                                        "mechanism": "smoke", "fine_steps": 8})
    for plan in (trust, horizon):
        for cfg in plan.runs:
            run_dir(cfg, tmp_path).mkdir(parents=True, exist_ok=True)
            (run_dir(cfg, tmp_path) / "metrics.json").write_text("{}")
        if plan.suite:

            for cfg in plan.runs:
                (run_dir(cfg, tmp_path) / store.eval_file(plan.suite)).write_text("{}")
    assert trust.todo(tmp_path) == list(trust.runs)  # no card yet
    for cfg in trust.runs:
        (run_dir(cfg, tmp_path) / audit_file(cfg, "smoke")).write_text("{}")
    assert trust.todo(tmp_path) == trust.controls()  # the positive control's card is missing still
    for cfg in trust.controls():
        (run_dir(cfg, tmp_path) / audit_file(cfg, "smoke", trust.control_levels)).write_text("{}")
    assert trust.todo(tmp_path) == []
    nodes = [cfg for cfg in horizon.runs if cfg.model == "cnode"]
    assert nodes and horizon.todo(tmp_path) == nodes  # trained and evaluated, not measured
    for cfg in nodes:
        (run_dir(cfg, tmp_path) / store.mechanism_file("smoke")).write_text("{}")
    assert horizon.todo(tmp_path) == []
