"""Chapter 8 (the rho search): its smoke run (papermill), what it glues, its rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
                           suite="smoke")


def check(values: dict, store: Path) -> None:
    assert values["n_runs"] == 12 and values["n_settings"] == 4 and values["floor"] == 0.9  # 2 regs x (T, gamma)
    assert values["answer"].startswith(("rho matters", "No setting"))
    assert values["identical"].startswith(("every rate", "some rates"))


@pytest.mark.notebook
def test_smoke_run(tmp_path: Path, monkeypatch):
    smoke_run("08_rho_search", PARAMS, check, tmp_path, monkeypatch)


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
