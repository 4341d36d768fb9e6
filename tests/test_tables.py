"""tables: verdict counts, the conclusion sentence and the 'what changed' cells are counted from the verdicts; the
ledger reads what the stored runs took. rho_search: the declared rule on synthetic runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cnode.book import c03_robustness, c04_rho_sweep, c05_cost, c08_rho_search, registry
from cnode.book.tables import model_name
from cnode.core.config import RunConfig


def _compare(verdicts: dict[tuple[str, float], str], dataset: str = "mnist") -> pd.DataFrame:
    return pd.DataFrame([{"dataset": dataset, "kind": k, "level": lvl, "verdict": v}
                         for (k, lvl), v in verdicts.items()])


def test_verdict_counts_split_noise_from_attacks_and_skip_level_zero():
    compare = _compare({("clean", 0.0): "higher", ("gaussian", 0.2): "higher", ("salt_pepper", 0.1): "lower",
                        ("fgsm", 0.0): "higher", ("fgsm", 0.1): "within noise", ("pgd", 0.1): "lower"})
    assert c03_robustness.verdict_counts(compare, ("gaussian", "salt_pepper")) == (1, 1, 2)
    assert c03_robustness.verdict_counts(compare, ("fgsm", "pgd")) == (0, 1, 2)


def test_the_conclusion_and_the_change_cells_follow_the_verdicts():
    vanilla = _compare({("gaussian", 0.2): "higher", ("pgd", 0.1): "higher"})
    cnn = _compare({("gaussian", 0.2): "within noise", ("pgd", 0.1): "lower"})
    frame = pd.DataFrame([{"dataset": "mnist", "model": m, "kind": k, "level": lvl, "acc": a}
                          for m, a in (("vanilla", 0.0), ("CNN", 0.07), ("weight rho=1", 0.02))
                          for k, lvl in (("pgd", 0.1), ("clean", 0.0))])
    text = c03_robustness.conclusion(vanilla, cnn, frame)
    assert "higher in 1 and lower in 0 of 1 noise cells, higher in 1 and lower in 0 of 1 attack cells" in text
    assert "against the CNN it is higher in 0 and lower in 0 of 1 noise cells, higher in 0 and lower in 1" in text
    assert "no model keeps more than 0.070" in text and "CNN on mnist" in text
    certificates = pd.DataFrame([{"dataset": "mnist", "regularizer": "weight", "R_W": 0.0, "certified rate": 1.02}])
    cells = c03_robustness.change_cells("paper", frame, vanilla, cnn, certificates)
    assert cells["chg_paper_mnist_clean"].startswith("vanilla 0.000, CNN 0.070")
    assert cells["chg_paper_mnist_cnn"] == "noise: higher 0, lower 0 of 1; attacks: higher 0, lower 1 of 1"
    assert cells["chg_paper_mnist_rw"] == "R_W 0, certified rate 1.02"


def test_the_ledger_counts_a_shared_run_once_and_reads_its_own_seconds(tmp_path, monkeypatch):
    from cnode.runs import store

    monkeypatch.setenv("CNODE_RESULTS", str(tmp_path))
    plan3 = registry.plan("03_robustness", {"profile": "smoke", "suite": "smoke", "seeds": [0], "datasets": ["mnist"]})
    plan4 = registry.plan("04_rho_sweep", {"profile": "smoke", "suite": "smoke", "seeds": [0], "datasets": ["mnist"]})
    run = store.load_or_train(plan3.runs[0])  # the vanilla CNODE, in both plans
    took = c05_cost.ledger([plan3, plan4])
    assert list(took.index) == [("03_robustness", "cpu")]
    assert took.loc[("03_robustness", "cpu"), "runs"] == 1 and took["eval_h"].sum() == 0
    assert took["train_h"].sum() == pytest.approx(sum(r["seconds"] for r in run.metrics["history"]) / 3600)


def _runs(clean_by_rho: dict[float, list[float]], reached_from: float, T: float = 0.1) -> list[dict]:
    rows = []
    for rho, values in clean_by_rho.items():
        for seed, acc in enumerate(values):
            rows.append({"setting": c08_rho_search.setting_name(RunConfig.from_profile(
                "smoke", regularizer="weight", rho=rho, T=T)), "rho": rho, "seed": seed, "clean": acc,
                "reached": rho >= reached_from})
    return rows


def test_the_search_rule_needs_separation_and_reached_targets_above_the_floor():
    separated = _runs({0.25: [0.97, 0.971], 4.0: [0.95, 0.951], 64.0: [0.91, 0.912]}, reached_from=4.0)
    flat = _runs({0.25: [0.97, 0.96], 4.0: [0.965, 0.97]}, reached_from=0.25, T=1.0)
    found = c08_rho_search.verdicts(pd.DataFrame(separated + flat), min_clean=0.92)
    first, second = found.index
    assert found.loc[first, "separates"] and found.loc[first, "rho matters"]
    assert found.loc[first, "rhos with targets reached"] == "4"  # 64 is below the floor
    assert not found.loc[second, "separates"] and not found.loc[second, "rho matters"]
    assert c08_rho_search.answer(found).startswith("rho matters, by the rule above, in 1 of 2 settings")
    assert c08_rho_search.showcase(found, "T = 1, gamma = 1") == ["T = 1, gamma = 1", "T = 0.1, gamma = 1"]
    none = c08_rho_search.verdicts(pd.DataFrame(flat), min_clean=0.99)
    assert c08_rho_search.answer(none).startswith("No setting") and not none["rho matters"].any()
    assert np.isclose(none.iloc[0]["clean range over rho"], 0.0025)
    apart = c08_rho_search.verdicts(pd.DataFrame(separated), min_clean=0.99)  # separates, nothing reaches the floor
    assert f"separates in 1 of 1 settings ({first}: range " in c08_rho_search.answer(apart)


def test_identical_models_groups_rates_that_stored_the_same_weights():
    def cfg(rho: float, seed: int, regularizer: str = "weight") -> RunConfig:
        return RunConfig.from_profile("smoke", regularizer=regularizer, rho=rho, seed=seed)

    stored = [(cfg(4.0, 0), {"model_sha256": "a"}), (cfg(16.0, 0), {"model_sha256": "b"}),
              (cfg(64.0, 0), {"model_sha256": "b"}), (cfg(4.0, 1), {"model_sha256": "c"}),
              (cfg(16.0, 1), {"model_sha256": "d"}), (cfg(64.0, 1), {"model_sha256": "e"}),
              (cfg(16.0, 0, "jacobian"), {"model_sha256": "b"}), (cfg(64.0, 0, "jacobian"), {"model_sha256": "f"})]
    same = c08_rho_search.identical_models(stored)
    assert same.to_dict("records") == [{"setting": c08_rho_search.setting_name(cfg(1.0, 0)), "rhos": "16 = 64",
                                        "seeds": "1/2"}]  # one seed of two; another setting's hash is not compared
    assert "16 = 64 (1/2 seeds)" in c08_rho_search.identical_text(same, stored)
    first_two = c08_rho_search.identical_models(stored[:2])
    assert c08_rho_search.identical_text(first_two, stored[:2]).startswith("no two stored")


def test_unequal_hashes_say_something_only_between_runs_of_one_machine():
    """Stored before machines were recorded, unequal hashes may come from rounding on two machines: 'unknown'.
    Recorded on one machine, they show that rho changed the training."""
    cfgs = [RunConfig.from_profile("smoke", regularizer="weight", rho=rho) for rho in (1.0, 4.0)]
    here = {"cpu": "x", "cpu_capability": "AVX2", "cpu_flags": "f", "gpu": None, "torch": "2", "threads": 1}
    old = [(cfg, {"model_sha256": h}) for cfg, h in zip(cfgs, "ab", strict=True)]
    new = [(cfg, {"model_sha256": h, "provenance": {"machine": here}}) for cfg, h in zip(cfgs, "ab", strict=True)]
    assert "unknown" in c08_rho_search.identical_text(c08_rho_search.identical_models(old), old)
    assert "rho changed the training" in c08_rho_search.identical_text(c08_rho_search.identical_models(new), new)
    other = [new[0], (cfgs[1], {"model_sha256": "b", "provenance": {"machine": {**here, "cpu": "y"}}})]
    assert "unknown" in c08_rho_search.identical_text(c08_rho_search.identical_models(other), other)


def test_the_hinge_reads_a_parameter_difference_only_between_runs_of_one_machine():

    pairs = pd.DataFrame({"max_param_difference": [0.0, 2.5, 3.0], "same machine": ["unknown", "yes", "unknown"]})
    text = c04_rho_sweep.identical_pairs(pairs)
    assert text.startswith("Of the 3 pairs, 1 are bitwise identical; the others differ by at most 3")
    assert "(1 of them trained on one machine" in text and "for 1 of them the machine was not recorded" in text
    assert c04_rho_sweep.identical_pairs(pairs.iloc[:1]) == "Of the 1 pairs, 1 are bitwise identical."


def test_each_shared_behaviour_once_labels_accuracy_and_mean_sd():
    """One label, one accuracy lookup, one 'mean ± sd' for every chapter."""
    from cnode.book.tables import accuracy, mean_sd, model_label

    cfg = RunConfig.from_profile("smoke", regularizer="weight", rho=4.0)
    assert model_label(cfg) == "weight" and model_name(cfg) == "weight rho=4"
    assert model_label(RunConfig.from_profile("smoke", weight_decay=0.01, steps=8), default_steps=4) == \
        "vanilla + wd (N=8)"
    assert model_label(RunConfig.from_profile("smoke", model="cnn", T=1.0), with_rho=True, base_T=0.1) == "CNN"
    assert model_label(RunConfig.from_profile("smoke", regularizer="jacobian", T=1.0), base_T=0.1) == "jacobian T=1"
    result = {"clean": 0.9, "rows": [{"kind": "pgd", "level": 0.1, "acc": 0.25}]}
    assert accuracy(result, "clean", 0.0) == 0.9 and accuracy(result, "pgd", 0.1 + 1e-12) == 0.25
    with pytest.raises(KeyError, match="no gaussian row at level 0.2"):
        accuracy(result, "gaussian", 0.2)
    assert np.isnan(accuracy(result, "gaussian", 0.2, default=float("nan")))
    assert mean_sd(0.91234, 0.0041) == "0.912 ± 0.004" and mean_sd(0.5, float("nan")) == "0.500 ± 0.000"
    assert mean_sd(1234.5, 12.0, ".3g") == "1.23e+03 ± 12"


def test_the_book_s_cells_are_declared_once():
    from cnode.book import c06_horizon
    from cnode.book.tables import CELLS, columns

    assert c03_robustness.SUMMARY_KEYS[("gaussian", 0.2)] == "g2" and c03_robustness.HEADLINES["pgd1"] == ("pgd", 0.1)
    assert c06_horizon.ACCURACIES["PGD 0.05"] == CELLS["pgd05"] == c08_rho_search.COLUMNS["PGD 0.05"]
    with pytest.raises(KeyError):
        columns({"x": "no-such-cell"})
