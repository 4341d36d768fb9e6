"""cnode.core.contraction against dense linear algebra and the definitions (book chapter 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnode.core import contraction as cc

A, B = 0.1, 1.0


def _kernel(seed: int, c_out: int, c_in: int, k: int = 3) -> torch.Tensor:
    return torch.randn(c_out, c_in, k, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), c_out=st.integers(1, 3), c_in=st.integers(1, 3),
       height=st.integers(1, 6), width=st.integers(1, 6), k=st.sampled_from([1, 3, 5]))
def test_conv_matrix_equals_conv2d(seed, c_out, c_in, height, width, k):
    weight = _kernel(seed, c_out, c_in, k)
    x = torch.randn(4, c_in, height, width, generator=torch.Generator().manual_seed(seed + 1),
                    dtype=torch.float64)
    matrix = cc.conv_matrix(weight, height, width)
    assert matrix.shape == (c_out * height * width, c_in * height * width)
    expected = F.conv2d(x, weight, padding=k // 2).flatten(1)
    torch.testing.assert_close(x.flatten(1) @ matrix.T, expected, rtol=0, atol=1e-12)


def _mu_inf_by_definition(a: np.ndarray) -> float:
    n = a.shape[0]
    return max(a[i, i] + sum(abs(a[i, j]) for j in range(n) if j != i) for i in range(n))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 7))
def test_log_norms_match_definitions(seed, n):
    a = np.random.default_rng(seed).normal(size=(n, n))
    t = torch.from_numpy(a)
    assert cc.log_norm(t, 2).item() == pytest.approx(np.linalg.eigvalsh((a + a.T) / 2).max(), abs=1e-12)
    assert cc.log_norm(t, "inf").item() == pytest.approx(_mu_inf_by_definition(a), abs=1e-12)
    assert cc.log_norm(t, 1).item() == pytest.approx(_mu_inf_by_definition(a.T), abs=1e-12)


def test_log_norm_bounds_the_spectral_abscissa_and_rejects_unknown_p():
    a = torch.randn(20, 6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    abscissa = torch.linalg.eigvals(a).real.max(-1).values
    for p in (1, 2, "inf"):
        assert (cc.log_norm(a, p) >= abscissa - 1e-12).all()
    with pytest.raises(ValueError, match="p must be one of"):
        cc.log_norm(a, 3)


def test_weight_margin_matches_an_explicit_loop():
    weight = _kernel(3, 4, 4)
    margin = cc.weight_margin(weight, A, B)
    for i in range(4):
        expected = 2 * (A + B) * weight[i, i, 1, 1] + B * (weight[i].abs().sum() + weight[:, i].abs().sum())
        assert margin[i].item() == pytest.approx(expected.item(), abs=1e-12)
    layers = torch.stack([weight, 2 * weight])
    assert cc.weight_margin(layers, A, B).shape == (2, 4)
    assert cc.certified_rate(layers, A, B).shape == (2,)
    with pytest.raises(ValueError, match="a <= b"):
        cc.weight_margin(weight, 2.0, 1.0)


@pytest.mark.parametrize("rho", [-0.5, 0.0, 1.0, 3.0])
def test_with_certified_rate_hits_the_requested_rate(rho):
    weight = cc.with_certified_rate(_kernel(5, 3, 3), rho, A, B)
    torch.testing.assert_close(cc.weight_margin(weight, A, B), torch.full((3,), -2.0 * rho, dtype=torch.float64))
    assert cc.certified_rate(weight, A, B).item() == pytest.approx(rho)


def test_weight_condition_theorem_on_1000_kernels():
    """lambda_max(sym(D K)) <= -certified_rate for random and extreme D in [a, b] (eq. weight-cond)."""
    gen = torch.Generator().manual_seed(0)
    size, channels, violations, checked, certified = 4, 2, 0, 0, 0
    n = channels * size * size
    for i in range(1000):
        weight = torch.randn(channels, channels, 3, 3, generator=gen, dtype=torch.float64)
        weight = weight * torch.rand(1, generator=gen, dtype=torch.float64) * 2
        if i % 2:  # half of them shifted towards (and past) certification
            mass = weight.abs().sum((1, 2, 3)) + weight.abs().sum((0, 2, 3))
            shift = 12 * torch.rand(channels, generator=gen, dtype=torch.float64) * mass
            weight[range(channels), range(channels), 1, 1] -= shift
        rate = cc.certified_rate(weight, A, B).item()
        certified += rate > 0
        d = torch.cat([
            torch.full((1, n), A, dtype=torch.float64), torch.full((1, n), B, dtype=torch.float64),
            A + (B - A) * torch.rand(4, n, generator=gen, dtype=torch.float64),
            torch.where(torch.rand(4, n, generator=gen) < 0.5, A, B).double(),
        ])
        slope = d.reshape(-1, channels, size, size)
        lam = torch.linalg.eigvalsh(cc.sym_jacobian_dense(weight, slope))[:, -1]
        violations += int((lam > -rate + 1e-5).sum())
        checked += len(lam)
    assert violations == 0
    assert checked == 10_000
    assert 100 < certified < 450  # the sample covers both certified and uncertified kernels


def _slope(seed: int, channels: int, size: int, batch: int = 3) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return A + (B - A) * torch.rand(batch, channels, size, size, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("certify", [False, True])
def test_matrix_free_lambda_max_matches_dense(seed, certify):
    weight = _kernel(seed, 3, 3)
    if certify:
        weight = cc.with_certified_rate(weight, 1.0, A, B)
    slope = _slope(seed, 3, 6)
    dense = torch.linalg.eigvalsh(cc.sym_jacobian_dense(weight, slope))[:, -1]
    est = cc.sym_jacobian_lambda_max(weight, slope, iters=80, generator=torch.Generator().manual_seed(seed))
    assert (est - dense).abs().max().item() < 1e-3
    assert (est <= dense + 1e-9).all()  # a Rayleigh quotient never exceeds lambda_max


def test_matrix_free_lambda_max_is_a_lower_bound_with_few_iterations_and_handles_breakdown():
    weight = cc.with_certified_rate(_kernel(7, 2, 2), 1.0, A, B)
    slope = _slope(7, 2, 3)  # n = 18: 40 iterations run past n, forcing breakdowns
    dense = torch.linalg.eigvalsh(cc.sym_jacobian_dense(weight, slope))[:, -1]
    for iters in (2, 5, 40):
        est = cc.sym_jacobian_lambda_max(weight, slope, iters=iters, generator=torch.Generator().manual_seed(0))
        assert torch.isfinite(est).all() and (est <= dense + 1e-9).all()
    torch.testing.assert_close(est, dense, rtol=0, atol=1e-9)


def test_matrix_free_lambda_max_gradient_matches_dense_eigenvalue_gradient():
    weight = cc.with_certified_rate(_kernel(11, 2, 2), 1.0, A, B).requires_grad_()
    slope = _slope(11, 2, 4).requires_grad_()
    est = cc.sym_jacobian_lambda_max(weight, slope, iters=32, generator=torch.Generator().manual_seed(0))
    g_w, g_s = torch.autograd.grad(est.sum(), (weight, slope))
    dense = torch.linalg.eigvalsh(cc.sym_jacobian_dense(weight, slope))[:, -1]
    d_w, d_s = torch.autograd.grad(dense.sum(), (weight, slope))
    torch.testing.assert_close(g_w, d_w, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(g_s, d_s, rtol=1e-4, atol=1e-6)


def test_sym_matvec_is_the_symmetric_part_of_the_jacobian():
    weight, slope = _kernel(2, 2, 2), _slope(2, 2, 4, batch=1)
    v = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    dense = cc.sym_jacobian_dense(weight, slope)[0]
    torch.testing.assert_close(cc.sym_jacobian_matvec(weight, slope, v).flatten(), dense @ v.flatten())
