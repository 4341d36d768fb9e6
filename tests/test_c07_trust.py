"""Chapter 7 (certificates and the masking audit) at a tiny setting through papermill: what it glues."""

from __future__ import annotations

from pathlib import Path

import pytest
from notebooks import smoke_run, stored

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
