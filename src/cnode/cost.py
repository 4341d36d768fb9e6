"""The cost ledger of book chapter 5: frames built from the JSON that ``benchmarks/run.py`` writes.

Nothing here times anything: it reads measured numbers and turns them into tables and grid estimates.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from cnode import checks
from cnode.config import RunConfig
from cnode.evaluate import SUITES
from cnode.experiments import robustness_runs, sweep_runs
from cnode.paths import repo_root

TRAIN_IMAGES = 60_000  # the paper profile trains on all MNIST / FashionMNIST training images


def benchmark_dir() -> Path:
    """``benchmarks/results`` of the repository: one JSON per device kind (cpu.json, cuda.json)."""
    return repo_root() / "benchmarks" / "results"


def load_benchmark(path: str | Path) -> dict[str, Any]:
    """The benchmark result at ``path`` (relative to the repository root unless absolute); clear error if absent."""
    path = Path(path)
    path = path if path.is_absolute() else repo_root() / path
    if not path.exists():
        raise FileNotFoundError(f"no benchmark result at {path}; run `make bench` (or python benchmarks/run.py)")
    try:
        result = json.loads(path.read_text())
        result["steps"], result["machine"]  # noqa: B018 - the fields every reader needs
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a benchmark result ({exc}); rerun `make bench`") from exc
    return result


def load_if_present(path: str | Path) -> dict[str, Any] | None:
    """``load_benchmark(path)``, or None when nothing was measured there (e.g. no GPU run yet)."""
    try:
        return load_benchmark(path)
    except FileNotFoundError:
        return None


def machine_line(bench: dict[str, Any]) -> str:
    """'AMD EPYC, 2 cores, 2 threads, torch 2.x, 2026-11-25 (commit abc1234)' for the settings line."""
    m = bench["machine"]
    return (f"{m['device_name']}, {m['cores']} cores, {m['threads']} threads, torch {m['torch']}, "
            f"measured {m['date']} at commit {m['git_commit']}")


def verdict(value: float, limit: float) -> str:
    """'met' when ``value <= limit``, else 'not met: 1.62 > 1.5' (for the chapter's target lines)."""
    return "met" if value <= limit else f"not met: {value:.3g} > {limit:g}"


def step_frame(bench: dict[str, Any], profile: str = "cpu") -> pd.DataFrame:
    """One row per step variant: ms per step (median, IQR), ratio to vanilla, memory, and the epoch time of
    ``profile`` it implies (steps per epoch x median step; the cpu profile has 79 steps, paper 469)."""
    cfg = RunConfig.from_profile(profile)
    per_epoch = math.ceil((cfg.train_subset or TRAIN_IMAGES) / cfg.batch_size)
    rows, batch = [], bench["settings"]["batch_size"]
    for r in bench["steps"]:
        rows.append({"variant": r["name"], "what": r["what"],
                     "Lanczos products": r["iters"], "images": r["samples"] or (batch if r["iters"] else None),
                     "solver steps": r["solver_steps"] or (10 if r["iters"] else None),
                     "ms / step": r["median_ms"], "IQR ms": f"{r['q25_ms']:.0f}-{r['q75_ms']:.0f}",
                     "x vanilla": r["ratio"], f"s / {profile} epoch": r["median_ms"] * per_epoch / 1000,
                     "autograd MB": r["saved_mb"], "peak MB": r["peak_mb"]})
    return pd.DataFrame(rows).set_index("variant")


def estimate_frame(bench: dict[str, Any]) -> pd.DataFrame:
    """Error of the lambda_max estimate per model, start ("random" or "warm", as training has it) and Lanczos
    products over the checked (image, step) pairs:
    relative ``|est - dense| / |dense|`` (median, max), absolute (max), and scaled by the spectral norm of the
    symmetric Jacobian (max; ``|est - dense| / max(|lambda_max|, |lambda_min|)``), with the mean dense value."""
    frame = pd.DataFrame(bench["estimates"])
    return (frame.groupby(["model", "start", "iters"])
            .agg(pairs=("rel_error", "size"), median_error=("rel_error", "median"), max_error=("rel_error", "max"),
                 max_abs_error=("abs_error", "max"), max_scaled_error=("scaled_error", "max"),
                 mean_dense=("dense", "mean"), min_abs_dense=("dense", lambda d: d.abs().min()))
            .reset_index())


def dense_spread(bench: dict[str, Any]) -> pd.DataFrame:
    """Per model and solver step: the dense lambda_max over the checked images, and its relative spread
    ``(max - min) / |mean|`` (small: the top eigenvector does not depend on the image)."""
    frame = pd.DataFrame(bench["estimates"]).drop_duplicates(["model", "image", "step"])
    out = frame.groupby(["model", "step"])["dense"].agg(["mean", "min", "max"])
    out["spread"] = (out["max"] - out["min"]) / out["mean"].abs()
    return out


def pgd_frame(bench: dict[str, Any]) -> pd.DataFrame:
    """PGD throughput per model: images per second, seconds, robust accuracy at eps 0.1."""
    frame = pd.DataFrame(bench["pgd"])
    return frame[["model", "images", "pgd_steps", "eps", "seconds", "images_per_s", "robust_acc"]].set_index("model")


def _variant(cfg: RunConfig) -> str:
    """The benchmark variant a config's training and attack cost are read from."""
    return "cnn" if cfg.model == "cnn" else {"none": "vanilla"}.get(cfg.regularizer, cfg.regularizer)


def _step_ms(bench: dict[str, Any], cfg: RunConfig) -> float:
    return next(r["median_ms"] for r in bench["steps"] if r["name"] == _variant(cfg))


def _pgd_rate(bench: dict[str, Any], cfg: RunConfig) -> float:
    return next(r["images_per_s"] for r in bench["pgd"] if r["model"] == _variant(cfg))


def paper_grid(seeds: list[int], rhos: list[float]) -> list[RunConfig]:
    """Chapters 3 and 4 at the ``paper`` profile on both datasets: every distinct run (CNN included)."""
    runs = robustness_runs("paper", ["mnist", "fashion"], seeds, [1.0]) + sweep_runs(
        "paper", ["mnist", "fashion"], seeds, rhos)
    return list({cfg.key(): cfg for cfg in runs}.values())


def grid_estimate(bench: dict[str, Any], seeds: list[int], rhos: list[float]) -> pd.DataFrame:
    """Estimated hours for the paper grid on the benchmarked machine, per model type.

    Training: epochs x ceil(60000 / 128) steps x the measured median step (the paper profile's batch and
    architecture are those benchmarked). Evaluation: the ``paper`` suite's PGD-20-equivalent attack work per
    image (eps levels x restarts, plus the 2x-steps and margin-loss checks) divided by the measured PGD-20
    rate; early stopping makes that an upper estimate. Noise evaluations are forward passes and ignored.
    """
    checks.positive_int("seeds", len(seeds))
    suite = SUITES["paper"]
    per_image = len(suite.eps) * suite.pgd_restarts * suite.pgd_steps / 20 + 3 * suite.pgd_steps / 20
    images = suite.test_subset or 10_000
    rows = []
    for cfg in paper_grid(seeds, rhos):
        steps = cfg.epochs * math.ceil((cfg.train_subset or TRAIN_IMAGES) / cfg.batch_size)
        rows.append({"model": "cnn" if cfg.model == "cnn" else cfg.regularizer,
                     "train_h": steps * _step_ms(bench, cfg) / 3.6e6,
                     "eval_h": images * per_image / _pgd_rate(bench, cfg) / 3600})
    frame = pd.DataFrame(rows)
    out = frame.groupby("model").agg(runs=("train_h", "size"), train_h=("train_h", "sum"), eval_h=("eval_h", "sum"))
    out.loc["total"] = out.sum()
    out["runs"] = out["runs"].astype(int)
    return out
