"""Contraction of convolutional vector fields: conv matrices, matrix measures, certificates, estimates.

Everything here is a pure function of tensors. Equation labels refer to chapter 1 of the book
(``book/01_contraction.ipynb``). Conventions: a state ``x`` has shape (C, H, W) and ``vec(x)`` is its
row-major flattening; a conv weight ``K`` has shape (C_out, C_in, k, k) with k odd, stride 1 and zero
padding k // 2, so the conv maps (C_in, H, W) to (C_out, H, W).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from cnode.core import checks


def conv_matrix(weight: Tensor, height: int, width: int) -> Tensor:
    """Dense matrix ``M`` with ``M vec(x) = vec(conv2d(x, weight))`` (eq. ``conv-matrix``).

    weight: (C_out, C_in, k, k). Returns (C_out*H*W, C_in*H*W). Column j is the conv of the j-th basis image,
    so the matrix equals ``F.conv2d`` by construction (doubly block Toeplitz for zero padding).
    """
    c_in, k = weight.shape[1], weight.shape[-1]
    n_in = c_in * height * width
    basis = torch.eye(n_in, dtype=weight.dtype, device=weight.device).reshape(n_in, c_in, height, width)
    columns = F.conv2d(basis, weight, padding=k // 2)  # (n_in, C_out, H, W)
    return columns.reshape(n_in, -1).T


def log_norm(matrix: Tensor, p: int | str) -> Tensor:
    """Matrix measure (log-norm) ``mu_p(A)`` for p in {1, 2, "inf"} (eq. ``log-norms``); batched over ``...``.

    ``mu_2(A) = lambda_max((A + A^T)/2)``, ``mu_inf(A) = max_i (a_ii + sum_{j != i} |a_ij|)``,
    ``mu_1(A) = mu_inf(A^T)``. matrix: (..., n, n); returns (...).
    """
    if p == 2:
        return torch.linalg.eigvalsh((matrix + matrix.mT) / 2)[..., -1]
    if p in ("inf", math.inf):
        diag = matrix.diagonal(dim1=-2, dim2=-1)
        return (diag + matrix.abs().sum(-1) - diag.abs()).max(-1).values
    if p == 1:
        return log_norm(matrix.mT, "inf")
    raise ValueError(f"p must be one of [1, 2, 'inf'], got {p!r}")


def weight_margin(weight: Tensor, a: float, b: float) -> Tensor:
    """Per-channel margin ``2(a+b) K[i,i,c,c] + b(||K[i,:,:,:]||_1 + ||K[:,i,:,:]||_1)`` (eq. ``weight-cond``).

    c is the centre tap. weight: (C, C, k, k), or (L, C, C, k, k) for L layers; returns (C,) or (L, C).
    A margin <= -2 rho for every channel certifies ``mu_2(D K) <= -rho`` for every diagonal D in [a, b]
    (Gershgorin on the symmetric part; the absolute sums include the diagonal tap).
    """
    checks.slopes(a, b)
    c = weight.shape[-1] // 2
    centre = weight[..., c, c].diagonal(dim1=-2, dim2=-1)  # K[i, i, c, c]
    rows = weight.abs().sum(dim=(-3, -2, -1))  # ||K[i, :, :, :]||_1
    cols = weight.abs().sum(dim=(-4, -2, -1))  # ||K[:, i, :, :]||_1
    return 2 * (a + b) * centre + b * (rows + cols)


def certified_rate(weight: Tensor, a: float, b: float) -> Tensor:
    """Rate certified by the weight condition: ``-max_i margin_i / 2`` (eq. ``cert-rate``).

    ``mu_2(D K) <= -certified_rate`` for every diagonal D with entries in [a, b]. Negative: no guarantee.
    weight: (C, C, k, k) -> scalar; (L, C, C, k, k) -> (L,).
    """
    return -weight_margin(weight, a, b).max(-1).values / 2


def with_certified_rate(weight: Tensor, rho: float, a: float, b: float) -> Tensor:
    """Copy of ``weight`` whose centre taps make every channel's margin exactly ``-2 rho`` (eq. ``cert-rate``).

    Solving ``2(a+b) k_ii + b(R'_i + C'_i - 2 k_ii) = -2 rho`` (k_ii < 0; R', C' the off-diagonal sums)
    gives ``k_ii = -(2 rho + b (R'_i + C'_i)) / (2 a)``. ``rho`` may be negative (a kernel with no guarantee).
    """
    checks.slopes(a, b)
    c = weight.shape[-1] // 2
    out = weight.clone()
    idx = torch.arange(weight.shape[0])
    out[idx, idx, c, c] = 0.0
    off = out.abs().sum(dim=(1, 2, 3)) + out.abs().sum(dim=(0, 2, 3))
    centre = -(2 * rho + b * off) / (2 * a)
    if (centre > 0).any():
        raise ValueError(f"rho={rho} is too negative for this kernel: the centre taps would turn positive")
    out[idx, idx, c, c] = centre
    return out


def sym_jacobian_dense(weight: Tensor, slope: Tensor) -> Tensor:
    """Dense symmetric part ``(J + J^T)/2`` of ``J = D K`` (eq. ``jacobian``), for checks at small sizes.

    slope: (B, C, H, W), the activation slopes ``sigma'(K x + b)`` that form D. Returns (B, n, n).
    """
    height, width = slope.shape[-2:]
    matrix = conv_matrix(weight, height, width)
    jac = slope.reshape(slope.shape[0], -1, 1) * matrix
    return (jac + jac.mT) / 2


def _stacked_kernel(weight: Tensor) -> Tensor:
    """``[K; K^T] / 2`` as one (2C, C, k, k) weight for the grouped conv of ``sym_jacobian_matvec``.

    For stride 1 and padding k // 2, ``conv_transpose(u, K) = conv(u, K^T)`` with ``K^T[i, j] = flip(K[j, i])``.
    Halving is exact in floating point, so folding the 1/2 of ``(J + J^T)/2`` into the kernel changes no digit.
    """
    return torch.cat([weight, weight.transpose(0, 1).flip(-1, -2)]) * 0.5


def _sym_matvec(kernel: Tensor, slope: Tensor, v: Tensor, buffer: Tensor | None = None) -> Tensor:
    """``S v = (D conv(v, K) + conv(D v, K^T)) / 2`` with ``kernel = _stacked_kernel(K)`` (eq. ``jacobian``).

    Both convolutions run as one grouped conv of ``[v, D v]`` (this build's conv_transpose is a slow path on
    CPU). ``buffer`` (B, 2C, H, W), when given, receives ``[v, D v]`` in place of a new tensor (no autograd:
    the Lanczos loop). slope, v: (B, C, H, W); returns (B, C, H, W).
    """
    c = slope.shape[1]
    if buffer is None:
        stacked = torch.cat([v, slope * v], 1)
    else:
        stacked = buffer
        stacked[:, :c] = v
        torch.mul(slope, v, out=stacked[:, c:])
    both = F.conv2d(stacked, kernel, padding=kernel.shape[-1] // 2, groups=2)
    return torch.addcmul(both[:, c:], slope, both[:, :c])


def sym_jacobian_matvec(weight: Tensor, slope: Tensor, v: Tensor) -> Tensor:
    """``S v`` with ``S = (J + J^T)/2``, ``J v = D conv(v)``, ``J^T v = conv_transpose(D v)`` (eq. ``jacobian``).

    weight: (C, C, k, k); slope, v: (B, C, H, W). Never forms a matrix; differentiable in all three.
    """
    return _sym_matvec(_stacked_kernel(weight), slope, v)


def _orthogonalize(w: Tensor, basis: Tensor) -> Tensor:
    """``w`` minus its projection on the orthonormal rows of ``basis``, twice (classical Gram-Schmidt).

    w: (B, n); basis: (B, j, n).
    """
    for _ in range(2):
        w = w - torch.bmm(torch.bmm(basis, w[:, :, None]).mT, basis)[:, 0]
    return w


def _lanczos_ritz(weight: Tensor, slope: Tensor, iters: int, v0: Tensor | None,
                  generator: torch.Generator | None) -> Tensor:
    """Top Ritz vector of S after ``iters`` Lanczos steps; (B, C, H, W). Cost linear in ``iters``.

    The three-term recurrence is reorthogonalized against the two previous vectors only, not the whole
    basis: for the extreme eigenvalue that is as accurate (Paige: lost orthogonality only duplicates
    converged Ritz values) and avoids the O(iters^2 n) full reorthogonalization, which dominated the cost
    beyond 20 iterations. On breakdown (an invariant subspace found) a fresh random direction orthogonal to
    the basis continues with a zero off-diagonal. Written for few kernel launches (fused ``addcmul_``,
    ``vecdot``, one reused conv buffer): at 8 images of 8 x 28 x 28 the loop is bound by per-operation
    overhead, not arithmetic.
    """
    shape = slope.shape
    bsz, n = shape[0], slope[0].numel()
    steps = min(iters, n)
    kernel = _stacked_kernel(weight)
    buffer = slope.new_empty(bsz, 2 * shape[1], *shape[2:])
    q = v0 if v0 is not None else torch.randn(shape, generator=generator, dtype=slope.dtype)
    q = q.to(slope).reshape(bsz, n)
    basis = slope.new_empty(bsz, steps, n)
    torch.div(q, q.norm(dim=1, keepdim=True).clamp_min(1e-30), out=basis[:, 0])
    alphas = slope.new_zeros(bsz, steps)
    betas = slope.new_zeros(bsz, max(steps - 1, 0))
    prev, beta = torch.zeros_like(basis[:, 0]), slope.new_zeros(bsz, 1)
    for j in range(steps):
        q = basis[:, j]
        w = _sym_matvec(kernel, slope, q.view(shape), buffer).view(bsz, n)
        w.addcmul_(prev, beta, value=-1)
        alpha = torch.linalg.vecdot(w, q)
        alphas[:, j] = alpha
        if j == steps - 1:
            break
        w.addcmul_(q, alpha[:, None], value=-1)
        for u in (q, prev):  # local reorthogonalization
            w.addcmul_(u, torch.linalg.vecdot(w, u)[:, None], value=-1)
        beta = torch.linalg.vector_norm(w, dim=1, keepdim=True)
        broke = beta[:, 0] <= 1e-10 * alpha.abs().clamp_min(1.0)
        if broke.any():
            fresh = torch.randn(bsz, n, generator=generator, dtype=slope.dtype).to(slope)
            w = torch.where(broke[:, None], _orthogonalize(fresh, basis[:, :j + 1]), w)
            beta = torch.where(broke[:, None], torch.zeros_like(beta), beta)
            torch.div(w, w.norm(dim=1, keepdim=True).clamp_min(1e-30), out=basis[:, j + 1])
        else:
            torch.div(w, beta.clamp_min(1e-30), out=basis[:, j + 1])
        betas[:, j] = beta[:, 0]
        prev = q
    tri = torch.diag_embed(alphas) + torch.diag_embed(betas, offset=1) + torch.diag_embed(betas, offset=-1)
    _, vecs = torch.linalg.eigh(tri)
    ritz = torch.bmm(vecs[:, None, :, -1], basis)[:, 0]
    return (ritz / ritz.norm(dim=1, keepdim=True)).reshape(shape)


def sym_jacobian_lambda_max(weight: Tensor, slope: Tensor, iters: int = 30, v0: Tensor | None = None,
                            generator: torch.Generator | None = None,
                            return_vector: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Matrix-free estimate of ``lambda_max((J + J^T)/2)`` for ``J = D K``, batched (eq. ``lambda-max``).

    weight: (C, C, k, k); slope: (B, C, H, W) = ``sigma'(K x + b)`` at the states. Returns (B,).
    Lanczos (``iters`` matrix-vector products, local reorthogonalization) runs without autograd; the estimate
    is the Rayleigh quotient ``v^T S v`` of the top Ritz vector v, differentiable in ``weight`` and ``slope``
    (the gradient of a simple eigenvalue is ``v^T dS v``). It never exceeds the true value. ``v0`` warm-starts
    the iteration (e.g. with the vector from the previous training step, ``return_vector=True``).
    """
    checks.positive_int("iters", iters)
    with torch.no_grad():
        vec = _lanczos_ritz(weight.detach(), slope.detach(), iters, v0, generator)
    value = (vec * sym_jacobian_matvec(weight, slope, vec)).flatten(1).sum(1)
    return (value, vec) if return_vector else value
