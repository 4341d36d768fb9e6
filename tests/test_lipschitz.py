"""cnode.core.lipschitz: the FFT spectral norm against dense SVDs, the bound against exact Jacobians, tightness."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from cnode.core import lipschitz as lp
from cnode.core.contraction import conv_matrix
from cnode.core.models import CNN, ConvNODE


def _circular_matrix(weight: torch.Tensor, n: int) -> torch.Tensor:
    """Dense matrix of the circular conv on n x n images (its columns are the convs of basis images)."""
    c_in, pad = weight.shape[1], weight.shape[-1] // 2
    basis = torch.eye(c_in * n * n, dtype=weight.dtype).reshape(-1, c_in, n, n)
    return F.conv2d(F.pad(basis, (pad,) * 4, mode="circular"), weight).reshape(c_in * n * n, -1).T


@pytest.mark.parametrize("c_out, c_in, size", [(1, 1, 5), (3, 2, 6), (4, 4, 4), (8, 1, 5)])
def test_fft_norm_is_the_circular_norm_and_bounds_the_zero_padded_one(c_out, c_in, size):
    w = torch.randn(c_out, c_in, 3, 3, generator=torch.Generator().manual_seed(size + c_in), dtype=torch.float64)
    fft = lp.conv_spectral_norm(w, size)
    circular = torch.linalg.matrix_norm(_circular_matrix(w, size + 2), ord=2).item()
    padded = torch.linalg.matrix_norm(conv_matrix(w, size, size), ord=2).item()
    assert fft == pytest.approx(circular, rel=1e-10)
    assert padded <= fft * (1 + 1e-12)
    power = lp.conv_spectral_norm_power(w, size, iters=500)
    assert power <= padded * (1 + 1e-9) and power == pytest.approx(padded, rel=1e-3)


def _small_node(seed: int, steps: int, scale: float, a: float = 0.1, b: float = 1.0, channels: int = 2
                ) -> ConvNODE:
    torch.manual_seed(seed)
    model = ConvNODE(channels=channels, steps=steps, T=1.0, a=a, b=b, image_size=6)
    with torch.no_grad():
        for conv in model.convs:
            conv.weight.mul_(scale)
    return model.double().eval()


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), steps=st.integers(1, 4), scale=st.floats(0.5, 20.0))
def test_bound_is_never_below_an_exact_local_gain(seed, steps, scale):
    model = _small_node(seed, steps, scale)
    bound = lp.lipschitz_bound(model, size=6)
    u = torch.rand(16, 1, 6, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    gains = lp.jacobian_norms(model, u)
    assert gains.max().item() <= bound["total"] * (1 + 1e-6)
    assert bound["total"] == pytest.approx(bound["input"] * math.prod(bound["steps"]) * bound["head"])


def test_cnn_bound_is_never_below_an_exact_local_gain():
    torch.manual_seed(0)
    model = CNN(channels=3, image_size=6).double().eval()
    gains = lp.jacobian_norms(model, torch.rand(32, 1, 6, 6, dtype=torch.float64))
    assert gains.max().item() <= lp.lipschitz_bound(model, size=6)["total"]


def test_bound_is_tight_on_a_linear_one_step_model():
    """a = b = 1 makes the activation the identity; with one channel and centre-only kernels (conv0 = 1, K = c,
    c < 0) the network is ``(1 + h c) W u + const``: its Lipschitz constant, by dense SVD, equals the bound."""
    model = _small_node(0, 1, 1.0, a=1.0, b=1.0, channels=1)
    with torch.no_grad():
        model.inp.weight.zero_()
        model.inp.weight[0, 0, 1, 1] = 1.0
        model.convs[0].weight.zero_()
        model.convs[0].weight[0, 0, 1, 1] = -0.4
    u = torch.rand(4, 1, 6, 6, dtype=torch.float64)
    exact = lp.jacobian_norms(model, u)  # the map is affine: the same Jacobian everywhere
    bound = lp.lipschitz_bound(model, size=6)
    assert bound["steps"][0] == pytest.approx(1 - 0.4 * model.h)
    assert exact.max().item() == pytest.approx(bound["total"], rel=1e-6)


def test_certified_radius_is_zero_when_wrong_and_the_margin_otherwise():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.5]])
    radius = lp.certified_radius(logits, torch.tensor([0, 0]), bound=2.0)
    assert radius[0].item() == pytest.approx(2.0 / (math.sqrt(2) * 2.0)) and radius[1].item() == 0.0
    with pytest.raises(ValueError, match="bound must be > 0"):
        lp.certified_radius(logits, torch.tensor([0, 0]), bound=0.0)


def test_the_euler_step_contracts_exactly_below_its_step_size_limit():
    """Below the limit the step bound is under 1, above it over 1; no certified rate, no limit."""
    from cnode.core.contraction import certified_rate, with_certified_rate

    torch.manual_seed(0)
    w = with_certified_rate(0.3 * torch.randn(2, 2, 3, 3), rho=1.0, a=0.1, b=1.0)
    rate = certified_rate(w, 0.1, 1.0).item()
    limit = lp.euler_h_limit(w, rate, 1.0)
    assert limit > 0
    assert lp.euler_step_bound(w, rate, 0.99 * limit, 1.0) < 1 < lp.euler_step_bound(w, rate, 1.01 * limit, 1.0)
    assert lp.euler_h_limit(w, -0.5, 1.0) == 0.0


def test_certified_accuracy_is_clean_accuracy_at_radius_zero_and_falls_with_the_radius():
    model = _small_node(0, 3, 0.3).eval()
    images, labels = torch.rand(16, 1, 6, 6, dtype=torch.float64), torch.randint(0, 10, (16,))
    found = lp.certified_accuracy(model, images, labels, [0.0, 0.01, 0.1, 10.0])
    with torch.no_grad():
        assert found[0.0] == pytest.approx((model(images).argmax(1) == labels).float().mean().item())
    assert found[0.0] >= found[0.01] >= found[0.1] >= found[10.0]
