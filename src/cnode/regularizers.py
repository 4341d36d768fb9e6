"""Contractivity-promoting regularizers (paper section 4), built on ``cnode.contraction``.

Both are zero exactly when their contraction condition holds, so they never pull a certified model further.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cnode import checks
from cnode.contraction import sym_jacobian_lambda_max, weight_margin
from cnode.models import ConvNODE


def weight(model: ConvNODE, rho: float, a: float, b: float) -> Tensor:
    """``R_W = sum_l sum_i ReLU(2 rho + m_i(K_l))`` over NODE layers l and channels i (eq. ``reg-weight``).

    ``m_i`` is ``cnode.contraction.weight_margin`` (eq. ``weight-cond``); ``2 rho`` is the script's alpha.
    Zero iff every channel of every step's kernel certifies rate ``rho``. Scalar, differentiable.
    """
    checks.nonnegative("rho", rho)
    return F.relu(2 * rho + weight_margin(model.node_weights(), a, b)).sum()


def jacobian(model: ConvNODE, states: list[Tensor], rho: float, iters: int = 10,
             generator: torch.Generator | None = None, samples: int | None = None,
             steps: int | None = None) -> Tensor:
    """``R_J = mean_{k, n} ReLU(lambda_max((J_k + J_k^T)/2)(x_k^n) + rho)`` (eq. ``reg-jacobian``).

    ``states`` are the trajectory ``[x_0, ..., x_N]`` of a batch (each (B, C, H, W)); step k's Jacobian is
    ``J_k = D_k K_k`` at ``x_k`` (the state where step k starts). ``lambda_max`` is the matrix-free Lanczos
    estimate with ``iters`` products; the gradient flows through the Rayleigh quotient into the weights and,
    via ``D_k``, into the states. ``samples`` < B images and ``steps`` < N solver steps, drawn at random
    without replacement, penalize only those (image, step) pairs: an unbiased estimate of the full mean at a
    fraction of the cost. Scalar.
    """
    checks.nonnegative("rho", rho)
    batch = states[0].shape[0]
    pick = None
    if samples is not None and checks.positive_int("samples", samples) < batch:
        pick = torch.randperm(batch, generator=generator)[:samples].to(states[0].device)
    chosen = range(model.steps)
    if steps is not None and checks.positive_int("steps", steps) < model.steps:
        chosen = torch.randperm(model.steps, generator=generator)[:steps].sort().values.tolist()
    terms = []
    for k in chosen:
        x = states[k] if pick is None else states[k][pick]
        lam = sym_jacobian_lambda_max(model.convs[k].weight, model.slope(k, x), iters=iters, generator=generator)
        terms.append(F.relu(lam + rho))
    return torch.stack(terms).mean()
