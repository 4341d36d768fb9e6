"""A chapter's plan: every run, evaluation, measurement and audit it needs for given parameters.

Each chapter module (``cnode.book.cNN_topic``) builds its ``Plan`` from its parameters; the chapter, the runner,
``python -m cnode list`` and the committed-store test all read that one list (``cnode.book.registry``). A chapter's
default parameters are read from its notebook's ``parameters`` cell.
"""

from __future__ import annotations

import ast
import builtins
import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnode.core import checks
from cnode.core.config import RunConfig
from cnode.core.paths import repo_root

#: Profiles whose runs a chapter trains inline when they are missing (seconds to minutes); the runs of any other
#: profile come from ``python -m cnode sweep``, and a chapter missing some stops with that command.
INLINE_PROFILES = ("smoke", "cpu")


class MissingRuns(RuntimeError):
    """A chapter's runs are not all in the store; the message gives the sweep command that trains them."""


@dataclass(frozen=True)
class Plan:
    """A chapter's runs for one set of parameters, the evaluation suite applied to each (None: none), and the
    mechanism measurements (``cnode.core.mechanism`` settings name) taken of each ConvNODE (None: none)."""

    chapter: str
    runs: tuple[RunConfig, ...]
    suite: str | None
    mechanism: str | None = None
    audit: str | None = None  # ``cnode.core.audit`` settings of the masking card taken of every run
    control_levels: int | None = None  # and of the positive control, behind the vanilla CNODE of the profile
    front: str | None = None  # ``cnode.core.front`` settings of the APGD robust accuracy taken of every run

    def missing(self, root: Path | None = None) -> tuple[list[RunConfig], list[RunConfig]]:
        """(runs not trained, runs not evaluated under ``suite``) in the store at ``root``."""
        from cnode.runs.store import METRICS, eval_file, run_dir

        untrained = [cfg for cfg in self.runs if not (run_dir(cfg, root) / METRICS).exists()]
        name = eval_file(self.suite) if self.suite else None
        unevaluated = [cfg for cfg in self.runs if name and not (run_dir(cfg, root) / name).exists()]
        return untrained, unevaluated

    def unmeasured(self, root: Path | None = None) -> list[RunConfig]:
        """The ConvNODE runs without the plan's mechanism measurements in the store at ``root``."""
        if self.mechanism is None:
            return []
        from cnode.runs.store import mechanism_file, run_dir

        name = mechanism_file(self.mechanism)
        return [cfg for cfg in self.runs if cfg.model == "cnode" and not (run_dir(cfg, root) / name).exists()]

    def controls(self) -> list[RunConfig]:
        """The runs whose model the positive control wraps: the vanilla CNODEs with the profile's T and N."""
        if self.control_levels is None:
            return []
        from cnode.core.audit import sources_for

        return [cfg for cfg in self.runs if cfg.model == "cnode" and "vanilla" not in sources_for(cfg)]

    def unaudited(self, root: Path | None = None) -> list[RunConfig]:
        """The runs without the plan's masking card (or, for ``controls``, without the control's card)."""
        if self.audit is None:
            return []
        from cnode.runs.store import audit_file, run_dir

        controls = {cfg.key() for cfg in self.controls()}
        return [cfg for cfg in self.runs if not (run_dir(cfg, root) / audit_file(cfg, self.audit)).exists()
                or (cfg.key() in controls
                    and not (run_dir(cfg, root) / audit_file(cfg, self.audit, self.control_levels)).exists())]

    def unfronted(self, root: Path | None = None) -> list[RunConfig]:
        """The runs without the plan's front measurement (APGD) in the store at ``root``."""
        if self.front is None:
            return []
        from cnode.runs.store import front_file, run_dir

        name = front_file(self.front)
        return [cfg for cfg in self.runs if not (run_dir(cfg, root) / name).exists()]

    def todo(self, root: Path | None = None) -> list[RunConfig]:
        """The runs not trained, not evaluated under ``suite``, not measured, not audited or without the front
        measurement, in plan order."""
        untrained, unevaluated = self.missing(root)
        keys = {cfg.key() for cfg in untrained + unevaluated + self.unmeasured(root) + self.unaudited(root)
                + self.unfronted(root)}
        return [cfg for cfg in self.runs if cfg.key() in keys]


def parse_value(text: str) -> Any:
    """A command-line value as papermill's ``-p`` reads it: int, float, True/False, None (any case), else the
    string (``python -m cnode train --rho 1``, ``python -m cnode sweep ... -p profile paper``)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def chapter_path(chapter: str) -> Path:
    """``book/<chapter>.ipynb``, or ``drafts/<chapter>.ipynb`` for a chapter whose runs are not yet in the store
    (written and tested, executed once its grid has run, then moved into ``book/``)."""
    path = repo_root() / "book" / f"{chapter}.ipynb"
    return path if path.exists() else repo_root() / "drafts" / f"{chapter}.ipynb"


def _parameter_cell(chapter: str) -> list[ast.AnnAssign]:
    """The ``name: type = value`` statements of the ``parameters`` cell of the chapter's notebook."""
    nb = json.loads(chapter_path(chapter).read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    return [node for node in ast.parse("".join(cell["source"])).body if isinstance(node, ast.AnnAssign)]


def chapter_defaults(chapter: str) -> dict[str, Any]:
    """The literal values of the chapter's parameters cell."""
    return {node.target.id: ast.literal_eval(node.value) for node in _parameter_cell(chapter)}


def chapter_types(chapter: str) -> dict[str, type]:
    """The declared types of the chapter's parameters (what ``checks.parameters`` checks against)."""
    return {node.target.id: getattr(builtins, node.annotation.id) for node in _parameter_cell(chapter)}


def sweep_command(chapter: str, params: Mapping[str, Any] | None = None) -> str:
    """``python -m cnode sweep <chapter>`` with a ``-p``/``-y`` option for every parameter that differs from the
    chapter's default."""
    parts = ["python -m cnode sweep", chapter]
    for name, default in chapter_defaults(chapter).items():
        value = (params or {}).get(name, default)
        if value != default:
            flag = "-y" if isinstance(value, list | dict) else "-p"
            parts += [flag, name, shlex.quote(json.dumps(value) if flag == "-y" else str(value))]
    return " ".join(parts)


def require(found: Plan, params: Mapping[str, Any] | None = None) -> Plan:
    """``found`` (a chapter's plan for ``params``), once every run of a profile not in ``INLINE_PROFILES`` is
    stored, trained, evaluated, measured and audited: otherwise ``MissingRuns`` says in one line how many are
    missing and the sweep command that trains them (a chapter never trains a paper-scale grid in its kernel)."""
    if all(cfg.profile in INLINE_PROFILES for cfg in found.runs):
        return found
    missing = found.todo()
    if missing:
        raise MissingRuns(f"{found.chapter}: {len(missing)} of {len(found.runs)} runs are not in the store yet; train "
                          f"them with `{sweep_command(found.chapter, params)}`, then run the chapter again")
    return found


def checked_seeds(seeds: list[int]) -> list[int]:
    """``seeds`` as a list, once each is a nonnegative integer and there is at least one (a chapter's plan)."""
    if not seeds:
        raise ValueError("seeds must be a non-empty list of integers, got []")
    for seed in seeds:
        checks.nonnegative("seed", seed)
    return list(seeds)


def model_grid(profile: str, datasets: list[str], seeds: list[int], rhos: list[float], device: str,
               with_cnn: bool) -> list[RunConfig]:
    """Per dataset and seed: the vanilla CNODE, optionally the CNN baseline, and both regularizers per rho."""
    runs = []
    for dataset in datasets:
        for seed in checked_seeds(seeds):
            common = dict(dataset=dataset, seed=seed, device=device)
            runs.append(RunConfig.from_profile(profile, **common))
            if with_cnn:
                runs.append(RunConfig.from_profile(profile, model="cnn", **common))
            for rho in rhos:
                checks.positive("rho", rho)
                for reg in ("weight", "jacobian"):
                    runs.append(RunConfig.from_profile(profile, regularizer=reg, rho=rho, **common))
    return runs
