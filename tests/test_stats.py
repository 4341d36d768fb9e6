"""cnode.core.stats: exact binomial intervals and paired comparisons, against known values and simulations."""

from __future__ import annotations

import numpy as np
import pytest

from cnode.core.stats import clopper_pearson, paired


def test_clopper_pearson_known_values_and_coverage():
    assert clopper_pearson(0, 10)[0] == 0.0 and clopper_pearson(10, 10)[1] == 1.0
    lo, hi = clopper_pearson(5, 10)
    assert lo == pytest.approx(0.187086, abs=1e-5) and hi == pytest.approx(0.812914, abs=1e-5)
    rng = np.random.default_rng(0)
    hits = sum(lo <= 0.9 <= hi for lo, hi in (clopper_pearson(int(k), 200) for k in rng.binomial(200, 0.9, 2000)))
    assert hits / 2000 >= 0.95  # exact intervals are conservative
    with pytest.raises(ValueError, match="0 <= k <= n"):
        clopper_pearson(11, 10)


def test_paired_detects_a_real_gap_and_not_a_null_one():
    rng = np.random.default_rng(1)
    base = rng.random((3, 2000)) < 0.8
    better = base | (rng.random((3, 2000)) < 0.2)  # fixes about 4 % of the images
    found = paired(better, base)
    assert found["verdict"] == "higher" and found["lo"] > 0 and found["diff"] == pytest.approx(
        better.mean() - base.mean())
    assert paired(base, better)["verdict"] == "lower"
    same = [paired(rng.random((3, 2000)) < 0.8, rng.random((3, 2000)) < 0.8)["verdict"] for _ in range(200)]
    assert same.count("within noise") / 200 >= 0.9
    with pytest.raises(ValueError, match="seeds, images"):
        paired(base, base[:2])


def test_paired_comparison_of_stored_evaluations():
    """tables.paired_comparison reads per-image outcomes from evaluations: the best contractive model against
    vanilla, the difference equal to the accuracy difference, and no row where outcomes are missing."""
    import torch

    from cnode.book.c03_robustness import paired_comparison
    from cnode.core.config import RunConfig
    from cnode.core.evaluate import pack_bits

    rng = np.random.default_rng(2)

    def evaluation(p_clean: float, p_pgd: float, bits: bool = True) -> dict:
        clean, pgd = rng.random(400) < p_clean, rng.random(400) < p_pgd
        rows = [{"kind": "pgd", "level": 0.1, "acc": pgd.mean(), "n": 400}]
        if bits:
            rows[0]["correct"] = pack_bits(torch.tensor(pgd))
        out = {"clean": clean.mean(), "rows": rows, "n": 400, "n_attacked": 400}
        return {**out, "clean_correct": pack_bits(torch.tensor(clean))} if bits else out

    results = []
    for seed in (0, 1, 2):
        results.append((RunConfig.from_profile("smoke", seed=seed), evaluation(0.9, 0.2)))
        results.append((RunConfig.from_profile("smoke", seed=seed, regularizer="weight"), evaluation(0.9, 0.6)))
        results.append((RunConfig.from_profile("smoke", seed=seed, regularizer="jacobian"), evaluation(0.9, 0.3)))
    found = paired_comparison(results).set_index("kind")
    assert found.loc["pgd", "best contractive"] == "weight rho=1" and found.loc["pgd", "verdict"] == "higher"
    weight = np.mean([r["rows"][0]["acc"] for c, r in results if c.regularizer == "weight"])
    vanilla = np.mean([r["rows"][0]["acc"] for c, r in results if c.regularizer == "none"])
    assert found.loc["pgd", "difference"] == pytest.approx(weight - vanilla)
    without = [(c, evaluation(0.9, 0.5, bits=False)) for c, _ in results]
    assert paired_comparison(without).empty
