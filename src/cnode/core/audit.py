"""The gradient-masking audit of book chapter 7: one evaluation card per model.

Per model and L-inf radius, on the first ``images`` test images (the start of chapter 3's attack subset):
chapter 3's PGD-20; PGD-100 with 5 restarts and a margin loss; AutoAttack (``pyautoattack``, the official
attacks, wrapped in ``autoattack``); transfer PGD crafted on other models; Square alone (gradient-free); and the
solver checks (crafted with one solver, evaluated with another). The card's robust accuracy is the per-image
minimum over the white-box, transfer and gradient-free attacks; ``verdict`` applies the masking rule the
chapter states before its numbers. Per-image outcomes are stored (``evaluate.pack_bits``).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cnode.core import checks
from cnode.core.config import RunConfig
from cnode.core.evaluate import correct, pack_bits
from cnode.core.lipschitz import certified_radius, jacobian_norms, lipschitz_bound
from cnode.core.models import CNN, ConvNODE
from cnode.core.perturbations import frozen, pgd
from cnode.core.settings import Hashed, digest

#: kinds of attack by the part of the card they enter
WHITE_BOX = ("pgd20", "pgd_strong", "autoattack")
SOLVERS = ("euler2x", "rk4")


@dataclass(frozen=True)
class AuditSettings(Hashed):
    """One audit. ``eps`` L-inf radii on [0, 1] pixels; PGD steps of 2.5 eps / steps; ``aa_attacks`` None for
    AutoAttack's standard version (APGD-CE, APGD-T, FAB-T, Square 5000), else a custom list (smoke tests);
    ``tolerance`` the fraction of images beyond which a gap counts (the masking rule)."""

    images: int = 500
    eps: tuple[float, ...] = (0.05, 0.1)
    pgd_steps: int = 20
    strong_steps: int = 100
    strong_restarts: int = 5
    square_queries: int = 5000
    aa_attacks: tuple[str, ...] | None = None
    tolerance: float = 0.01
    l2_radii: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("images", "pgd_steps", "strong_steps", "strong_restarts", "square_queries"):
            checks.positive_int(name, getattr(self, name))
        for eps in (*self.eps, *self.l2_radii):
            checks.positive("eps", eps)

    def key(self, sources: list[str]) -> str:  # type: ignore[override]
        """Hash of the settings, the AutoAttack version and the transfer sources' run keys."""
        import pyautoattack

        return digest({**self.key_payload(), "pyautoattack": pyautoattack.__version__, "sources": sorted(sources)},
                      self.KEY_DIGITS)


AUDITS: dict[str, AuditSettings] = {
    "smoke": AuditSettings(images=48, eps=(0.1,), strong_steps=10, strong_restarts=2, square_queries=100,
                           aa_attacks=("apgd-ce", "apgd-dlr"), l2_radii=(0.1, 0.5, 2.0), tolerance=0.05),
    "paper": AuditSettings(),
}


def with_solver(model: ConvNODE, kind: str) -> ConvNODE:
    """A copy of ``model`` integrated differently, K(t) still piecewise constant (every stage inside a step uses
    that step's conv): ``euler2x`` two Euler steps of h/2 per conv, ``rk4`` one RK4 step (3/8 rule) per conv."""
    checks.one_of("solver", kind, SOLVERS)
    if model.solver != "euler":
        raise ValueError(f"solver variants are defined for Euler-trained models, not {model.solver!r}")
    out = copy.deepcopy(model)
    if kind == "rk4":
        out.solver = "rk4"
    else:
        out.convs = nn.ModuleList(conv for conv in out.convs for _ in range(2))
        out.steps, out.h = 2 * model.steps, model.h / 2
    return out.eval()


class Quantized(nn.Module):
    """The positive control: ``model`` behind a non-differentiable input quantization to ``levels`` grey levels
    (``torch.round`` has zero gradient), a textbook case of gradient masking."""

    def __init__(self, model: nn.Module, levels: int = 4) -> None:
        super().__init__()
        checks.positive_int("levels", levels)
        self.model, self.levels = model, levels

    def forward(self, u: Tensor) -> Tensor:
        return self.model(torch.round(u * (self.levels - 1)) / (self.levels - 1))


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def autoattack(model: nn.Module, x: Tensor, y: Tensor, eps: float, settings: AuditSettings,
               apgd: tuple[int, int] | None = None) -> tuple[Tensor, dict[str, Any]]:
    """AutoAttack (pyautoattack) at L-inf ``eps``: (adversarial images, {"after": robust accuracy after each
    attack, "flags": its warnings}). Its own log is captured, not printed. ``apgd``: (iterations, restarts) of
    its APGD attacks where not AutoAttack's own (100, and 5 in its custom version)."""
    from pyautoattack import AutoAttack

    version, attacks = ("standard", None) if settings.aa_attacks is None else ("custom", list(settings.aa_attacks))
    logger, capture = logging.getLogger("auto-attack"), _Capture()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(capture)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        with frozen(model):
            aa = AutoAttack(model, attacks=attacks, device=x.device, eps=eps, norm="Linf", seed=settings.seed,
                            version=version)
            if apgd is not None:
                aa.apgd.n_iter, aa.apgd.n_restarts = apgd
            adv, _ = aa.run_standard_evaluation(x, y, batch_size=250)
    finally:
        logger.removeHandler(capture)
        logger.setLevel(level)
        logger.propagate = propagate
    after = {}
    for record in capture.records:
        text = record.getMessage()
        if text.startswith("robust accuracy after "):
            name, value = text[len("robust accuracy after "):].split(":")[:2]
            after[name.strip().upper()] = float(value.split("%")[0]) / 100
    flags = list(dict.fromkeys(r.getMessage() for r in capture.records if r.levelno >= logging.WARNING))
    return adv.detach(), {"after": after, "flags": flags}


def square(model: nn.Module, x: Tensor, y: Tensor, eps: float, queries: int, seed: int) -> Tensor:
    """Square attack alone (pyautoattack's, L-inf, AutoAttack's settings: p_init 0.8, 1 restart): gradient-free."""
    from pyautoattack.square import SquareAttack

    attack = SquareAttack(model, p_init=0.8, n_queries=queries, eps=eps, norm="Linf", n_restarts=1, seed=seed,
                          verbose=False, device=x.device, resc_schedule=False)
    with frozen(model), torch.no_grad():
        return attack.perturb(x, y).detach()


def _pgd20(model: nn.Module, x: Tensor, y: Tensor, eps: float, s: AuditSettings, early_stop: bool = True) -> Tensor:
    """Chapter 3's PGD: ``pgd_steps`` steps of 2.5 eps / steps, one random start, cross-entropy."""
    return pgd(model, x, y, eps, s.pgd_steps, 2.5 * eps / s.pgd_steps,
               generator=torch.Generator().manual_seed(s.seed + 1), early_stop=early_stop)


def card(model: nn.Module, x: Tensor, y: Tensor, settings: AuditSettings,
         sources: dict[str, nn.Module]) -> dict[str, Any]:
    """The evaluation card of ``model`` on images x (N, 1, 28, 28), labels y (N,), at every eps of
    ``settings``. ``sources``: models to craft transfer attacks on (name -> model; the target itself excluded by
    the caller). Returns per eps the per-image outcomes (packed) and accuracies of every attack, the per-image
    minima, AutoAttack's per-attack accuracies and flags, the solver checks, and seconds per part."""
    model.eval()
    clean = correct(model, x, y, 500)
    out = {"n": len(x), "clean": pack_bits(clean), "clean_acc": clean.float().mean().item(),
           "eps": {f"{eps:g}": _entry(model, x, y, eps, settings, sources) for eps in settings.eps}}
    if isinstance(model, ConvNODE | CNN):
        out["certificate"] = certify(model, x, y, settings)
    return out


def certify(model: nn.Module, x: Tensor, y: Tensor, s: AuditSettings) -> dict[str, Any]:
    """Part 1 of chapter 7: the Lipschitz bound of ``model`` by its factors, every image's certified L2 radius,
    the largest exact local gain over the images (a check from below: it never exceeds the bound), and the
    empirical L2 PGD accuracy (PGD-``strong_steps``, ``strong_restarts`` restarts, margin loss) at each
    ``l2_radii``, to compare with the certified accuracy at the same radius."""
    start = time.perf_counter()
    bound = lipschitz_bound(model)
    with torch.no_grad():
        radius = certified_radius(model(x), y, bound["total"])
    gains = jacobian_norms(model, x)
    pgd_acc = {}
    for r in s.l2_radii:
        adv = pgd(model, x, y, r, s.strong_steps, 2.5 * r / s.strong_steps, s.strong_restarts, loss="margin",
                  generator=torch.Generator().manual_seed(s.seed + 3), norm="l2")
        pgd_acc[f"{r:g}"] = correct(model, adv, y, 500).float().mean().item()
    return {"bound": bound, "radius": radius.tolist(), "max_local_gain": gains.max().item(),
            "median_local_gain": gains.median().item(), "l2_pgd": pgd_acc, "seconds": time.perf_counter() - start}


def _entry(model: nn.Module, x: Tensor, y: Tensor, eps: float, s: AuditSettings,
           sources: dict[str, nn.Module]) -> dict[str, Any]:
    """The card at one eps (see ``card``)."""
    aa_info: dict[str, Any] = {}

    def run_aa() -> Tensor:
        adv, info = autoattack(model, x, y, eps, s)
        aa_info.update(info)
        return adv

    attacks = {
        "pgd20": lambda: _pgd20(model, x, y, eps, s),
        "pgd_strong": lambda: pgd(model, x, y, eps, s.strong_steps, 2.5 * eps / s.strong_steps, s.strong_restarts,
                                  loss="margin", generator=torch.Generator().manual_seed(s.seed + 2)),
        "autoattack": run_aa,
        **{f"transfer_{name}": (lambda src=src: _pgd20(src, x, y, eps, s, early_stop=False))
           for name, src in sources.items()},
        "square": lambda: square(model, x, y, eps, s.square_queries, s.seed),
    }
    rows: dict[str, Tensor] = {}
    seconds: dict[str, float] = {}
    for name, attack in attacks.items():
        start = time.perf_counter()
        rows[name] = correct(model, attack(), y, 500)
        seconds[name] = time.perf_counter() - start
    white = torch.stack([rows[k] for k in WHITE_BOX]).all(0)
    black = torch.stack([rows[k] for k in rows if k not in WHITE_BOX]).all(0)
    entry: dict[str, Any] = {
        "acc": {k: v.float().mean().item() for k, v in rows.items()},
        "correct": {k: pack_bits(v) for k, v in rows.items()},
        "white_box_min": white.float().mean().item(), "card_min": (white & black).float().mean().item(),
        "broken_only_by_black_box": (white & ~black).float().mean().item(),
        "autoattack": aa_info, "seconds": seconds,
    }
    if isinstance(model, ConvNODE) and model.solver == "euler":
        entry["solvers"] = _solver_checks(model, x, y, eps, s, white)
    return entry


def _solver_checks(model: ConvNODE, x: Tensor, y: Tensor, eps: float, s: AuditSettings,
                   white: Tensor) -> dict[str, dict[str, float]]:
    """PGD-20 crafted on the training solver and evaluated with each variant, and crafted on each variant and
    evaluated on the training solver; ``new_breaks`` the fraction of images the training solver's white-box
    attacks left intact that the variant-crafted attack breaks."""
    crafted = _pgd20(model, x, y, eps, s)
    found = {}
    for kind in SOLVERS:
        variant = with_solver(model, kind)
        on_variant = _pgd20(variant, x, y, eps, s)
        back = correct(model, on_variant, y, 500)
        found[kind] = {"clean": correct(variant, x, y, 500).float().mean().item(),
                       "crafted_train_eval_variant": correct(variant, crafted, y, 500).float().mean().item(),
                       "crafted_variant_eval_variant": correct(variant, on_variant, y, 500).float().mean().item(),
                       "crafted_variant_eval_train": back.float().mean().item(),
                       "new_breaks": (white & ~back).float().mean().item()}
    return found


def sources_for(cfg: RunConfig) -> dict[str, RunConfig]:
    """The models transfer attacks on ``cfg`` are crafted on: the CNN and the vanilla CNODE trained like ``cfg``
    (same profile, data, seed and budget; the profile's T and N), less ``cfg`` itself."""
    base = RunConfig.from_profile(cfg.profile)
    common = dict(regularizer="none", rho=base.rho, init="auto", T=base.T, steps=base.steps, solver=base.solver,
                  weight_decay=0.0)
    found = {"cnn": dataclasses.replace(cfg, model="cnn", **common),
             "vanilla": dataclasses.replace(cfg, model="cnode", **common)}
    return {name: src for name, src in found.items() if src.key() != cfg.key()}


def square_stage_breaks(after: dict[str, float]) -> float:
    """The fraction of images AutoAttack's Square stage breaks after its gradient stages (APGD-CE, APGD-T, FAB-T)
    left them intact: the drop of its robust accuracy at the Square stage (``after`` maps each attack run, in
    order, to the robust accuracy after it; 0 when Square did not run because nothing was left)."""
    names = list(after)
    if "SQUARE" not in names or names.index("SQUARE") == 0:
        return 0.0
    return max(0.0, after[names[names.index("SQUARE") - 1]] - after["SQUARE"])


def verdict(entry: dict[str, Any], tolerance: float) -> list[str]:
    """The masking rule, stated before any number (book chapter 7): a card entry is flagged for each of
    (1) a gradient-free or transfer attack breaks more than ``tolerance`` of the images the gradient attacks left
    intact: transfer or Square alone against every white-box attack per image, and AutoAttack's own Square stage
    against its gradient stages (``square_stage_breaks``: AutoAttack ends with Square, so the per-image check alone
    cannot see what Square adds inside it);
    (2) robust accuracy rises with PGD effort (PGD-100 x 5 with the margin loss above PGD-20 by more than
    ``tolerance``); (3) attacks crafted with another solver break more than ``tolerance`` of the images the
    training solver's white-box attacks left intact; (4) AutoAttack's own checks raise a flag.
    Returns the reasons (empty: no sign of masking)."""
    reasons = []
    if entry["broken_only_by_black_box"] > tolerance:
        reasons.append(f"black-box attacks break {entry['broken_only_by_black_box']:.1%} of the images every "
                       "white-box attack left intact")
    stage = square_stage_breaks(entry["autoattack"].get("after", {}))
    if stage > tolerance:
        reasons.append(f"AutoAttack's Square stage breaks {stage:.1%} of the images its gradient stages left intact")
    if entry["acc"]["pgd_strong"] > entry["acc"]["pgd20"] + tolerance:
        reasons.append(f"more PGD effort raises robust accuracy ({entry['acc']['pgd20']:.1%} -> "
                       f"{entry['acc']['pgd_strong']:.1%})")
    for kind, check in entry.get("solvers", {}).items():
        if check["new_breaks"] > tolerance:
            reasons.append(f"attacks crafted with {kind} break {check['new_breaks']:.1%} more images")
    reasons += [f"AutoAttack: {flag}" for flag in flag_summary(entry["autoattack"].get("flags", []))]
    return reasons


def flag_summary(flags: list[str]) -> list[str]:
    """AutoAttack's flags, one line per kind: its first sentence, with the largest number the kind reached and
    how often it was raised (it repeats "there are N points with zero gradient!" at every check)."""
    kinds: dict[str, list[str]] = {}
    for flag in flags:
        first = re.split(r"(?<=[.!])\s", flag, maxsplit=1)[0]
        kinds.setdefault(re.sub(r"\d+(\.\d+)?", "#", first), []).append(first)
    lines = []
    for found in kinds.values():
        top = max(found, key=lambda text: max((float(n) for n in re.findall(r"\d+(?:\.\d+)?", text)), default=0))
        lines.append(top if len(found) == 1 else f"{top} (the largest of {len(found)})")
    return lines
