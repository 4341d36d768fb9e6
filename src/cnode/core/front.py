"""The attack suite of the accuracy-robustness front (book chapter 9): APGD-CE and APGD-DLR from ``pyautoattack``.

One suite for every point of a front, stored and new alike: the robust accuracy of an image is the minimum over
the two attacks (AutoAttack's custom version runs them in turn, each on the images the previous one left
intact), at every L-inf eps of the settings (the ``mnist_only`` ones on MNIST alone: eps 0.05 is the front of
both datasets, eps 0.1 a second MNIST front), on the first ``images`` test images. The gradients flow through the
model's own fixed-step solver.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from cnode.core import checks
from cnode.core.audit import AuditSettings, autoattack
from cnode.core.evaluate import correct, pack_bits
from cnode.core.settings import Hashed, digest


@dataclass(frozen=True)
class FrontSettings(Hashed):
    """``images`` first test images; L-inf ``eps`` on [0, 1] pixels; ``attacks`` run in turn by AutoAttack
    (100 iterations each, its default; None: AutoAttack's standard version, for the non-dominated points); the
    eps in ``mnist_only`` are measured on MNIST alone (on FashionMNIST at 0.1 almost nothing survives);
    ``apgd`` (iterations, restarts) where not AutoAttack's own (the smoke suite's few, for seconds in tests)."""

    LATER: ClassVar[dict[str, Any]] = {"apgd": None}

    images: int = 500
    eps: tuple[float, ...] = (0.05, 0.1)
    mnist_only: tuple[float, ...] = (0.1,)
    attacks: tuple[str, ...] | None = ("apgd-ce", "apgd-dlr")
    seed: int = 0
    apgd: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        checks.positive_int("images", self.images)
        for eps in self.eps:
            checks.positive("eps", eps)

    def key(self) -> str:  # type: ignore[override]
        """Hash of the settings and the AutoAttack version (another version may attack differently)."""
        import pyautoattack

        return digest({**self.key_payload(), "pyautoattack": pyautoattack.__version__}, self.KEY_DIGITS)


#: ``smoke`` for tests; ``paper`` for every point of a front; ``standard`` (full AutoAttack) for the
#: non-dominated points, to bound how much the two-attack suite overstates robust accuracy
FRONTS: dict[str, FrontSettings] = {
    "smoke": FrontSettings(images=32, eps=(0.1,), mnist_only=(), apgd=(10, 1)),
    "paper": FrontSettings(),
    "standard": FrontSettings(attacks=None),
}


def dataset_eps(settings: FrontSettings, dataset: str) -> list[float]:
    """The eps of ``settings`` measured on ``dataset`` (those in ``mnist_only`` on MNIST alone)."""
    return [eps for eps in settings.eps if dataset == "mnist" or eps not in settings.mnist_only]


def measure(model: nn.Module, images: Tensor, labels: Tensor, settings: FrontSettings,
            dataset: str = "mnist", partial: dict[str, Any] | None = None,
            on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Robust accuracy under ``settings`` of ``model`` on the first ``settings.images`` of (images, labels) of
    ``dataset``: per eps (``dataset_eps``), the accuracy, the per-image outcomes (``pack_bits``) and AutoAttack's
    own log of robust accuracy after each attack and its warnings. ``partial`` ({"rows", "seconds"}, what an
    interrupted call measured) resumes after its radii; ``on_row`` receives that state after every radius, so a
    caller can store it (AutoAttack reseeds every attack: a resumed radius is the one an unbroken call measures)."""
    start = time.perf_counter()
    x, y = images[:settings.images], labels[:settings.images]
    audit = AuditSettings(images=settings.images, aa_attacks=settings.attacks, seed=settings.seed)
    rows, before = (list(partial["rows"]), float(partial["seconds"])) if partial else ([], 0.0)
    for eps in dataset_eps(settings, dataset):
        if any(abs(row["eps"] - eps) < 1e-12 for row in rows):
            continue
        adv, log = autoattack(model, x, y, eps, audit, settings.apgd)
        flags = correct(model, adv, y) & correct(model, x, y)  # an image wrong when clean counts as broken
        rows.append({"eps": eps, "acc": flags.float().mean().item(), "n": len(flags), "correct": pack_bits(flags),
                     **log})
        if on_row is not None:
            on_row({"rows": rows, "seconds": before + time.perf_counter() - start})
    return {"settings": dataclasses.asdict(settings), "rows": rows, "clean_subset": correct(model, x, y).float()
            .mean().item(), "seconds": before + time.perf_counter() - start}


def robust(result: dict[str, Any], eps: float) -> float:
    """The stored robust accuracy of one front measurement at ``eps`` (a clear error where it was not measured)."""
    for row in result["rows"]:
        if abs(row["eps"] - eps) < 1e-12:
            return float(row["acc"])
    raise KeyError(f"no front measurement at eps {eps}; measured: {[r['eps'] for r in result['rows']]}")

