"""Several chapters' plans as one priority queue, run by a pool of worker processes until a deadline.

``python -m cnode sweep`` runs one chapter at a time through submitit (local, SLURM). On one machine with many
cores and a GPU (a lent accelerator, a workstation), this module keeps every worker busy across chapters:
``python -m cnode grid --workers 14 --deadline-min 8`` takes the paper-scale grid (``book.registry.PAPER_GRID``)
in its priority order (chapter 3, the horizon chapter, the audit, chapter 4, the rho search, the front), merges the
tasks of a run that several chapters share, and starts no job after the deadline; jobs still running then are
stopped, and their checkpoints resume on the next call. Results go to the store as in every other path (same
keys on every device).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cnode.core.config import RunConfig
from cnode.runs.plans import Plan


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
    front: str | None = None

    def run(self, threads: int, nice: bool = False) -> str:
        """Do the task, as a worker does it (a grid's pool process, a sweep's submitit job): train (or load, or
        resume) the run, evaluate it, and where asked take its mechanism measurements (ConvNODEs) and its masking
        card (with the positive control's); returns the run's label."""
        import os

        import torch

        from cnode.runs import store

        if nice:
            os.nice(10)
        torch.set_num_threads(threads)
        run = store.load_or_train(self.cfg)
        if self.suite is not None:
            store.load_or_evaluate(run, self.suite)
        if self.mechanism is not None and self.cfg.model == "cnode":
            store.load_or_measure(run, self.mechanism)
        if self.audit is not None:
            store.load_or_audit(run, self.audit)
            if self.control_levels is not None:
                store.load_or_audit(run, self.audit, self.control_levels)
        if self.front is not None:
            store.load_or_front(run, self.front)
        return self.cfg.label()

    def merge(self, other: Task) -> None:
        """Take the tasks ``other`` asks for that this one lacks (a run shared by chapters is trained once)."""
        for name in ("suite", "mechanism", "audit", "control_levels", "front"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is not None and theirs is not None and mine != theirs:
                raise ValueError(f"{self.cfg.label()}: chapters ask for {name} {mine!r} and {theirs!r}")
            setattr(self, name, mine if mine is not None else theirs)
        self.chapters += other.chapters


def tasks(grid: Iterable[Plan], with_mechanism: bool = True, longest_first: bool = False) -> list[Task]:
    """The outstanding tasks of the chapters' plans ``grid``, one per run key, in priority order (first
    appearance), or audits and fine-step runs first with ``longest_first`` (a short tail for a pool with a
    deadline); runs the store already holds complete are left out."""
    found: dict[str, Task] = {}
    for plan in grid:
        chapter = plan.chapter
        controls = {c.key() for c in plan.controls()}
        for cfg in plan.todo():
            task = Task(cfg, plan.suite, plan.mechanism if with_mechanism else None, plan.audit,
                        plan.control_levels if cfg.key() in controls else None, [chapter], plan.front)
            found.setdefault(cfg.key(), Task(cfg)).merge(task)
    if not longest_first:
        return list(found.values())
    return sorted(found.values(), key=lambda t: (t.audit is None, t.cfg.steps <= RunConfig.from_profile(
        t.cfg.profile).steps))


def _work(args: tuple[dict[str, Any], Task, float, bool, bool, int]) -> tuple[str, str, float]:
    """One task in a worker: (label, "done" | "skipped" | error line, seconds)."""
    overrides, task, deadline, strict, nice, threads = args
    if time.time() > deadline:
        return task.cfg.label(), "skipped", 0.0
    import dataclasses

    start = time.time()
    try:
        dataclasses.replace(task, cfg=dataclasses.replace(task.cfg, **overrides)).run(threads, nice)
    except Exception as exc:  # noqa: BLE001 - one failed run must not stop the grid; reported below
        if strict:
            raise
        return task.cfg.label(), f"error: {type(exc).__name__}: {exc}", time.time() - start
    return task.cfg.label(), "done", time.time() - start


def run(found: list[Task], workers: int, deadline_s: float, overrides: dict[str, Any] | None = None,
        strict: bool = False, nice: bool = False, threads: int = 1) -> list[tuple[str, str, float]]:
    """Run ``found`` with a pool of ``workers`` processes (spawned, ``threads`` torch threads each): the local
    executor of both ``python -m cnode grid`` and ``cnode sweep``. No task starts after ``deadline_s`` seconds,
    and tasks still running ``60 s`` later are stopped (their checkpoints stay). A task that fails is an error
    line, or with ``strict`` an exception, as is a worker that died (killed: its checkpoint resumes next time)."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    deadline = time.time() + deadline_s
    out: list[tuple[str, str, float]] = []
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker)
    try:
        futures = {pool.submit(_work, (overrides or {}, task, deadline, strict, nice, threads)): task for task in found}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=max(1.0, deadline + 60 - time.time()), return_when=FIRST_COMPLETED)
            if not done:
                print(f"grid: deadline passed, stopping {len(pending)} unfinished task(s)", flush=True)
                break
            for future in done:
                try:
                    item = future.result()
                except BrokenProcessPool as exc:
                    if strict:
                        raise
                    item = (futures[future].cfg.label(), f"error: a worker died ({exc})", 0.0)
                out.append(item)
                print(f"grid: {len(out)}/{len(found)} {item[0]}: {item[1]} ({item[2]:.0f} s)", flush=True)
    finally:
        for process in list(getattr(pool, "_processes", {}).values()):  # stop what still runs, at once
            process.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
    return out


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)  # until the task sets its own
