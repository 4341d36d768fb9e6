"""cnode.core.regularizers against their definitions and dense linear algebra."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnode.core import regularizers
from cnode.core.contraction import conv_matrix, with_certified_rate
from cnode.core.models import ConvNODE

A, B, RHO = 0.1, 1.0, 1.0


def _certified_model(rho: float = RHO) -> ConvNODE:
    torch.manual_seed(0)
    model = ConvNODE(channels=3, steps=3, T=0.3, image_size=6).double()
    with torch.no_grad():
        for conv in model.convs:
            conv.weight.copy_(with_certified_rate(0.2 * torch.randn_like(conv.weight), rho, A, B))
    return model


def test_weight_regularizer_is_zero_exactly_when_every_channel_is_certified():
    model = _certified_model(rho=1.5)
    assert regularizers.weight(model, 1.0, A, B).item() == 0.0  # certified 1.5 >= 1 everywhere
    assert regularizers.weight(model, 1.5, A, B).item() == 0.0  # exactly at the boundary
    assert regularizers.weight(model, 1.6, A, B).item() > 0  # asks for more than certified
    with torch.no_grad():
        model.convs[1].weight[2, 0, 0, 0] += 0.5  # breaks channel 2 of step 1 (row) and channel 0 (column)
    value = regularizers.weight(model, 1.5, A, B).item()
    assert value == pytest.approx(2 * 0.5 * B)  # two margins grew by b * 0.5 each


def test_weight_regularizer_matches_its_formula_and_has_gradients():
    model = ConvNODE(channels=2, steps=2)
    total = 0.0
    for conv in model.convs:
        k = conv.weight
        for i in range(2):
            margin = 2 * (A + B) * k[i, i, 1, 1] + B * (k[i].abs().sum() + k[:, i].abs().sum())
            total = total + F.relu(2 * RHO + margin)
    value = regularizers.weight(model, RHO, A, B)
    torch.testing.assert_close(value, total)
    value.backward()
    assert all(conv.weight.grad is not None for conv in model.convs)


def _dense_jacobian_reg(model: ConvNODE, states: list[torch.Tensor], rho: float) -> torch.Tensor:
    terms = []
    for k in range(model.steps):
        matrix = conv_matrix(model.convs[k].weight, 6, 6)
        slope = model.slope(k, states[k]).flatten(1)  # (B, n)
        jac = slope[:, :, None] * matrix
        lam = torch.linalg.eigvalsh((jac + jac.mT) / 2)[:, -1]
        terms.append(F.relu(lam + rho))
    return torch.stack(terms).mean()


def test_jacobian_regularizer_matches_a_dense_computation_with_gradients():
    torch.manual_seed(1)
    model = ConvNODE(channels=2, steps=3, T=0.3, image_size=6).double()
    u = torch.rand(4, 1, 6, 6, dtype=torch.float64)
    _, states = model(u, return_states=True)
    est = regularizers.jacobian(model, states, rho=RHO, iters=72, generator=torch.Generator().manual_seed(0))
    dense = _dense_jacobian_reg(model, states, RHO)
    torch.testing.assert_close(est, dense, rtol=0, atol=1e-8)
    params = [model.convs[0].weight, model.convs[2].weight, model.inp.weight]
    g_est = torch.autograd.grad(est, params, retain_graph=True)
    g_dense = torch.autograd.grad(dense, params)
    for ge, gd in zip(g_est, g_dense, strict=True):
        torch.testing.assert_close(ge, gd, rtol=1e-5, atol=1e-8)


def test_jacobian_regularizer_is_zero_on_a_certified_model():
    model = _certified_model(rho=2.0)
    _, states = model(torch.rand(3, 1, 6, 6, dtype=torch.float64), return_states=True)
    assert regularizers.jacobian(model, states, rho=2.0, iters=20).item() == 0.0


def test_subsampled_jacobian_regularizer_is_unbiased():
    torch.manual_seed(2)
    model = ConvNODE(channels=2, steps=2, T=0.2, image_size=6).double()
    _, states = model(torch.rand(4, 1, 6, 6, dtype=torch.float64), return_states=True)
    states = [s.detach() for s in states]
    full = regularizers.jacobian(model, states, rho=5.0, iters=72).item()
    singles = [regularizers.jacobian(model, [s[i:i + 1] for s in states], rho=5.0, iters=72).item() for i in range(4)]
    assert full > 0 and sum(singles) / 4 == pytest.approx(full)  # E over a uniform pick = the batch mean
    gen = torch.Generator().manual_seed(0)
    draws = {round(regularizers.jacobian(model, states, rho=5.0, iters=72, generator=gen, samples=1).item(), 9)
             for _ in range(12)}
    assert len(draws) > 1 and draws <= {round(v, 9) for v in singles}
    assert regularizers.jacobian(model, states, rho=5.0, iters=72, samples=4).item() == pytest.approx(full)


def test_an_active_hinge_gives_gradients_free_of_rho():
    """Chapter 8: where every hinge term is active, rho drops out of the gradient (so the same seed trains the same
    weights at both rates); where a term is inactive at one rate, the gradients differ."""
    torch.manual_seed(2)
    model = ConvNODE(channels=2, steps=2, T=0.2, image_size=6).double()
    params = [conv.weight for conv in model.convs]

    def grads(value: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.autograd.grad(value, params, retain_graph=True))

    w16, w64 = grads(regularizers.weight(model, 16.0, A, B)), grads(regularizers.weight(model, 64.0, A, B))
    assert all(torch.equal(g, h) for g, h in zip(w16, w64, strict=True))
    certified = _certified_model(rho=1.0)
    cparams = [conv.weight for conv in certified.convs]
    low = torch.autograd.grad(regularizers.weight(certified, 0.5, A, B), cparams)
    high = torch.autograd.grad(regularizers.weight(certified, 4.0, A, B), cparams)
    assert any(not torch.equal(g, h) for g, h in zip(low, high, strict=True))
    _, states = model(torch.rand(3, 1, 6, 6, dtype=torch.float64), return_states=True)
    j16 = grads(regularizers.jacobian(model, states, rho=16.0, iters=20, generator=torch.Generator().manual_seed(0)))
    j64 = grads(regularizers.jacobian(model, states, rho=64.0, iters=20, generator=torch.Generator().manual_seed(0)))
    assert all(torch.equal(g, h) for g, h in zip(j16, j64, strict=True))
