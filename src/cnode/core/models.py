"""Building blocks of the convolutional neural ODE (paper section 2).

``SmoothLeakyReLU`` is the slope-restricted activation; ``ConvField`` is one time-invariant piece of the
vector field ``f(x) = sigma(K x + b)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnode.core import (
    checks,
    runtime,  # noqa: F401 - runtime: flush denormals in every process
)


def softplus_reference(x: Tensor, a: float, b: float) -> Tensor:
    """``a x + (b - a) softplus(x)`` written plainly with ``F.softplus``: the reference the fast path is
    tested against (eq. ``activation``)."""
    return a * x + (b - a) * F.softplus(x)


class _SmoothLeakyFn(torch.autograd.Function):
    """``a x + (b - a) softplus(x)`` in one autograd node (eq. ``activation``); saves only x.

    ``softplus(x) = relu(x) + log(1 + exp(-|x|))``: the same function, but this build's ``F.softplus`` and
    ``log1p`` are scalar loops (4.6 ms on a 128x8x28x28 batch against 1.1 ms here), and autograd through
    the plain formula would keep four intermediates. The backward is ``a + (b - a) sigmoid(x)`` in torch ops,
    so higher-order gradients still work.
    """

    @staticmethod
    def forward(ctx, x: Tensor, a: float, b: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.a, ctx.b = a, b
        soft = x.abs().neg_().exp_().add_(1).log_().add_(F.relu(x))
        return soft.mul_(b - a).add_(x, alpha=a)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * (ctx.a + (ctx.b - ctx.a) * torch.sigmoid(x)), None, None


class SmoothLeakyReLU(nn.Module):
    """``sigma(x) = a x + (b - a) softplus(x)`` (eq. ``activation``); the paper's case is b = 1, a = 0.1.

    Its slope ``sigma'(x) = a + (b - a) sigmoid(x)`` lies in the open interval (a, b): slope-restricted.
    """

    def __init__(self, a: float = 0.1, b: float = 1.0) -> None:
        super().__init__()
        self.a, self.b = checks.slopes(a, b)

    def forward(self, x: Tensor) -> Tensor:
        return _SmoothLeakyFn.apply(x, self.a, self.b)

    def slope(self, x: Tensor) -> Tensor:
        """``sigma'(x)``, elementwise, same shape as x."""
        return self.a + (self.b - self.a) * torch.sigmoid(x)


class _SameConvFn(torch.autograd.Function):
    """``conv2d(x, K, bias)``, stride 1, padding k // 2, whose input gradient is a forward convolution.

    The input gradient of a stride-1 'same' convolution is ``conv2d(g, K^T)`` with ``K^T[i, j] = flip(K[j, i])``
    (the identity ``sym_jacobian_matvec`` uses). This build's ``convolution_backward`` computes it 1.8x (batch
    128) to 4.6x (batch 500) slower than that forward convolution on CPU (8 channels, 28 x 28; measured),
    and attacks need nothing else. Weight and bias gradients stay with ``convolution_backward``. The same
    linear maps, so results agree with ``nn.Conv2d`` to float rounding (tested).
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        pad = weight.shape[-1] // 2
        kernel = weight.to(grad.dtype)  # under bfloat16 autocast the forward ran in grad's dtype
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv2d(grad, kernel.transpose(0, 1).flip(-1, -2), padding=pad)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            mask = [False, ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad, x.to(grad.dtype), kernel, [weight.shape[0]] if ctx.has_bias else None, [1, 1], [pad, pad],
                [1, 1], False, [0, 0], 1, mask)
            grad_w = None if grad_w is None else grad_w.to(weight.dtype)
            grad_b = None if grad_b is None else grad_b.to(weight.dtype)
        return grad_x, grad_w, grad_b


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with stride 1 and padding k // 2 (k odd) through ``_SameConvFn``; the same parameters and
    state dict, a faster input gradient."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        return _SameConvFn.apply(x, self.weight, self.bias)


class ConvField(nn.Module):
    """``f(x) = sigma(conv(x, K) + bias)`` on states (B, C, H, W) (eq. ``cnode``); 3x3, stride 1, zero padding.

    ``forward(t, x)`` has torchdiffeq's signature; ``slope(x)`` gives the diagonal of D in ``J = D K``.
    """

    def __init__(self, channels: int, a: float = 0.1, b: float = 1.0, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = SameConv2d(channels, channels, kernel_size)
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


SOLVERS = ("euler", "rk4")


def _rk4_step(field, x: Tensor, h: float) -> Tensor:
    """One step of torchdiffeq's fixed-grid "rk4" (the 3/8 rule), so both paths give the same numbers."""
    k1 = field(x)
    k2 = field(x + h * k1 / 3)
    k3 = field(x + h * (k2 - k1 / 3))
    k4 = field(x + h * (k1 - k2 + k3))
    return x + (k1 + 3 * (k2 + k3) + k4) * (h / 8)


class ConvNODE(nn.Module):
    """The paper's classifier (section 2): ``x0 = sigma(conv0(u))``, a conv NODE on [0, T], a linear head.

    The NODE ``dx/dt = sigma(K(t) * x + b(t))`` (eq. ``cnode``) has one C -> C 3x3 conv per solver step
    (piecewise constant in time); ``steps`` fixed steps of size ``h = T / steps`` with ``solver`` in
    {"euler", "rk4"}. Input (B, 1, 28, 28) in [0, 1]; logits (B, 10). ``init="contractive"`` applies the
    authors' ``-5 I3`` broadcast to every NODE conv; ``"default"`` keeps PyTorch's init.
    """

    def __init__(self, channels: int = 8, steps: int = 10, T: float = 0.1, solver: str = "euler",
                 a: float = 0.1, b: float = 1.0, init: str = "default", image_size: int = 28,
                 classes: int = 10) -> None:
        super().__init__()
        checks.positive_int("channels", channels)
        checks.positive_int("steps", steps)
        checks.positive("T", T)
        self.solver = checks.one_of("solver", solver, SOLVERS)
        checks.one_of("init", init, ("default", "contractive"))
        self.steps, self.T, self.h = steps, T, T / steps
        self.act = SmoothLeakyReLU(a, b)
        self.inp = SameConv2d(1, channels)
        self.convs = nn.ModuleList(SameConv2d(channels, channels) for _ in range(steps))
        self.head = nn.Linear(channels * image_size * image_size, classes)
        if init == "contractive":
            for conv in self.convs:
                contractive_init_(conv)

    def lift(self, u: Tensor) -> Tensor:
        """Input layer ``x0 = sigma(conv0(u))``: (B, 1, H, W) -> (B, C, H, W)."""
        return self.act(self.inp(u))

    def field(self, k: int, x: Tensor) -> Tensor:
        """Vector field of step k: ``sigma(K_k * x + b_k)``."""
        return self.act(self.convs[k](x))

    def slope(self, k: int, x: Tensor) -> Tensor:
        """``sigma'(K_k * x + b_k)``: the diagonal D of the Jacobian ``D K_k`` at x (eq. ``jacobian``)."""
        return self.act.slope(self.convs[k](x))

    def step(self, k: int, x: Tensor) -> Tensor:
        """One fixed step of size h with the conv of step k."""
        if self.solver == "euler":
            return torch.add(x, self.field(k, x), alpha=self.h)
        return _rk4_step(lambda y: self.field(k, y), x, self.h)

    def flow(self, x: Tensor, odeint_method: str | None = None) -> list[Tensor]:
        """States ``[x_0, ..., x_N]`` of the NODE from x_0 by our loop, or through ``torchdiffeq.odeint``.

        ``odeint_method`` (e.g. "euler", "rk4", "dopri5") integrates each step's interval [0, h] with
        torchdiffeq and that step's conv, so the piecewise-constant K(t) is respected exactly.
        """
        states = [x]
        for k in range(self.steps):
            if odeint_method is None:
                x = self.step(k, x)
            else:
                from torchdiffeq import odeint

                span = torch.tensor([0.0, self.h], dtype=x.dtype, device=x.device)
                x = odeint(lambda t, y, k=k: self.field(k, y), x, span, method=odeint_method)[-1]
            states.append(x)
        return states

    def forward(self, u: Tensor, return_states: bool = False,
                odeint_method: str | None = None) -> Tensor | tuple[Tensor, list[Tensor]]:
        states = self.flow(self.lift(u), odeint_method)
        logits = self.head(states[-1].flatten(1))
        return (logits, states) if return_states else logits

    def node_weights(self) -> Tensor:
        """The NODE conv kernels stacked: (steps, C, C, 3, 3)."""
        return torch.stack([conv.weight for conv in self.convs])


class CNN(nn.Module):
    """Plain CNN baseline with a parameter count close to ConvNODE's: 3x3 convs, then the same linear head.

    ``layers`` C -> C convs with the same activation but no weight sharing in time and no ODE structure.
    """

    def __init__(self, channels: int = 8, layers: int = 2, a: float = 0.1, b: float = 1.0,
                 image_size: int = 28, classes: int = 10) -> None:
        super().__init__()
        self.act = SmoothLeakyReLU(a, b)
        self.inp = SameConv2d(1, channels)
        self.convs = nn.ModuleList(SameConv2d(channels, channels) for _ in range(layers))
        self.head = nn.Linear(channels * image_size * image_size, classes)

    def forward(self, u: Tensor) -> Tensor:
        x = self.act(self.inp(u))
        for conv in self.convs:
            x = self.act(conv(x))
        return self.head(x.flatten(1))
