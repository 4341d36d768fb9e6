"""A guaranteed upper bound on the 2-norm Lipschitz constant of a classifier, and certified radii (book chapter 7).

Equation labels refer to ``book/07_trust.ipynb``. Every factor is an upper bound, never an estimate: conv
spectral norms are exact norms of circular convolutions that contain the zero-padded ones (eq. ``fft-norm``);
power iteration and exact input-output Jacobians serve only as checks from below.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnode.core import checks
from cnode.core.contraction import certified_rate
from cnode.core.models import CNN, ConvNODE


def conv_spectral_norm(weight: Tensor, size: int = 28) -> float:
    """Upper bound on ``||conv(., weight)||_2`` on (C_in, size, size) images with zero padding (eq. ``fft-norm``).

    weight: (C_out, C_in, k, k), k odd. The zero-padded conv is the restriction of the circular conv on an
    n x n grid, n = size + k - 1 (the image embedded with k // 2 zeros on every side, the output cropped), so
    its norm is at most the circular conv's, which the 2-D DFT makes exact: the largest singular value of the
    C_out x C_in symbol over the n^2 frequencies.
    """
    k = weight.shape[-1]
    n = size + k - 1
    symbol = torch.fft.fft2(weight.detach().double(), s=(n, n))  # (C_out, C_in, n, n)
    return torch.linalg.matrix_norm(symbol.permute(2, 3, 0, 1), ord=2).max().item()


def conv_spectral_norm_power(weight: Tensor, size: int = 28, iters: int = 200, seed: int = 0) -> float:
    """Power iteration on ``conv^T conv`` with zero padding: a lower bound on its spectral norm (a check)."""
    checks.positive_int("iters", iters)
    w, pad = weight.detach().double(), weight.shape[-1] // 2
    v = torch.randn(1, w.shape[1], size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    for _ in range(iters):
        v = F.conv_transpose2d(F.conv2d(v, w, padding=pad), w, padding=pad)
        v = v / v.norm()
    return F.conv2d(v, w, padding=pad).norm().item()


def euler_step_bound(weight: Tensor, rate: float, h: float, b: float, size: int = 28) -> float:
    """Lipschitz bound of one Euler step ``x + h sigma(K x + bias)`` (eq. ``euler-bound`` of chapter 7).

    Its Jacobian is ``I + h D K`` with ``D`` diagonal in [a, b], so ``||I + h D K||^2 <= 1 + 2 h mu_2(D K) +
    h^2 b^2 ||K||^2 <= 1 - 2 h rate + h^2 b^2 ||K||^2`` (``rate`` the certified rate, eq. ``cert-rate``; negative
    where none is certified), and also ``<= (1 + h b ||K||)^2``; the smaller of the two square roots.
    """
    norm = conv_spectral_norm(weight, size)
    contracting = math.sqrt(max(0.0, 1 - 2 * h * rate + (h * b * norm) ** 2))
    return min(contracting, 1 + h * b * norm)


def flow_bounds(model: ConvNODE, size: int = 28) -> list[float]:
    """``euler_step_bound`` of every step of an Euler ConvNODE, in order (their product bounds the flow)."""
    if model.solver != "euler":
        raise ValueError(f"the step bounds are derived for forward Euler, not {model.solver!r}")
    a, b = model.act.a, model.act.b
    return [euler_step_bound(conv.weight, certified_rate(conv.weight.detach(), a, b).item(), model.h, b, size)
            for conv in model.convs]


def euler_h_limit(weight: Tensor, rate: float, b: float, size: int = 28) -> float:
    """The step sizes for which one Euler step contracts by eq. ``euler-bound``: ``1 - 2 h rate + h^2 b^2 ||K||^2
    < 1`` iff ``h < 2 rate / (b^2 ||K||^2)``; returns that limit, 0 where no rate is certified (no h works). The
    certificate of chapter 1 is about the continuous flow; only a step below this limit makes the map the network
    computes contract too."""
    if rate <= 0:
        return 0.0
    return 2 * rate / (b * conv_spectral_norm(weight, size)) ** 2


def euler_limit(model: ConvNODE, size: int = 28) -> float:
    """The largest step size for which every Euler step of ``model`` contracts (``euler_h_limit``, minimum over
    the steps); the model's own map contracts when its ``h`` is below it."""
    a, b = model.act.a, model.act.b
    return min(euler_h_limit(conv.weight, certified_rate(conv.weight.detach(), a, b).item(), b, size)
               for conv in model.convs)


def lipschitz_bound(model: nn.Module, size: int = 28) -> dict[str, float | list[float]]:
    """Upper bound L on the 2-norm Lipschitz constant of ``u -> logits`` (eq. ``lipschitz``), by its factors.

    ConvNODE: ``input = b ||conv0||`` (the activation's slope is at most b), ``steps`` (``flow_bounds``),
    ``flow`` their product, ``head = ||W_out||_2``, ``total`` the product of all. CNN: every layer's
    ``b ||conv||`` in ``steps``. Shape-free: ``size`` is the image side.
    """
    b = model.act.b
    inp = b * conv_spectral_norm(model.inp.weight, size)
    if isinstance(model, ConvNODE):
        steps = flow_bounds(model, size)
    elif isinstance(model, CNN):
        steps = [b * conv_spectral_norm(conv.weight, size) for conv in model.convs]
    else:
        raise TypeError(f"no Lipschitz bound for {type(model).__name__}")
    head = torch.linalg.matrix_norm(model.head.weight.detach().double(), ord=2).item()
    flow = math.prod(steps)
    return {"input": inp, "steps": steps, "flow": flow, "head": head, "total": inp * flow * head}


def _scale_to(weight: Tensor, norm: float, limit: float) -> None:
    """Scale ``weight`` in place so that its operator norm ``norm`` (an upper bound) is at most ``limit``."""
    if norm > limit:
        weight.mul_(limit / norm)


@torch.no_grad()
def project(model: nn.Module, op_norm: float, flow_norm: float, size: int = 28) -> None:
    """Bound operator norms in place (a projection after every optimizer step, book chapter 9's certifiable
    point): with ``op_norm`` > 0 the input conv, the head and, for a CNN, every conv to ``op_norm`` (eq.
    ``fft-norm`` for convolutions, the spectral norm for the head); with ``flow_norm`` > 0 every flow kernel of a
    ConvNODE to ``flow_norm``. A scaled-down weight keeps its direction; ``spectral_norm`` on a Conv2d would bound
    the reshaped kernel, not the convolution, and certify nothing."""
    if op_norm > 0:
        layers = [model.inp] + (list(model.convs) if isinstance(model, CNN) else [])
        for conv in layers:
            _scale_to(conv.weight, conv_spectral_norm(conv.weight, size), op_norm)
        head = model.head.weight
        _scale_to(head, torch.linalg.matrix_norm(head.detach().double(), ord=2).item(), op_norm)
    if flow_norm > 0 and isinstance(model, ConvNODE):
        for conv in model.convs:
            _scale_to(conv.weight, conv_spectral_norm(conv.weight, size), flow_norm)


def margins(logits: Tensor) -> Tensor:
    """Per row of (B, classes) logits: top logit minus the runner-up (>= 0)."""
    top = logits.topk(2, dim=1).values
    return top[:, 0] - top[:, 1]


def certified_radius(logits: Tensor, labels: Tensor, bound: float) -> Tensor:
    """L2 radius (on [0, 1] pixels) within which the prediction provably stays ``labels`` (eq. ``certificate``):
    ``margin / (sqrt(2) L)`` for correctly classified rows, 0 for the others. (B,)"""
    checks.positive("bound", bound)
    radius = margins(logits) / (math.sqrt(2) * bound)
    return torch.where(logits.argmax(1) == labels, radius, torch.zeros_like(radius))


def jacobian_norms(model: nn.Module, u: Tensor) -> Tensor:
    """Exact ``||d logits / d u||_2`` at each image of ``u`` (B, 1, H, W): the local gain, a lower bound on the
    Lipschitz constant. One backward pass per class builds the (B, classes, pixels) Jacobian; then its SVD."""
    u = u.detach().requires_grad_(True)
    was_training = model.training
    model.eval()
    logits = model(u)
    rows = [torch.autograd.grad(logits[:, c].sum(), u, retain_graph=c < logits.shape[1] - 1)[0].flatten(1)
            for c in range(logits.shape[1])]
    model.train(was_training)
    return torch.linalg.matrix_norm(torch.stack(rows, 1).double(), ord=2).float()


def certified_accuracy(model: nn.Module, images: Tensor, labels: Tensor, radii: list[float]) -> dict[float, float]:
    """Share of ``images`` (N, C, H, W) whose certified L2 radius (``certified_radius`` under the guaranteed bound
    ``lipschitz_bound``, eq. ``certificate``) reaches each of ``radii``: correct and provably unchanged within it."""
    bound = lipschitz_bound(model)["total"]
    with torch.no_grad():
        logits = model(images)
    radius, correct = certified_radius(logits, labels, bound), logits.argmax(1) == labels
    return {r: float((correct & (radius >= r)).float().mean()) for r in radii}  # a wrong image: radius 0, never >= 0
