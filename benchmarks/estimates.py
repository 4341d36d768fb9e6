"""The lambda_max estimator against dense eigenvalues, on trained models of the results store (benchmarks/run.py).

Lanczos ``lambda_max`` (float32, as in training) against ``eigvalsh`` (float64) of the 6272 x 6272 symmetric
Jacobian, at trained states, from a random start and from the warm start training would have.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cnode.core import data, regularizers
from cnode.core.config import RunConfig
from cnode.core.contraction import sym_jacobian_dense, sym_jacobian_lambda_max
from cnode.core.train import build_model
from cnode.runs import store


def _config(overrides: dict[str, Any], device: str) -> RunConfig:
    return RunConfig.from_profile("cpu", dataset="mnist", rho=1.0, device=device, **overrides)


def stored_models(device: torch.device, quick: bool) -> dict[str, nn.Module]:
    """mnist seed-0 models of the cpu profile from the store (untrained ones in quick mode)."""
    cfgs = {"vanilla": _config({}, "cpu"), "weight": _config({"regularizer": "weight"}, "cpu"),
            "jacobian": _config({"regularizer": "jacobian"}, "cpu"), "cnn": _config({"model": "cnn"}, "cpu")}
    models = {}
    for name, cfg in cfgs.items():
        run = None if quick else store.load(cfg)
        if run is None and not quick:
            raise SystemExit(f"error: {cfg.label()} is not in the results store; run `make chapters` first")
        models[name] = (build_model(cfg) if run is None else run.model).to(device).eval()
    return models


def _warm_vector(model: nn.Module, k: int, images: torch.Tensor, iters: int, batches: int, quick: bool) -> torch.Tensor:
    """The warm-start vector of solver step k after ``batches`` earlier batches of 8 training images at fixed
    weights, built exactly as training builds it (``regularizers.warm_lambda_max``)."""
    warm, gen = None, torch.Generator().manual_seed(1)
    for b in range(batches):
        with torch.no_grad():
            _, states = model(images[8 * b:8 * b + 8], return_states=True)
        if quick:
            states = [s[..., :6, :6] for s in states]
        _, warm = regularizers.warm_lambda_max(model.convs[k].weight, model.slope(k, states[k]), iters, warm, gen)
    return warm


def estimate_errors(models: dict[str, nn.Module], iters: list[int], default_iters: int,
                    quick: bool) -> list[dict[str, Any]]:
    """Lanczos lambda_max (float32, as in training) against dense eigvalsh (float64) at trained states, from
    a random start and from the warm start training would have after 8 earlier batches."""
    rows = []
    images = data.load("mnist", "test", 2)[0]
    train_images = data.load("mnist", "train", 64)[0]
    for name in ("vanilla", "weight", "jacobian"):
        model = models[name].cpu()
        with torch.no_grad():
            _, states = model(images, return_states=True)
            for k in ((0,) if quick else (0, model.steps // 2, model.steps - 1)):
                slope = model.slope(k, states[k])
                if quick:
                    slope = slope[..., :6, :6]  # a 6x6 crop keeps the dense check instant
                weight = model.convs[k].weight
                spectrum = torch.linalg.eigvalsh(sym_jacobian_dense(weight.double(), slope.double()))
                warm = _warm_vector(model, k, train_images, default_iters, 8, quick)
                for start in ("random", "warm"):
                    for it in iters:
                        gen = torch.Generator().manual_seed(0)
                        v0 = regularizers.warm_start(warm if start == "warm" else None, slope.shape, gen)
                        est = sym_jacobian_lambda_max(weight, slope, iters=it, v0=v0)
                        for i in range(len(images)):
                            top, bottom, e = spectrum[i, -1].item(), spectrum[i, 0].item(), est[i].item()
                            rows.append({"model": name, "start": start, "image": i, "step": k, "iters": it,
                                         "dense": top, "dense_min": bottom, "estimate": e, "abs_error": abs(e - top),
                                         "rel_error": abs(e - top) / abs(top),
                                         "scaled_error": abs(e - top) / max(abs(top), abs(bottom))})
    return rows
