"""Building blocks of the convolutional neural ODE (paper section 2).

``SmoothLeakyReLU`` is the slope-restricted activation; ``ConvField`` is one time-invariant piece of the
vector field ``f(x) = sigma(K x + b)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnode import checks


class SmoothLeakyReLU(nn.Module):
    """``sigma(x) = a x + (b - a) softplus(x)`` (eq. ``activation``); the paper's case is b = 1, a = 0.1.

    Its slope ``sigma'(x) = a + (b - a) sigmoid(x)`` lies in the open interval (a, b): slope-restricted.
    """

    def __init__(self, a: float = 0.1, b: float = 1.0) -> None:
        super().__init__()
        self.a, self.b = checks.slopes(a, b)

    def forward(self, x: Tensor) -> Tensor:
        return self.a * x + (self.b - self.a) * F.softplus(x)

    def slope(self, x: Tensor) -> Tensor:
        """``sigma'(x)``, elementwise, same shape as x."""
        return self.a + (self.b - self.a) * torch.sigmoid(x)


class ConvField(nn.Module):
    """``f(x) = sigma(conv(x, K) + bias)`` on states (B, C, H, W) (eq. ``cnode``); 3x3, stride 1, zero padding.

    ``forward(t, x)`` has torchdiffeq's signature; ``slope(x)`` gives the diagonal of D in ``J = D K``.
    """

    def __init__(self, channels: int, a: float = 0.1, b: float = 1.0, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.act = SmoothLeakyReLU(a, b)

    def forward(self, t: Tensor | float, x: Tensor) -> Tensor:
        return self.act(self.conv(x))

    def slope(self, x: Tensor) -> Tensor:
        """``sigma'(K x + b)``: (B, C, H, W)."""
        return self.act.slope(self.conv(x))


def contractive_init_(conv: nn.Conv2d, value: float = -5.0) -> nn.Conv2d:
    """The authors' init of a regularized NODE conv: ``weight.copy_(value * eye(k))`` (paper section 2).

    The (k, k) identity broadcasts into every (i, j) slice, so every kernel, also off-diagonal ones, gets
    ``value`` on its own diagonal taps. In place; returns ``conv``.
    """
    with torch.no_grad():
        conv.weight.copy_(value * torch.eye(conv.kernel_size[0], dtype=conv.weight.dtype))
    return conv
