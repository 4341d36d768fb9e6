"""Chapter 8 (the rho search): its smoke run (papermill), what it glues, its rules."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from notebooks import smoke_run

from cnode.book import c08_rho_search
from cnode.core.config import RunConfig


def _runs(clean_by_rho: dict[float, list[float]], reached_from: float, T: float = 0.1) -> list[dict]:
    rows = []
    for rho, values in clean_by_rho.items():
        for seed, acc in enumerate(values):
            rows.append({"setting": c08_rho_search.setting_name(RunConfig.from_profile(
                "smoke", regularizer="weight", rho=rho, T=T)), "rho": rho, "seed": seed, "clean": acc,
                "reached": rho >= reached_from})
    return rows


#: the chapter's tiny parameters (seconds on 2 cores)
PARAMS = dict(profile="smoke", seeds=[0, 1], rhos=[0.5, 8.0], long_rhos=[1.0], gammas=[1.0],
                           suite="smoke", target="smoke")


def check(values: dict, store: Path) -> None:
    assert values["n_runs"] == 12 and values["n_settings"] == 4 and values["floor"] == 0.9  # 2 regs x (T, gamma)
    assert values["answer"].startswith(("ρ matters", "No setting"))
    assert values["identical"].startswith(("every rate", "some rates"))


@pytest.mark.notebook
def test_smoke_run(tmp_path: Path, monkeypatch):
    smoke_run("08_rho_search", PARAMS, check, tmp_path, monkeypatch)


def test_the_search_rule_needs_a_slope_and_reached_targets_above_the_floor():
    falling = _runs({0.25: [0.97, 0.971], 4.0: [0.95, 0.951], 64.0: [0.91, 0.912]}, reached_from=4.0)
    flat = _runs({0.25: [0.97, 0.96], 4.0: [0.965, 0.97]}, reached_from=0.25, T=1.0)
    found = c08_rho_search.verdicts(pd.DataFrame(falling + flat), min_clean=0.92)
    first, second = found.index
    assert found.loc[first, "depends on rho"] and found.loc[first, "rho matters"]
    assert found.loc[first, "clean slope per decade"] < 0
    assert found.loc[first, "rhos with targets reached"] == "4"  # 64 is below the floor
    assert not found.loc[second, "depends on rho"] and not found.loc[second, "rho matters"]
    assert c08_rho_search.answer(found).startswith("ρ matters, by the search's rule, in 1 of 2 settings")
    assert c08_rho_search.showcase(found, "T = 1, gamma = 1") == ["T = 1, gamma = 1", "T = 0.1, gamma = 1"]
    none = c08_rho_search.verdicts(pd.DataFrame(flat), min_clean=0.99)
    assert c08_rho_search.answer(none).startswith("No setting") and not none["rho matters"].any()
    apart = c08_rho_search.verdicts(pd.DataFrame(falling), min_clean=0.99)  # a slope, nothing reaches the floor
    assert f"depends on ρ in 1 of 1 settings ({first}: -0." in c08_rho_search.answer(apart)
    one = c08_rho_search.verdicts(pd.DataFrame(_runs({1.0: [0.97, 0.96]}, reached_from=0.0)), min_clean=0.5)
    assert one.iloc[0]["95 % interval"] == "one rate" and not one.iloc[0]["rho matters"]


def test_the_old_range_rule_passed_a_difference_the_slope_does_not():
    """The range rule (span > 2 x the largest seed sd) passed FashionMNIST's weight clean 0.853 -> 0.873 with three
    seeds (Welch p about 0.06): one low mean among three is enough for it. The slope asks for a trend over every
    seed's point, and finds none here."""
    noisy = _runs({0.25: [0.873, 0.865, 0.881], 1.0: [0.853, 0.845, 0.861], 4.0: [0.873, 0.865, 0.881]},
                  reached_from=0.0)
    frame = pd.DataFrame(noisy)
    means = frame.groupby("rho")["clean"].mean()
    assert means.max() - means.min() > 2 * frame.groupby("rho")["clean"].std().max()  # the old rule: "separates"
    assert not c08_rho_search.verdicts(frame, min_clean=0.5).iloc[0]["depends on rho"]


def test_the_jacobian_regularizer_is_judged_by_its_own_target():
    """A Jacobian run never has R_W = 0: its reached flag is the target measurement's, not the weight condition's,
    and a missing measurement is an error that says what to do."""
    cfg = RunConfig.from_profile("smoke", regularizer="jacobian", rho=1.0)
    result = {"clean": 0.95, "rows": [{"kind": "gaussian", "level": 0.2, "acc": 0.9},
                                      {"kind": "pgd", "level": 0.05, "acc": 0.3}]}
    record = {"weight_reg": 3.0, "certified_rate": [-5.0], "certified_channels": 0, "channels_total": 4}
    met = c08_rho_search.frame([(cfg, result)], [(cfg, record)], {cfg.key(): {"met": True, "share": 0.97}})
    assert met.iloc[0]["reached"] and met.iloc[0]["at target"] == 0.97
    missed = c08_rho_search.frame([(cfg, result)], [(cfg, record)], {cfg.key(): {"met": False, "share": 0.4}})
    assert not missed.iloc[0]["reached"]
    with pytest.raises(ValueError, match="no Jacobian target measurement"):
        c08_rho_search.frame([(cfg, result)], [(cfg, record)], {})


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
