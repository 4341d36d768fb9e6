"""Input perturbations on [0, 1] pixels: random noise and L-inf attacks (paper section 5).

Units: ``std`` is the standard deviation of Gaussian noise on [0, 1] pixels (variance is std**2); ``amount``
is the fraction of pixels set to 0 or 1; ``eps`` is the L-inf radius on [0, 1] pixels. Noise takes a
``torch.Generator`` so the same call gives the same images. Attacks put the model in eval mode, differentiate
through its fixed-step solver by direct backprop, and keep every adversarial image inside both the eps-ball and
[0, 1].
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnode.core import checks


def gaussian(x: Tensor, std: float, clip: bool, generator: torch.Generator) -> Tensor:
    """``x + N(0, std^2)`` per pixel; ``clip=True`` clamps to [0, 1] (the physical image), ``False`` does not
    (the authors' script)."""
    checks.nonnegative("std", std)
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    out = x + std * noise
    return out.clamp(0.0, 1.0) if clip else out


def salt_and_pepper(x: Tensor, amount: float, generator: torch.Generator) -> Tensor:
    """Set a random fraction ``amount`` of pixels to 0 or 1 (each with probability 1/2)."""
    checks.nonnegative("amount", amount)
    if amount > 1:
        raise ValueError(f"amount must be <= 1, got {amount!r}")
    hit = torch.rand(x.shape, generator=generator).to(x.device) < amount
    salt = torch.rand(x.shape, generator=generator).to(x.device) < 0.5
    return torch.where(hit, salt.to(x.dtype), x)


def _loss(logits: Tensor, y: Tensor, kind: str) -> Tensor:
    """Per-example attack objective to maximize: cross-entropy, or the margin ``max_{j != y} z_j - z_y``."""
    if kind == "ce":
        return F.cross_entropy(logits, y, reduction="none")
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).max(1).values
    return other - true


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode with its parameters' ``requires_grad`` off, restored on exit.

    Attacks need the input gradient only; custom autograd nodes (``models._SameConvFn``) can skip the weight
    gradients only when the weights do not require them.
    """
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _input_grad(model: nn.Module, x: Tensor, y: Tensor, kind: str) -> Tensor:
    x = x.detach().requires_grad_(True)
    with frozen(model):
        (grad,) = torch.autograd.grad(_loss(model(x), y, kind).sum(), x)
    return grad


def fgsm(model: nn.Module, x: Tensor, y: Tensor, eps: float, loss: str = "ce") -> Tensor:
    """Fast gradient sign method: ``clip_[0,1](x + eps * sign(grad_x loss))``."""
    checks.nonnegative("eps", eps)
    checks.one_of("loss", loss, ("ce", "margin"))
    model.eval()
    return (x + eps * _input_grad(model, x, y, loss).sign()).clamp(0.0, 1.0).detach()


def fgsm_rs(model: nn.Module, x: Tensor, y: Tensor, eps: float, step: float, generator: torch.Generator) -> Tensor:
    """FGSM from a random start (Wong, Rice and Kolter, "Fast is better than free", eq. ``fgsm-rs``), the training
    attack of adversarial training: ``delta ~ U[-eps, eps]``, one signed-gradient step of size ``step`` (they use
    1.25 eps) from ``x + delta``, projection onto the eps-ball and [0, 1]. The gradient flows through the model's
    own fixed-step solver; the random start is drawn from ``generator`` (a resumed run draws the same)."""
    checks.positive("eps", eps)
    checks.positive("step", step)
    delta = (torch.rand(x.shape, generator=generator) * 2 - 1).to(x.device) * eps
    start = (x + delta).clamp(0.0, 1.0)
    moved = start + step * _input_grad(model, start, y, "ce").sign()
    return torch.minimum(torch.maximum(moved, x - eps), x + eps).clamp(0.0, 1.0).detach()


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int, step_size: float, restarts: int = 1,
        random_start: bool = True, loss: str = "ce", generator: torch.Generator | None = None,
        norm: str = "linf", early_stop: bool = True) -> Tensor:
    """Projected gradient descent in the L-inf (Madry et al.) or L2 ball of radius ``eps``, with restarts.

    Each restart starts at random in the ball (``random_start``: uniform per pixel for L-inf; a uniform random
    direction at a uniform radius for L2), takes ``steps`` steps of length ``step_size`` along the gradient's
    sign (L-inf) or its normalized direction (L2), projecting onto the ball and [0, 1] after each. An image is
    attacked until some iterate misclassifies it; that iterate is kept and the image leaves the batch (early
    stop: never weaker than returning the last iterate, and cheap on fragile models). Images never fooled return
    the last restart's final iterate. ``early_stop=False`` takes every step for every image and returns the last
    restart's final iterates (for transfer attacks, where crossing the source's boundary barely is too little).
    """
    checks.nonnegative("eps", eps)
    checks.positive_int("steps", steps)
    checks.positive_int("restarts", restarts)
    checks.positive("step_size", step_size)
    checks.one_of("loss", loss, ("ce", "margin"))
    checks.one_of("norm", norm, ("linf", "l2"))
    with frozen(model):
        return _pgd(model, x, y, eps, steps, step_size, restarts, random_start, loss, generator, norm, early_stop)


def _per_image_norm(t: Tensor) -> Tensor:
    """L2 norm of each image of (B, ...), shaped (B, 1, 1, 1) for broadcasting."""
    return t.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]


def _project(adv: Tensor, origin: Tensor, lo: Tensor, hi: Tensor, eps: float, norm: str) -> Tensor:
    """``adv`` moved into the ``norm`` ball of radius eps around ``origin`` and into [0, 1]. L-inf: clamped to
    ``[lo, hi] = [max(origin - eps, 0), min(origin + eps, 1)]``; L2: the offset scaled onto the ball, then
    clamped to [0, 1] (which keeps it in the ball: every pixel moves towards the origin's, inside [0, 1])."""
    if norm == "linf":
        return torch.max(torch.min(adv, hi), lo)
    delta = adv - origin
    return (origin + delta * (eps / _per_image_norm(delta)).clamp(max=1.0)).clamp(0.0, 1.0)


def _pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int, step_size: float, restarts: int,
         random_start: bool, loss: str, generator: torch.Generator | None, norm: str = "linf",
         early_stop: bool = True) -> Tensor:
    """The loop of ``pgd`` (arguments checked, model frozen)."""
    lower, upper = (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)
    best = x.clone()
    active = torch.ones(len(x), dtype=torch.bool, device=x.device)  # not fooled yet
    for _ in range(restarts):
        idx = active.nonzero().squeeze(1)
        if len(idx) == 0:
            break
        origin, lo, hi, target = x[idx], lower[idx], upper[idx], y[idx]
        if random_start and norm == "linf":
            delta = (2 * torch.rand(origin.shape, generator=generator, dtype=x.dtype) - 1).to(x.device) * eps
        elif random_start:
            direction = torch.randn(origin.shape, generator=generator, dtype=x.dtype)
            radius = torch.rand(len(idx), generator=generator, dtype=x.dtype)[:, None, None, None] * eps
            delta = (direction / _per_image_norm(direction) * radius).to(x.device)
        else:
            delta = torch.zeros_like(origin)
        adv = _project(origin + delta, origin, lo, hi, eps, norm)
        for step in range(steps + 1):
            adv = adv.detach().requires_grad_(step < steps)
            logits = model(adv)
            wrong = (logits.argmax(1) != target) & early_stop
            best[idx] = torch.where((wrong | (step == steps))[:, None, None, None], adv.detach(), best[idx])
            active[idx[wrong]] = False
            keep = ~wrong
            if step == steps or not keep.any():
                break
            (grad,) = torch.autograd.grad(_loss(logits, target, loss).sum(), adv)
            grad = grad[keep]
            direction = grad.sign() if norm == "linf" else grad / _per_image_norm(grad)
            idx, origin, lo, hi, target = idx[keep], origin[keep], lo[keep], hi[keep], target[keep]
            adv = _project(adv.detach()[keep] + step_size * direction, origin, lo, hi, eps, norm)
    return best.detach()
