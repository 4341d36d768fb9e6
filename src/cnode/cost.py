"""The cost ledger of book chapter 5: frames built from the JSON that ``benchmarks/run.py`` writes.

Nothing here times anything: it reads measured numbers and turns them into tables and grid estimates.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from cnode import checks, runtime
from cnode.config import RunConfig
from cnode.evaluate import SUITES
from cnode.experiments import robustness_runs, sweep_runs
from cnode.paths import repo_root

TRAIN_IMAGES = 60_000  # the paper profile trains on all MNIST / FashionMNIST training images


def epoch_steps(cfg: RunConfig) -> int:
    """Optimizer steps in one epoch of ``cfg``: ceil(training images / batch)."""
    return math.ceil((cfg.train_subset or TRAIN_IMAGES) / cfg.batch_size)


def benchmark_dir() -> Path:
    """``benchmarks/results`` of the repository: one JSON per benchmarked machine (``cpu-amd-epyc.json``, ...)."""
    return repo_root() / "benchmarks" / "results"


def result_name(m: dict[str, Any]) -> str:
    """The JSON file of a machine's benchmark runs in ``benchmark_dir`` (one per machine, so that two machines'
    runs are never pooled): device kind, name, instruction set level and the start of the CPU flags hash of the
    ``machine`` record ``m`` (``benchmarks/machine.py``), e.g. ``cpu-intel-xeon-processor-avx512-fc7df0.json``."""
    found = m.get("machine") or {}
    name = m["device_name"].replace("(R)", "").replace("(TM)", "")
    parts = [m["device"], name, found.get("cpu_capability") or "", (found.get("cpu_flags") or "")[:6]]
    return re.sub(r"[^a-z0-9]+", "-", " ".join(parts).lower()).strip("-") + ".json"


def benchmark_here(kind: str) -> dict[str, Any] | None:
    """The benchmark of this machine (``result_name``) if it has one, else the newest of another machine of
    device ``kind`` ("cpu", "cuda"), else None: what ``cnode sweep`` estimates its hours from."""
    here = runtime.machine(kind)
    record = {"device": kind, "device_name": here["gpu"] or here["cpu"], "machine": here}
    mine = load_if_present(benchmark_dir() / result_name(record))
    if mine is not None:
        return mine
    others = sorted(benchmark_dir().glob(f"{kind}-*.json"), key=lambda p: p.stat().st_mtime)
    return load_benchmark(others[-1]) if others else None


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
    """'AMD EPYC, 2 cores, 2 threads, torch 2.x, 2026-11-25 (commit abc1234)' for the settings line (with the
    instruction set level where the run recorded it)."""
    m = bench["machine"]
    isa = (m.get("machine") or {}).get("cpu_capability")
    return (f"{m['device_name']}{f' ({isa})' if isa else ''}, {m['cores']} cores, {m['threads']} threads, "
            f"torch {m['torch']}, measured {m['date']} at commit {m['git_commit']}")


def machine_runs(bench: dict[str, Any]) -> list[dict[str, Any]]:
    """The kept runs (``runs``) measured on the machine of ``bench``'s latest run (``runtime.machine_label``):
    the spread the chapter shows is one machine's; other machines' runs are listed apart (``other_machines``)."""
    mine = runtime.machine_label(bench["machine"])
    return [r for r in bench.get("runs") or [] if runtime.machine_label(r["machine"]) == mine] or [
        {"machine": bench["machine"], "targets": bench["targets"]}]


#: the ratios ``other_machines`` lists per run: target key -> column
LISTED = {"speedup_over_reference": "vanilla speedup over the loop", "weight_ratio": "weight / vanilla",
          "jacobian_ratio": "Jacobian / vanilla"}


def other_machines(path: str | Path) -> pd.DataFrame:
    """Every other machine benchmarked in the folder of ``path`` (same device kind): its name, and per kept run
    its date and the ``LISTED`` ratios, one row per run. Listed beside the chapter's machine, never pooled with it:
    float kernels, caches and cores differ, so do the ratios."""
    path = Path(path) if Path(path).is_absolute() else repo_root() / path
    mine = load_benchmark(path)
    rows = []
    for other in sorted(path.parent.glob(f"{mine['machine']['device']}-*.json")):
        if other.resolve() == path.resolve():
            continue
        bench = load_benchmark(other)
        for run in machine_runs(bench):
            m = run["machine"]
            rows.append({"machine": machine_line({"machine": {**bench["machine"], **m}}).split(", measured")[0],
                         "date": m["date"], **{col: round(run["targets"][k], 2) for k, col in LISTED.items()}})
    return pd.DataFrame(rows, columns=["machine", "date", *LISTED.values()])


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
    """PGD throughput per model, cnode's attack ("new") against the pre-issue-11 loop ("old") on the same models
    and images: images per second of each, the speedup, robust accuracy, and images whose outcome differs."""
    frame = pd.DataFrame(bench["pgd"])
    if "path" not in frame:  # a JSON from before issue 11: one path only
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


#: target name -> (what, limit, at most (True) or at least (False)); the ratios are issue 11's targets
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
    from cnode.train import build_model

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


def precision_runs_frame(results: list[tuple[RunConfig, dict[str, Any], dict[str, Any]]]) -> pd.DataFrame:
    """One row per run of the precision check: precision, seed, clean accuracy, accuracy under the suite's
    first Gaussian level and under PGD at each of its radii, and the run's median epoch seconds.
    ``results``: (config, metrics of the run, its evaluation) triples."""
    rows = []
    for cfg, metrics, ev in results:
        row = {"precision": cfg.precision, "seed": cfg.seed, "clean": ev["clean"]}
        gauss = [r for r in ev["rows"] if r["kind"] == "gaussian"]
        if gauss:
            row[f"Gaussian {gauss[0]['level']:g}"] = gauss[0]["acc"]
        row.update({f"PGD {r['level']:g}": r["acc"] for r in ev["rows"] if r["kind"] == "pgd" and r["level"] > 0})
        row["epoch s"] = float(pd.Series([h["seconds"] for h in metrics["history"]]).median())
        rows.append(row)
    return pd.DataFrame(rows)


def precision_table(runs: pd.DataFrame) -> pd.DataFrame:
    """``precision_runs_frame`` per precision: seeds, then each accuracy in % as 'mean (min-max)' over seeds,
    and the median epoch seconds."""
    out = {}
    for precision, group in runs.groupby("precision", sort=False):
        row: dict[str, Any] = {"seeds": len(group)}
        for col in [c for c in runs.columns if c not in ("precision", "seed", "epoch s")]:
            v = 100 * group[col]
            row[f"{col} (%)"] = f"{v.mean():.1f} ({v.min():.1f}-{v.max():.1f})"
        row["epoch s"] = f"{group['epoch s'].median():.1f}"
        out[precision] = row
    return pd.DataFrame.from_dict(out, orient="index").rename_axis("precision")


def _variant(cfg: RunConfig) -> str:
    """The benchmark variant a config's training and attack cost are read from."""
    return "cnn" if cfg.model == "cnn" else {"none": "vanilla"}.get(cfg.regularizer, cfg.regularizer)


def _step_ms(bench: dict[str, Any], cfg: RunConfig) -> float:
    return next(r["median_ms"] for r in bench["steps"] if r["name"] == _variant(cfg))


def _pgd_rate(bench: dict[str, Any], cfg: RunConfig) -> float:
    return next(r["images_per_s"] for r in bench["pgd"]
                if r["model"] == _variant(cfg) and r.get("path", "new") == "new")


def paper_grid(seeds: list[int], rhos: list[float]) -> list[RunConfig]:
    """Chapters 3 and 4 at the ``paper`` profile on both datasets: every distinct run (CNN included)."""
    runs = robustness_runs("paper", ["mnist", "fashion"], seeds, [1.0]) + sweep_runs(
        "paper", ["mnist", "fashion"], seeds, rhos)
    return list({cfg.key(): cfg for cfg in runs}.values())


def run_hours(bench: dict[str, Any], cfg: RunConfig, suite_name: str | None) -> tuple[float, float]:
    """Estimated (training, evaluation) hours of one run on the benchmarked machine.

    Training: epochs x ceil(images / batch) steps x the measured median step of its variant (exact for the
    benchmarked architecture and batch, the cpu and paper profiles). Evaluation: the suite's PGD-20-equivalent
    attack work per attacked image (eps levels x restarts, plus the 2x-steps and margin-loss checks) over the
    measured PGD-20 rate; early stopping makes that an upper estimate. Noise evaluations are forward passes
    and ignored.
    """
    steps = cfg.epochs * epoch_steps(cfg)
    train_h = steps * _step_ms(bench, cfg) / 3.6e6
    if suite_name is None:
        return train_h, 0.0
    suite = SUITES[suite_name]
    per_image = len(suite.eps) * suite.pgd_restarts * suite.pgd_steps / 20 + 3 * suite.pgd_steps / 20
    return train_h, suite.attacked() * per_image / _pgd_rate(bench, cfg) / 3600


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
