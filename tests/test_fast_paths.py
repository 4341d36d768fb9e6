"""The fast paths of issue 6 give the numbers of the plain formulas they replace (benchmarks/ times them).

Tolerances: logits 1e-5, regularizer values and gradients 1e-4 (float32 where training runs in float32).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnode.core import contraction as cc
from cnode.core import regularizers
from cnode.core.models import ConvNODE, SmoothLeakyReLU, softplus_reference

A, B = 0.1, 1.0


def _plain_logits(model: ConvNODE, u: torch.Tensor) -> torch.Tensor:
    """The textbook loop: plain softplus activation, ``x + h f(x)`` per step, linear head."""
    act = lambda z: softplus_reference(z, model.act.a, model.act.b)  # noqa: E731
    x = act(model.inp(u))
    for conv in model.convs:
        x = x + model.h * act(conv(x))
    return model.head(x.flatten(1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_activation_equals_the_plain_formula_with_gradients(dtype):
    x = torch.cat([torch.linspace(-60, 60, 2001), torch.randn(1000) * 3]).to(dtype).requires_grad_()
    fast, plain = SmoothLeakyReLU(A, B)(x), softplus_reference(x, A, B)
    torch.testing.assert_close(fast, plain, rtol=1e-6, atol=1e-6)
    (g_fast,) = torch.autograd.grad(fast.square().sum(), x)
    (g_plain,) = torch.autograd.grad(plain.square().sum(), x)
    torch.testing.assert_close(g_fast, g_plain, rtol=1e-5, atol=1e-5)


def test_fused_activation_passes_gradcheck_and_gradgradcheck():
    act = SmoothLeakyReLU(0.2, 1.5)
    x = torch.randn(20, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(act, (x,))
    assert torch.autograd.gradgradcheck(act, (x,))


@pytest.mark.parametrize("seed", [0, 1])
def test_convnode_logits_equal_the_plain_loop(seed):
    torch.manual_seed(seed)
    model = ConvNODE(channels=8, steps=10, T=0.1)
    u = torch.rand(16, 1, 28, 28)
    torch.testing.assert_close(model(u), _plain_logits(model, u), rtol=0, atol=1e-5)
    grads = [torch.autograd.grad(f(u).logsumexp(1).sum(), model.convs[3].weight)[0]
             for f in (model, lambda v: _plain_logits(model, v))]
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_grouped_matvec_equals_conv_and_conv_transpose(dtype, tol):
    gen = torch.Generator().manual_seed(3)
    weight = torch.randn(5, 5, 3, 3, generator=gen, dtype=dtype).requires_grad_()
    slope = (A + (B - A) * torch.rand(4, 5, 9, 7, generator=gen, dtype=dtype)).requires_grad_()
    v = torch.randn(4, 5, 9, 7, generator=gen, dtype=dtype)
    plain = (slope * F.conv2d(v, weight, padding=1) + F.conv_transpose2d(slope * v, weight, padding=1)) / 2
    fast = cc.sym_jacobian_matvec(weight, slope, v)
    torch.testing.assert_close(fast, plain, rtol=tol, atol=tol)
    g_fast = torch.autograd.grad((fast * v).sum(), (weight, slope))
    g_plain = torch.autograd.grad((plain * v).sum(), (weight, slope))
    for a, b in zip(g_fast, g_plain, strict=True):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def _dense_reg_on(model: ConvNODE, states: list[torch.Tensor], rho: float, images: torch.Tensor,
                  steps: list[int]) -> torch.Tensor:
    """R_J by dense eigenvalues over exactly the given images and solver steps."""
    terms = []
    for k in steps:
        slope = model.slope(k, states[k][images])
        lam = torch.linalg.eigvalsh(cc.sym_jacobian_dense(model.convs[k].weight, slope))[:, -1]
        terms.append(F.relu(lam + rho))
    return torch.stack(terms).mean()


@pytest.mark.parametrize("samples,steps", [(None, None), (3, 2), (1, 1)])
def test_sampled_lanczos_regularizer_equals_dense_on_the_drawn_pairs(samples, steps):
    torch.manual_seed(5)
    model = ConvNODE(channels=3, steps=4, T=0.4, image_size=6)
    u = torch.rand(5, 1, 6, 6)
    _, states = model(u, return_states=True)
    fast = regularizers.jacobian(model, states, rho=1.0, iters=120, generator=torch.Generator().manual_seed(9),
                                 samples=samples, steps=steps)
    gen = torch.Generator().manual_seed(9)  # replay the draws: images first, then steps
    images = torch.randperm(5, generator=gen)[:samples] if samples else torch.arange(5)
    chosen = torch.randperm(4, generator=gen)[:steps].sort().values.tolist() if steps else list(range(4))
    dense = _dense_reg_on(model, states, 1.0, images, chosen)
    torch.testing.assert_close(fast, dense, rtol=1e-4, atol=1e-4)
    params = [model.convs[k].weight for k in chosen] + [model.inp.weight]
    g_fast = torch.autograd.grad(fast, params, retain_graph=True)
    g_dense = torch.autograd.grad(dense, params)
    for a, b in zip(g_fast, g_dense, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_sampling_settings_are_validated():
    model = ConvNODE(channels=2, steps=2, image_size=4)
    _, states = model(torch.rand(2, 1, 4, 4), return_states=True)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        regularizers.jacobian(model, states, rho=1.0, steps=0)


def test_warm_started_regularizer_keeps_its_vectors_and_equals_dense():
    torch.manual_seed(6)
    model = ConvNODE(channels=3, steps=4, T=0.4, image_size=6)
    _, states = model(torch.rand(5, 1, 6, 6), return_states=True)
    dense = _dense_reg_on(model, states, 1.0, torch.arange(5), list(range(4)))
    warm: dict[int, torch.Tensor] = {}
    gen = torch.Generator().manual_seed(2)
    first = regularizers.jacobian(model, states, rho=1.0, iters=120, generator=gen, warm=warm)
    assert sorted(warm) == [0, 1, 2, 3] and all(v.shape == (3, 6, 6) for v in warm.values())
    second = regularizers.jacobian(model, states, rho=1.0, iters=120, generator=gen, warm=warm)
    torch.testing.assert_close(first, dense, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(second, dense, rtol=1e-4, atol=1e-4)


def test_a_misleading_warm_start_does_not_hurt_and_a_good_one_helps():
    """Images sharing one slope field (like the shared background of real digits) share the top eigenvector."""
    gen = torch.Generator().manual_seed(4)
    weight = cc.with_certified_rate(0.3 * torch.randn(4, 4, 3, 3, generator=gen, dtype=torch.float64), 0.5, A, B)
    slope = (A + (B - A) * torch.rand(1, 4, 8, 8, generator=gen, dtype=torch.float64)).expand(3, 4, 8, 8)
    dense = torch.linalg.eigvalsh(cc.sym_jacobian_dense(weight, slope))[:, -1]
    _, top = cc.sym_jacobian_lambda_max(weight, slope, iters=256, return_vector=True, generator=gen)
    good = regularizers.pooled_vector(top)
    bad = torch.randn(4, 8, 8, generator=gen, dtype=torch.float64)
    bad = bad - (bad * good).sum() / (good * good).sum() * good  # orthogonal to the good one
    errors = {}
    for name, warm, iters in (("bad", bad, 256), ("good", good, 8), ("cold", None, 8)):
        v0 = regularizers.warm_start(warm, slope.shape, gen).double()
        est = cc.sym_jacobian_lambda_max(weight, slope, iters=iters, v0=v0)
        assert (est <= dense + 1e-9).all()  # always a Rayleigh quotient
        errors[name] = ((est - dense).abs() / dense.abs()).max().item()
    assert errors["bad"] < 1e-9  # enough products still find the top: the random part keeps its direction
    assert errors["good"] < 1e-3 and errors["good"] < errors["cold"] / 50


@pytest.mark.train
@pytest.mark.parametrize("return_states", [False, True])
def test_compiled_forward_matches_eager_logits_and_gradients(return_states: bool):
    """``train.compiled`` (torch.compile, used by the cpu and paper profiles) against the eager model:
    logits to a relative 1e-5, parameter gradients to a relative 1e-4."""
    import copy

    from cnode.core.config import RunConfig
    from cnode.core.train import build_model, compiled

    cfg = RunConfig.from_profile("smoke", regularizer="weight", compile=True)
    torch.manual_seed(0)
    eager = build_model(cfg)
    fast_model = copy.deepcopy(eager)
    fast = compiled(fast_model, cfg)
    assert fast is not fast_model  # compiled, not the model itself
    u = torch.rand(16, 1, 28, 28)

    def run(forward, model):
        out = forward(u, return_states=True) if return_states else forward(u)
        logits = out[0] if return_states else out
        loss = logits.square().mean() + (sum(s.square().mean() for s in out[1]) if return_states else 0)
        model.zero_grad()
        loss.backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters()]

    want_logits, want_grads = run(eager, eager)
    got_logits, got_grads = run(fast, fast_model)
    assert torch.allclose(got_logits, want_logits, rtol=1e-5, atol=1e-5 * want_logits.abs().max().item())
    for got, want in zip(got_grads, want_grads, strict=True):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


def test_smoke_profile_stays_eager():
    from cnode.core.config import RunConfig
    from cnode.core.train import build_model, compiled

    cfg = RunConfig.from_profile("smoke")
    model = build_model(cfg)
    assert compiled(model, cfg) is model and RunConfig.from_profile("paper").compile
    assert RunConfig.from_profile("cpu", compile=False).key() == RunConfig.from_profile("cpu").key()


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("c_in,bias", [(1, True), (5, True), (5, False)])
def test_same_conv_equals_nn_conv2d_with_gradients(dtype, tol, c_in, bias):
    """``SameConv2d`` computes its input gradient as a forward conv with the flipped, transposed kernel."""
    from torch import nn

    from cnode.core.models import SameConv2d

    torch.manual_seed(0)
    fast = SameConv2d(c_in, 4).to(dtype)
    if not bias:
        fast.bias = None
    plain = nn.Conv2d(c_in, 4, 3, padding=1, bias=bias).to(dtype)
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(3, c_in, 9, 7, dtype=dtype, requires_grad=True)
    out_fast, out_plain = fast(x), plain(x)
    torch.testing.assert_close(out_fast, out_plain, rtol=tol, atol=tol)
    w = torch.randn_like(out_fast)
    g_fast = torch.autograd.grad((out_fast * w).sum(), [x, *fast.parameters()])
    g_plain = torch.autograd.grad((out_plain * w).sum(), [x, *plain.parameters()])
    for a, b in zip(g_fast, g_plain, strict=True):
        torch.testing.assert_close(a, b, rtol=tol * 10, atol=tol * 10)


def test_same_conv_passes_gradcheck():
    from cnode.core.models import SameConv2d, _SameConvFn

    conv = SameConv2d(2, 3).double()
    x = torch.randn(2, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_SameConvFn.apply, (x, conv.weight, conv.bias))
    assert torch.autograd.gradcheck(_SameConvFn.apply, (x, conv.weight, None))
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        SameConv2d(2, 2, kernel_size=2)


def test_attacks_freeze_the_weights_and_give_them_back():
    from cnode.core.perturbations import fgsm, frozen, pgd

    torch.manual_seed(0)
    model = ConvNODE(channels=2, steps=2, image_size=8)
    model.head.bias.requires_grad_(False)  # a parameter frozen by its owner stays frozen
    before = [p.requires_grad for p in model.parameters()]
    with frozen(model) as m:
        assert not any(p.requires_grad for p in m.parameters()) and not m.training
    u, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    pgd(model, u, y, 0.1, 2, 0.05, generator=torch.Generator().manual_seed(0))
    fgsm(model, u, y, 0.1)
    assert [p.requires_grad for p in model.parameters()] == before
    assert all(p.grad is None for p in model.parameters())  # no weight gradient was computed


@pytest.mark.parametrize("samples,steps", [(3, 2), (5, 1), (None, 2)])
def test_jacobian_from_inputs_equals_jacobian_from_the_trajectory(samples, steps):
    """Recomputing the drawn images' states (what training does) gives the full trajectory's value and gradients."""
    torch.manual_seed(7)
    model = ConvNODE(channels=3, steps=4, T=0.4, image_size=6).double()
    u = torch.rand(5, 1, 6, 6, dtype=torch.float64)
    params = [model.inp.weight, *[c.weight for c in model.convs]]
    _, states = model(u, return_states=True)
    kw = dict(rho=1.0, iters=40, samples=samples, steps=steps)
    full = regularizers.jacobian(model, states, generator=torch.Generator().manual_seed(3), **kw)
    sub = regularizers.jacobian(model, None, generator=torch.Generator().manual_seed(3), inputs=u, **kw)
    torch.testing.assert_close(sub, full, rtol=1e-10, atol=1e-12)
    g_full = torch.autograd.grad(full, params, allow_unused=True, materialize_grads=True)
    g_sub = torch.autograd.grad(sub, params, allow_unused=True, materialize_grads=True)
    for a, b in zip(g_sub, g_full, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="exactly one of states"):
        regularizers.jacobian(model, states, rho=1.0, inputs=u)


def test_precision_is_opt_in_and_keyed_only_when_set():
    from cnode.core.config import RunConfig
    from cnode.core.train import build_model, train_step

    base = RunConfig.from_profile("smoke", regularizer="jacobian")
    bf16 = RunConfig.from_profile("smoke", regularizer="jacobian", precision="bfloat16")
    assert base.precision == "float32" and "precision" not in base.identity()
    assert bf16.key() != base.key() and bf16.identity()["precision"] == "bfloat16"
    with pytest.raises(ValueError, match="precision must be one of"):
        RunConfig.from_profile("smoke", precision="float16")
    model = build_model(bf16)
    opt = torch.optim.Adam(model.parameters(), lr=bf16.lr)
    u, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    loss, ce, reg, logits = train_step(model, opt, bf16, u, y, torch.Generator().manual_seed(0), {})
    assert logits.dtype == torch.float32 and reg.dtype == torch.float32 and torch.isfinite(loss)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_jacobian_schema_changes_only_jacobian_keys(monkeypatch):
    from cnode.core import config
    from cnode.core.config import RunConfig

    cfgs = {reg: RunConfig.from_profile("cpu", regularizer=reg) for reg in ("none", "weight", "jacobian")}
    before = {reg: cfg.key() for reg, cfg in cfgs.items()}
    monkeypatch.setattr(config, "JACOBIAN_SCHEMA", config.JACOBIAN_SCHEMA + 1)
    after = {reg: cfg.key() for reg, cfg in cfgs.items()}
    assert after["none"] == before["none"] and after["weight"] == before["weight"]
    assert after["jacobian"] != before["jacobian"]
