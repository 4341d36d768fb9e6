"""Command line: ``python -m cnode train --dataset mnist --regularizer weight --rho 1 --profile smoke`` and
``python -m cnode list``. Every ``RunConfig`` field is a ``--field value`` option. Bad input: one line on
stderr, exit code 2, no traceback."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from typing import Any

from cnode.core.config import PROFILES, RunConfig
from cnode.runs.plans import parse_value

#: Fields whose value may be None ("all images"); on the command line: ``--train_subset none``.
OPTIONAL = {f.name for f in fields(RunConfig) if f.default is None}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse's usage block is noise here)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m cnode", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    train = sub.add_parser("train", help="train one configuration (or load it from the store)")
    train.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    for field in fields(RunConfig):
        if field.name != "profile":
            train.add_argument(f"--{field.name}", dest=field.name, type=parse_value, default=argparse.SUPPRESS,
                               help=f"default: the profile's ({field.default!r} unless the profile sets it)")
    sub.add_parser("grid", help="the paper-scale grid of several chapters as one queue (see python -m cnode grid -h)")
    sub.add_parser("list", help="list the finished runs in the store, then per chapter how many of its runs "
                                "(at its default parameters) are trained and evaluated")
    sweep = sub.add_parser("sweep", help="train and evaluate the runs a chapter needs that the store lacks")
    sweep.add_argument("chapter", help="chapter name or notebook path, e.g. 03_robustness")
    sweep.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                       help="a chapter parameter, as papermill's -p")
    sweep.add_argument("-y", nargs=2, action="append", default=[], metavar=("NAME", "YAML"),
                       help="a chapter parameter in YAML (lists: -y seeds '[0, 1]'), as papermill's -y")
    sweep.add_argument("--executor", default="local", choices=["local", "slurm", "debug"])
    sweep.add_argument("--workers", type=int, default=1, help="jobs at a time (default 1)")
    sweep.add_argument("--threads", type=int, default=None, help="torch threads per job (default cores / workers)")
    sweep.add_argument("--nice", action="store_true", help="run jobs at lower priority (a grid left running)")
    sweep.add_argument("--dry-run", action="store_true", help="print the plan and its estimated time only")
    sweep.add_argument("--timeout-min", type=int, default=24 * 60, help="time limit per job in minutes (default 1440)")
    for name in ("partition", "gpus_per_node"):
        sweep.add_argument(f"--slurm-{name.replace('_', '-')}", dest=f"slurm_{name}", default=None,
                           help=f"slurm: {name} (submitit's slurm_{name})")
    return parser


def chapter_progress() -> list[dict[str, Any]]:
    """Per chapter with runs, at its default parameters: profile, runs, how many are trained, evaluated and
    measured."""
    from cnode.book import registry

    rows = []
    for chapter in registry.with_runs():
        p = registry.plan(chapter)
        untrained, unevaluated = p.missing()
        rows.append({"chapter": chapter, "profile": sorted({cfg.profile for cfg in p.runs}), "runs": len(p.runs),
                     "trained": len(p.runs) - len(untrained), "suite": p.suite,
                     "evaluated": len(p.runs) - len(unevaluated) if p.suite else None,
                     "measured": len(p.runs) - len(p.unmeasured()) if p.mechanism else None})
    return rows


def grid_main(argv: list[str] | None = None) -> int:
    """``python -m cnode grid``: several chapters' plans as one queue for a pool of workers (``runs.grid``)."""
    import os

    from cnode.book import registry
    from cnode.runs.grid import run, tasks

    parser = argparse.ArgumentParser(prog="python -m cnode grid", description="several chapters' plans as one queue")
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
    grid = registry.PAPER_GRID if args.grid == "paper" else registry.SMOKE_GRID
    if args.chapters:
        grid = [(ch, p) for ch, p in grid if ch in args.chapters]
    found = tasks([registry.plan(ch, p) for ch, p in grid], with_mechanism=not args.no_mechanism,
                  longest_first=args.longest_first)
    print(f"grid: {len(found)} runs with work outstanding", flush=True)
    for task in found:
        todo = [n for n in ("suite", "mechanism", "audit", "control_levels", "front") if getattr(task, n) is not None]
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



def chapter_name(arg: str) -> str:
    """A chapter stem from a stem or a notebook path ("03_robustness", "book/03_robustness.ipynb")."""
    from pathlib import Path

    from cnode.book import registry

    stem = Path(arg).stem
    if stem not in registry.with_runs():
        raise ValueError(f"no sweep for chapter {arg!r}; chapters with runs: {', '.join(registry.with_runs())}")
    return stem


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["grid"]:  # several chapters' plans as one queue: its own options (``python -m cnode grid -h``)
        return grid_main(argv[1:])
    args = vars(_parser().parse_args(argv))
    command = args.pop("command")
    from cnode.core.data import DataError
    from cnode.core.train import TrainingError
    from cnode.runs.store import StoreError, list_runs, load_or_train

    try:
        if command == "list":
            rows = list_runs()
            for row in rows:
                print(json.dumps(row))
            if not rows:
                print("the store is empty", file=sys.stderr)
            for row in chapter_progress():
                print(json.dumps(row))
            return 0
        if command == "sweep":
            from cnode.book import registry
            from cnode.runs import sweeps

            chapter = chapter_name(args["chapter"])
            params = sweeps.resolve(chapter, [tuple(x) for x in args["p"]], [tuple(x) for x in args["y"]])
            slurm = {k[len("slurm_"):]: parse_value(v) for k, v in args.items()
                     if k.startswith("slurm_") and v is not None}
            done = sweeps.sweep(registry.plan(chapter, params), args["executor"], args["workers"], args["threads"],
                                args["nice"],
                                args["dry_run"], slurm=slurm, timeout_min=args["timeout_min"])
            print(f"{len(done)} runs done")
            return 0
        profile = args.pop("profile")
        args = {k: None if k in OPTIONAL and v in ("none", "all") else v for k, v in args.items()}
        cfg = RunConfig.from_profile(profile, **args)
        run = load_or_train(cfg)
        final = run.final
        print(f"{cfg.label()} [{cfg.profile}/{cfg.key()}]: test accuracy {final['test_acc']:.4f} after "
              f"{final['epoch']} epochs, {run.metrics['wall_seconds']:.1f} s; stored in {run.path}")
        return 0
    except (ValueError, DataError, StoreError, TrainingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last finished epoch is checkpointed; rerun the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
