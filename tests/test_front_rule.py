"""Chapter 9's rule on synthetic fronts with known answers, and its answer in words."""

from __future__ import annotations

import pandas as pd

from cnode.book import c09_front, front_rule


def _front(recipes: dict[str, tuple[str, list[float], list[float]]]) -> pd.DataFrame:
    """recipe -> (family, clean per seed, robust per seed)."""
    return pd.DataFrame([{"recipe": name, "family": fam, "seed": s, "clean": c, "robust": r}
                         for name, (fam, clean, robust) in recipes.items()
                         for s, (c, r) in enumerate(zip(clean, robust, strict=True))])



def _summary(front: pd.DataFrame) -> pd.DataFrame:
    return c09_front.summary(front.assign(group="g", **{"weight condition": False, "Euler map": False,
                                                        "Jacobian target": False}))


def test_a_front_where_contractivity_is_worth_it():
    front = _front({"weight": ("contractive", [0.97, 0.971, 0.969], [0.40, 0.42, 0.41]),
                    "vanilla": ("baseline", [0.96, 0.962, 0.958], [0.02, 0.01, 0.03]),
                    "vanilla + wd": ("baseline", [0.90, 0.91, 0.89], [0.60, 0.58, 0.62]),  # robust, not matched
                    "CNN": ("baseline", [0.968, 0.967, 0.969], [0.30, 0.29, 0.31])})
    found = front_rule.beats_baselines(front).set_index("recipe")
    # vanilla's 0.96 is below 0.97 - 0.005: only the CNN is matched
    assert found.loc["weight", "best matched baseline"] == "CNN" and found.loc["weight", "matched"] == 1
    assert found.loc["weight", "verdict"] == "beats the baselines" and front_rule.worth_it(found)


def test_a_front_where_it_is_not():
    """A matched baseline is as robust within the seed spread; a recipe above every baseline's accuracy is not
    compared at all."""
    front = _front({"weight": ("contractive", [0.97, 0.971, 0.969], [0.40, 0.30, 0.50]),
                    "jacobian": ("contractive", [0.99, 0.99, 0.99], [0.9, 0.9, 0.9]),
                    "adv CNN": ("baseline", [0.968, 0.967, 0.969], [0.38, 0.41, 0.39])})
    found = front_rule.beats_baselines(front).set_index("recipe")
    assert found.loc["weight", "verdict"] == "not shown"
    assert found.loc["jacobian", "verdict"] == "no matched baseline"
    assert not front_rule.worth_it(found)


def test_the_non_dominated_set_is_the_front_line():
    means = pd.DataFrame({"clean": [0.97, 0.96, 0.90, 0.95], "robust": [0.4, 0.3, 0.6, 0.2]},
                         index=["a", "b", "c", "d"])
    assert front_rule.non_dominated(means) == ["c", "a"]


def test_a_front_without_contractive_recipes_answers_no():
    front = _front({"CNN": ("baseline", [0.96, 0.97], [0.3, 0.31])})
    found = front_rule.beats_baselines(front)
    assert found.empty and not front_rule.worth_it(found)


def test_the_answer_in_words_names_the_paper_setting_and_its_baseline():
    front = _front({"weight rho=1": ("contractive", [0.97, 0.971, 0.969], [0.40, 0.42, 0.41]),
                    "CNN": ("baseline", [0.968, 0.967, 0.969], [0.30, 0.29, 0.31]),
                    "jacobian rho=4": ("contractive", [0.99, 0.99, 0.99], [0.5, 0.5, 0.5])})
    found = front_rule.beats_baselines(front)
    text = front_rule.answer_text(found, found, "mnist", ("weight rho=1", "jacobian rho=4"), _summary(front))
    assert text.startswith("On MNIST, 1 of the 1 contractive recipe with a matched baseline beats it (1 more is")
    assert "0.410 robust accuracy against 0.300 for the CNN baseline, +0.110 [" in text and "it beats it (Holm" in text
    assert "jacobian rho=4 model (robust 0.500) has no baseline of matched clean accuracy (the closest, the CNN, is " \
           "0.022 less accurate and reaches 0.300 robust accuracy)" in text


def test_a_recipe_with_one_shared_seed_gets_no_verdict():
    front = _front({"weight": ("contractive", [0.97], [0.9]), "CNN": ("baseline", [0.97, 0.97], [0.1, 0.1])})
    found = front_rule.beats_baselines(front).set_index("recipe")
    assert found.loc["weight", "verdict"] == "too few seeds" and not front_rule.worth_it(found)


def test_the_intro_finding_counts_wins_per_front_and_at_the_paper_setting():
    front = _front({"weight rho=1": ("contractive", [0.97, 0.971, 0.969], [0.40, 0.42, 0.41]),
                    "weight rho=4": ("contractive", [0.97, 0.971, 0.969], [0.30, 0.29, 0.31]),
                    "CNN": ("baseline", [0.968, 0.967, 0.969], [0.30, 0.29, 0.31])})
    found = front_rule.beats_baselines(front)
    text = front_rule.finding_text({"mnist": found, "fashion": found}, {"mnist": found, "fashion": found},
                                  ("weight rho=1",), ["CNN"])
    assert ("baseline (CNN) by the seed-level rule: 1 of 2 on MNIST and 1 of 2 on FashionMNIST; at the paper's own "
            "setting 1 of 1 on MNIST") in text


def test_a_winner_is_named_beside_the_more_robust_baseline_the_match_leaves_out():
    """The rule compares only baselines within the margin; a baseline just below it that is more robust than the
    winner's matched one is named with its gap, so that the reader sees what the match left out."""
    front = _front({"weight + adv": ("contractive", [0.974, 0.975, 0.973], [0.93, 0.92, 0.935]),
                    "vanilla": ("baseline", [0.976, 0.975, 0.977], [0.15, 0.16, 0.17]),
                    "CNN + adv": ("baseline", [0.965, 0.966, 0.964], [0.925, 0.93, 0.92]),
                    "vanilla + wd": ("baseline", [0.88, 0.87, 0.89], [0.6, 0.55, 0.58])})
    found = front_rule.beats_baselines(front).set_index("recipe")
    assert found.loc["weight + adv", "best matched baseline"] == "vanilla"
    assert found.loc["weight + adv", "verdict"] == "beats the baselines"
    assert found.loc["weight + adv", "below"] == "CNN + adv"
    assert abs(found.loc["weight + adv", "below gap"] - 0.009) < 1e-9
    text = front_rule.answer_text(found.reset_index(), found.reset_index(), "mnist", (), _summary(front))
    assert ("beside the weight + adv model (robust 0.928) the CNN + adv reaches 0.925, 0.009 less accurate"
            in text)


def test_no_baseline_is_left_out_when_the_matched_one_is_the_most_robust():
    front = _front({"weight": ("contractive", [0.97, 0.971, 0.969], [0.40, 0.42, 0.41]),
                    "CNN": ("baseline", [0.968, 0.967, 0.969], [0.30, 0.29, 0.31]),
                    "vanilla": ("baseline", [0.90, 0.91, 0.89], [0.20, 0.21, 0.19])})
    found = front_rule.beats_baselines(front)
    assert (found["below"] == "none").all() and front_rule.below_text(found) == ""


def test_a_significant_loss_helps_the_two_sided_step_down_but_not_the_one_sided_one():
    """Two-sided Holm: the loser (tiny p) is rejected first, so the winner is tested at the full level; one-sided,
    the loser's p is near 1 and the winner's halves, so both readings are computed and can differ."""
    front = _front({"win": ("contractive", [0.97, 0.97, 0.97], [0.40, 0.45, 0.47]),
                    "loss": ("contractive", [0.97, 0.97, 0.97], [0.10, 0.11, 0.10]),
                    "CNN": ("baseline", [0.97, 0.97, 0.97], [0.35, 0.34, 0.36])})
    found = front_rule.beats_baselines(front).set_index("recipe")
    p = found.loc["win", "p"]
    assert found.loc["loss", "p"] < p  # the loss is the more significant difference
    assert abs(found.loc["win", "p_holm"] - p) < 1e-12  # two-sided: second in the step-down, tested at alpha
    assert abs(found.loc["win", "p_holm_one"] - p) < 1e-12  # one-sided: p / 2, times the 2 comparisons
    assert found.loc["loss", "p_holm_one"] > 0.99
    assert front_rule.wins(found.reset_index()) == (int(p <= 0.05), int(p <= 0.05))


def test_one_sided_p_follows_the_sign_of_the_difference():
    assert front_rule.one_sided(0.04, 0.1) == 0.02 and front_rule.one_sided(0.04, -0.1) == 0.98


def test_what_a_regularizer_adds_on_top_is_the_per_seed_difference_of_both_accuracies():
    front = _front({"weight + adv": ("contractive", [0.82, 0.83, 0.81], [0.72, 0.74, 0.71]),
                    "vanilla + adv": ("baseline", [0.83, 0.83, 0.82], [0.70, 0.71, 0.70]),
                    "CNN": ("baseline", [0.84], [0.25])})
    found = front_rule.on_top(front, "weight + adv", "vanilla + adv")
    assert abs(found["robust"]["diff"] - (0.02 + 0.03 + 0.01) / 3) < 1e-12
    assert abs(found["clean"]["diff"] - (-0.01 + 0.0 - 0.01) / 3) < 1e-12
    assert found["robust"]["lo"] < found["robust"]["diff"] < found["robust"]["hi"]
    assert front_rule.on_top(front, "weight + adv", "CNN") is None  # one shared seed
    assert front_rule.on_top(front, "weight + adv", "missing") is None


def test_an_interval_above_0_that_fails_holm_is_named_as_a_near_miss_not_a_win():
    """Three seeds and many contractive recipes: a recipe whose uncorrected interval excludes 0 can fail Holm's
    correction; the answer names it with its interval and adjusted p, and does not count it as a win."""
    recipes = {"gain": ("contractive", [0.97, 0.97, 0.97], [0.50, 0.60, 0.52]),
               "CNN": ("baseline", [0.97, 0.97, 0.97], [0.30, 0.32, 0.31])}
    for i in range(8):  # recipes no better than the CNN make the correction strict
        recipes[f"flat {i}"] = ("contractive", [0.97, 0.97, 0.97], [0.31 + 0.01 * i, 0.30, 0.33 - 0.01 * i])
    front = _front(recipes)
    found = front_rule.beats_baselines(front)
    gain = found.set_index("recipe").loc["gain"]
    assert gain["lo"] > 0 and gain["p_holm"] > 0.05 and gain["verdict"] == "not shown"
    text = front_rule.answer_text(found, found, "mnist", (), _summary(front))
    assert text.startswith("On MNIST, 0 of the 9 contractive recipes")
    assert (f"Before Holm's correction over the 9 recipes, 1 has an interval above 0: the gain model, "
            f"{gain['diff']:+.3f} [{gain['lo']:+.3f}, {gain['hi']:+.3f}] over the CNN" in text)
    assert front_rule.uncorrected_text(found, {"gain"}) == ""
    per_dataset = front_rule.on_each({"mnist": found, "fashion": found.iloc[:0]}, front_rule.uncorrected_text, "none")
    assert per_dataset.startswith("On MNIST, before Holm's correction") and "FashionMNIST" not in per_dataset
    assert front_rule.on_each({"mnist": found}, lambda f: "", "none") == "none"
