"""cnode.stats: exact binomial intervals and paired comparisons, against known values and simulations."""

from __future__ import annotations

import numpy as np
import pytest

from cnode.stats import clopper_pearson, paired


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
