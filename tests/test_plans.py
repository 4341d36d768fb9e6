"""cnode.runs.plans: one list of runs per chapter, read from the chapter's own parameters."""

from __future__ import annotations

import pytest

from cnode.book import c03_robustness, registry
from cnode.runs import plans


def test_every_chapter_with_runs_has_a_plan_matching_its_parameters():
    p3 = plans.chapter_defaults("03_robustness")
    plan = registry.plan("03_robustness")
    assert list(plan.runs) == c03_robustness.robustness_runs(p3["profile"], p3["datasets"], p3["seeds"], p3["rhos"])
    assert plan.suite == p3["suite"]
    assert [cfg.regularizer for cfg in registry.plan("02_training").runs] == ["none", "weight", "jacobian"]
    cost = registry.plan("10_reproducing")
    assert {cfg.precision for cfg in cost.runs} == {"float32", "bfloat16"} and cost.suite == "sweep"


def test_given_parameters_override_the_defaults():
    plan = registry.plan("04_rho_sweep", {"profile": "smoke", "datasets": ["mnist"], "seeds": [0], "rhos": [0.5],
                                       "unrelated": 1})
    assert {cfg.profile for cfg in plan.runs} == {"smoke"} and len(plan.runs) == 3  # vanilla + 2 regularizers
    with pytest.raises(ValueError, match="no plan for chapter '01_contraction'"):
        registry.plan("01_contraction")


def test_missing_runs_are_counted(tmp_path):
    plan = registry.plan("02_training", {"profile": "smoke"})
    untrained, unevaluated = plan.missing(tmp_path)
    assert len(untrained) == 3 and unevaluated == []  # chapter 2 evaluates nothing


def test_a_paper_scale_chapter_with_missing_runs_stops_with_the_sweep_command(tmp_path, monkeypatch):
    monkeypatch.setenv("CNODE_RESULTS", str(tmp_path))
    params = {"profile": "paper", "seeds": [0, 1], "rhos": [0.5], "suite": "paper"}  # defaults but seeds and rhos
    with pytest.raises(plans.MissingRuns) as info:
        registry.require("04_rho_sweep", params)
    message = str(info.value)
    total = len(registry.plan("04_rho_sweep", params).runs)
    assert message.startswith(f"04_rho_sweep: {total} of {total} runs are not in the store yet") and "\n" not in message
    assert "`python -m cnode sweep 04_rho_sweep -y seeds '[0, 1]' -y rhos '[0.5]'`" in message
    assert registry.require("04_rho_sweep", {"profile": "smoke"}).runs  # smoke and cpu runs train inline


def test_the_sweep_command_round_trips_through_the_sweep_parser():
    from cnode.runs import sweeps

    params = {"profile": "paper", "seeds": [0, 1, 2], "rhos": [0.5], "datasets": ["fashion"]}
    import shlex

    words = shlex.split(plans.sweep_command("04_rho_sweep", params))[5:]  # as a shell hands them over
    p = [(words[i + 1], words[i + 2]) for i in range(0, len(words), 3) if words[i] == "-p"]
    y = [(words[i + 1], words[i + 2]) for i in range(0, len(words), 3) if words[i] == "-y"]
    assert {k: v for k, v in sweeps.resolve("04_rho_sweep", p, y).items() if k in params} == params


def test_trust_plan_audits_every_headline_model_and_wraps_the_vanilla_one(tmp_path):
    found = registry.plan("07_trust", dict(profile="smoke", datasets=["mnist", "fashion"], seeds=[0], audit="smoke"))
    names = sorted(f"{c.dataset} {c.label()} T={c.T:g}" for c in found.runs)
    assert len(found.runs) == 10 and sum("weight" in n and "T=1" in n for n in names) == 2
    assert found.audit == "smoke" and found.control_levels == 4
    assert [(c.dataset, c.regularizer, c.model) for c in found.controls()] == [
        ("mnist", "none", "cnode"), ("fashion", "none", "cnode")]
    assert found.unaudited(tmp_path) == list(found.runs) == found.todo(tmp_path)


def test_one_parser_reads_command_line_values_as_papermill_does():
    from cnode.runs.plans import parse_value

    values = ("3", "0.5", "True", "None", "mnist", "true", "false", "none", "1e-3")
    assert [parse_value(v) for v in values] == [3, 0.5, True, None, "mnist", True, False, None, 1e-3]
