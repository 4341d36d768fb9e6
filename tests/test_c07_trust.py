"""Chapter 7 (certificates and the masking audit): its smoke run (papermill), what it glues, its rules."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from notebooks import smoke_run, stored

from cnode.book.c07_trust import flag_count
from cnode.core import audit
from cnode.core.audit import AUDITS

#: the chapter's tiny parameters (seconds on 2 cores)
PARAMS = dict(profile="smoke", datasets=["mnist"], audit="smoke")


def check(values: dict, store: Path) -> None:
    assert values["t_images"] == 48 and values["t_cards"] == 5  # four models at T = 0.1 and weight at T = 1
    assert values["t_slack_min"] >= 1  # the bound is never below an exact local gain
    assert values["t_control"] == "flagged" and values["t_plain"] == "not flagged"
    cards = [c for c in stored(store, "audit-*.json") if c["control_levels"] is None]  # real models, not controls
    flagged = sum(any(audit.verdict(e, AUDITS["smoke"].tolerance) for e in c["eps"].values()) for c in cards)
    assert values["t_cards"] == len(cards) and values["t_flagged"] == flagged
    gaps = [e["acc"]["pgd20"] - e["card_min"] for c in cards for e in c["eps"].values()]
    assert values["t_overstated"] == pytest.approx(max(gaps), abs=5e-4)  # PGD-20 minus the card's minimum
    assert 0 <= values["t_best_cert"] <= 1
    assert 0 <= values["t_newbreak_max"] <= 1 and values["t_drop_to"] == pytest.approx(
        values["t_drop_from"] - values["t_drop_max"], abs=2e-3)  # the three glued numbers of one row
    assert (values["t_flagged_list"] == "none") == (values["t_flagged"] == 0)


@pytest.mark.notebook
def test_smoke_run(tmp_path: Path, monkeypatch):
    smoke_run("07_trust", PARAMS, check, tmp_path, monkeypatch)


def test_flag_count_counts_cards_per_model_not_per_eps():
    frame = pd.DataFrame({"dataset": ["mnist"] * 6, "model": ["cnn", "cnn", "vanilla", "vanilla", "ctl", "ctl"],
                          "eps": [0.05, 0.1] * 3, "control": [False] * 4 + [True] * 2,
                          "verdict": ["masking suspected", "masking suspected", "none found", "none found",
                                      "masking suspected", "masking suspected"]})
    assert flag_count(frame) == (1, 2)  # the CNN flagged at two eps is one flagged card; the control is left out


def test_the_overstatement_is_pgd20_minus_the_card_minimum():
    from cnode.book.c07_trust import corrections

    frame = pd.DataFrame({"dataset": ["mnist"] * 2, "model": ["cnn", "vanilla"], "eps": [0.1, 0.1],
                          "PGD-20": [0.30, 0.02], "card min": [0.25, 0.02], "clean": [0.9, 0.9]})
    assert corrections(frame)["overstated by"].round(6).tolist() == [0.05, 0.0]
