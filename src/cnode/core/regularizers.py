"""Contractivity-promoting regularizers (paper section 4), built on ``cnode.core.contraction``.

Both are zero exactly when their contraction condition holds, so they never pull a certified model further.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cnode.core import checks
from cnode.core.contraction import sym_jacobian_lambda_max, weight_margin
from cnode.core.models import ConvNODE


def weight(model: ConvNODE, rho: float, a: float, b: float) -> Tensor:
    """``R_W = sum_l sum_i ReLU(2 rho + m_i(K_l))`` over NODE layers l and channels i (eq. ``reg-weight``).

    ``m_i`` is ``cnode.core.contraction.weight_margin`` (eq. ``weight-cond``); ``2 rho`` is the script's alpha.
    Zero iff every channel of every step's kernel certifies rate ``rho``. Scalar, differentiable.
    """
    checks.nonnegative("rho", rho)
    return F.relu(2 * rho + weight_margin(model.node_weights(), a, b)).sum()


#: Weight of the random part of a warm start ``v0 = warm + WARM_MIX * r`` (both of unit norm per image).
WARM_MIX = 0.3


def warm_start(warm: Tensor | None, shape: torch.Size, generator: torch.Generator | None) -> Tensor:
    """Lanczos start vectors (shape (B, C, H, W)): a random unit vector per image, plus ``warm`` (C, H, W)
    when given. The random part keeps every direction in the Krylov space, so a misleading warm vector costs
    a few products, never the estimate's validity (it stays a Rayleigh quotient <= lambda_max)."""
    r = torch.randn(shape, generator=generator)
    r = r / r.flatten(1).norm(dim=1).clamp_min(1e-30)[:, None, None, None]
    if warm is None:
        return r
    return warm.cpu() / warm.norm().clamp_min(1e-30).cpu() + WARM_MIX * r


def pooled_vector(vecs: Tensor) -> Tensor:
    """Sign-aligned mean of the top Ritz vectors of a batch, (B, C, H, W) -> (C, H, W): the next warm start."""
    signs = torch.sign((vecs * vecs[:1]).flatten(1).sum(1))
    signs[signs == 0] = 1
    return (vecs * signs[:, None, None, None]).mean(0)


def warm_lambda_max(weight: Tensor, slope: Tensor, iters: int, warm: Tensor | None,
                    generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Lanczos ``lambda_max`` (B,) started from ``warm_start(warm)``, and the next warm vector (C, H, W)."""
    v0 = warm_start(warm, slope.shape, generator)
    lam, vecs = sym_jacobian_lambda_max(weight, slope, iters=iters, v0=v0, return_vector=True)
    return lam, pooled_vector(vecs.detach())


def jacobian(model: ConvNODE, states: list[Tensor] | None, rho: float, iters: int = 10,
             generator: torch.Generator | None = None, samples: int | None = None,
             steps: int | None = None, warm: dict[int, Tensor] | None = None,
             inputs: Tensor | None = None) -> Tensor:
    """``R_J = mean_{k, n} ReLU(lambda_max((J_k + J_k^T)/2)(x_k^n) + rho)`` (eq. ``reg-jacobian``).

    ``states`` are the trajectory ``[x_0, ..., x_N]`` of a batch (each (B, C, H, W)); step k's Jacobian is
    ``J_k = D_k K_k`` at ``x_k`` (the state where step k starts). ``lambda_max`` is the matrix-free Lanczos
    estimate with ``iters`` products; the gradient flows through the Rayleigh quotient into the weights and,
    via ``D_k``, into the states. ``samples`` < B images and ``steps`` < N solver steps, drawn at random
    without replacement, penalize only those (image, step) pairs: an unbiased estimate of the full mean at a
    fraction of the cost. ``warm`` (a dict, updated in place) carries one vector per solver step from call to
    call: Lanczos starts from it plus a random part (``warm_start``), so across training steps the iteration
    keeps refining the top eigenvector instead of starting over. Scalar.

    ``states=None`` with the batch's ``inputs`` (B, 1, H, W) instead: the states of the drawn images are
    recomputed up to the last drawn step (``trajectory``). Images do not interact, so values and gradients are
    those of the full trajectory's rows, at ``samples``/B of a forward pass; the training forward then need not
    return its states (a compiled forward returning all of them measured 23 ms a step slower).
    """
    checks.nonnegative("rho", rho)
    if (states is None) == (inputs is None):
        raise ValueError("pass exactly one of states (a trajectory) and inputs (the images)")
    first = inputs if states is None else states[0]
    pick = None
    if samples is not None and checks.positive_int("samples", samples) < len(first):
        pick = torch.randperm(len(first), generator=generator)[:samples].to(first.device)
    chosen = range(model.steps)
    if steps is not None and checks.positive_int("steps", steps) < model.steps:
        chosen = torch.randperm(model.steps, generator=generator)[:steps].sort().values.tolist()
    if states is None:
        states = trajectory(model, inputs if pick is None else inputs[pick], max(chosen))
        pick = None
    terms = []
    for k in chosen:
        x = states[k] if pick is None else states[k][pick]
        slope = model.slope(k, x)
        if warm is None:
            lam = sym_jacobian_lambda_max(model.convs[k].weight, slope, iters=iters, generator=generator)
        else:
            lam, warm[k] = warm_lambda_max(model.convs[k].weight, slope, iters, warm.get(k), generator)
        terms.append(F.relu(lam + rho))
    return torch.stack(terms).mean()


def trajectory(model: ConvNODE, inputs: Tensor, last: int) -> list[Tensor]:
    """States ``[x_0, ..., x_last]`` of ``inputs`` (B, 1, H, W) through ``model``'s first ``last`` solver
    steps, with autograd: the part of ``model.flow`` that R_J at steps <= ``last`` reads."""
    states = [model.lift(inputs)]
    for k in range(last):
        states.append(model.step(k, states[-1]))
    return states
