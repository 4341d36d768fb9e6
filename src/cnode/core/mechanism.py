"""Where a CNODE's robustness comes from (book chapter 6): each measure next to its prediction.

For one trained ConvNODE and a fixed set of test images: the certified rate of every step's kernel and the
bounds it implies; the largest ``lambda_max`` of the symmetric Jacobian met along the test trajectories (the
Lanczos estimator of chapter 5, re-checked against dense eigenvalues); and, for Gaussian and for the model's own
PGD perturbations, the measured gain of the input layer, of the flow and of the head. The results are stored
beside the run (``cnode.runs.store.load_or_measure``), so re-executing the chapter reads them.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from cnode.core import checks
from cnode.core.contraction import certified_rate, sym_jacobian_dense, sym_jacobian_lambda_max
from cnode.core.lipschitz import conv_spectral_norm, flow_bounds
from cnode.core.models import ConvNODE
from cnode.core.perturbations import gaussian, pgd
from cnode.core.settings import Hashed


@dataclass(frozen=True)
class MechanismSettings(Hashed):
    """What one mechanism measurement uses. ``images`` first test images; Gaussian noise of std
    ``gaussian_std`` (clipped to [0, 1]); L-inf PGD at ``eps`` (``pgd_steps`` steps of 2.5 eps / steps, the
    suites' attack); ``lanczos_images`` of them for ``lambda_max`` at every step with ``lanczos_iters``
    products; ``dense_checks`` (image, step) pairs re-checked by dense eigenvalues when h >= ``dense_min_h``."""

    images: int = 500
    gaussian_std: float = 0.1
    eps: float = 0.05
    pgd_steps: int = 20
    lanczos_images: int = 100
    lanczos_iters: int = 60
    dense_checks: int = 2
    dense_min_h: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("images", "pgd_steps", "lanczos_images", "lanczos_iters"):
            checks.positive_int(name, getattr(self, name))
        checks.nonnegative("dense_checks", self.dense_checks)
        checks.positive("gaussian_std", self.gaussian_std)
        checks.positive("eps", self.eps)



#: ``smoke`` for tests, ``paper`` for the chapter (about half a minute per model on 2 CPU cores).
MECHANISMS: dict[str, MechanismSettings] = {
    "smoke": MechanismSettings(images=32, pgd_steps=5, lanczos_images=8, lanczos_iters=60, dense_checks=1),
    "paper": MechanismSettings(),
}


def _states(model: ConvNODE, u: Tensor) -> list[Tensor]:
    """``[x_0, ..., x_N]`` for images u (B, 1, H, W), without autograd."""
    with torch.no_grad():
        return model.flow(model.lift(u))


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    """Per-image ``||num_i|| / ||den_i||`` for (B, ...) tensors."""
    return num.flatten(1).norm(dim=1) / den.flatten(1).norm(dim=1).clamp_min(1e-30)


def gains(model: ConvNODE, u: Tensor, u2: Tensor) -> dict[str, Tensor]:
    """Per-image gains of each part between inputs u and u2 (B, 1, H, W) (eq. ``gains``): ``input``
    ``||x_0' - x_0|| / ||u' - u||``, ``flow`` ``||x_T' - x_T|| / ||x_0' - x_0||``, ``head``
    ``||z' - z|| / ||x_T' - x_T||`` and ``total`` ``||z' - z|| / ||u' - u||``, their product. Each (B,)."""
    first, second = _states(model, u), _states(model, u2)
    with torch.no_grad():
        z, z2 = model.head(first[-1].flatten(1)), model.head(second[-1].flatten(1))
    return {"input": _ratio(second[0] - first[0], u2 - u), "flow": _ratio(second[-1] - first[-1],
                                                                           second[0] - first[0]),
            "head": _ratio(z2 - z, second[-1] - first[-1]), "total": _ratio(z2 - z, u2 - u)}


def trajectory_lambda_max(model: ConvNODE, u: Tensor, iters: int, generator: torch.Generator) -> Tensor:
    """Lanczos estimate of ``lambda_max((J_k + J_k^T)/2)``, ``J_k = D(x_k) K_k``, at every step k and image of u:
    (steps, B). A lower estimate of each true value (eq. ``lambda-max``)."""
    states = _states(model, u)
    with torch.no_grad():
        return torch.stack([sym_jacobian_lambda_max(model.convs[k].weight, model.slope(k, states[k]), iters,
                                                    generator=generator) for k in range(model.steps)])


def dense_lambda_max(model: ConvNODE, u: Tensor, step: int) -> float:
    """The exact ``lambda_max`` of the symmetric Jacobian of ``step`` at the state of the single image u
    (1, 1, H, W), from the dense (C H W)^2 matrix in float64 (eq. ``jacobian``)."""
    state = _states(model, u)[step]
    with torch.no_grad():
        slope = model.slope(step, state).double()
        return torch.linalg.eigvalsh(sym_jacobian_dense(model.convs[step].weight.double(), slope)[0])[-1].item()


def _summary(values: Tensor) -> dict[str, float]:
    q = torch.quantile(values.double(), torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64))
    return {"median": q[1].item(), "q10": q[0].item(), "q90": q[2].item(), "max": values.max().item(),
            "mean": values.double().mean().item()}


def measure(model: ConvNODE, rho: float, images: Tensor, labels: Tensor,
            settings: MechanismSettings) -> dict[str, Any]:
    """Every mechanism measure of ``model`` on the first ``settings.images`` of (images, labels), with the
    predictions beside them: ``exp(-rho T)`` (``rho`` the regularizer's target), ``exp(-sum_k h rate_k)`` from
    the certified rates, the product of the Euler step bounds (``lipschitz.flow_bounds``, guaranteed for the
    discrete flow), and ``b ||conv0||`` and ``||W_out||`` for the input layer and the head."""
    start = time.perf_counter()
    model.eval()
    gen = torch.Generator().manual_seed(settings.seed)
    u, y = images[:settings.images], labels[:settings.images]
    noisy = gaussian(u, settings.gaussian_std, True, gen)
    attacked = pgd(model, u, y, settings.eps, settings.pgd_steps, 2.5 * settings.eps / settings.pgd_steps,
                   generator=torch.Generator().manual_seed(settings.seed + 1))
    with torch.no_grad():
        fooled = model(attacked).argmax(1) != y
    rates = certified_rate(model.node_weights().detach(), model.act.a, model.act.b)
    steps = flow_bounds(model)
    lam = trajectory_lambda_max(model, u[:settings.lanczos_images], settings.lanczos_iters, gen)
    worst_step = lam.max(1).values  # (steps,)
    dense = []
    if model.h >= settings.dense_min_h:
        flat = lam.flatten().argsort(descending=True)[:settings.dense_checks]
        for index in flat.tolist():
            k, i = divmod(index, lam.shape[1])
            dense.append({"step": k, "image": i, "lanczos": lam[k, i].item(),
                          "dense": dense_lambda_max(model, u[i:i + 1], k)})
    out: dict[str, Any] = {
        "settings": dataclasses.asdict(settings), "T": model.T, "h": model.h, "steps": model.steps, "rho": rho,
        "certified_rate": rates.tolist(), "step_bounds": steps, "flow_bound": math.prod(steps),
        "exp_rho_T": math.exp(-rho * model.T), "exp_certified": math.exp(-model.h * rates.sum().item()),
        "lambda_max_per_step": worst_step.tolist(), "lambda_max": worst_step.max().item(),
        "exp_lambda": math.exp(model.h * worst_step.sum().item()),
        "input_bound": model.act.b * conv_spectral_norm(model.inp.weight),
        "head_bound": torch.linalg.matrix_norm(model.head.weight.detach().double(), ord=2).item(),
        "dense_checks": dense, "pgd_fooled": fooled.float().mean().item(),
    }
    for name, perturbed in (("gaussian", noisy), ("pgd", attacked)):
        out[name] = {part: _summary(v) for part, v in gains(model, u, perturbed).items()}
        out[name]["perturbation_l2"] = _summary((perturbed - u).flatten(1).norm(dim=1))
    out["seconds"] = time.perf_counter() - start
    return out
