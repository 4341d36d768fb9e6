"""cnode.core.theory: the worst-case search and the chapter 1 experiments."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from cnode.core import contraction as cc
from cnode.core import theory

A, B = 0.1, 1.0


def _lam(matrix: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    jac = d[:, :, None] * matrix
    return torch.linalg.eigvalsh((jac + jac.mT) / 2)[:, -1]


@pytest.mark.parametrize("seed", range(5))
def test_worst_mu2_is_a_vertex_value_bounded_by_brute_force_and_certificate(seed):
    gen = torch.Generator().manual_seed(seed)
    weight = cc.with_certified_rate(theory.random_kernel(2, gen), 0.5, A, B)
    matrix = cc.conv_matrix(weight, 2, 2)  # n = 8: all 256 vertices can be enumerated
    vertices = torch.tensor(list(itertools.product([A, B], repeat=8)), dtype=torch.float64)
    brute = _lam(matrix, vertices).max().item()
    interior = _lam(matrix, A + (B - A) * torch.rand(500, 8, generator=gen, dtype=torch.float64)).max().item()
    found = theory.worst_mu2(matrix, A, B, starts=8, generator=gen)
    assert interior <= brute + 1e-12  # convexity: the maximum sits at a vertex
    assert found <= brute + 1e-12
    assert found >= _lam(matrix, vertices[[0, -1]]).max().item() - 1e-12  # at least the constant vertices
    assert brute <= -cc.certified_rate(weight, A, B).item() + 1e-9


def test_params_reject_bad_values_with_one_clear_line():
    with pytest.raises(ValueError, match=r"^rho must be > 0, got -1$"):
        theory.TheoryParams(rho=-1)
    with pytest.raises(ValueError, match="a <= b"):
        theory.TheoryParams(a=2.0, b=1.0)
    with pytest.raises(ValueError, match="channels must be an integer >= 1"):
        theory.TheoryParams(channels=0)


def test_small_conservativeness_study_never_violates_the_theorem():
    params = theory.TheoryParams(kernels=12, starts=4, size=4, channels=2)
    frame = theory.conservativeness(params)
    summary = theory.conservativeness_summary(frame, params.rho)
    assert summary["kernels"] == 12 and summary["violations"] == 0
    assert summary["gap_min"] >= 0
    again = theory.conservativeness(params)
    assert frame.equals(again)  # seeded: the same parameters give the same numbers


def test_trajectories_contract_at_least_at_the_certified_rate():
    params = theory.TheoryParams(channels=2, size=4, rho=2.0)
    frame = theory.trajectory_gap(params, horizon=0.5, points=11)
    summary = theory.trajectory_summary(frame)
    assert summary["observed_rate"] >= params.rho
    assert summary["lambda_max"] <= -params.rho
    assert (frame["ratio"] <= frame["bound"] + 1e-9).all()


def test_euler_gain_bound_and_summary():
    params = theory.TheoryParams(channels=2, size=4)
    steps = torch.tensor([1e-4, 1e-3, 1e-2, 1.0], dtype=torch.float64)
    frame = theory.euler_gain(params, steps)
    facts = theory.euler_summary(frame)
    assert facts["h_star"] == pytest.approx(2 * params.rho / facts["lipschitz"] ** 2)
    # the bound is a bound: the worst gain found never beats sqrt(1 - 2 h rho + h^2 L^2)
    bound = (1 - 2 * frame["h"] * params.rho + frame["h"] ** 2 * facts["lipschitz"] ** 2) ** 0.5
    assert (frame["gain"] <= bound + 1e-9).all()
    assert frame["gain"].iloc[-1] > 1  # h = 1 expands: the step is far too large
    assert facts["gain_paper_h"] == pytest.approx(frame["gain"].iloc[2])
    assert not math.isnan(facts["h_contracting"])
