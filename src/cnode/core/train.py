"""Training of one ``RunConfig``: seeded, resumable epoch by epoch, on CPU or CUDA.

``train`` never writes files: it takes an optional ``resume`` state and calls ``on_epoch(state)`` after every
epoch, and ``cnode.runs.store`` persists that state atomically. Shuffling and the Lanczos start vectors are seeded
per (seed, epoch), so a run resumed after epoch e gives the same numbers as one that never stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from cnode.core import data, regularizers
from cnode.core.config import RunConfig
from cnode.core.contraction import certified_rate, weight_margin
from cnode.core.evaluate import accuracy
from cnode.core.lipschitz import project
from cnode.core.models import CNN, ConvNODE
from cnode.core.perturbations import fgsm, fgsm_rs, pgd


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss diverged); the message says what to change."""


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda if available else cpu; "cuda" without a GPU is a clear error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is available; use device 'cpu' or 'auto'")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(cfg: RunConfig) -> nn.Module:
    """The model a config describes, freshly initialized from ``cfg.seed``."""
    torch.manual_seed(cfg.seed)
    if cfg.model == "cnn":
        return CNN(cfg.channels, a=cfg.a, b=cfg.b)
    return ConvNODE(cfg.channels, cfg.steps, cfg.T, cfg.solver, cfg.a, cfg.b, cfg.init)


def contraction_report(model: nn.Module, cfg: RunConfig) -> dict[str, Any]:
    """Certificate of a ConvNODE at the config's rho: R_W, certified channels, certified rate per layer."""
    if not isinstance(model, ConvNODE):
        return {}
    with torch.no_grad():
        kernels = model.node_weights()
        margins = weight_margin(kernels, cfg.a, cfg.b)
        return {
            "weight_reg": regularizers.weight(model, cfg.rho, cfg.a, cfg.b).item(),
            "certified_channels": int((margins <= -2 * cfg.rho).sum()),
            "channels_total": margins.numel(),
            "certified_rate": certified_rate(kernels, cfg.a, cfg.b).cpu().tolist(),
        }


#: test images on which an adversarially trained run records FGSM and PGD accuracy after every epoch
ADV_WATCH_IMAGES = 500


def adversarial_report(model: nn.Module, cfg: RunConfig) -> dict[str, Any]:
    """For adversarial training only: FGSM and PGD-10 (step 2.5 eps / 10, one random start) accuracy at
    ``cfg.adv_eps`` on the first ``ADV_WATCH_IMAGES`` test images, after each epoch. Catastrophic overfitting shows
    as PGD accuracy collapsing while FGSM accuracy rises (Wong et al.), so both are kept in the history."""
    if not cfg.adv_eps:
        return {}
    device = next(model.parameters()).device
    x, y = data.load(cfg.dataset, "test", ADV_WATCH_IMAGES)
    x, y = x.to(device), y.to(device)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    eps = cfg.adv_eps
    out = {"adv_fgsm_acc": accuracy(model, fgsm(model, x, y, eps), y.cpu()),
           "adv_pgd_acc": accuracy(model, pgd(model, x, y, eps, 10, 2.5 * eps / 10, generator=gen), y.cpu())}
    model.train()
    return out


def compiled(model: nn.Module, cfg: RunConfig) -> Callable[..., Any]:
    """The forward pass training uses: ``torch.compile(model)`` (inductor, static shapes) if ``cfg.compile``,
    else the model itself.

    Compilation fuses the activation with the Euler update and their backward (measured 1.5x faster than eager
    on 2 CPU cores); it happens at the first call (about 20 s, less when inductor's on-disk cache has
    the graph). Any failure to compile falls back to eager execution (dynamo's ``suppress_errors``), so a
    missing compiler costs speed, never a run. The parameters are the model's: optimizer and checkpoints see
    no difference.
    """
    if not cfg.compile:
        return model
    import logging

    import torch._dynamo

    torch._dynamo.config.suppress_errors = True
    # inductor imports cpp_extension, which warns on stderr that a CPU-only build has no CUDA runtime
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    return torch.compile(model)


def make_optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    """Adam or SGD at ``cfg.lr`` with ``cfg.weight_decay`` (coupled L2: ``wd * w`` added to each gradient)."""
    opt_cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.SGD
    return opt_cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def _loss(model: nn.Module, cfg: RunConfig, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator,
          warm: dict[int, torch.Tensor] | None, forward: Callable[..., Any] | None = None
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cross-entropy + gamma * regularizer; returns (loss, ce, reg, logits). ``forward`` (default: the model)
    computes the logits, e.g. the compiled model of ``compiled``."""
    forward = model if forward is None else forward
    # with sampling, R_J recomputes the few states it reads; the forward need not return them all
    with_states = cfg.regularizer == "jacobian" and cfg.jacobian_samples is None
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bfloat16"):
        out = forward(x, return_states=True) if with_states else (forward(x), None)
    logits, states = out[0].float(), out[1]
    if cfg.regularizer == "jacobian":  # in float32 also under bfloat16: Lanczos needs the precision
        reg = regularizers.jacobian(model, states, cfg.rho, cfg.jacobian_iters, gen, cfg.jacobian_samples,
                                    cfg.jacobian_steps, warm if cfg.jacobian_warm else None,
                                    inputs=x if states is None else None)
    else:
        reg = (regularizers.weight(model, cfg.rho, cfg.a, cfg.b) if cfg.regularizer == "weight"
               else logits.new_zeros(()))
    ce = F.cross_entropy(logits, y)
    return ce + cfg.gamma * reg, ce, reg, logits


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, cfg: RunConfig, x: torch.Tensor,
               y: torch.Tensor, gen: torch.Generator, warm: dict[int, torch.Tensor] | None = None,
               forward: Callable[..., Any] | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimizer step on the batch (x, y): loss, backward, update. Returns (loss, ce, reg, logits).

    ``warm`` holds the Lanczos warm-start vectors of R_J across steps (used if ``cfg.jacobian_warm``). The unit
    that ``train`` repeats and that ``benchmarks/run.py`` times; no host-device sync inside.
    """
    loss, ce, reg, logits = _loss(model, cfg, x, y, gen, warm, forward)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss, ce, reg, logits


def train(cfg: RunConfig, resume: dict[str, Any] | None = None,
          on_epoch: Callable[[dict[str, Any]], None] | None = None) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Train ``cfg`` and return (model on CPU, per-epoch history).

    History entries: epoch, loss, ce, reg (means over the epoch), train_acc, test_acc (on ``test_subset``),
    seconds, lr, and for ConvNODEs weight_reg, certified_channels, certified_rate (per layer).
    """
    device = resolve_device(cfg.device)
    model = build_model(cfg).to(device)
    project(model, cfg.op_norm, cfg.flow_norm)  # no-op unless the config bounds operator norms
    optimizer = make_optimizer(model, cfg)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=cfg.lr_decay)
    history: list[dict[str, Any]] = []
    warm: dict[int, torch.Tensor] = {}
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        schedule.load_state_dict(resume["schedule"])
        history = list(resume["history"])
        warm = {k: v.to(device) for k, v in resume.get("jacobian_warm", {}).items()}
    x_train, y_train = data.load(cfg.dataset, "train", cfg.train_subset)
    x_test, y_test = data.load(cfg.dataset, "test", cfg.test_subset)
    x_train, y_train = x_train.to(device), y_train.to(device)
    fast = compiled(model, cfg)
    for epoch in range(len(history), cfg.epochs):
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        order = torch.randperm(len(x_train), generator=gen).to(device)
        batches = list(order.split(cfg.batch_size))
        model.train()
        sums = {"loss": 0.0, "ce": 0.0, "reg": 0.0, "correct": 0.0}
        start = time.perf_counter()
        bar = tqdm(batches, desc=f"{cfg.label()} epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=None)
        for step, idx in enumerate(bar):
            x, y = x_train[idx], y_train[idx]
            if cfg.adv_eps:  # adversarial training: the batch replaced by its FGSM-RS images (Wong et al.)
                x = fgsm_rs(model, x, y, cfg.adv_eps, cfg.adv_step * cfg.adv_eps, gen)
                model.train()
            # a short last batch runs eagerly: the same math, without compiling a second graph for its shape
            forward = fast if len(idx) == cfg.batch_size else model
            loss, ce, reg, logits = train_step(model, optimizer, cfg, x, y, gen, warm, forward)
            if cfg.op_norm or cfg.flow_norm:
                project(model, cfg.op_norm, cfg.flow_norm)
            if not torch.isfinite(loss):
                raise TrainingError(f"{cfg.label()}: loss became {loss.item()} at epoch {epoch + 1}, step {step + 1};"
                                    f" lower lr (now {cfg.lr}) or gamma (now {cfg.gamma})")
            sums["loss"] += loss.item() * len(idx)
            sums["ce"] += ce.item() * len(idx)
            sums["reg"] += reg.item() * len(idx)
            sums["correct"] += (logits.argmax(1) == y).sum().item()
        lr = optimizer.param_groups[0]["lr"]
        schedule.step()
        seconds = time.perf_counter() - start
        n = len(x_train)
        record = {"epoch": epoch + 1, "loss": sums["loss"] / n, "ce": sums["ce"] / n, "reg": sums["reg"] / n,
                  "train_acc": sums["correct"] / n, "test_acc": accuracy(model, x_test, y_test),
                  "seconds": seconds, "lr": lr, **contraction_report(model, cfg), **adversarial_report(model, cfg)}
        history.append(record)
        if on_epoch is not None:
            on_epoch({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "schedule": schedule.state_dict(), "history": history,
                      "jacobian_warm": {k: v.cpu() for k, v in warm.items()}})
    return model.cpu(), history


def interleaved_times(steps: dict[str, Callable[[int], Any]], rounds: int, warmup: int = 1,
                      cuda: bool = False) -> dict[str, list[float]]:
    """Seconds per call of each ``steps[name](round)``, called round-robin so that background load affects
    each alike; the first ``warmup`` rounds are not counted. ``cuda`` synchronizes around every call."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(warmup + rounds):
        for name, step in steps.items():
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            step(r)
            if cuda:
                torch.cuda.synchronize()
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def catastrophic_overfitting(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Catastrophic overfitting of adversarial training (Wong et al.) in one run's history: PGD accuracy at the
    training eps collapsing (below half its best earlier value, and below 0.1) while FGSM accuracy rises over
    the same epochs. Returns the last epoch's FGSM and PGD accuracy, their best, and ``collapsed``."""
    fgsm = [r["adv_fgsm_acc"] for r in history]
    pgd = [r["adv_pgd_acc"] for r in history]
    best = max(pgd)
    collapsed = bool(pgd[-1] < min(0.5 * best, 0.1) and fgsm[-1] >= fgsm[pgd.index(best)])
    return {"fgsm": fgsm[-1], "pgd": pgd[-1], "best pgd": best, "collapsed": collapsed}
