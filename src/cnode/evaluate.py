"""Evaluation of trained models. Accuracy here; robustness suites build on it (book chapter 3)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cnode.perturbations import fgsm, gaussian, pgd, salt_and_pepper


@torch.no_grad()
def accuracy(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 1000) -> float:
    """Fraction of ``images`` (N, 1, 28, 28) in [0, 1] classified as ``labels``; eval mode, batched."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        correct += (model(x).argmax(1).cpu() == labels[start:start + batch_size]).sum().item()
    model.train(was_training)
    return correct / len(images)


@dataclass(frozen=True)
class EvalSuite:
    """Every perturbation and level one robustness evaluation applies. Units: ``gaussian_std`` is the noise
    standard deviation on [0, 1] pixels, ``salt_pepper`` the fraction of pixels hit, ``eps`` the L-inf radius on
    [0, 1] pixels. PGD takes ``pgd_steps`` steps of ``pgd_step_ratio * eps / pgd_steps`` (Madry et al.'s 2.5)
    with ``pgd_restarts`` random starts. ``test_subset`` first test images (None: all 10000)."""

    gaussian_std: tuple[float, ...] = (0.1, 0.2, 0.3)
    salt_pepper: tuple[float, ...] = (0.05, 0.1, 0.2)
    eps: tuple[float, ...] = (0.05, 0.1, 0.15, 0.2, 0.3)
    pgd_steps: int = 20
    pgd_step_ratio: float = 2.5
    pgd_restarts: int = 1
    check_eps: float = 0.1  # where the sanity checks run PGD with 2x steps and with a margin loss
    test_subset: int | None = 1000
    batch_size: int = 500
    seed: int = 0

    def key(self) -> str:
        """Stable hash of the suite (results are cached per suite beside each run)."""
        payload = json.dumps({**dataclasses.asdict(self), "schema": EVAL_SCHEMA}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:10]

    def describe(self) -> str:
        """One line of the settings, to print next to every table."""
        n = self.test_subset or 10_000
        return (f"{n} test images; Gaussian std {list(self.gaussian_std)} on [0,1] pixels (clipped and not); "
                f"salt-and-pepper fractions {list(self.salt_pepper)}; L-inf eps {list(self.eps)} on [0,1] pixels; "
                f"FGSM; PGD-{self.pgd_steps}, step {self.pgd_step_ratio:g}*eps/{self.pgd_steps}, "
                f"{self.pgd_restarts} random start(s), cross-entropy loss; noise seed {self.seed}")


EVAL_SCHEMA = 1

#: ``smoke`` for tests; ``cpu`` for the committed chapter 3; ``sweep`` a few headline levels for the rho sweep
#: of chapter 4; ``paper`` the full test set with 3 restarts.
SUITES: dict[str, EvalSuite] = {
    "smoke": EvalSuite(gaussian_std=(0.2,), salt_pepper=(0.1,), eps=(0.1, 0.3), pgd_steps=5, test_subset=128,
                       batch_size=128),
    "cpu": EvalSuite(test_subset=500),
    "sweep": EvalSuite(gaussian_std=(0.2,), salt_pepper=(0.1,), eps=(0.05, 0.1), test_subset=500),
    "paper": EvalSuite(test_subset=None, pgd_restarts=3),
}


def _batched(fn, x: Tensor, y: Tensor, batch_size: int) -> Tensor:
    """Apply ``fn(x_batch, y_batch)`` batch by batch and concatenate."""
    return torch.cat([fn(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def robustness(model: nn.Module, images: Tensor, labels: Tensor, suite: EvalSuite) -> dict[str, Any]:
    """Accuracy under every perturbation and level of ``suite``, plus sanity checks (warnings if they fail).

    Returns ``{"clean", "rows": [{"kind", "level", "acc"}], "checks", "warnings", "seconds"}``. Kinds:
    ``gaussian`` (clipped), ``gaussian_noclip``, ``salt_pepper``, ``fgsm``, ``pgd``; attacks include level 0.
    """
    start = time.perf_counter()
    model.eval()
    device = next(model.parameters()).device
    x, y = images.to(device), labels.to(device)
    n, tol = len(x), max(0.01, 2 / len(x))

    def acc(x_pert: Tensor) -> float:
        return accuracy(model, x_pert, y.cpu(), suite.batch_size)

    def pgd_acc(eps: float, steps: int, loss: str = "ce") -> float:
        gen = torch.Generator().manual_seed(suite.seed + 1)
        size = suite.pgd_step_ratio * eps / steps
        adv = _batched(lambda a, b: pgd(model, a, b, eps, steps, max(size, 1e-12), suite.pgd_restarts, loss=loss,
                                        generator=gen), x, y, suite.batch_size)
        return acc(adv)

    clean = acc(x)
    rows = []
    for std in suite.gaussian_std:
        for clip, kind in ((True, "gaussian"), (False, "gaussian_noclip")):
            gen = torch.Generator().manual_seed(suite.seed)
            rows.append({"kind": kind, "level": std, "acc": acc(gaussian(x, std, clip, gen))})
    for amount in suite.salt_pepper:
        gen = torch.Generator().manual_seed(suite.seed)
        rows.append({"kind": "salt_pepper", "level": amount, "acc": acc(salt_and_pepper(x, amount, gen))})
    for eps in (0.0, *suite.eps):
        adv = _batched(lambda a, b, eps=eps: fgsm(model, a, b, eps), x, y, suite.batch_size)
        rows.append({"kind": "fgsm", "level": eps, "acc": acc(adv)})
        rows.append({"kind": "pgd", "level": eps, "acc": pgd_acc(eps, suite.pgd_steps if eps else 1)})
    done = [r["acc"] for r in rows if r["kind"] == "pgd" and r["level"] == suite.check_eps]
    checks = {"eps": suite.check_eps, "pgd": done[0] if done else pgd_acc(suite.check_eps, suite.pgd_steps),
              "pgd_2x_steps": pgd_acc(suite.check_eps, 2 * suite.pgd_steps),
              "pgd_margin": pgd_acc(suite.check_eps, suite.pgd_steps, "margin")}
    warnings = _sanity(clean, rows, checks, tol, n)
    return {"clean": clean, "rows": rows, "checks": checks, "warnings": warnings, "n": n,
            "seconds": time.perf_counter() - start}


def _sanity(clean: float, rows: list[dict[str, Any]], checks: dict[str, float], tol: float, n: int) -> list[str]:
    """The evaluation's own consistency checks; each failure becomes a warning stored with the results."""
    found = []
    by = {(r["kind"], r["level"]): r["acc"] for r in rows}
    for kind in ("fgsm", "pgd"):
        if by[(kind, 0.0)] != clean:
            found.append(f"{kind} at eps 0 gives {by[(kind, 0.0)]:.4f}, clean accuracy is {clean:.4f}")
    for (kind, level), value in by.items():
        if kind == "pgd" and value > by[("fgsm", level)] + tol:
            found.append(f"PGD accuracy {value:.4f} exceeds FGSM {by[('fgsm', level)]:.4f} at eps {level}")
    if checks["pgd_2x_steps"] > checks["pgd"] + tol:
        found.append(f"more PGD steps helped the model at eps {checks['eps']}: {checks['pgd']:.4f} -> "
                     f"{checks['pgd_2x_steps']:.4f} (gradient masking?)")
    if checks["pgd_2x_steps"] < checks["pgd"] - tol:
        found.append(f"PGD not converged at eps {checks['eps']}: twice the steps lowers accuracy "
                     f"{checks['pgd']:.4f} -> {checks['pgd_2x_steps']:.4f}")
    if checks["pgd_margin"] < checks["pgd"] - tol:
        found.append(f"margin-loss PGD is stronger at eps {checks['eps']}: {checks['pgd']:.4f} -> "
                     f"{checks['pgd_margin']:.4f}; cross-entropy PGD overstates robustness")
    return found


def examples(models: dict[str, nn.Module], image: Tensor, label: int, suite: EvalSuite, std: float,
             amount: float, eps: float) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, int]]]:
    """One test image (1, 28, 28) perturbed for each model: clean, Gaussian (clipped), salt-and-pepper, and FGSM
    and PGD crafted against that model. Returns (images as (28, 28) arrays, predicted labels), keyed by model,
    then by perturbation name."""
    x, y = image[None], torch.tensor([label])
    images: dict[str, dict[str, Any]] = {}
    preds: dict[str, dict[str, int]] = {}
    for name, model in models.items():
        model.eval()
        gen = torch.Generator().manual_seed(suite.seed)
        perturbed = {
            "clean": x,
            f"Gauss {std:g}": gaussian(x, std, True, gen),
            f"S&P {amount:g}": salt_and_pepper(x, amount, gen),
            f"FGSM {eps:g}": fgsm(model, x, y, eps),
            f"PGD {eps:g}": pgd(model, x, y, eps, suite.pgd_steps, suite.pgd_step_ratio * eps / suite.pgd_steps,
                                suite.pgd_restarts, generator=torch.Generator().manual_seed(suite.seed + 1)),
        }
        with torch.no_grad():
            preds[name] = {k: int(model(v).argmax(1)) for k, v in perturbed.items()}
        images[name] = {k: v[0, 0].numpy() for k, v in perturbed.items()}
    return images, preds
