"""Chapter 08_rho_search: the rho search at a tiny setting (papermill), asserting on what it glues."""

from __future__ import annotations

from pathlib import Path

import pytest
from notebooks import smoke_run

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
