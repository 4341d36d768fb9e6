"""The committed store (results/) serves every run and evaluation the chapters need at their default
parameters, so re-executing the book never retrains. A changed config key shows up here, not as an hour of
training inside nbval."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cnode import plans
from cnode.evaluate import SUITES
from cnode.paths import repo_root, results_dir
from cnode.store import run_dir


def needed() -> list[tuple[str, list, str | None]]:
    """The plan of every chapter the book shows (``_toc.yml``) at its default parameters (``cnode.plans``: the
    list the chapters use). A chapter still being written, not yet in the table of contents, is not checked."""
    toc = yaml.safe_load((repo_root() / "_toc.yml").read_text())
    shown = {Path(entry["file"]).name for entry in toc["chapters"]}
    return [(p.chapter, list(p.runs), p.suite) for p in map(plans.plan, plans.PLANS) if p.chapter in shown]


@pytest.mark.parametrize("stem, cfgs, suite", needed(), ids=lambda v: v if isinstance(v, str) else "")
def test_committed_store_serves_the_chapter_defaults(stem, cfgs, suite):
    assert str(results_dir()).endswith("results"), "run without CNODE_RESULTS to check the committed store"
    missing = [cfg.label() for cfg in cfgs if not (run_dir(cfg) / "metrics.json").exists()]
    assert not missing, f"{stem}: runs missing from results/ (retrain with `make chapters`): {missing}"
    if suite is not None:
        name = f"eval-{SUITES[suite].key()}.json"
        unevaluated = [cfg.label() for cfg in cfgs if not (run_dir(cfg) / name).exists()]
        assert not unevaluated, f"{stem}: evaluations missing from results/: {unevaluated}"
