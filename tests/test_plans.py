"""cnode.plans: one list of runs per chapter, read from the chapter's own parameters."""

from __future__ import annotations

import pytest

from cnode import experiments, plans


def test_every_chapter_with_runs_has_a_plan_matching_its_parameters():
    p3 = plans.chapter_defaults("03_robustness")
    plan = plans.plan("03_robustness")
    assert list(plan.runs) == experiments.robustness_runs(p3["profile"], p3["datasets"], p3["seeds"], p3["rhos"])
    assert plan.suite == p3["suite"]
    assert [cfg.regularizer for cfg in plans.plan("02_training").runs] == ["none", "weight", "jacobian"]
    cost = plans.plan("05_cost")
    assert {cfg.precision for cfg in cost.runs} == {"float32", "bfloat16"} and cost.suite == "sweep"


def test_given_parameters_override_the_defaults():
    plan = plans.plan("04_rho_sweep", {"profile": "smoke", "datasets": ["mnist"], "seeds": [0], "rhos": [0.5],
                                       "unrelated": 1})
    assert {cfg.profile for cfg in plan.runs} == {"smoke"} and len(plan.runs) == 3  # vanilla + 2 regularizers
    with pytest.raises(ValueError, match="no plan for chapter '01_contraction'"):
        plans.plan("01_contraction")


def test_missing_runs_are_counted(tmp_path):
    plan = plans.plan("02_training", {"profile": "smoke"})
    untrained, unevaluated = plan.missing(tmp_path)
    assert len(untrained) == 3 and unevaluated == []  # chapter 2 evaluates nothing
