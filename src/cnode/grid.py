"""Several chapters' plans as one priority queue, run by a pool of worker processes until a deadline.

``python -m cnode sweep`` runs one chapter at a time through submitit (local, SLURM). On one machine with many
cores and a GPU (a lent accelerator, a workstation), this module keeps every worker busy across chapters:
``python -m cnode grid --workers 14 --deadline-min 8`` takes the paper-scale grid of issue 13 in its priority
order (chapter 3, the horizon chapter, the trust audit, chapter 4, the rho search of chapter 8), merges the
tasks of a run that several chapters share, and starts no job after the deadline; jobs still running then are
stopped, and their checkpoints resume on the next call. Results go to the store as in every other path (same
keys on every device).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cnode import plans
from cnode.config import RunConfig

#: The paper-scale grid (issue 13) in its priority order: (chapter, parameters of its plan).
PAPER_GRID: list[tuple[str, dict[str, Any]]] = [
    ("03_robustness", {"profile": "paper", "suite": "paper"}),
    ("06_horizon", {"profile": "paper", "suite": "paper", "mechanism": "paper"}),
    ("07_trust", {"profile": "paper", "audit": "paper"}),
    ("04_rho_sweep", {"profile": "paper", "suite": "paper", "seeds": [0, 1, 2]}),
    ("08_rho_search", {"profile": "paper", "suite": "paper"}),
]

#: A rehearsal of the same machinery in seconds (tests): chapter 3 and the audit on smoke runs, one seed.
SMOKE_GRID: list[tuple[str, dict[str, Any]]] = [
    ("03_robustness", {"profile": "smoke", "suite": "smoke", "seeds": [0], "datasets": ["mnist"]}),
    ("07_trust", {"profile": "smoke", "audit": "smoke", "datasets": ["mnist"]}),
]


@dataclass
class Task:
    """Everything the grid does to one run: its config, the suite to evaluate it with, the mechanism settings,
    the audit settings and the positive control's grey levels (None: not asked)."""

    cfg: RunConfig
    suite: str | None = None
    mechanism: str | None = None
    audit: str | None = None
    control_levels: int | None = None
    chapters: list[str] = field(default_factory=list)

    def merge(self, other: Task) -> None:
        """Take the tasks ``other`` asks for that this one lacks (a run shared by chapters is trained once)."""
        for name in ("suite", "mechanism", "audit", "control_levels"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is not None and theirs is not None and mine != theirs:
                raise ValueError(f"{self.cfg.label()}: chapters ask for {name} {mine!r} and {theirs!r}")
            setattr(self, name, mine if mine is not None else theirs)
        self.chapters += other.chapters


def tasks(grid: Iterable[tuple[str, dict[str, Any]]], with_mechanism: bool = True,
          longest_first: bool = False) -> list[Task]:
    """The outstanding tasks of ``grid``, one per run key, in priority order (first appearance), or audits and
    fine-step runs first with ``longest_first`` (a short tail for a pool with a deadline); runs the store already
    holds complete are left out."""
    found: dict[str, Task] = {}
    for chapter, params in grid:
        plan = plans.plan(chapter, params)
        controls = {c.key() for c in plan.controls()}
        for cfg in plan.todo():
            task = Task(cfg, plan.suite, plan.mechanism if with_mechanism else None, plan.audit,
                        plan.control_levels if cfg.key() in controls else None, [chapter])
            found.setdefault(cfg.key(), Task(cfg)).merge(task)
    if not longest_first:
        return list(found.values())
    return sorted(found.values(), key=lambda t: (t.audit is None, t.cfg.steps <= RunConfig.from_profile(
        t.cfg.profile).steps))


def _work(args: tuple[dict[str, Any], Task, float, bool, bool]) -> tuple[str, str, float]:
    """One task in a worker: (label, "done" | "skipped" | error line, seconds)."""
    overrides, task, deadline, strict, nice = args
    if time.time() > deadline:
        return task.cfg.label(), "skipped", 0.0
    import dataclasses

    from cnode import sweeps

    start = time.time()
    cfg = dataclasses.replace(task.cfg, **overrides)
    try:
        sweeps.job(cfg.to_dict(), task.suite, 1, nice, task.mechanism, task.audit, task.control_levels)
    except Exception as exc:  # noqa: BLE001 - one failed run must not stop the grid; reported below
        if strict:
            raise
        return task.cfg.label(), f"error: {type(exc).__name__}: {exc}", time.time() - start
    return task.cfg.label(), "done", time.time() - start


def run(found: list[Task], workers: int, deadline_s: float, overrides: dict[str, Any] | None = None,
        strict: bool = False, nice: bool = False) -> list[tuple[str, str, float]]:
    """Run ``found`` with ``workers`` processes (spawned, one torch thread each); no task starts after
    ``deadline_s`` seconds, and tasks still running ``60 s`` later are stopped (their checkpoints stay)."""
    deadline = time.time() + deadline_s
    jobs = [(overrides or {}, task, deadline, strict, nice) for task in found]
    out: list[tuple[str, str, float]] = []
    ctx = mp.get_context("spawn")
    pool = ctx.Pool(workers, initializer=_init_worker)
    try:
        pending = pool.imap_unordered(_work, jobs)
        while len(out) < len(jobs):
            try:
                item = pending.next(timeout=max(1.0, deadline + 60 - time.time()))
            except mp.TimeoutError:
                print(f"grid: deadline passed, stopping {len(jobs) - len(out)} unfinished task(s)", flush=True)
                break
            out.append(item)
            print(f"grid: {len(out)}/{len(jobs)} {item[0]}: {item[1]} ({item[2]:.0f} s)", flush=True)
    finally:
        pool.terminate()
        pool.join()
    return out


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cnode grid", description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    parser.add_argument("--deadline-min", type=float, default=60.0, help="start no task after this many minutes")
    parser.add_argument("--grid", choices=["paper", "smoke"], default="paper", help="smoke: a rehearsal in seconds")
    parser.add_argument("--no-mechanism", action="store_true", help="leave the mechanism measurements for later")
    parser.add_argument("--chapters", nargs="+", default=None, help="only these chapters of the grid")
    parser.add_argument("--longest-first", action="store_true", help="audits and fine-step runs first")
    parser.add_argument("--nice", action="store_true", help="run the workers at lower priority")
    parser.add_argument("--eager", action="store_true", help="do not torch.compile the training forward pass")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    grid = PAPER_GRID if args.grid == "paper" else SMOKE_GRID
    if args.chapters:
        grid = [(ch, p) for ch, p in grid if ch in args.chapters]
    found = tasks(grid, with_mechanism=not args.no_mechanism, longest_first=args.longest_first)
    print(f"grid: {len(found)} runs with work outstanding", flush=True)
    for task in found:
        todo = [n for n in ("suite", "mechanism", "audit", "control_levels") if getattr(task, n) is not None]
        print(f"  {task.cfg.key()} {task.cfg.dataset} T={task.cfg.T:g} N={task.cfg.steps} g={task.cfg.gamma:g} "
              f"{task.cfg.label()} [{', '.join(task.chapters)}] {', '.join(todo)}")
    if args.dry_run:
        return 0
    done = run(found, args.workers, 60 * args.deadline_min, {"compile": False} if args.eager else None,
               nice=args.nice)
    failed = [d for d in done if d[1].startswith("error")]
    print(f"grid: {sum(d[1] == 'done' for d in done)} done, {len(failed)} failed, "
          f"{sum(d[1] == 'skipped' for d in done)} skipped, {len(found) - len(done)} stopped", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
