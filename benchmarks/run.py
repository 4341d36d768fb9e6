"""Cost of training and attacking CNODEs: one table, one JSON (issue 6; book chapter 5 reads the JSON).

    python benchmarks/run.py                  # CPU, 2 threads, writes benchmarks/results/cpu.json
    python benchmarks/run.py --device cuda    # the same on a GPU, plus one paper-profile epoch per regularizer
    python benchmarks/run.py --quick --out /tmp/b.json   # seconds: tiny settings, for tests only

What is measured (all on one machine, in one run):
1. train steps (forward, regularizer, backward, Adam) on one MNIST batch of 128, interleaved round-robin so
   load drift hits every variant alike; median over ``--rounds`` after warm-up. Variants: a hand-written
   PyTorch loop (the reference below), cnode's vanilla CNODE, the same through torchdiffeq ``odeint``, the
   weight regularizer, the Jacobian regularizer at several Lanczos iteration counts and sampling settings,
   and the CNN baseline. Memory per variant: peak resident memory above setup in a fresh process (CPU) or
   peak allocated GPU memory, and the bytes autograd saves for the backward pass.
2. lambda_max estimates against dense eigenvalues (float64 ``eigvalsh`` of the 6272 x 6272 symmetric
   Jacobian) of trained models from the results store, at several iteration counts.
3. PGD-20 (eps 0.1, random start, 1 restart, early stop) on 1000 MNIST test images: images per second.
Ratios are the result; absolute times belong to the machine recorded in the JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median, quantiles
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnode import data, regularizers, store
from cnode.config import RunConfig
from cnode.contraction import sym_jacobian_dense, sym_jacobian_lambda_max
from cnode.paths import atomic_file, repo_root
from cnode.perturbations import pgd
from cnode.train import build_model, interleaved_times, resolve_device, train_step

HERE = Path(__file__).resolve().parent


class Reference(nn.Module):
    """The hand-written CNODE a PyTorch user would type: conv per step, Euler update, linear head."""

    def __init__(self, channels: int = 8, steps: int = 10, T: float = 0.1, a: float = 0.1, b: float = 1.0) -> None:
        super().__init__()
        self.a, self.b, self.h = a, b, T / steps
        self.inp = nn.Conv2d(1, channels, 3, padding=1)
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(steps))
        self.head = nn.Linear(channels * 28 * 28, 10)

    def act(self, z: torch.Tensor) -> torch.Tensor:
        return self.a * z + (self.b - self.a) * F.softplus(z)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        x = self.act(self.inp(u))
        for conv in self.convs:
            x = x + self.h * self.act(conv(x))
        return self.head(x.flatten(1))


#: name -> (what it is, RunConfig overrides or None for a special variant). Profile "cpu": the paper's
#: architecture and batch size (the "paper" profile differs only in data size and epochs).
VARIANTS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "reference": ("hand-written PyTorch loop (plain softplus, x + h f)", None),
    "vanilla": ("cnode ConvNODE, no regularizer", dict(regularizer="none")),
    "odeint": ("cnode ConvNODE through torchdiffeq odeint(method='euler')", None),
    "weight": ("weight regularizer R_W", dict(regularizer="weight")),
    "jacobian": ("Jacobian regularizer R_J, profile default", dict(regularizer="jacobian")),
    "jacobian-cold": ("R_J, Lanczos from a random start every batch",
                      dict(regularizer="jacobian", jacobian_warm=False)),
    "jacobian-it10": ("R_J, 10 Lanczos products", dict(regularizer="jacobian", jacobian_iters=10)),
    "jacobian-it30": ("R_J, 30 Lanczos products", dict(regularizer="jacobian", jacobian_iters=30)),
    "jacobian-it120": ("R_J, 120 Lanczos products", dict(regularizer="jacobian", jacobian_iters=120)),
    "jacobian-old": ("R_J as committed before: 32 images, all 10 steps, 10 products, random start",
                     dict(regularizer="jacobian", jacobian_iters=10, jacobian_samples=32, jacobian_steps=None,
                          jacobian_warm=False)),
    "jacobian-full": ("R_J, every image of the batch at all 10 steps, 60 products",
                      dict(regularizer="jacobian", jacobian_samples=None, jacobian_steps=None)),
    "cnn": ("CNN baseline", dict(model="cnn")),
}


def _config(overrides: dict[str, Any], device: str) -> RunConfig:
    return RunConfig.from_profile("cpu", dataset="mnist", rho=1.0, device=device, **overrides)


def make_step(name: str, device: torch.device, batch: tuple[torch.Tensor, torch.Tensor]) -> Callable[[int], Any]:
    """A closure doing one training step of variant ``name`` on ``batch`` (round number -> loss)."""
    what, overrides = VARIANTS[name]
    x, y = batch
    if overrides is not None:
        cfg = _config(overrides, device.type)
        model = build_model(cfg).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        warm: dict[int, torch.Tensor] = {}
        return lambda r: train_step(model, opt, cfg, x, y, torch.Generator().manual_seed(r), warm)[0]
    torch.manual_seed(0)
    model = Reference().to(device) if name == "reference" else build_model(_config({}, device.type)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=5e-2)

    def step(r: int) -> torch.Tensor:
        logits = model(x) if name == "reference" else model(x, odeint_method="euler")
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss
    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _batch(device: torch.device, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = data.load("mnist", "train", size)
    return x.to(device), y.to(device)


def time_steps(names: list[str], device: torch.device, rounds: int, warmup: int,
               batch_size: int) -> dict[str, list[float]]:
    """Milliseconds per step of each variant, interleaved round-robin on the same batch."""
    batch = _batch(device, batch_size)
    steps = {name: make_step(name, device, batch) for name in names}
    times = interleaved_times(steps, rounds, warmup, cuda=device.type == "cuda")
    return {name: [1000 * t for t in ts] for name, ts in times.items()}


def saved_megabytes(name: str, device: torch.device, batch_size: int) -> float:
    """Megabytes autograd keeps for the backward pass of one step (distinct storages of saved tensors)."""
    step = make_step(name, device, _batch(device, batch_size))
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step(0)
    return sum(storages.values()) / 2**20


def peak_megabytes(name: str, device: torch.device, batch_size: int) -> float:
    """Peak memory of 3 steps above the state after setup, in this (fresh) process."""
    step = make_step(name, device, _batch(device, batch_size))
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        for r in range(3):
            step(r)
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    base = _reset_peak_rss()
    for r in range(3):
        step(r)
    return (_peak_kib() - base) / 1024


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":"))


def _peak_kib() -> int:
    """Resident high-water mark in KiB (Linux); ``ru_maxrss`` elsewhere."""
    try:
        return _status_kib("VmHWM")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak_rss() -> int:
    """Reset the kernel's resident high-water mark (Linux ``clear_refs`` 5) and return the current RSS in KiB;
    where that is impossible, return the high-water mark so far (the peak then includes setup)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return _status_kib("VmRSS")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_in_child(name: str, device: torch.device, threads: int, batch_size: int) -> float:
    """``peak_megabytes`` in a fresh interpreter, so earlier variants do not raise the high-water mark."""
    out = subprocess.run([sys.executable, __file__, "--child", name, "--device", device.type,
                          "--threads", str(threads), "--batch", str(batch_size)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


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


def pgd_rates(models: dict[str, nn.Module], device: torch.device, n: int, steps: int) -> list[dict[str, Any]]:
    """PGD (eps 0.1 on [0, 1] pixels, step 2.5 eps / steps, random start, 1 restart) on n test images."""
    x, y = (t.to(device) for t in data.load("mnist", "test", n))
    rows = []
    for name, model in models.items():
        gen = torch.Generator().manual_seed(0)
        _sync(device)
        start = time.perf_counter()
        adv = torch.cat([pgd(model, x[i:i + 500], y[i:i + 500], 0.1, steps, 2.5 * 0.1 / steps, generator=gen)
                         for i in range(0, n, 500)])
        _sync(device)
        seconds = time.perf_counter() - start
        with torch.no_grad():
            robust = (model(adv).argmax(1) == y).float().mean().item()
        rows.append({"model": name, "images": n, "pgd_steps": steps, "eps": 0.1, "seconds": seconds,
                     "images_per_s": n / seconds, "robust_acc": robust})
    return rows


def paper_epochs(device: torch.device) -> list[dict[str, Any]]:
    """Wall time of one full ``paper``-profile epoch (60000 images, batch 128) per regularizer (GPU only)."""
    x_all, y_all = (t.to(device) for t in data.load("mnist", "train"))
    rows = []
    for reg in ("none", "weight", "jacobian"):
        cfg = RunConfig.from_profile("paper", regularizer=reg, device=device.type)
        model = build_model(cfg).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        gen = torch.Generator().manual_seed(0)
        order = torch.randperm(len(x_all), generator=gen).to(device)
        _sync(device)
        start = time.perf_counter()
        for idx in order.split(cfg.batch_size):
            train_step(model, opt, cfg, x_all[idx], y_all[idx], gen)
        _sync(device)
        rows.append({"regularizer": reg, "seconds": time.perf_counter() - start,
                     "steps": len(order.split(cfg.batch_size))})
    return rows


def machine(device: torch.device, threads: int) -> dict[str, Any]:
    """Where the numbers come from (no host names or paths)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo_root(), capture_output=True,
                            text=True).stdout.strip() or None
    return {"device": device.type, "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
            "cpu": cpu, "cores": os.cpu_count(), "threads": threads, "torch": torch.__version__,
            "python": platform.python_version(), "git_commit": commit,
            "date": datetime.date.today().isoformat()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    names = list(VARIANTS)
    rounds, warmup = (2, 1) if args.quick else (args.rounds, 3)
    bsz = args.batch
    print(f"timing {len(names)} step variants, {rounds} rounds ...", file=sys.stderr)
    times = time_steps(names, device, rounds, warmup, bsz)
    vanilla = median(times["vanilla"])
    quartiles = {name: quantiles(ts, n=4) for name, ts in times.items()}
    steps = []
    for name in names:
        cfg = _config(VARIANTS[name][1] or {}, device.type)
        jac = cfg.regularizer == "jacobian"
        steps.append({"name": name, "what": VARIANTS[name][0], "regularizer": cfg.regularizer,
                      "iters": cfg.jacobian_iters if jac else None, "samples": cfg.jacobian_samples if jac else None,
                      "solver_steps": cfg.jacobian_steps if jac else None, "median_ms": median(times[name]),
                      "q25_ms": quartiles[name][0], "q75_ms": quartiles[name][2],
                      "ratio": median(times[name]) / vanilla, "saved_mb": saved_megabytes(name, device, bsz)})
    print("peak memory per variant (fresh processes) ...", file=sys.stderr)
    for row in steps:
        row["peak_mb"] = (peak_in_child(row["name"], device, args.threads, bsz)
                          if not args.quick or row["name"] == "vanilla" else None)
    models = stored_models(device, args.quick)
    print("lambda_max estimates against dense eigenvalues ...", file=sys.stderr)
    iters = [5, 10, 20, 40, 60, 80, 120] if not args.quick else [5, 60]
    default_jac = _config({"regularizer": "jacobian"}, "cpu").jacobian_iters
    estimates = estimate_errors(models, iters, default_jac, args.quick)
    print("PGD throughput ...", file=sys.stderr)
    attacks = pgd_rates(models, device, 64 if args.quick else 1000, 2 if args.quick else 20)
    epochs = paper_epochs(device) if device.type == "cuda" and not args.quick else []
    by = {row["name"]: row for row in steps}
    at_default = [r for r in estimates if r["model"] == "jacobian" and r["iters"] == default_jac]
    jac_rows = [r for r in at_default if r["start"] == "warm"]
    cold_rows = [r for r in at_default if r["start"] == "random"]
    targets = {
        "vanilla_over_reference": by["vanilla"]["median_ms"] / by["reference"]["median_ms"],
        "odeint_over_vanilla": by["odeint"]["ratio"],
        "weight_ratio": by["weight"]["ratio"],
        "jacobian_ratio": by["jacobian"]["ratio"],
        "jacobian_max_rel_error": max(r["rel_error"] for r in jac_rows),
        "jacobian_max_abs_error": max(r["abs_error"] for r in jac_rows),
        "jacobian_max_scaled_error": max(r["scaled_error"] for r in jac_rows),
        "jacobian_pairs_within_5pct": sum(r["rel_error"] <= 0.05 for r in jac_rows),
        "jacobian_pairs": len(jac_rows),
        "jacobian_cold_max_rel_error": max(r["rel_error"] for r in cold_rows),
    }
    return {"machine": machine(device, args.threads),
            "settings": {"batch_size": bsz, "rounds": rounds, "warmup": warmup, "dataset": "mnist",
                         "profile": "cpu", "quick": args.quick, "estimate_iters": iters,
                         "jacobian_default_iters": default_jac},
            "targets": targets, "steps": steps, "estimates": estimates, "pgd": attacks, "epochs": epochs}


def table(result: dict[str, Any]) -> str:
    """The printed summary: one row per step variant, then the targets."""
    lines = [f"{'variant':<16}{'ms/step':>9}{'IQR':>15}{'x vanilla':>11}{'saved MB':>10}{'peak MB':>9}  what"]
    for r in result["steps"]:
        peak = f"{r['peak_mb']:.0f}" if r["peak_mb"] is not None else "-"
        iqr = f"{r['q25_ms']:.0f}-{r['q75_ms']:.0f}"
        lines.append(f"{r['name']:<16}{r['median_ms']:>9.1f}{iqr:>15}{r['ratio']:>11.2f}{r['saved_mb']:>10.0f}"
                     f"{peak:>9}  {r['what']}")
    t = result["targets"]
    lines += ["", f"1. vanilla / hand-written reference: {t['vanilla_over_reference']:.3f} (target <= 1); "
                  f"odeint / vanilla: {t['odeint_over_vanilla']:.2f}",
              f"2. weight regularizer: {t['weight_ratio']:.3f} x vanilla (target <= 1.05)",
              f"3. Jacobian regularizer: {t['jacobian_ratio']:.2f} x vanilla (target <= 1.5); lambda_max of the trained"
              f" Jacobian model at the default iterations within 5% of dense in {t['jacobian_pairs_within_5pct']} of"
              f" {t['jacobian_pairs']} pairs; largest error {t['jacobian_max_rel_error']:.4f} relative,"
              f" {t['jacobian_max_abs_error']:.2g} absolute, {t['jacobian_max_scaled_error']:.2g} of the spectral norm"]
    for r in result["pgd"]:
        lines.append(f"4. PGD-{r['pgd_steps']} on {r['images']} images, {r['model']}: {r['images_per_s']:.0f} images/s"
                     f" (robust accuracy {r['robust_acc']:.3f})")
    for r in result["epochs"]:
        lines.append(f"5. paper-profile epoch, {r['regularizer']}: {r['seconds']:.1f} s")
    m = result["machine"]
    lines.append(f"machine: {m['device_name']}, {m['threads']} threads, torch {m['torch']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=25, help="measured steps per variant (>= 20)")
    parser.add_argument("--batch", type=int, default=None, help="training batch (default 128; --quick: 16)")
    parser.add_argument("--quick", action="store_true", help="tiny settings for tests; not for reporting")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/<device>.json)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    args.batch = args.batch or (16 if args.quick else 128)
    if args.child:
        torch.set_num_threads(args.threads)
        print(peak_megabytes(args.child, device, args.batch))
        return
    if not args.quick and args.rounds < 20:
        raise SystemExit(f"error: --rounds must be >= 20 for reported numbers, got {args.rounds}")
    result = run(args)
    out = args.out or HERE / "results" / f"{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as fh:
        fh.write((json.dumps(result, indent=1) + "\n").encode())
    print(table(result))
    print(f"wrote {out.relative_to(repo_root()) if out.is_relative_to(repo_root()) else out}")


if __name__ == "__main__":
    main()
