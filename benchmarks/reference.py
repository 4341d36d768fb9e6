"""What cnode's fast paths are measured against, frozen: do not optimize this file.

``Reference`` is the CNODE a PyTorch user would type; ``pgd_reference`` is cnode's PGD loop as it was before
issue 11 (weights left requiring gradients, plain ``nn.Conv2d`` backward), run on ``plain_copy`` of a model.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Reference(nn.Module):
    """The hand-written CNODE a PyTorch user would type: conv per step, Euler update, linear head."""

    def __init__(self, channels: int = 8, steps: int = 10, T: float = 0.1, a: float = 0.1, b: float = 1.0) -> None:
        super().__init__()
        self.a, self.b, self.h = a, b, T / steps
        self.inp = nn.Conv2d(1, channels, 3, padding=1)
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(steps))
        self.head = nn.Linear(channels * 28 * 28, 10)

    def act(self, z: Tensor) -> Tensor:
        return self.a * z + (self.b - self.a) * F.softplus(z)

    def forward(self, u: Tensor) -> Tensor:
        x = self.act(self.inp(u))
        for conv in self.convs:
            x = x + self.h * self.act(conv(x))
        return self.head(x.flatten(1))


def plain_copy(model: nn.Module) -> nn.Module:
    """A deep copy of a cnode model whose convolutions are plain ``nn.Conv2d`` again (same weights)."""
    out = copy.deepcopy(model)
    for module in out.modules():
        if isinstance(module, nn.Conv2d):
            module.__class__ = nn.Conv2d
    return out


def pgd_reference(model: nn.Module, x: Tensor, y: Tensor, eps: float, steps: int, step_size: float,
                  generator: torch.Generator | None = None) -> Tensor:
    """cnode's PGD before issue 11 (one restart, random start, cross-entropy, early stop), verbatim."""
    model.eval()
    lower, upper = (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)
    best = x.clone()
    idx = torch.arange(len(x), device=x.device)
    lo, hi, target = lower, upper, y
    delta = (2 * torch.rand(lo.shape, generator=generator, dtype=x.dtype) - 1).to(x.device) * eps
    adv = torch.max(torch.min(x + delta, hi), lo)
    for step in range(steps + 1):
        adv = adv.detach().requires_grad_(step < steps)
        logits = model(adv)
        wrong = logits.argmax(1) != target
        best[idx] = torch.where((wrong | (step == steps))[:, None, None, None], adv.detach(), best[idx])
        keep = ~wrong
        if step == steps or not keep.any():
            break
        (grad,) = torch.autograd.grad(F.cross_entropy(logits, target, reduction="none").sum(), adv)
        adv = adv.detach()[keep] + step_size * grad[keep].sign()
        idx, lo, hi, target = idx[keep], lo[keep], hi[keep], target[keep]
        adv = torch.max(torch.min(adv, hi), lo)
    return best.detach()
