"""One plan per chapter: every training and evaluation a chapter needs for given parameters (issue 12).

The chapters take their runs from here, and so do ``python -m cnode list`` and the committed-store test, so a
chapter's grid is written down once. A chapter's default parameters are read from its ``parameters`` cell.
"""

from __future__ import annotations

import ast
import builtins
import json
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnode import experiments
from cnode.config import RunConfig
from cnode.paths import repo_root

#: Profiles whose runs a chapter trains inline when they are missing (seconds to minutes); the runs of any other
#: profile come from ``python -m cnode sweep``, and a chapter missing some stops with that command.
INLINE_PROFILES = ("smoke", "cpu")


class MissingRuns(RuntimeError):
    """A chapter's runs are not all in the store; the message gives the sweep command that trains them."""


@dataclass(frozen=True)
class Plan:
    """A chapter's runs for one set of parameters, the evaluation suite applied to each (None: none), and the
    mechanism measurements (``cnode.mechanism`` settings name) taken of each ConvNODE (None: none)."""

    chapter: str
    runs: tuple[RunConfig, ...]
    suite: str | None
    mechanism: str | None = None
    audit: str | None = None  # ``cnode.audit`` settings of the masking card taken of every run
    control_levels: int | None = None  # and of the positive control, behind the vanilla CNODE of the profile

    def missing(self, root: Path | None = None) -> tuple[list[RunConfig], list[RunConfig]]:
        """(runs not trained, runs not evaluated under ``suite``) in the store at ``root``."""
        from cnode.evaluate import SUITES
        from cnode.store import run_dir

        untrained = [cfg for cfg in self.runs if not (run_dir(cfg, root) / "metrics.json").exists()]
        name = f"eval-{SUITES[self.suite].key()}.json" if self.suite else None
        unevaluated = [cfg for cfg in self.runs if name and not (run_dir(cfg, root) / name).exists()]
        return untrained, unevaluated

    def unmeasured(self, root: Path | None = None) -> list[RunConfig]:
        """The ConvNODE runs without the plan's mechanism measurements in the store at ``root``."""
        if self.mechanism is None:
            return []
        from cnode.mechanism import MECHANISMS
        from cnode.store import run_dir

        name = f"mechanism-{MECHANISMS[self.mechanism].key()}.json"
        return [cfg for cfg in self.runs if cfg.model == "cnode" and not (run_dir(cfg, root) / name).exists()]

    def controls(self) -> list[RunConfig]:
        """The runs whose model the positive control wraps: the vanilla CNODEs with the profile's T and N."""
        if self.control_levels is None:
            return []
        from cnode.audit import sources_for

        return [cfg for cfg in self.runs if cfg.model == "cnode" and "vanilla" not in sources_for(cfg)]

    def unaudited(self, root: Path | None = None) -> list[RunConfig]:
        """The runs without the plan's masking card (or, for ``controls``, without the control's card)."""
        if self.audit is None:
            return []
        from cnode.store import audit_file, run_dir

        controls = {cfg.key() for cfg in self.controls()}
        return [cfg for cfg in self.runs if not (run_dir(cfg, root) / audit_file(cfg, self.audit)).exists()
                or (cfg.key() in controls
                    and not (run_dir(cfg, root) / audit_file(cfg, self.audit, self.control_levels)).exists())]

    def todo(self, root: Path | None = None) -> list[RunConfig]:
        """The runs not trained, not evaluated under ``suite``, not measured or not audited, in plan order."""
        untrained, unevaluated = self.missing(root)
        keys = {cfg.key() for cfg in untrained + unevaluated + self.unmeasured(root) + self.unaudited(root)}
        return [cfg for cfg in self.runs if cfg.key() in keys]


def _training(p: Mapping[str, Any]) -> tuple[list[RunConfig], str | None]:
    runs = experiments.training_runs(p["profile"], p["dataset"], p["rho"], p["seed"], p["device"], p["epochs"])
    return list(runs.values()), None


def _robustness(p: Mapping[str, Any]) -> tuple[list[RunConfig], str | None]:
    return experiments.robustness_runs(p["profile"], p["datasets"], p["seeds"], p["rhos"], p["device"]), p["suite"]


def _sweep(p: Mapping[str, Any]) -> tuple[list[RunConfig], str | None]:
    return experiments.sweep_runs(p["profile"], p["datasets"], p["seeds"], p["rhos"], p["device"]), p["suite"]


def _search(p: Mapping[str, Any]) -> tuple[list[RunConfig], str | None]:
    return experiments.rho_search_runs(p["profile"], p["dataset"], p["seeds"], p["rhos"], p["long_rhos"],
                                       p["long_T"], p["gammas"], p["long_gammas"],
                                       p["device"]), p["suite"]


def _cost(p: Mapping[str, Any]) -> tuple[list[RunConfig], str | None]:
    runs = experiments.precision_runs(p["precision_profile"], p["precision_dataset"], p["precision_regularizer"],
                                      p["precision_rho"], p["precision_seeds"])
    return [cfg for cfgs in runs.values() for cfg in cfgs], p["precision_suite"]


def _horizon(p: Mapping[str, Any]) -> tuple[list[RunConfig], str | None, str]:
    runs = experiments.horizon_runs(p["profile"], p["datasets"], p["seeds"], p["horizons"], p["rho"], p["fine_T"],
                                    p["fine_steps"], p["fine_dataset"], p["fine_regularizer"], p["weight_decay"],
                                    p["device"])
    return runs["main"] + runs["fine"] + runs["decay"], p["suite"], p["mechanism"]


#: chapter stem -> its runs and suite from its parameters; chapters without runs (01) are not listed
def _trust(p: Mapping[str, Any]) -> tuple[list[RunConfig], None, None, str, int]:
    runs = experiments.trust_runs(p["profile"], p["datasets"], p["seeds"], p["rho"], p["long_T"], p["device"])
    return runs, None, None, p["audit"], p["control_levels"]


#: (a chapter's plan function returns its runs, its suite, and optionally its mechanism settings)
PLANS: dict[str, Callable[[Mapping[str, Any]], tuple[Any, ...]]] = {
    "02_training": _training, "03_robustness": _robustness, "04_rho_sweep": _sweep, "05_cost": _cost,
    "06_horizon": _horizon, "07_trust": _trust, "08_rho_search": _search,
}


def _parameter_cell(chapter: str) -> list[ast.AnnAssign]:
    """The ``name: type = value`` statements of the ``parameters`` cell of ``book/<chapter>.ipynb``."""
    nb = json.loads((repo_root() / "book" / f"{chapter}.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    return [node for node in ast.parse("".join(cell["source"])).body if isinstance(node, ast.AnnAssign)]


def chapter_defaults(chapter: str) -> dict[str, Any]:
    """The literal values of the chapter's parameters cell."""
    return {node.target.id: ast.literal_eval(node.value) for node in _parameter_cell(chapter)}


def chapter_types(chapter: str) -> dict[str, type]:
    """The declared types of the chapter's parameters (what ``checks.parameters`` checks against)."""
    return {node.target.id: getattr(builtins, node.annotation.id) for node in _parameter_cell(chapter)}


def plan(chapter: str, params: Mapping[str, Any] | None = None) -> Plan:
    """The plan of ``chapter`` (a stem such as "03_robustness"): its parameters are taken from ``params``
    (e.g. the chapter's ``globals()``) where given, else from the chapter's defaults."""
    if chapter not in PLANS:
        raise ValueError(f"no plan for chapter {chapter!r}; chapters with runs: {', '.join(PLANS)}")
    defaults = chapter_defaults(chapter)
    given = params or {}
    values = {name: given.get(name, default) for name, default in defaults.items()}
    runs, *rest = PLANS[chapter](values)
    return Plan(chapter, tuple(runs), *rest)


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


def require(chapter: str, params: Mapping[str, Any] | None = None) -> Plan:
    """``plan(chapter, params)``, and for runs of profiles not in ``INLINE_PROFILES`` a check that every run is
    stored, trained and evaluated: otherwise ``MissingRuns`` says in one line how many are missing and the sweep
    command that trains them (a chapter never trains a paper-scale grid inside its kernel)."""
    found = plan(chapter, params)
    if all(cfg.profile in INLINE_PROFILES for cfg in found.runs):
        return found
    missing = found.todo()
    if missing:
        raise MissingRuns(f"{chapter}: {len(missing)} of {len(found.runs)} runs are not in the store yet; train them "
                          f"with `{sweep_command(chapter, params)}`, then run the chapter again")
    return found
