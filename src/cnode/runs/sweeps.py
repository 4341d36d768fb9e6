"""Sweeps: a chapter's plan trained and evaluated outside its notebook, as a one-chapter grid.

``python -m cnode sweep 03_robustness -p profile paper --executor local --workers 2`` reads the chapter's plan
for the given parameters (papermill's ``-p``/``-y`` syntax, the chapter's own validation), skips what the store
holds, and runs the rest as ``grid.Task``s (train, evaluate, measure, audit: one job per run): locally in the
grid's pool of processes, on SLURM or in-process (``debug``) through submitit. The store's per-key lock makes
concurrent jobs safe; a job killed mid-run resumes from its checkpoint when the sweep runs again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from cnode.core import checks
from cnode.core.config import RunConfig
from cnode.core.paths import repo_root
from cnode.runs import plans
from cnode.runs.grid import run, tasks

EXECUTORS = ("local", "slurm", "debug")


def resolve(chapter: str, p: list[tuple[str, str]] = (), y: list[tuple[str, str]] = ()) -> dict[str, Any]:
    """The chapter's parameters: its defaults, then ``-p NAME VALUE`` and ``-y NAME YAML`` pairs, validated
    exactly as the chapter validates them (``checks.parameters``: unknown names and wrong types are one line)."""
    import yaml

    namespace: dict[str, Any] = {**plans.chapter_defaults(chapter), "__annotations__": plans.chapter_types(chapter)}
    for name, text in p:
        namespace[name] = plans.parse_value(text)
    for name, text in y:
        namespace[name] = yaml.safe_load(text)
    return checks.parameters(namespace)


def estimate_line(plan: plans.Plan, runs: list[RunConfig]) -> str:
    """'estimated 1.2 h of training and 0.8 h of evaluation on <machine>' from this machine's benchmark JSON
    (``benchmark.benchmark_here``: another machine's of the same device kind when this one has none)."""
    from cnode.core.train import resolve_device
    from cnode.runs import benchmark

    kind = resolve_device("auto").type
    bench = benchmark.benchmark_here(kind)
    if bench is None:
        return f"no estimate: no benchmark for this device kind ({kind}); run `make bench`"
    hours = [benchmark.run_hours(bench, cfg, plan.suite) for cfg in runs]
    return (f"estimated {sum(h[0] for h in hours):.2f} h of training and up to {sum(h[1] for h in hours):.2f} h of "
            f"evaluation, from the benchmark of {bench['machine']['device_name']}")


def sweep(plan: plans.Plan, executor: str = "local", workers: int = 1,
          threads: int | None = None, nice: bool = False, dry_run: bool = False, log_dir: Path | None = None,
          slurm: dict[str, Any] | None = None, timeout_min: int = 24 * 60, poll_s: float = 0.5) -> list[str]:
    """Run the chapter's missing runs; returns the labels of the runs done. Executors: ``local``, the grid's pool
    of processes (``grid.run``); ``slurm`` and ``debug`` (in-process), through submitit. At most ``workers`` jobs
    at a time on every executor, ``threads`` torch threads each
    (default: cores / workers), ``timeout_min`` minutes each (submitit's local default is minutes). ``slurm``:
    submitit's ``slurm_*`` parameters without the prefix (partition, gpus_per_node, ...)."""
    from tqdm import tqdm

    checks.one_of("executor", executor, EXECUTORS)
    checks.positive_int("workers", workers)
    chapter = plan.chapter
    missing = plan.todo()
    print(f"{chapter}: {len(plan.runs)} runs, {len(plan.runs) - len(missing)} stored, {len(missing)} to run"
          f" (suite {plan.suite}); {estimate_line(plan, missing)}")
    if dry_run or not missing:
        return []
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    checks.positive_int("timeout_min", timeout_min)
    if executor == "local":  # the grid's pool: a chapter's sweep is a one-chapter grid
        found = run(tasks([plan]), workers, 60 * timeout_min, strict=True, nice=nice, threads=threads)
        return [label for label, status, _ in found if status == "done"]
    import submitit

    folder = log_dir or repo_root() / "results" / "sweep-logs" / "%j"
    ex = submitit.AutoExecutor(folder=folder, cluster=executor)
    ex.update_parameters(timeout_min=timeout_min, cpus_per_task=threads, name=f"cnode-{chapter}",
                         **({f"slurm_{k}": v for k, v in (slurm or {}).items()} if executor == "slurm" else {}))
    pending, running, done = tasks([plan]), [], []  # a chapter's sweep is a one-chapter grid
    with tqdm(total=len(pending), desc=f"{chapter} runs", disable=None) as bar:
        while pending or running:
            while pending and len(running) < workers:
                running.append(ex.submit(pending.pop(0).run, threads, nice))
            for j in [j for j in running if j.done()]:
                done.append(j.result())  # a failed job raises here, with its log folder in the message
                running.remove(j)
                bar.update(1)
            if running:
                time.sleep(poll_s)
    return done
