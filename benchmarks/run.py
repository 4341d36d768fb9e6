"""Cost of training and attacking CNODEs: one table, one JSON (issues 6 and 11; book chapter 5 reads the JSON).

    python benchmarks/run.py                  # CPU, 2 threads: benchmarks/results/<this machine>.json
    python benchmarks/run.py --device cuda    # the same on a GPU, plus one paper-profile epoch per regularizer
    python benchmarks/run.py --quick --out /tmp/b.json   # seconds: tiny settings, eager, for tests only

What is measured (all on one machine, in one run):
1. train steps (forward, regularizer, backward, Adam) on one MNIST batch of 128, interleaved round-robin so
   load drift hits every variant alike; median and quartiles over ``--rounds`` after warm-up. Variants: the
   frozen hand-written loop (``reference.py``), cnode's vanilla CNODE as the cpu and paper profiles train it
   (compiled) and eagerly (the smoke profile), in bfloat16, through torchdiffeq ``odeint``, the weight
   regularizer, the Jacobian regularizer at several Lanczos settings, and the CNN baseline. The first call of
   each variant is timed apart: it includes ``torch.compile``'s compilation, from an empty inductor cache.
   Memory per variant: peak resident memory above setup in a fresh process (CPU) or peak allocated GPU memory,
   and the bytes autograd saves for the backward pass; FLOPs of one step (``FlopCounterMode``).
2. what bounds a step: this machine's copy bandwidth and float32 matmul rate.
3. lambda_max estimates against dense eigenvalues (float64 ``eigvalsh`` of the 6272 x 6272 symmetric
   Jacobian) of trained models from the results store, at several iteration counts.
4. PGD-20 (eps 0.1, random start, 1 restart, early stop) on 1000 MNIST test images: images per second of
   cnode's attack and of the pre-issue-11 loop (``reference.pgd_reference``) on the same models and images,
   and whether every image has the same outcome.
Ratios are the result; absolute times belong to the machine recorded in the JSON. The JSON keeps the summary
of the last ``--keep`` runs on this machine (``runs``), so the spread between runs is on record; each machine
has a file of its own (``machine.result_name``), so that runs of two machines are never pooled.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median, quantiles
from typing import Any

import memory
import torch
import torch.nn.functional as F
from estimates import _config, estimate_errors, stored_models
from machine import _sync, machine, machine_rates
from reference import Reference, pgd_reference, plain_copy
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnode.core import data
from cnode.core.config import RunConfig
from cnode.core.paths import atomic_file, repo_root
from cnode.core.perturbations import pgd
from cnode.core.runtime import machine_label
from cnode.core.train import build_model, compiled, interleaved_times, resolve_device, train_step
from cnode.runs.benchmark import result_name

HERE = Path(__file__).resolve().parent


#: name -> (what it is, RunConfig overrides or None for a special variant). Profile "cpu": the paper's
#: architecture and batch size (the "paper" profile differs only in data size and epochs); it compiles the
#: training forward pass, so every variant with overrides does unless it says ``compile=False``.
VARIANTS: dict[str, tuple[str, dict[str, Any] | None]] = {
    "reference": ("hand-written PyTorch loop (plain softplus, x + h f), eager", None),
    "vanilla": ("cnode ConvNODE, no regularizer, compiled (cpu and paper profiles)", dict(regularizer="none")),
    "vanilla-eager": ("the same, eager (smoke profile)", dict(regularizer="none", compile=False)),
    "vanilla-bf16": ("the same, compiled, bfloat16 autocast (opt-in precision)",
                     dict(regularizer="none", precision="bfloat16")),
    "odeint": ("cnode ConvNODE through torchdiffeq odeint(method='euler'), eager", None),
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
    "cnn": ("CNN baseline, compiled", dict(model="cnn")),
}

#: --quick: everything eager, so that tests never wait for a compiler
QUICK: dict[str, Any] = {"compile": False}


def make_step(name: str, device: torch.device, batch: tuple[torch.Tensor, torch.Tensor],
              quick: bool = False) -> Callable[[int], Any]:
    """A closure doing one training step of variant ``name`` on ``batch`` (round number -> loss)."""
    what, overrides = VARIANTS[name]
    x, y = batch
    if overrides is not None:
        cfg = _config({**overrides, **(QUICK if quick else {})}, device.type)
        model = build_model(cfg).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        forward = compiled(model, cfg)
        warm: dict[int, torch.Tensor] = {}
        return lambda r: train_step(model, opt, cfg, x, y, torch.Generator().manual_seed(r), warm, forward)[0]
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


def _batch(device: torch.device, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = data.load("mnist", "train", size)
    return x.to(device), y.to(device)


def time_steps(names: list[str], device: torch.device, rounds: int, warmup: int, batch_size: int,
               quick: bool) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Milliseconds per step of each variant, interleaved round-robin on the same batch, and the seconds of
    each variant's first call (compilation included), timed before the rounds."""
    batch = _batch(device, batch_size)
    steps = {name: make_step(name, device, batch, quick) for name in names}
    first = {}
    for name, step in steps.items():
        _sync(device)
        start = time.perf_counter()
        step(0)
        _sync(device)
        first[name] = time.perf_counter() - start
    times = interleaved_times(steps, rounds, warmup, cuda=device.type == "cuda")
    return {name: [1000 * t for t in ts] for name, ts in times.items()}, first


def step_flops(name: str, device: torch.device, batch_size: int) -> float:
    """Floating-point operations of one eager step of variant ``name`` (``FlopCounterMode``: convolutions and
    matrix products; elementwise work is not counted)."""
    step = make_step(name, device, _batch(device, batch_size), quick=True)
    with FlopCounterMode(display=False) as counter:
        step(0)
    return float(counter.get_total_flops())


def saved_megabytes(name: str, device: torch.device, batch_size: int, quick: bool) -> float:
    """Megabytes autograd keeps for the backward pass of one step of variant ``name``."""
    return memory.saved_megabytes(make_step(name, device, _batch(device, batch_size), quick))


def peak_in_child(name: str, device: torch.device, threads: int, batch_size: int, quick: bool) -> float:
    """``peak_megabytes`` in a fresh interpreter, so earlier variants do not raise the high-water mark."""
    out = subprocess.run([sys.executable, __file__, "--child", name, "--device", device.type,
                          "--threads", str(threads), "--batch", str(batch_size), *(["--quick"] if quick else [])],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def pgd_rates(models: dict[str, nn.Module], device: torch.device, n: int, steps: int) -> list[dict[str, Any]]:
    """PGD (eps 0.1 on [0, 1] pixels, step 2.5 eps / steps, random start, 1 restart, early stop) on n test
    images in chunks of 500, by cnode's ``pgd`` ("new") and by the pre-issue-11 loop on a plain-conv copy
    ("old"), alternating per model; the outcome of every image (classified right after the attack) compared."""
    x, y = (t.to(device) for t in data.load("mnist", "test", n))
    rows = []
    for name, model in models.items():
        paths = {"old": (plain_copy(model), pgd_reference), "new": (model, pgd)}
        outcome = {}
        for path, (net, attack) in paths.items():
            gen = torch.Generator().manual_seed(0)
            _sync(device)
            start = time.perf_counter()
            adv = torch.cat([attack(net, x[i:i + 500], y[i:i + 500], 0.1, steps, 2.5 * 0.1 / steps, generator=gen)
                             for i in range(0, n, 500)])
            _sync(device)
            seconds = time.perf_counter() - start
            with torch.no_grad():
                outcome[path] = model(adv).argmax(1) == y
            rows.append({"model": name, "path": path, "images": n, "pgd_steps": steps, "eps": 0.1,
                         "seconds": seconds, "images_per_s": n / seconds,
                         "robust_acc": outcome[path].float().mean().item()})
        rows[-1]["speedup"] = rows[-2]["seconds"] / rows[-1]["seconds"]
        rows[-1]["same_outcomes"] = bool((outcome["old"] == outcome["new"]).all())
        rows[-1]["differing_images"] = int((outcome["old"] != outcome["new"]).sum())
    return rows


def paper_epochs(device: torch.device) -> list[dict[str, Any]]:
    """Wall time of one full ``paper``-profile epoch (60000 images, batch 128) per regularizer (GPU only)."""
    x_all, y_all = (t.to(device) for t in data.load("mnist", "train"))
    rows = []
    for reg in ("none", "weight", "jacobian"):
        cfg = RunConfig.from_profile("paper", regularizer=reg, device=device.type)
        model = build_model(cfg).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        forward, warm = compiled(model, cfg), {}
        gen = torch.Generator().manual_seed(0)
        order = torch.randperm(len(x_all), generator=gen).to(device)
        train_step(model, opt, cfg, x_all[order[:cfg.batch_size]], y_all[order[:cfg.batch_size]], gen, warm, forward)
        _sync(device)  # compiled and warmed up: the epoch below is the steady state
        start = time.perf_counter()
        for idx in order.split(cfg.batch_size):
            full = len(idx) == cfg.batch_size
            train_step(model, opt, cfg, x_all[idx], y_all[idx], gen, warm, forward if full else model)
        _sync(device)
        rows.append({"regularizer": reg, "seconds": time.perf_counter() - start,
                     "steps": len(order.split(cfg.batch_size))})
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    names = list(VARIANTS)
    rounds, warmup = (2, 1) if args.quick else (args.rounds, 3)
    bsz = args.batch
    print(f"timing {len(names)} step variants, {rounds} rounds ...", file=sys.stderr)
    times, first = time_steps(names, device, rounds, warmup, bsz, args.quick)
    vanilla, vanilla_q75 = median(times["vanilla"]), quantiles(times["vanilla"], n=4)[2]
    steps = []
    for name in names:
        cfg = _config(VARIANTS[name][1] or {}, device.type)
        jac = cfg.regularizer == "jacobian"
        q25, _, q75 = quantiles(times[name], n=4)
        per_round = quantiles([t / v for t, v in zip(times[name], times["vanilla"], strict=True)], n=4)
        steps.append({"name": name, "what": VARIANTS[name][0], "regularizer": cfg.regularizer,
                      "compiled": VARIANTS[name][1] is not None and cfg.compile and not args.quick,
                      "iters": cfg.jacobian_iters if jac else None, "samples": cfg.jacobian_samples if jac else None,
                      "solver_steps": cfg.jacobian_steps if jac else None, "median_ms": median(times[name]),
                      "q25_ms": q25, "q75_ms": q75, "ratio": median(times[name]) / vanilla,
                      "q75_ratio": q75 / vanilla_q75, "round_ratio_q25": per_round[0], "round_ratio_q75": per_round[2],
                      "first_call_s": first[name], "times_ms": times[name],
                      "saved_mb": saved_megabytes(name, device, bsz, args.quick)})
    print("peak memory per variant (fresh processes) ...", file=sys.stderr)
    for row in steps:
        row["peak_mb"] = (peak_in_child(row["name"], device, args.threads, bsz, args.quick)
                          if not args.quick or row["name"] == "vanilla" else None)
    bounds = {**machine_rates(device, args.quick), "vanilla_gflop": step_flops("vanilla", device, bsz) / 1e9}
    models = stored_models(device, args.quick)
    print("lambda_max estimates against dense eigenvalues ...", file=sys.stderr)
    iters = [5, 10, 20, 40, 60, 80, 120] if not args.quick else [5, 60]
    default_jac = _config({"regularizer": "jacobian"}, "cpu").jacobian_iters
    estimates = estimate_errors(models, iters, default_jac, args.quick)
    print("PGD throughput, old and new path ...", file=sys.stderr)
    attacks = pgd_rates(models, device, 64 if args.quick else 1000, 2 if args.quick else 20)
    epochs = paper_epochs(device) if device.type == "cuda" and not args.quick else []
    by = {row["name"]: row for row in steps}
    at_default = [r for r in estimates if r["model"] == "jacobian" and r["iters"] == default_jac]
    jac_rows = [r for r in at_default if r["start"] == "warm"]
    cold_rows = [r for r in at_default if r["start"] == "random"]
    new_pgd = [r for r in attacks if r["path"] == "new"]
    targets = {
        "speedup_over_reference": by["reference"]["median_ms"] / vanilla,
        "speedup_over_reference_q75": by["reference"]["q75_ms"] / vanilla_q75,
        "eager_over_vanilla": by["vanilla-eager"]["ratio"],
        "bf16_over_vanilla": by["vanilla-bf16"]["ratio"],
        "odeint_over_vanilla": by["odeint"]["ratio"],
        "weight_ratio": by["weight"]["ratio"], "weight_q75_ratio": by["weight"]["q75_ratio"],
        "jacobian_ratio": by["jacobian"]["ratio"], "jacobian_q75_ratio": by["jacobian"]["q75_ratio"],
        "jacobian_max_rel_error": max(r["rel_error"] for r in jac_rows),
        "jacobian_max_abs_error": max(r["abs_error"] for r in jac_rows),
        "jacobian_max_scaled_error": max(r["scaled_error"] for r in jac_rows),
        "jacobian_pairs_within_5pct": sum(r["rel_error"] <= 0.05 for r in jac_rows),
        "jacobian_pairs": len(jac_rows),
        "jacobian_cold_max_rel_error": max(r["rel_error"] for r in cold_rows),
        "pgd_min_speedup": min(r["speedup"] for r in new_pgd),
        "pgd_same_outcomes": all(r["same_outcomes"] for r in new_pgd),
    }
    return {"machine": machine(device, args.threads),
            "settings": {"batch_size": bsz, "rounds": rounds, "warmup": warmup, "dataset": "mnist",
                         "profile": "cpu", "quick": args.quick, "estimate_iters": iters,
                         "jacobian_default_iters": default_jac},
            "targets": targets, "bounds": bounds, "steps": steps, "estimates": estimates, "pgd": attacks,
            "epochs": epochs}


def summary(result: dict[str, Any]) -> dict[str, Any]:
    """What ``runs`` keeps of one run: where and when, per-variant medians, quartiles and ratios, targets."""
    keep = ("median_ms", "q25_ms", "q75_ms", "ratio", "q75_ratio", "round_ratio_q25", "round_ratio_q75",
            "first_call_s")
    return {"machine": result["machine"], "targets": result["targets"],
            "steps": {r["name"]: {k: r[k] for k in keep} for r in result["steps"]},
            "pgd": {f"{r['model']}-{r['path']}": r["images_per_s"] for r in result["pgd"]}}


def with_history(result: dict[str, Any], out: Path, keep: int) -> dict[str, Any]:
    """``result`` plus ``runs``: the summaries of up to ``keep - 1`` earlier runs found in ``out`` on the same
    machine (``runtime.machine_label``: another machine's runs are never pooled with these), and of this one, oldest
    first; a quick run keeps no history."""
    earlier: list[dict[str, Any]] = []
    if out.exists() and not result["settings"]["quick"]:
        try:
            old = json.loads(out.read_text())
            mine = machine_label(result["machine"])
            earlier = [r for r in old.get("runs", []) if machine_label(r["machine"]) == mine]
        except (json.JSONDecodeError, KeyError, TypeError):
            print(f"warning: {out} was not a benchmark result; starting its run history afresh", file=sys.stderr)
    earlier = earlier[len(earlier) - keep + 1:] if keep > 1 else []
    return {**result, "runs": [*earlier, summary(result)]}


def table(result: dict[str, Any]) -> str:
    """The printed summary: one row per step variant, then the targets."""
    lines = [f"{'variant':<16}{'ms/step':>9}{'IQR':>15}{'x vanilla':>11}{'q75 x':>7}{'1st s':>7}{'saved MB':>10}"
             f"{'peak MB':>9}  what"]
    for r in result["steps"]:
        peak = f"{r['peak_mb']:.0f}" if r["peak_mb"] is not None else "-"
        iqr = f"{r['q25_ms']:.0f}-{r['q75_ms']:.0f}"
        lines.append(f"{r['name']:<16}{r['median_ms']:>9.1f}{iqr:>15}{r['ratio']:>11.2f}{r['q75_ratio']:>7.2f}"
                     f"{r['first_call_s']:>7.1f}{r['saved_mb']:>10.0f}{peak:>9}  {r['what']}")
    t, b = result["targets"], result["bounds"]
    lines += ["", f"1. vanilla step: {t['speedup_over_reference']:.2f}x as fast as the hand-written loop (q75:"
                  f" {t['speedup_over_reference_q75']:.2f}x; target >= 2); eager {t['eager_over_vanilla']:.2f}x,"
                  f" bfloat16 {t['bf16_over_vanilla']:.2f}x, odeint {t['odeint_over_vanilla']:.2f}x the vanilla time",
              f"2. weight regularizer: {t['weight_ratio']:.3f} x vanilla, q75 {t['weight_q75_ratio']:.3f}"
              f" (target <= 1.05);"
              f" Jacobian regularizer: {t['jacobian_ratio']:.2f} x, q75 {t['jacobian_q75_ratio']:.2f} (target <= 1.5);"
              f" lambda_max of the trained Jacobian model at the default iterations within 5% of dense in"
              f" {t['jacobian_pairs_within_5pct']} of {t['jacobian_pairs']} pairs; largest error"
              f" {t['jacobian_max_rel_error']:.4f} relative, {t['jacobian_max_abs_error']:.2g} absolute,"
              f" {t['jacobian_max_scaled_error']:.2g} of the spectral norm"]
    for r in result["pgd"]:
        extra = (f"; {r['speedup']:.2f}x the old path, {r['differing_images']} images with another outcome"
                 if r["path"] == "new" else "")
        lines.append(f"3. PGD-{r['pgd_steps']} on {r['images']} images, {r['model']}, {r['path']} path:"
                     f" {r['images_per_s']:.0f} images/s (robust accuracy {r['robust_acc']:.3f}){extra}")
    for r in result["epochs"]:
        lines.append(f"5. paper-profile epoch, {r['regularizer']}: {r['seconds']:.1f} s")
    lines.append(f"bounds: copy {b['copy_gb_s']:.1f} GB/s, matmul {b['matmul_gflop_s']:.0f} GFLOP/s, vanilla step"
                 f" {b['vanilla_gflop']:.2f} GFLOP")
    m = result["machine"]
    lines.append(f"machine: {m['device_name']}, {m['threads']} threads, torch {m['torch']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=25, help="measured steps per variant (>= 20)")
    parser.add_argument("--batch", type=int, default=None, help="training batch (default 128; --quick: 16)")
    parser.add_argument("--quick", action="store_true", help="tiny settings, eager, for tests; not for reporting")
    parser.add_argument("--keep", type=int, default=3, help="runs whose summaries the JSON keeps (default 3)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default benchmarks/results/<machine>.json)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    args.batch = args.batch or (16 if args.quick else 128)
    if args.child:
        torch.set_num_threads(args.threads)
        print(memory.peak_megabytes(make_step(args.child, device, _batch(device, args.batch), args.quick), device))
        return
    if not args.quick and args.rounds < 20:
        raise SystemExit(f"error: --rounds must be >= 20 for reported numbers, got {args.rounds}")
    if args.keep < 1:
        raise SystemExit(f"error: --keep must be >= 1, got {args.keep}")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache  # first calls compile from scratch, as on a new machine
        measured = run(args)
        out = args.out or HERE / "results" / result_name(measured["machine"])
        result = with_history(measured, out, args.keep)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as fh:
        fh.write((json.dumps(result, indent=1) + "\n").encode())
    print(table(result))
    print(f"wrote {out.relative_to(repo_root()) if out.is_relative_to(repo_root()) else out}")


if __name__ == "__main__":
    main()
