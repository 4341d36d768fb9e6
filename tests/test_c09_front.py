"""Chapter 9 (the accuracy-robustness front): its plan and its rule on synthetic fronts with known answers."""

from __future__ import annotations

import pandas as pd
import pytest

from cnode.book import c09_front, registry


def _front(recipes: dict[str, tuple[str, list[float], list[float]]]) -> pd.DataFrame:
    """recipe -> (family, clean per seed, robust per seed)."""
    return pd.DataFrame([{"recipe": name, "family": fam, "seed": s, "clean": c, "robust": r}
                         for name, (fam, clean, robust) in recipes.items()
                         for s, (c, r) in enumerate(zip(clean, robust, strict=True))])


def test_a_front_where_contractivity_is_worth_it():
    front = _front({"weight": ("contractive", [0.97, 0.971, 0.969], [0.40, 0.42, 0.41]),
                    "vanilla": ("baseline", [0.96, 0.962, 0.958], [0.02, 0.01, 0.03]),
                    "vanilla + wd": ("baseline", [0.90, 0.91, 0.89], [0.60, 0.58, 0.62]),  # robust, not matched
                    "CNN": ("baseline", [0.968, 0.967, 0.969], [0.30, 0.29, 0.31])})
    found = c09_front.beats_baselines(front).set_index("recipe")
    # vanilla's 0.96 is below 0.97 - 0.005: only the CNN is matched
    assert found.loc["weight", "best matched baseline"] == "CNN" and found.loc["weight", "matched"] == 1
    assert found.loc["weight", "verdict"] == "beats the baselines" and c09_front.worth_it(found)


def test_a_front_where_it_is_not():
    """A matched baseline is as robust within the seed spread; a recipe above every baseline's accuracy is not
    compared at all."""
    front = _front({"weight": ("contractive", [0.97, 0.971, 0.969], [0.40, 0.30, 0.50]),
                    "jacobian": ("contractive", [0.99, 0.99, 0.99], [0.9, 0.9, 0.9]),
                    "adv CNN": ("baseline", [0.968, 0.967, 0.969], [0.38, 0.41, 0.39])})
    found = c09_front.beats_baselines(front).set_index("recipe")
    assert found.loc["weight", "verdict"] == "not shown"
    assert found.loc["jacobian", "verdict"] == "no matched baseline"
    assert not c09_front.worth_it(found)


def test_the_non_dominated_set_is_the_front_line():
    means = pd.DataFrame({"clean": [0.97, 0.96, 0.90, 0.95], "robust": [0.4, 0.3, 0.6, 0.2]},
                         index=["a", "b", "c", "d"])
    assert c09_front.non_dominated(means) == ["c", "a"]


def test_the_plan_holds_the_init_ablation_adversarial_training_and_weight_decay_in_that_order():
    runs = c09_front.front_runs("paper", ["mnist", "fashion"], [0, 1, 2], 1.0, [1e-4, 1e-3, 3e-2],
                                {"mnist": 0.1, "fashion": 0.05})
    assert len(runs) == 2 * 3 * (3 + 3 + 3)  # datasets x seeds x (init, adversarial, weight decays)
    planned = registry.plan("09_front", {"profile": "paper"}).runs
    assert planned[:54] == tuple(runs)  # the new runs come first, then the certifiable point
    cert = planned[54:60]
    assert [c.model for c in cert] == ["cnode", "cnn"] * 3 and all(c.op_norm == 1.0 for c in cert)
    assert cert[0].T == 1.0 and cert[0].steps == 100 and cert[0].flow_norm == 12.0 and cert[0].regularizer == "weight"
    assert 2 * cert[0].rho / cert[0].flow_norm ** 2 > cert[0].h  # the Euler step can contract at this norm
    assert [c.label() for c in runs[:3]] == ["cnode/none init=contractive seed=0",
                                             "cnode/weight rho=1 init=default seed=0",
                                             "cnode/jacobian rho=1 init=default seed=0"]
    adv = [c for c in runs if c.adv_eps]
    assert {(c.dataset, c.adv_eps) for c in adv} == {("mnist", 0.1), ("fashion", 0.05)} and len(adv) == 18
    assert runs.index(adv[0]) == 18 and {c.weight_decay for c in runs[36:]} == {1e-4, 1e-3, 3e-2}
    assert c09_front.family(adv[2]) == "contractive"  # weight-regularized, adversarially trained
    assert c09_front.family(adv[0]) == "baseline" and c09_front.family(runs[0]) == "baseline"


@pytest.mark.parametrize("recipe", ["weight", "jacobian"])
def test_regularized_recipes_are_contractive_whatever_their_init(recipe):
    from cnode.core.config import RunConfig

    assert c09_front.family(RunConfig.from_profile("smoke", regularizer=recipe, init="default")) == "contractive"


#: the chapter's tiny parameters (about a minute on 2 cores: 14 smoke runs, each attacked)
PARAMS = dict(profile="smoke", datasets=["mnist"], seeds=[0, 1], suite="smoke", front="smoke", target="smoke",
              reuse=False, weight_decays=[1e-3], eps=0.1, cert_dataset="", standard="smoke")


def check(values: dict, store) -> None:
    assert values["n_points"] == 14 and values["not_run_text"].startswith("Every planned run")
    assert values["tbl_front_mnist"].count("\n") == 2 + 7  # header, rule, 7 recipes
    rows = [line for line in values["tbl_rule_mnist"].splitlines()[2:] if line.strip()]
    assert len(rows) == 3  # the contractive recipes: both regularizers with the default init, weight + adv
    yes = any("beats the baselines" in line for line in rows)
    assert values["answer_mnist"] == ("yes" if yes else "no")
    assert values["adv_collapsed"].endswith("of 6") and "by at most 0.000," in values["aa_result"]  # same suite twice


@pytest.mark.notebook
def test_smoke_run(tmp_path, monkeypatch):
    from notebooks import smoke_run

    smoke_run("09_front", PARAMS, check, tmp_path, monkeypatch)


def test_a_front_without_contractive_recipes_answers_no():
    front = _front({"CNN": ("baseline", [0.96, 0.97], [0.3, 0.31])})
    found = c09_front.beats_baselines(front)
    assert found.empty and not c09_front.worth_it(found)


def test_the_answer_in_words_names_the_paper_setting_and_its_baseline():
    front = _front({"weight rho=1": ("contractive", [0.97, 0.971, 0.969], [0.40, 0.42, 0.41]),
                    "CNN": ("baseline", [0.968, 0.967, 0.969], [0.30, 0.29, 0.31]),
                    "jacobian rho=4": ("contractive", [0.99, 0.99, 0.99], [0.5, 0.5, 0.5])})
    found = c09_front.beats_baselines(front)
    text = c09_front.answer_text(found, found, "mnist", ("weight rho=1", "jacobian rho=4"),
                                 c09_front.summary(front.assign(group="g", **{"weight condition": False,
                                                                             "Euler map": False,
                                                                             "Jacobian target": False})))
    assert text.startswith("On MNIST, 1 of the 1 contractive recipe with a matched baseline beats it (1 more is")
    assert "0.410 robust accuracy against 0.300 for the CNN baseline, +0.110 [" in text and "it beats it (Holm" in text
    assert "jacobian rho=4 model (robust 0.500) has no baseline of matched clean accuracy (the closest, the CNN, is " \
           "0.022 less accurate and reaches 0.300 robust accuracy)" in text


def test_a_recipe_with_one_shared_seed_gets_no_verdict():
    front = _front({"weight": ("contractive", [0.97], [0.9]), "CNN": ("baseline", [0.97, 0.97], [0.1, 0.1])})
    found = c09_front.beats_baselines(front).set_index("recipe")
    assert found.loc["weight", "verdict"] == "too few seeds" and not c09_front.worth_it(found)


def test_what_did_not_run_is_counted_by_family():
    from cnode.core.config import RunConfig

    missing = [RunConfig.from_profile("paper", adv_eps=0.1), RunConfig.from_profile("paper", model="cnn", adv_eps=0.1),
               RunConfig.from_profile("paper", weight_decay=1e-3), RunConfig.from_profile("paper", rho=4.0)]
    text = c09_front.not_run_text(missing, 10, {missing[3].key()})
    assert text.startswith("Not run yet (4 of 10 planned runs; the budget did not reach them): 3 runs not trained "
                           "(adversarial training 2, weight decay 1) and the attacks of 1 trained ones. The fronts")
    assert c09_front.not_run_text([], 10, set()).startswith("Every planned run")


def test_the_second_radius_is_measured_on_mnist_alone():
    from cnode.core.front import FRONTS, dataset_eps

    assert dataset_eps(FRONTS["paper"], "mnist") == [0.05, 0.1] and dataset_eps(FRONTS["paper"], "fashion") == [0.05]
    assert dataset_eps(FRONTS["smoke"], "fashion") == [0.1]


def test_the_intro_finding_counts_wins_per_front_and_at_the_paper_setting():
    front = _front({"weight rho=1": ("contractive", [0.97, 0.971, 0.969], [0.40, 0.42, 0.41]),
                    "weight rho=4": ("contractive", [0.97, 0.971, 0.969], [0.30, 0.29, 0.31]),
                    "CNN": ("baseline", [0.968, 0.967, 0.969], [0.30, 0.29, 0.31])})
    found = c09_front.beats_baselines(front)
    text = c09_front.finding_text({"mnist": found, "fashion": found}, {"mnist": found, "fashion": found},
                                  ("weight rho=1",), ["CNN"])
    assert ("baseline (CNN) by the seed-level rule: 1 of 2 on MNIST and 1 of 2 on FashionMNIST; at the paper's own "
            "setting 1 of 1 on MNIST") in text


def test_a_recipe_is_shown_once_every_seed_is_stored(tmp_path, monkeypatch):
    from cnode.core.config import RunConfig
    from cnode.runs.store import METRICS, eval_file, front_file, run_dir

    monkeypatch.setenv("CNODE_RESULTS", str(tmp_path))
    cfgs = [RunConfig.from_profile("smoke", regularizer=reg, seed=s) for reg in ("none", "weight") for s in (0, 1)]
    for cfg in cfgs[:3]:  # vanilla: both seeds; weight: seed 0 only
        run_dir(cfg).mkdir(parents=True)
        for name in (METRICS, eval_file("smoke"), front_file("smoke")):
            (run_dir(cfg) / name).write_text("{}")
    shown, not_run = c09_front.split_stored(cfgs, "smoke", "smoke")
    assert shown == cfgs[:2] and not_run == cfgs[2:]


def test_catastrophic_overfitting_is_pgd_collapsing_while_fgsm_rises():
    from cnode.core.train import catastrophic_overfitting

    def history(fgsm, pgd):
        return [{"adv_fgsm_acc": f, "adv_pgd_acc": p} for f, p in zip(fgsm, pgd, strict=True)]

    assert catastrophic_overfitting(history([0.5, 0.6, 0.9], [0.4, 0.45, 0.02]))["collapsed"]
    assert not catastrophic_overfitting(history([0.5, 0.6, 0.65], [0.4, 0.45, 0.47]))["collapsed"]
    assert not catastrophic_overfitting(history([0.5, 0.6, 0.3], [0.4, 0.45, 0.02]))["collapsed"]  # FGSM fell too
