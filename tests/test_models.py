"""cnode.core.models: the activation, the ConvNODE (own loop vs torchdiffeq), the CNN baseline."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnode.core.models import CNN, ConvNODE, SmoothLeakyReLU


@settings(max_examples=30, deadline=None)
@given(a=st.floats(0.01, 0.9), width=st.floats(0.01, 2.0))
def test_activation_slope_is_its_derivative_and_lies_in_a_b(a, width):
    act = SmoothLeakyReLU(a, a + width)
    x = torch.linspace(-30, 30, 601, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(act(x).sum(), x)
    torch.testing.assert_close(act.slope(x), grad)
    assert (grad >= a - 1e-12).all() and (grad <= a + width + 1e-12).all()


def test_paper_activation_is_a_x_plus_one_minus_a_softplus():
    x = torch.linspace(-5, 5, 11)
    expected = 0.1 * x + 0.9 * torch.nn.functional.softplus(x)
    torch.testing.assert_close(SmoothLeakyReLU(0.1, 1.0)(x), expected)


@pytest.mark.parametrize("solver", ["euler", "rk4"])
def test_own_loop_and_torchdiffeq_give_the_same_logits(solver):
    torch.manual_seed(0)
    model = ConvNODE(channels=4, steps=5, T=0.5, solver=solver)
    u = torch.rand(6, 1, 28, 28)
    torch.testing.assert_close(model(u), model(u, odeint_method=solver), rtol=0, atol=1e-5)


def test_trajectory_and_shapes():
    model = ConvNODE(channels=3, steps=4, T=0.2)
    logits, states = model(torch.rand(2, 1, 28, 28), return_states=True)
    assert logits.shape == (2, 10) and len(states) == 5
    assert all(s.shape == (2, 3, 28, 28) for s in states)
    assert model.h == pytest.approx(0.05) and model.node_weights().shape == (4, 3, 3, 3, 3)
    x = states[0]
    torch.testing.assert_close(states[1], x + 0.05 * model.field(0, x))  # one Euler step


def test_contractive_init_is_the_authors_broadcast():
    model = ConvNODE(channels=3, steps=2, init="contractive")
    expected = (-5 * torch.eye(3)).expand(3, 3, 3, 3)
    for conv in model.convs:
        torch.testing.assert_close(conv.weight.detach(), expected)


def test_bad_model_arguments_are_clear():
    with pytest.raises(ValueError, match="solver must be one of"):
        ConvNODE(solver="dopri5")
    with pytest.raises(ValueError, match="T must be > 0"):
        ConvNODE(T=0)


def test_cnn_baseline_has_a_similar_parameter_count():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 0.8 < count(CNN()) / count(ConvNODE()) < 1.0
    assert CNN()(torch.rand(2, 1, 28, 28)).shape == (2, 10)
