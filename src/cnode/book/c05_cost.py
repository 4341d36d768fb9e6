"""The cost ledger of book chapter 5: frames built from the JSON that ``benchmarks/run.py`` writes.

Nothing here times anything: it reads measured numbers and turns them into tables and grid estimates.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from cnode.book.c03_robustness import robustness_runs
from cnode.book.c04_rho_sweep import sweep_runs
from cnode.book.glue import Md
from cnode.core import checks
from cnode.core.config import RunConfig
from cnode.runs.benchmark import epoch_steps, machine_runs, run_hours


def verdict(value: float, limit: float, at_most: bool = True) -> str:
    """'met' when ``value <= limit`` (``at_most``) or ``value >= limit``, else e.g. 'not met: 1.62 > 1.5'."""
    if value <= limit if at_most else value >= limit:
        return "met"
    return f"not met: {value:.3g} {'>' if at_most else '<'} {limit:g}"


def runs_verdict(bench: dict[str, Any], *keys: str) -> str:
    """'met in 2 of 3 runs': in how many kept runs every target in ``keys`` (``TARGETS``) is met at once."""
    runs = machine_runs(bench)
    ok = 0
    for run in runs:
        ok += all(verdict(run["targets"][k], TARGETS[k][1], TARGETS[k][2]) == "met" for k in keys)
    return f"met in {ok} of {len(runs)} runs"


def step_frame(bench: dict[str, Any], profile: str = "cpu") -> pd.DataFrame:
    """One row per step variant: ms per step (median, IQR), ratio to vanilla (medians, and 75th percentiles),
    memory, and the epoch time of ``profile`` it implies (steps per epoch x median step; the cpu profile has
    79 steps, paper 469)."""
    cfg = RunConfig.from_profile(profile)
    per_epoch = epoch_steps(cfg)
    rows, batch = [], bench["settings"]["batch_size"]
    for r in bench["steps"]:
        rows.append({"variant": r["name"], "what": r["what"],
                     "Lanczos products": r["iters"], "images": r["samples"] or (batch if r["iters"] else None),
                     "solver steps": r["solver_steps"] or (10 if r["iters"] else None),
                     "ms / step": r["median_ms"], "IQR ms": f"{r['q25_ms']:.0f}-{r['q75_ms']:.0f}",
                     "x vanilla": r["ratio"], "q75 x": r.get("q75_ratio", float("nan")),
                     f"s / {profile} epoch": r["median_ms"] * per_epoch / 1000,
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
    """PGD throughput per model, cnode's attack ("new") against the earlier loop ("old",
    ``benchmarks/reference.py``) on the same models
    and images: images per second of each, the speedup, robust accuracy, and images whose outcome differs."""
    frame = pd.DataFrame(bench["pgd"])
    if "path" not in frame:  # an older JSON: one path only
        frame = frame.assign(path="new", speedup=float("nan"), differing_images=float("nan"))
    rates = frame.pivot(index="model", columns="path", values="images_per_s").add_suffix(" images/s")
    new = frame[frame.path == "new"].set_index("model")
    out = rates.join(new[["speedup", "robust_acc", "differing_images"]])
    return out.loc[list(dict.fromkeys(frame.model))]


def runs_frame(bench: dict[str, Any]) -> pd.DataFrame:
    """Per step variant, over the runs the JSON keeps (``runs``): how many, each run's ratio of medians to the
    vanilla step, each run's ratio of 75th percentiles, and the latest run's quartiles of the per-round ratio
    (variant and vanilla timed in the same round)."""
    runs = [r for r in machine_runs(bench) if "steps" in r]
    rows = []
    for last in bench["steps"]:
        name = last["name"]
        mine = [run["steps"][name] for run in runs if name in run["steps"]]
        rows.append({"variant": name, "runs": len(mine),
                     "x vanilla, per run": " / ".join(f"{r['ratio']:.2f}" for r in mine),
                     "q75 x, per run": " / ".join(f"{r['q75_ratio']:.2f}" for r in mine if "q75_ratio" in r),
                     "per-round IQR, last run": (f"{last['round_ratio_q25']:.2f}-{last['round_ratio_q75']:.2f}"
                                                 if "round_ratio_q25" in last else "")})
    return pd.DataFrame(rows).set_index("variant")


#: target name -> (what, limit, at most (True) or at least (False)); the ratios are the targets set for a training step
TARGETS: dict[str, tuple[str, float, bool]] = {
    "speedup_over_reference": ("vanilla speedup over the hand-written loop (medians)", 2.0, False),
    "speedup_over_reference_q75": ("the same at the 75th percentiles", 2.0, False),
    "weight_ratio": ("weight / vanilla (medians)", 1.05, True),
    "weight_q75_ratio": ("weight / vanilla (75th percentiles)", 1.05, True),
    "jacobian_ratio": ("Jacobian / vanilla (medians)", 1.5, True),
    "jacobian_q75_ratio": ("Jacobian / vanilla (75th percentiles)", 1.5, True),
    "pgd_min_speedup": ("PGD-20 new / old path, slowest model", 2.0, False),
}


def targets_frame(bench: dict[str, Any]) -> pd.DataFrame:
    """One row per target, one column per kept run (date and commit), and how many runs meet it."""
    runs = machine_runs(bench)
    columns = [f"run {i + 1} ({r['machine']['date']}, {r['machine']['git_commit']})" for i, r in enumerate(runs)]
    rows = []
    for key, (what, limit, at_most) in TARGETS.items():
        values = [r["targets"].get(key) for r in runs]
        met = sum(v is not None and (v <= limit if at_most else v >= limit) for v in values)
        rows.append({"target": what, "limit": f"{'<=' if at_most else '>='} {limit:g}",
                     **{c: (f"{v:.2f}" if v is not None else "-") for c, v in zip(columns, values, strict=True)},
                     "met in": f"{met} of {len(runs)}"})
    return pd.DataFrame(rows).set_index("target")


def compile_frame(bench: dict[str, Any]) -> pd.DataFrame:
    """Compiled variants (and vanilla, compiled or not): first-call seconds (compilation from an empty inductor
    cache included), the median step, and the share of a whole cpu- and paper-profile run the first call takes."""
    rows = []
    for r in bench["steps"]:
        if not r.get("compiled") and r["name"] != "vanilla":
            continue
        row = {"variant": r["name"], "compiled": bool(r.get("compiled")), "first call s": r["first_call_s"],
               "ms / step": r["median_ms"]}
        for profile in ("cpu", "paper"):
            cfg = RunConfig.from_profile(profile)
            steps = cfg.epochs * epoch_steps(cfg)
            run_s = steps * r["median_ms"] / 1000
            row[f"share of a {profile} run"] = r["first_call_s"] / (r["first_call_s"] + run_s)
        rows.append(row)
    return pd.DataFrame(rows).set_index("variant")


def compile_payoff(bench: dict[str, Any], profile: str) -> float:
    """Seconds a whole ``profile`` run saves by compiling, net of the first call's compilation from an empty
    cache: steps x (eager - compiled median step) - first-call seconds (negative: compiling costs time)."""
    by = {r["name"]: r for r in bench["steps"]}
    cfg = RunConfig.from_profile(profile)
    steps = cfg.epochs * epoch_steps(cfg)
    saved_ms = steps * (by["vanilla-eager"]["median_ms"] - by["vanilla"]["median_ms"])
    return saved_ms / 1000 - by["vanilla"]["first_call_s"]


def bound_frame(bench: dict[str, Any], variant: str = "vanilla") -> pd.DataFrame:
    """What bounds one training step of ``variant`` on the benchmarked machine, against its measured median.

    Memory: the tensors autograd saves, written once and read once, plus parameters, gradients and Adam's two
    moments (read and written: 10 passes over the parameters) and the batch, at the measured copy bandwidth.
    Arithmetic: the step's FLOPs (convolutions and matrix products) at the measured float32 matmul rate.
    """
    b = bench["bounds"]
    row = next(r for r in bench["steps"] if r["name"] == variant)
    from cnode.core.train import build_model

    params = sum(p.numel() for p in build_model(RunConfig.from_profile("cpu")).parameters())
    batch = bench["settings"]["batch_size"] * 28 * 28 * 4
    moved = 2 * row["saved_mb"] * 2**20 + 10 * 4 * params + batch
    memory_ms = moved / (b["copy_gb_s"] * 1e9) * 1000
    flop_ms = b["vanilla_gflop"] / b["matmul_gflop_s"] * 1000
    return pd.DataFrame([
        {"bound": "memory traffic", "work": f"{moved / 2**20:.0f} MB", "machine rate": f"{b['copy_gb_s']:.1f} GB/s",
         "ms": memory_ms, "share of the measured step": memory_ms / row["median_ms"]},
        {"bound": "arithmetic", "work": f"{b['vanilla_gflop']:.2f} GFLOP",
         "machine rate": f"{b['matmul_gflop_s']:.0f} GFLOP/s", "ms": flop_ms,
         "share of the measured step": flop_ms / row["median_ms"]},
        {"bound": "measured step", "work": "", "machine rate": "", "ms": row["median_ms"],
         "share of the measured step": 1.0},
    ]).set_index("bound")


def paper_grid(seeds: list[int], rhos: list[float]) -> list[RunConfig]:
    """Chapters 3 and 4 at the ``paper`` profile on both datasets: every distinct run (CNN included)."""
    runs = robustness_runs("paper", ["mnist", "fashion"], seeds, [1.0]) + sweep_runs(
        "paper", ["mnist", "fashion"], seeds, rhos)
    return list({cfg.key(): cfg for cfg in runs}.values())


def grid_estimate(bench: dict[str, Any], seeds: list[int], rhos: list[float]) -> pd.DataFrame:
    """Estimated hours for the paper grid on the benchmarked machine, per model type (``run_hours`` with the
    ``paper`` suite)."""
    checks.positive_int("seeds", len(seeds))
    rows = []
    for cfg in paper_grid(seeds, rhos):
        train_h, eval_h = run_hours(bench, cfg, "paper")
        rows.append({"model": "cnn" if cfg.model == "cnn" else cfg.regularizer, "train_h": train_h, "eval_h": eval_h})
    frame = pd.DataFrame(rows)
    out = frame.groupby("model").agg(runs=("train_h", "size"), train_h=("train_h", "sum"), eval_h=("eval_h", "sum"))
    out.loc["total"] = out.sum()
    out["runs"] = out["runs"].astype(int)
    return out


def cost_figure(steps: pd.DataFrame, estimates: pd.DataFrame, default_iters: int, tolerance: float = 0.05) -> Figure:
    """Chapter 5: step cost of R_J against Lanczos products (left) and the largest relative error of the
    lambda_max estimate against the dense value per model, warm (solid) and random (dotted) start (right, log
    axis; the tolerance dashed)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 3.8))
    same = steps.index.isin(["jacobian"]) | steps.index.str.match(r"jacobian-it\d+$")
    jac = steps[same].sort_values("Lanczos products")
    left.plot(jac["Lanczos products"], jac["x vanilla"], marker="o", label="Jacobian regularizer (sampled)")
    left.axhline(1.0, color="k", lw=1, label="vanilla")
    left.axhline(steps.loc["weight", "x vanilla"], color="C2", ls=":", lw=1.5, label="weight regularizer")
    left.axvline(default_iters, color="grey", ls="--", lw=1)
    left.set_xlabel("Lanczos products per estimate")
    left.set_ylabel("step time / vanilla step")
    left.legend(fontsize="x-small")
    for i, (model, part) in enumerate(estimates.groupby("model")):
        for start, style in (("warm", "-"), ("random", ":")):
            line = part[part["start"] == start]
            right.plot(line["iters"], line["max_error"].clip(lower=1e-8), marker="o", ms=4, ls=style, color=f"C{i}",
                       label=f"{model}, {start} start")
    right.axhline(tolerance, color="k", ls="--", lw=1, label=f"{tolerance:.0%}")
    right.axvline(default_iters, color="grey", ls="--", lw=1)
    right.set_yscale("log")
    right.set_xlabel("Lanczos products per estimate")
    right.set_ylabel("max relative error of lambda_max")
    right.legend(fontsize="x-small", title="trained model", title_fontsize="x-small")
    fig.tight_layout()
    return fig


def step_numbers(bench: dict[str, Any], steps: pd.DataFrame, estimates: pd.DataFrame) -> dict[str, Any]:
    """What the chapter glues about a training step (``glue.glue_all``): the Jacobian regularizer's sampling, epoch
    lengths, every ratio to the vanilla step and its verdict over the kept runs, the lambda_max estimate's errors
    and the peak memories; ``steps`` and ``estimates`` are ``step_frame`` and ``estimate_frame`` of ``bench``."""
    targets, default_iters = bench["targets"], bench["settings"]["jacobian_default_iters"]
    jac = steps.loc["jacobian"]
    cpu_cfg, paper_cfg = RunConfig.from_profile("cpu"), RunConfig.from_profile("paper")
    at_default = estimates[(estimates.model == "jacobian") & (estimates.iters == default_iters)
                           & (estimates.start == "warm")]
    checked = {(r["image"], r["step"]) for r in bench["estimates"]}
    err10 = estimates[(estimates.model == "jacobian") & (estimates.iters == 10)
                      & (estimates.start == "random")]["max_error"].max()
    return {
        "jac_samples": (jac["images"], 0), "jac_steps": (jac["solver steps"], 0), "default_iters": (default_iters, 0),
        "cpu_epoch_steps": (epoch_steps(cpu_cfg), 0), "paper_epoch_steps": (epoch_steps(paper_cfg), 0),
        "vanilla_ms": (steps.loc["vanilla", "ms / step"], 0), "speedup_ref": (targets["speedup_over_reference"], 2),
        "speedup_ref_q75": (targets["speedup_over_reference_q75"], 2),
        "ratio_eager": (targets["eager_over_vanilla"], 2), "ratio_bf16": (targets["bf16_over_vanilla"], 2),
        "speedup_eager": (targets["speedup_over_reference"] / targets["eager_over_vanilla"], 2),
        "q75_weight": (targets["weight_q75_ratio"], 3), "q75_jac": (targets["jacobian_q75_ratio"], 2),
        "ratio_jac_30": (steps.loc["jacobian-it30", "x vanilla"], 2), "n_runs": (len(machine_runs(bench)), 0),
        "met_speedup": Md(runs_verdict(bench, "speedup_over_reference", "speedup_over_reference_q75")),
        "met_weight": Md(runs_verdict(bench, "weight_ratio", "weight_q75_ratio")),
        "met_jac": Md(runs_verdict(bench, "jacobian_ratio", "jacobian_q75_ratio")),
        "ratio_odeint": (targets["odeint_over_vanilla"], 2), "ratio_weight": (targets["weight_ratio"], 3),
        "ratio_jac": (targets["jacobian_ratio"], 2), "ratio_jac_old": (steps.loc["jacobian-old", "x vanilla"], 2),
        "ratio_jac_full": (steps.loc["jacobian-full", "x vanilla"], 1),
        "err_jac": (targets["jacobian_max_rel_error"], 3),
        "abs_err_jac": (targets["jacobian_max_abs_error"], 2, True),
        "scaled_err_jac": (targets["jacobian_max_scaled_error"], 2, True),
        "pairs_ok": (targets["jacobian_pairs_within_5pct"], 0), "pairs": (targets["jacobian_pairs"], 0),
        "err_jac_cold": (targets["jacobian_cold_max_rel_error"], 3),
        "ratio_jac_cold": (steps.loc["jacobian-cold", "x vanilla"], 2),
        "min_abs_dense_jac": (at_default["min_abs_dense"].min(), 3),
        "tol_abs_jac": (0.05 * at_default["min_abs_dense"].min(), 1, True),
        "checked_pairs": Md(f"{len({i for i, _ in checked})} MNIST test images at solver steps "
                            f"{sorted({k for _, k in checked})} (counted from 0)"),
        "verdict_3e": Md(verdict(targets["jacobian_max_rel_error"], 0.05)), "err_jac_10": (err10, 2),
        "mem_vanilla": (steps.loc["vanilla", "peak MB"], 0), "mem_jac": (jac["peak MB"], 0),
        "mem_full": (steps.loc["jacobian-full", "peak MB"], 0),
    }
