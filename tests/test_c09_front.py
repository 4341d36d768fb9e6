"""Chapter 9 (the accuracy-robustness front): its plan, what ran, and its smoke run (the rule: test_front_rule)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cnode.book import c09_front, front_rule, registry


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
    assert front_rule.family(adv[2]) == "contractive"  # weight-regularized, adversarially trained
    assert front_rule.family(adv[0]) == "baseline" and front_rule.family(runs[0]) == "baseline"


@pytest.mark.parametrize("recipe", ["weight", "jacobian"])
def test_regularized_recipes_are_contractive_whatever_their_init(recipe):
    from cnode.core.config import RunConfig

    assert front_rule.family(RunConfig.from_profile("smoke", regularizer=recipe, init="default")) == "contractive"


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
    assert values["adv_on_top"].startswith("The weight regularizer on top of adversarial training, against "
                                           "adversarial training alone: on MNIST, robust accuracy ")
    assert values["left_out"].startswith(("On MNIST, some baselines less accurate", "No baseline outside the match"))
    assert values["adv_collapsed"].endswith("of 6") and "by at most 0.000," in values["aa_result"]  # same suite twice
    assert values["cert_answer"] == "No certifiable recipe is planned with these parameters."  # cert_dataset ""


@pytest.mark.notebook
def test_smoke_run(tmp_path, monkeypatch):
    from notebooks import smoke_run

    smoke_run("09_front", PARAMS, check, tmp_path, monkeypatch)


def test_what_did_not_run_is_counted_by_family():
    from cnode.core.config import RunConfig

    missing = [RunConfig.from_profile("paper", adv_eps=0.1), RunConfig.from_profile("paper", model="cnn", adv_eps=0.1),
               RunConfig.from_profile("paper", weight_decay=1e-3), RunConfig.from_profile("paper", rho=4.0)]
    text = c09_front.not_run_text(missing, 10, {missing[3].key()})
    assert text.startswith("Not run yet (4 of 10 planned runs; the budget did not reach them): 3 runs not trained "
                           "(adversarial training 2, weight decay 1) and 1 trained run not measured on the front yet. "
                           "The fronts")
    text = c09_front.not_run_text(missing, 10, {c.key() for c in missing[1:]}, frozenset({missing[3].key()}))
    assert text.startswith("Not run yet (4 of 10 planned runs; the budget did not reach them): 1 run not trained "
                           "(adversarial training 1), 2 trained runs not measured on the front yet and 1 measured run "
                           "waiting for the other seeds of its recipe. The fronts")
    assert c09_front.not_run_text([], 10, set()).startswith("Every planned run")


def test_the_second_radius_is_measured_on_mnist_alone():
    from cnode.core.front import FRONTS, dataset_eps

    assert dataset_eps(FRONTS["paper"], "mnist") == [0.05, 0.1] and dataset_eps(FRONTS["paper"], "fashion") == [0.05]
    assert dataset_eps(FRONTS["smoke"], "fashion") == [0.1]


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


def test_labels_of_a_crowded_front_stay_inside_the_axes_and_apart():
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(0)
    table = pd.DataFrame({"clean": 0.85 + 0.01 * rng.random(9), "robust": 0.1 + 0.1 * rng.random(9)},
                         index=[f"recipe number {i}" for i in range(9)])
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(table["clean"], table["robust"], "o")
    ax.set_xlim(0.7, 0.87), ax.set_ylim(-0.05, 0.8)
    c09_front.label_points(ax, table, table)
    renderer = fig.canvas.get_renderer()
    boxes = [c09_front.text_box(t, renderer) for t in ax.texts if t.get_text().startswith("recipe")]
    inside = ax.get_window_extent(renderer)
    plt.close(fig)
    assert len(boxes) == 9
    assert all(inside.contains(b.x0, b.y0) and inside.contains(b.x1, b.y1) for b in boxes)
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_a_recipe_far_less_accurate_than_the_rest_sits_on_the_left_edge_with_its_clean_accuracy():
    """A bounded model at 0.375 clean accuracy would stretch the MNIST axis from 0.25 to 1 and squeeze every other
    recipe into its right quarter: it is drawn on the left edge and named with its clean accuracy instead."""
    import matplotlib.pyplot as plt

    table = pd.DataFrame({"clean": [0.375, 0.81, 0.88, 0.97, 0.975], "robust": [0.25, 0.55, 0.7, 0.3, 0.92],
                          "clean_sd": 0.01, "robust_sd": 0.02, "group": ["certifiable", "weight decay", "contractive",
                                                                        "paper's setting", "adversarial training"]},
                         index=["bounded", "wd", "weight T=1", "weight", "adv"])
    assert list(c09_front.off_scale(table)) == ["bounded"]
    assert list(c09_front.off_scale(table.drop("bounded"))) == []  # gaps of 0.07 and 0.09 stay on the scale
    fig = c09_front.front_figure({"mnist": table}, 0.05)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    plt.close(fig)
    assert ax.get_xlim()[0] > 0.7
    assert "bounded: clean 0.375" in texts and "bounded" not in texts
    assert "certifiable" in [t.get_text() for t in fig.legends[0].get_texts()]


def test_the_certifiable_point_is_said_in_words_measured_or_not():
    table = pd.DataFrame({"clean": [0.98, 0.375, 0.5], "robust": [0.4, 0.256, 0.3], "euler_map": [0, 0, 2],
                          "seeds": [3, 3, 3]},
                         index=["vanilla T=1", "CNN (norms bounded)", "weight rho=1 (norms bounded)"])
    cert = pd.DataFrame({"certified at 0.1": [0.114], "certified at 0.5": [0.0]}, index=["CNN (norms bounded)"])
    text = c09_front.cert_answer(cert, table, ["weight rho=1 (norms bounded)", "CNN (norms bounded)"], 1000, "MNIST")
    assert text == ("On MNIST (certified accuracy on the first 1000 test images, mean over seeds): the weight rho=1 "
                    "(norms bounded) is not measured yet (not all its seeds have run); the CNN (norms bounded) "
                    "certifies 0.114 at radius 0.1, 0.000 at radius 0.5, at a clean accuracy of 0.375 and a robust "
                    "accuracy of 0.256 on the front. The front's most accurate recipe, vanilla T=1, reaches a clean "
                    "accuracy of 0.980: the certifiable recipe gives up 0.605 of clean accuracy.")
    cert.loc["weight rho=1 (norms bounded)"] = [0.2, 0.01]
    text = c09_front.cert_answer(cert, table, ["weight rho=1 (norms bounded)", "CNN (norms bounded)"], 1000, "MNIST")
    assert "certifies 0.200 at radius 0.1, 0.010 at radius 0.5, at a clean accuracy of 0.500" in text
    assert "its Euler map contracts in 2 of 3 seeds" in text
    assert "recipes give up 0.480 of clean accuracy or more" in text
