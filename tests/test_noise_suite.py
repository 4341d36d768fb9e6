"""The noise-only evaluation (the authors' unclipped Gaussian noise on every test image, stored beside a run)."""

from __future__ import annotations

import torch

from cnode.core.evaluate import SUITES, robustness, unpack_bits
from cnode.core.models import ConvNODE


def test_the_paper_suite_keeps_its_key():
    """Stored evaluations are found by key: adding the noise-only suite must not move the paper suite's."""
    assert SUITES["paper"].key() == "a95662fd64" and SUITES["cpu"].key() == "efe57e2060"


def test_noise_only_evaluates_unclipped_noise_on_every_image_and_attacks_nothing():
    torch.manual_seed(0)
    model = ConvNODE(channels=2, steps=2, T=0.1)
    images, labels = torch.rand(40, 1, 28, 28), torch.randint(0, 10, (40,))
    suite = SUITES["smoke_noclip"]
    found = robustness(model, images, labels, suite)
    kinds = {(r["kind"], r["level"]) for r in found["rows"]}
    assert kinds == {(k, s) for k in ("gaussian", "gaussian_noclip") for s in (0.2, 0.3)}
    assert all(r["n"] == 40 for r in found["rows"]) and found["n_attacked"] == 0
    noclip = next(r for r in found["rows"] if r["kind"] == "gaussian_noclip" and r["level"] == 0.3)
    assert unpack_bits(noclip["correct"], 40).mean() == noclip["acc"]
