"""Numerical checks of the contraction theory, one function per experiment of chapter 1.

The worst case over activation slopes: ``g(d) = lambda_max(sym(diag(d) M))`` and ``||I + h diag(d) M||_2`` are
convex in d (a max of functions linear in d), so their maximum over the box [a, b]^n is attained at a vertex,
and the linearize-then-jump iteration ``d <- where(grad > 0, b, a)`` never decreases them
(``g(d') >= g(d) + grad . (d' - d) >= g(d)``). Started from many vertices it gives a tight *lower* bound of
the true worst case, to set against the certificate's *upper* bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor
from torchdiffeq import odeint

from cnode.core import checks
from cnode.core.contraction import certified_rate, conv_matrix, sym_jacobian_lambda_max, with_certified_rate
from cnode.core.models import ConvField


@dataclass(frozen=True)
class TheoryParams:
    """Parameters of chapter 1, validated on construction."""

    seed: int = 0
    channels: int = 3  # C
    size: int = 5  # H = W of the test images
    rho: float = 1.0  # target contraction rate (1/time)
    a: float = 0.1  # smallest activation slope
    b: float = 1.0  # largest activation slope
    kernels: int = 150  # random kernels in the conservativeness study
    starts: int = 16  # random vertex starts of the worst-case search per kernel

    def __post_init__(self) -> None:
        checks.nonnegative("seed", self.seed)
        checks.positive_int("channels", self.channels)
        checks.positive_int("size", self.size)
        checks.positive("rho", self.rho)
        checks.slopes(self.a, self.b)
        checks.positive_int("kernels", self.kernels)
        checks.positive_int("starts", self.starts)


def conv_matrix_demo(seed: int, channels: int = 2, size: int = 4) -> tuple[Tensor, Tensor, float]:
    """A random kernel, its conv matrix, and ``max |M vec(x) - vec(conv2d(x))|`` over 8 random images."""
    gen = torch.Generator().manual_seed(seed)
    weight = random_kernel(channels, gen)
    matrix = conv_matrix(weight, size, size)
    x = torch.randn(8, channels, size, size, generator=gen, dtype=torch.float64)
    error = (x.flatten(1) @ matrix.T - F.conv2d(x, weight, padding=1).flatten(1)).abs().max().item()
    return weight, matrix, error


def random_kernel(channels: int, generator: torch.Generator, scale: float = 0.3, k: int = 3) -> Tensor:
    """A (C, C, k, k) kernel with i.i.d. N(0, scale^2) taps, float64."""
    return scale * torch.randn(channels, channels, k, k, generator=generator, dtype=torch.float64)


def _vertex_ascent(value_and_grad: Callable[[Tensor], tuple[Tensor, Tensor]], d: Tensor,
                   a: float, b: float, max_iter: int = 50) -> Tensor:
    """Maximize a convex function of d over [a, b]^n from starts d (S, n); returns the best value per start."""
    best = torch.full((d.shape[0],), -math.inf, dtype=d.dtype)
    for _ in range(max_iter):
        value, grad = value_and_grad(d)
        best = torch.maximum(best, value)
        nxt = torch.where(grad > 0, torch.full_like(d, b), torch.full_like(d, a))
        if torch.equal(nxt, d):
            break
        d = nxt
    return best


def _starts(n: int, a: float, b: float, count: int, generator: torch.Generator) -> Tensor:
    """The two constant vertices (all a, all b) plus random vertices of [a, b]^n: (count + 2, n)."""
    rand = torch.where(torch.rand(count, n, generator=generator, dtype=torch.float64) < 0.5, a, b)
    const = torch.tensor([[a], [b]], dtype=torch.float64).expand(2, n)
    return torch.cat([const, rand])


def worst_mu2(matrix: Tensor, a: float, b: float, starts: int, generator: torch.Generator) -> float:
    """Lower bound on ``max_{D in [a,b]} mu_2(D M)`` by vertex ascent (eq. ``worst-case``); M: (n, n)."""

    def value_and_grad(d: Tensor) -> tuple[Tensor, Tensor]:
        jac = d[:, :, None] * matrix
        vals, vecs = torch.linalg.eigh((jac + jac.mT) / 2)
        v = vecs[..., -1]  # d lambda / d d_i = v_i (M v)_i
        return vals[:, -1], v * (v @ matrix.T)

    return _vertex_ascent(value_and_grad, _starts(matrix.shape[0], a, b, starts, generator), a, b).max().item()


def conservativeness(params: TheoryParams) -> pd.DataFrame:
    """Certified rate vs the worst rate found over D, for random kernels (chapter 1, figure 2).

    Each kernel gets centre taps giving a certified rate drawn uniformly in [-rho, 3 rho]; one column per
    kernel: ``certified`` (upper-bound side: ``-cert`` bounds mu_2 from above) and ``found`` (``-worst_mu2``,
    the rate that survives the worst D we could find: an upper bound of the true worst-case rate).
    """
    gen = torch.Generator().manual_seed(params.seed)
    search = torch.Generator().manual_seed(params.seed + 10)  # own stream: kernels do not depend on starts
    rows = []
    for i in range(params.kernels):
        target = params.rho * (4 * torch.rand(1, generator=gen, dtype=torch.float64).item() - 1)
        weight = with_certified_rate(random_kernel(params.channels, gen), target, params.a, params.b)
        matrix = conv_matrix(weight, params.size, params.size)
        rows.append({
            "kernel": i,
            "certified": certified_rate(weight, params.a, params.b).item(),
            "found": -worst_mu2(matrix, params.a, params.b, params.starts, search),
        })
    frame = pd.DataFrame(rows)
    frame["gap"] = frame["found"] - frame["certified"]
    return frame


def contractive_field(params: TheoryParams) -> ConvField:
    """A ``ConvField`` (float64) whose kernel has certified rate exactly ``params.rho``, random bias."""
    gen = torch.Generator().manual_seed(params.seed + 1)
    field = ConvField(params.channels, params.a, params.b).double()
    with torch.no_grad():
        field.conv.weight.copy_(with_certified_rate(random_kernel(params.channels, gen), params.rho,
                                                    params.a, params.b))
        field.conv.bias.copy_(torch.randn(params.channels, generator=gen, dtype=torch.float64))
    return field


def trajectory_gap(params: TheoryParams, horizon: float = 1.0, points: int = 41) -> pd.DataFrame:
    """Two solutions of ``dx/dt = f(x)`` from random states: ``|x(t)-y(t)| / |x(0)-y(0)|`` (eq. ``contraction``).

    Solved by torchdiffeq's dopri5 at rtol 1e-8, atol 1e-10 (the exact flow, not a training solver). Also
    returns the largest ``lambda_max(sym J)`` met along both trajectories (must be <= -rho).
    """
    field = contractive_field(params)
    gen = torch.Generator().manual_seed(params.seed + 2)
    x0 = torch.randn(2, params.channels, params.size, params.size, generator=gen, dtype=torch.float64)
    times = torch.linspace(0.0, horizon, points, dtype=torch.float64)
    with torch.no_grad():
        states = odeint(field, x0, times, method="dopri5", rtol=1e-8, atol=1e-10)  # (T, 2, C, H, W)
        gap = (states[:, 0] - states[:, 1]).flatten(1).norm(dim=1)
        flat = states.flatten(0, 1)
        lam = sym_jacobian_lambda_max(field.conv.weight, field.slope(flat), iters=60, generator=gen)
    lam = lam.reshape(points, 2).max(1).values
    return pd.DataFrame({"t": times.numpy(), "ratio": (gap / gap[0]).numpy(),
                         "bound": torch.exp(-params.rho * times).numpy(), "lambda_max": lam.numpy()})


def euler_gain(params: TheoryParams, steps: Tensor) -> pd.DataFrame:
    """Worst one-step gain ``max_D ||I + h D M||_2`` of forward Euler over step sizes h (eq. ``euler``).

    Columns: ``h``; ``gain`` (vertex ascent, a lower bound of the worst case); ``rate = -log(gain)/h``, the
    contraction rate per unit time the discrete map keeps; ``bound_rate`` from
    ``||I + hJ||^2 <= 1 - 2 h rho + h^2 L^2`` with ``L = b ||M||_2``; ``exp_rate`` = rho, the flow's rate.
    """
    field = contractive_field(params)
    weight = field.conv.weight.detach()
    matrix = conv_matrix(weight, params.size, params.size)
    eye = torch.eye(matrix.shape[0], dtype=matrix.dtype)
    lip = params.b * torch.linalg.matrix_norm(matrix, ord=2).item()
    gen = torch.Generator().manual_seed(params.seed + 3)
    rows = []
    for h in steps.tolist():
        def value_and_grad(d: Tensor, h: float = h) -> tuple[Tensor, Tensor]:
            u, s, vh = torch.linalg.svd(eye + h * d[:, :, None] * matrix)
            left, right = u[..., 0], vh[:, 0, :]  # d sigma / d d_i = h u_i (M v)_i
            return s[:, 0], h * left * (right @ matrix.T)

        gain = _vertex_ascent(value_and_grad, _starts(matrix.shape[0], params.a, params.b, 8, gen),
                              params.a, params.b).max().item()
        sq = 1 - 2 * h * params.rho + h * h * lip * lip
        rows.append({"h": h, "gain": gain, "rate": -math.log(gain) / h,
                     "bound_rate": -0.5 * math.log(sq) / h if sq > 0 else math.inf, "exp_rate": params.rho})
    frame = pd.DataFrame(rows)
    frame.attrs["lipschitz"] = lip
    frame.attrs["h_star"] = 2 * params.rho / lip**2
    return frame


def conservativeness_summary(frame: pd.DataFrame, rho: float, tol: float = 1e-9) -> dict[str, float]:
    """Key numbers of the conservativeness study.

    ``violations``: kernels whose found rate is below the certified one (the theorem says none);
    ``gap_*``: found - certified (rate units); ``ratio_*``: found / certified over kernels certified at
    least rho / 2 (the ratio blows up as the certified rate approaches 0, so smaller ones are left out).
    """
    strong = frame[frame["certified"] >= rho / 2]
    ratio = strong["found"] / strong["certified"]
    return {
        "kernels": len(frame),
        "certified_kernels": int((frame["certified"] > 0).sum()),
        "violations": int((frame["gap"] < -tol).sum()),
        "gap_min": float(frame["gap"].min()),
        "gap_median": float(frame["gap"].median()),
        "ratio_kernels": len(strong),
        "ratio_median": float(ratio.median()) if len(strong) else math.nan,
        "ratio_max": float(ratio.max()) if len(strong) else math.nan,
    }


def trajectory_summary(frame: pd.DataFrame) -> dict[str, float]:
    """``observed_rate = min_t -log(ratio(t)) / t`` (>= rho iff the bound holds) and the largest lambda_max."""
    later = frame[frame["t"] > 0]
    return {"observed_rate": float((-later["ratio"].apply(math.log) / later["t"]).min()),
            "lambda_max": float(frame["lambda_max"].max())}


def euler_summary(frame: pd.DataFrame, paper_h: float = 0.01) -> dict[str, float]:
    """Largest grid step whose worst step found still contracts (gain < 1), the bound's step h*, and the
    worst gain at the authors' step ``paper_h`` (nan when the grid lacks it)."""
    ok = frame[frame["gain"] < 1]
    at_paper = frame.loc[(frame["h"] - paper_h).abs() < 1e-9 * paper_h, "gain"]
    return {"h_contracting": float(ok["h"].max()) if len(ok) else math.nan,
            "gain_paper_h": float(at_paper.iloc[0]) if len(at_paper) else math.nan,
            "h_star": float(frame.attrs["h_star"]), "lipschitz": float(frame.attrs["lipschitz"])}
