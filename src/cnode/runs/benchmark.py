"""The benchmark results of ``benchmarks/run.py`` as the runs read them: one JSON per machine in
``benchmarks/results``, and the hours a run takes on the benchmarked machine (``cnode sweep``'s estimate)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from cnode.core import runtime
from cnode.core.config import RunConfig
from cnode.core.evaluate import SUITES
from cnode.core.paths import repo_root

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


def _variant(cfg: RunConfig) -> str:
    """The benchmark variant a config's training and attack cost are read from."""
    return "cnn" if cfg.model == "cnn" else {"none": "vanilla"}.get(cfg.regularizer, cfg.regularizer)


def _step_ms(bench: dict[str, Any], cfg: RunConfig) -> float:
    return next(r["median_ms"] for r in bench["steps"] if r["name"] == _variant(cfg))


def _pgd_rate(bench: dict[str, Any], cfg: RunConfig) -> float:
    return next(r["images_per_s"] for r in bench["pgd"]
                if r["model"] == _variant(cfg) and r.get("path", "new") == "new")


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
    """Every other machine benchmarked in the folder of ``path`` (same device kind): per kept run, the machine's
    name, threads and the run's date in one cell, and the ``LISTED`` ratios. Listed beside the chapter's machine,
    never pooled with it: float kernels, caches and cores differ, so do the ratios."""
    path = Path(path) if Path(path).is_absolute() else repo_root() / path
    mine = load_benchmark(path)
    rows = []
    for other in sorted(path.parent.glob(f"{mine['machine']['device']}-*.json")):
        if other.resolve() == path.resolve():
            continue
        bench = load_benchmark(other)
        for run in machine_runs(bench):
            m = {**bench["machine"], **run["machine"]}
            isa = (m.get("machine") or {}).get("cpu_capability")
            rows.append({"machine, run": f"{m['device_name']}{f' ({isa})' if isa else ''}, {m['threads']} threads, "
                                         f"{m['date']}",
                         **{col: round(run["targets"][k], 2) for k, col in LISTED.items()}})
    return pd.DataFrame(rows, columns=["machine, run", *LISTED.values()])
