"""The chapters, each one module ``cnode.book.cNN_topic`` beside its notebook ``book/NN_topic.ipynb``: found by
name, so that a chapter is registered once. A module with a ``plan(params) -> Plan`` function has runs."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from cnode import book
from cnode.runs import plans
from cnode.runs.plans import Plan


def modules() -> dict[str, ModuleType]:
    """Chapter stem ("03_robustness") -> its module (``cnode.book.c03_robustness``), in chapter order."""
    found = sorted(m.name for m in pkgutil.iter_modules(book.__path__) if re.fullmatch(r"c\d\d_\w+", m.name))
    return {name[1:]: importlib.import_module(f"cnode.book.{name}") for name in found}


def with_runs() -> list[str]:
    """The chapters that train or evaluate anything (their module has ``plan``)."""
    return [stem for stem, module in modules().items() if hasattr(module, "plan")]


def plan(chapter: str, params: Mapping[str, Any] | None = None) -> Plan:
    """The plan of ``chapter`` (a stem such as "03_robustness"): its parameters are taken from ``params`` (e.g. the
    chapter's ``globals()``) where given, else from the chapter's defaults."""
    if chapter not in with_runs():
        raise ValueError(f"no plan for chapter {chapter!r}; chapters with runs: {', '.join(with_runs())}")
    given = params or {}
    values = {name: given.get(name, default) for name, default in plans.chapter_defaults(chapter).items()}
    return modules()[chapter].plan(values)


def require(chapter: str, params: Mapping[str, Any] | None = None) -> Plan:
    """``plan(chapter, params)`` once its paper-scale runs are all stored (``plans.require``)."""
    return plans.require(plan(chapter, params), params)


#: The paper-scale grid in its priority order: (chapter, parameters of its plan); ``python -m cnode grid``.
PAPER_GRID: list[tuple[str, dict[str, Any]]] = [
    ("03_robustness", {"profile": "paper", "suite": "paper"}),
    ("06_horizon", {"profile": "paper", "suite": "paper", "mechanism": "paper"}),
    ("07_trust", {"profile": "paper", "audit": "paper"}),
    ("04_rho_sweep", {"profile": "paper", "suite": "paper", "seeds": [0, 1, 2]}),
    ("08_rho_search", {"profile": "paper", "suite": "paper"}),
    ("09_front", {"profile": "paper", "suite": "paper", "front": "paper"}),  # new runs first, then every front
]

#: A rehearsal of the same machinery in seconds (tests): chapter 3 and the audit on smoke runs, one seed.
SMOKE_GRID: list[tuple[str, dict[str, Any]]] = [
    ("03_robustness", {"profile": "smoke", "suite": "smoke", "seeds": [0], "datasets": ["mnist"]}),
    ("07_trust", {"profile": "smoke", "audit": "smoke", "datasets": ["mnist"]}),
]
