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


def test_seed_interval_is_the_t_interval_of_the_per_seed_differences():
    from cnode.core.stats import seed_interval

    found = seed_interval([0.203, 0.151, 0.412])  # chapter 3's MNIST Gaussian 0.1, Jacobian minus vanilla
    assert found["diff"] == pytest.approx(0.2553, abs=1e-4) and found["df"] == 2
    assert round(found["lo"], 2) == -0.09 and round(found["hi"], 2) == 0.60  # the interval the seeds allow
    exact = seed_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, sem 1/sqrt 3, t(0.975, 2) = 4.3027
    assert exact["hi"] - exact["diff"] == pytest.approx(4.302653 / np.sqrt(3), rel=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        seed_interval([0.1])


def test_the_per_image_verdict_can_say_higher_where_the_seed_level_one_says_within_noise():
    """Three seeds whose per-image comparison is decisive (10 000 images, every seed's difference positive) but
    whose seed-to-seed spread leaves the recipe's difference within noise."""
    from cnode.core.stats import paired, seed_verdicts

    rng = np.random.default_rng(0)
    n, gaps = 10_000, [0.02, 0.15, 0.40]  # each seed's true gap: same sign, very different sizes
    a = np.stack([rng.random(n) < 0.5 + g for g in gaps])
    b = np.stack([rng.random(n) < 0.5 for _ in gaps])
    assert paired(a, b)["verdict"] == "higher"
    per_seed = (a.mean(1) - b.mean(1)).tolist()
    assert seed_verdicts([per_seed])[0]["verdict"] == "within noise"
    assert seed_verdicts([[0.30, 0.31, 0.29]])[0]["verdict"] == "higher"


def test_holm_corrects_for_the_number_of_comparisons_in_a_table():
    from cnode.core.stats import holm

    assert holm([0.01, 0.04, 0.03]) == [True, False, False]  # 0.01 <= 0.05/3; 0.03 > 0.05/2 stops
    assert holm([0.01, 0.02, 0.04]) == [True, True, True]  # 0.01 <= 0.05/3, 0.02 <= 0.025, 0.04 <= 0.05
    assert holm([0.2, 0.001]) == [False, True]


def test_a_slope_against_log_rho_reads_a_trend_with_its_interval():
    from cnode.core.stats import log_slope

    rhos = [0.25, 1.0, 4.0, 16.0] * 3
    flat = log_slope(rhos, [0.97 + 0.002 * ((i * 7) % 3 - 1) for i in range(12)])
    assert flat["verdict"] == "flat within noise" and flat["lo"] < 0 < flat["hi"]
    falls = log_slope(rhos, [0.30 - 0.1 * np.log10(r) + 0.005 * ((i % 3) - 1) for i, r in enumerate(rhos)])
    assert falls["verdict"] == "falls" and falls["slope"] == pytest.approx(-0.1, abs=0.01)
    with pytest.raises(ValueError, match="2 or more rates"):
        log_slope([1.0, 1.0, 1.0], [0.1, 0.2, 0.3])


def test_holm_adjusted_p_values_reject_exactly_what_holm_rejects():
    from cnode.core import stats

    p = [0.01, 0.04, 0.03, 0.005, 0.2]
    adjusted = stats.holm_adjusted(p)
    assert adjusted == pytest.approx([0.04, 0.09, 0.09, 0.025, 0.2])
    for alpha in (0.01, 0.03, 0.05, 0.1):
        assert [a <= alpha for a in adjusted] == stats.holm(p, alpha)
