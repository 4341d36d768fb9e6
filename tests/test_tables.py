"""tables: verdict counts, the conclusion sentence and the 'what changed' cells are counted from the verdicts; the
ledger reads what the stored runs took. rho_search: the declared rule on synthetic runs."""

from __future__ import annotations

import numpy as np
import pytest

from cnode.book import c03_robustness, c08_rho_search
from cnode.book.tables import model_name
from cnode.core.config import RunConfig


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


def test_a_table_names_datasets_and_keeps_each_number_cell_on_one_line():
    import pandas as pd

    from cnode.book.glue import markdown_table, unbreakable

    frame = pd.DataFrame({"dataset": ["mnist", "fashion"], "clean": ["0.959 ± 0.006", "0.862 ± 0.002"],
                          "difference": ["+0.014 [+0.012, +0.017]", "within noise"]}).set_index("dataset")
    text = markdown_table(frame)
    assert "| MNIST |" in text and "| FashionMNIST |" in text and "mnist" not in text
    assert "0.959\u202f±\u202f0.006" in text and "+0.014\u00a0[+0.012,\u00a0+0.017]" in text
    assert "within noise" in text  # words may wrap
    assert unbreakable("92-100") == "92\u2011100" and unbreakable("T = 1") == "T = 1"
