"""The results store: the only module that writes results. One folder per run configuration.

``results/<profile>/<key>/`` holds ``config.json`` (written first), ``checkpoint.pt`` (after every epoch, while
training), ``model.pt`` (state dict) and ``metrics.json`` (history, provenance; written last, so its presence
marks a finished run). Every file is written to a temp name in the same folder and renamed into place, so a
kill at any moment leaves either the old file or the new one. A rerun resumes from the last checkpoint. A file
that does not parse, or that belongs to another configuration, is reported, never silently used.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from torch import nn

from cnode import __version__
from cnode.core import checks, data
from cnode.core.config import RunConfig
from cnode.core.evaluate import SUITES, robustness
from cnode.core.paths import atomic_file, repo_root, results_dir
from cnode.core.runtime import machine
from cnode.core.train import build_model, resolve_device, train


class StoreError(RuntimeError):
    """A stored file is unreadable or belongs to another configuration; the message says what to do."""


@dataclass
class Run:
    """A finished run: its config, trained model (CPU, eval mode), metrics and folder."""

    cfg: RunConfig
    model: nn.Module
    metrics: dict[str, Any]
    path: Path

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.metrics["history"]

    @property
    def final(self) -> dict[str, Any]:
        """The last epoch's record."""
        return self.metrics["history"][-1]


def run_dir(cfg: RunConfig, root: Path | None = None) -> Path:
    """``<results>/<profile>/<key>``."""
    return Path(root or results_dir()) / cfg.profile / cfg.key()


#: the file whose presence marks a finished run
METRICS = "metrics.json"


def eval_file(suite_name: str) -> str:
    """File name of a run's evaluation under the named suite (``core.evaluate.SUITES``), beside the run."""
    return f"eval-{SUITES[checks.one_of('suite', suite_name, SUITES)].key()}.json"


def mechanism_file(settings_name: str) -> str:
    """File name of a run's mechanism measurements under the named settings (``core.mechanism.MECHANISMS``)."""
    from cnode.core.mechanism import MECHANISMS

    return f"mechanism-{MECHANISMS[checks.one_of('mechanism', settings_name, MECHANISMS)].key()}.json"


def write_atomic(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` via a temp file in the same folder, fsync, then rename."""
    with atomic_file(path) as fh:
        fh.write(payload)


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()


def _torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path} is unreadable ({type(exc).__name__}); delete {path.parent} and rerun") from exc


def _read_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated, foreign or corrupt: all mean the same here
        raise StoreError(f"{path} is unreadable (truncated or corrupt?); delete it and rerun") from exc


def _check_config(folder: Path, cfg: RunConfig) -> None:
    """The folder's config.json must define this run (``RunConfig.identity``): otherwise it is foreign."""
    stored = _read_json(folder / "config.json")
    try:
        theirs = RunConfig(**stored).identity()
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{folder / 'config.json'} is not a valid configuration ({exc}); delete {folder} and "
                         "rerun") from exc
    mine = cfg.identity()
    if theirs != mine:
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise StoreError(f"{folder / 'config.json'} belongs to another configuration (differs in {diff}); "
                         f"delete {folder} and rerun")


def _provenance(cfg: RunConfig) -> dict[str, Any]:
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo_root(), capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    commit = commit or os.environ.get("CNODE_GIT_COMMIT")  # a copy of the tree without .git (a lent GPU machine)
    device = resolve_device(cfg.device)
    found = machine(device)
    return {"cnode": __version__, "git_commit": commit, "torch": torch.__version__, "device": device.type,
            "device_name": found["gpu"] or found["cpu"], "threads": torch.get_num_threads(),
            "python": platform.python_version(), "machine": found}



def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(cfg: RunConfig, root: Path | None = None) -> Run | None:
    """The finished run of ``cfg``, or None when it is not in the store."""
    folder = run_dir(cfg, root)
    if not (folder / METRICS).exists():
        return None
    _check_config(folder, cfg)
    metrics = _read_json(folder / METRICS)
    expected = metrics.get("model_sha256")
    if expected is not None and _sha256(folder / "model.pt") != expected:
        raise StoreError(f"{folder / 'model.pt'} does not match the sha256 in its metrics.json (changed or corrupt);"
                         f" restore it from git, or delete {folder} and rerun")
    model, state = build_model(cfg), _read_torch(folder / "model.pt")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise StoreError(f"{folder / 'model.pt'} does not fit this configuration; delete {folder} and rerun") from exc
    return Run(cfg, model.eval(), metrics, folder)


def load_or_train(cfg: RunConfig, root: Path | None = None) -> Run:
    """The stored run of ``cfg``, training it (or resuming it from its last checkpoint) when missing.

    Training holds the key's lock (``<run folder>/.lock``, ``filelock``; the OS releases it when a killed
    process dies), so two processes never train one key at once: the second waits, then loads the first's run.
    """
    found = load(cfg, root)
    if found is not None:
        return found
    folder = run_dir(cfg, root)
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(folder / ".lock"):
        found = load(cfg, root)  # finished by another process while this one waited
        return found if found is not None else _train_into(cfg, folder)


def _train_into(cfg: RunConfig, folder: Path) -> Run:
    """Train ``cfg`` (resuming from ``folder``'s checkpoint) and store it in ``folder``; the caller holds the lock."""
    if (folder / "config.json").exists():
        _check_config(folder, cfg)
    else:
        write_atomic(folder / "config.json", _json_bytes(cfg.to_dict()))
    ckpt = folder / "checkpoint.pt"
    resume = _read_torch(ckpt) if ckpt.exists() else None
    model, history = train(cfg, resume=resume, on_epoch=lambda state: write_atomic(ckpt, _torch_bytes(state)))
    weights = _torch_bytes(model.state_dict())
    metrics = {"config": cfg.to_dict(), "key": cfg.key(), "history": history, "provenance": _provenance(cfg),
               "wall_seconds": sum(record["seconds"] for record in history),
               "resumed_at_epoch": len(resume["history"]) if resume else None,
               "model_sha256": hashlib.sha256(weights).hexdigest()}
    write_atomic(folder / "model.pt", weights)
    write_atomic(folder / "metrics.json", _json_bytes(metrics))
    ckpt.unlink(missing_ok=True)
    return Run(cfg, model.eval(), metrics, folder)


def list_runs(root: Path | None = None) -> list[dict[str, Any]]:
    """One summary row per finished run in the store: profile, key, label, epochs, final accuracies."""
    rows = []
    for metrics_path in sorted(Path(root or results_dir()).glob("*/*/metrics.json")):
        metrics = _read_json(metrics_path)
        cfg = metrics["config"]
        last = metrics["history"][-1]
        rows.append({"profile": cfg["profile"], "key": metrics["key"], "dataset": cfg["dataset"],
                     "model": cfg["model"], "regularizer": cfg["regularizer"], "rho": cfg["rho"],
                     "seed": cfg["seed"], "epochs": last["epoch"], "test_acc": last["test_acc"],
                     "certified_rate_min": min(last["certified_rate"]) if last.get("certified_rate") else None})
    return rows


def _load_or_derive(run: Run, name: str, compute: Callable[[], dict[str, Any]],
                    device: torch.device | None = None) -> dict[str, Any]:
    """The JSON ``name`` beside ``run``, computed by ``compute()`` on ``device`` (default: the run's) and written
    atomically with the ``machine`` it was computed on when missing, under the file's own lock ``.<name>.lock``
    (one process computes it, a concurrent one then reads its result; two workers may compute a finished run's
    different files at once: its suite and its front, say)."""
    path = run.path / name
    if path.exists():
        return _read_json(path)
    with FileLock(run.path / f".{name}.lock"):
        if path.exists():
            return _read_json(path)
        payload = _json_bytes({**compute(), "machine": machine(device or resolve_device(run.cfg.device))})
        write_atomic(path, payload)
        return json.loads(payload)  # exactly what a later call reads back


def load_or_evaluate(run: Run, suite_name: str, root: Path | None = None) -> dict[str, Any]:
    """Robustness results of ``run`` under the named suite, cached in the run's folder as
    ``eval-<suite key>.json`` (computed on the run's test split when missing)."""
    suite = SUITES[checks.one_of("suite", suite_name, SUITES)]

    def compute() -> dict[str, Any]:
        images, labels = data.load(run.cfg.dataset, "test", suite.test_subset)
        model = run.model.to(resolve_device(run.cfg.device))
        try:
            return {"suite": suite_name, "suite_settings": dataclasses.asdict(suite),
                    **robustness(model, images, labels, suite)}
        finally:
            run.model.cpu()

    return _load_or_derive(run, eval_file(suite_name), compute)


def load_or_measure(run: Run, settings_name: str) -> dict[str, Any]:
    """The mechanism measurements of a ConvNODE run (``cnode.core.mechanism``, book chapter 6) under the named
    settings, cached beside the run as ``mechanism-<settings key>.json``; on CPU, on the run's test split."""
    from cnode.core.mechanism import MECHANISMS, measure

    settings = MECHANISMS[checks.one_of("mechanism", settings_name, MECHANISMS)]

    def compute() -> dict[str, Any]:
        images, labels = data.load(run.cfg.dataset, "test", settings.images)
        return {"mechanism": settings_name, **measure(run.model.cpu(), run.cfg.rho, images, labels, settings)}

    return _load_or_derive(run, mechanism_file(settings_name), compute, torch.device("cpu"))


def target_file(settings_name: str) -> str:
    """File name of a Jacobian run's own-target measurement under the named settings (``core.target.TARGETS``)."""
    from cnode.core.target import TARGETS

    return f"target-{TARGETS[checks.one_of('target', settings_name, TARGETS)].key()}.json"


def load_or_target(run: Run, settings_name: str) -> dict[str, Any]:
    """The share of (test image, step) pairs at which a ConvNODE run meets the Jacobian regularizer's target
    ``lambda_max <= -rho`` (``cnode.core.target``), cached beside the run; on CPU, on the run's test split."""
    from cnode.core.target import TARGETS, measure

    settings = TARGETS[checks.one_of("target", settings_name, TARGETS)]

    def compute() -> dict[str, Any]:
        images, _ = data.load(run.cfg.dataset, "test", settings.images)
        return {"target": settings_name, **measure(run.model.cpu(), run.cfg.rho, images, settings,
                                                   run.cfg.jacobian_iters)}

    return _load_or_derive(run, target_file(settings_name), compute, torch.device("cpu"))


def front_file(settings_name: str) -> str:
    """File name of a run's front measurement (APGD, ``core.front.FRONTS``) under the named settings."""
    from cnode.core.front import FRONTS

    return f"front-{FRONTS[checks.one_of('front', settings_name, FRONTS)].key()}.json"


def load_or_front(run: Run, settings_name: str) -> dict[str, Any]:
    """The robust accuracy of a run under the front's attack suite (``cnode.core.front``, book chapter 9), cached
    beside the run; on the run's device, on its test split. Each finished radius is kept in
    ``front-<key>.partial.json`` (git-ignored) until the whole measurement is stored: a killed one resumes there."""
    from cnode.core.front import FRONTS, measure

    settings = FRONTS[checks.one_of("front", settings_name, FRONTS)]
    name = front_file(settings_name)
    partial = run.path / name.replace(".json", ".partial.json")

    def compute() -> dict[str, Any]:
        images, labels = data.load(run.cfg.dataset, "test", settings.images)
        device = resolve_device(run.cfg.device)
        try:
            return {"front": settings_name, **measure(
                run.model.to(device), images.to(device), labels.to(device), settings, run.cfg.dataset,
                _read_json(partial) if partial.exists() else None,
                lambda state: write_atomic(partial, _json_bytes(state)))}
        finally:
            run.model.cpu()

    found = _load_or_derive(run, name, compute)
    partial.unlink(missing_ok=True)
    return found


def load_or_evaluate_all(cfgs: list[RunConfig], suite_name: str,
                         root: Path | None = None) -> list[tuple[RunConfig, dict[str, Any]]]:
    """Train (or load) and evaluate (or load) every config, with one progress bar over the runs."""
    from tqdm import tqdm

    out = []
    for cfg in tqdm(cfgs, desc=f"runs ({suite_name} suite)", disable=None):
        out.append((cfg, load_or_evaluate(load_or_train(cfg, root), suite_name, root)))
    return out


def finals(cfgs: list[RunConfig], root: Path | None = None) -> list[tuple[RunConfig, dict[str, Any]]]:
    """(config, last-epoch record) of every config's stored run; a missing run is an error."""
    out = []
    for cfg in cfgs:
        run = load(cfg, root)
        if run is None:
            raise StoreError(f"{cfg.label()} is not in the store under {run_dir(cfg, root)}; train it first")
        out.append((cfg, run.final))
    return out


def audit_file(cfg: RunConfig, settings_name: str, control_levels: int | None = None) -> str:
    """File name of the masking card of ``cfg`` beside its run (``load_or_audit``): keyed by the audit settings,
    the AutoAttack version and the transfer sources' keys."""
    from cnode.core import audit

    settings = audit.AUDITS[checks.one_of("audit", settings_name, audit.AUDITS)]
    sources = audit.sources_for(cfg)
    if control_levels is not None:
        sources["vanilla"] = cfg
    key = settings.key([src.key() for src in sources.values()])
    return f"audit-{key}.json" if control_levels is None else f"audit-control{control_levels}-{key}.json"


def load_or_audit(run: Run, settings_name: str, control_levels: int | None = None) -> dict[str, Any]:
    """The gradient-masking card of ``run`` (``cnode.core.audit``, book chapter 7) under the named settings, cached
    beside the run (``audit_file``). Transfer attacks are crafted on ``audit.sources_for`` (trained here if
    missing). ``control_levels``: the card of the positive control instead: ``run``'s model behind an input
    quantization to that many grey levels, with ``run`` itself among the transfer sources."""
    from cnode.core import audit

    settings = audit.AUDITS[checks.one_of("audit", settings_name, audit.AUDITS)]

    def compute() -> dict[str, Any]:
        device = resolve_device(run.cfg.device)
        sources = {name: load_or_train(cfg) for name, cfg in audit.sources_for(run.cfg).items()}
        if control_levels is not None:
            sources["vanilla"] = run
        images, labels = data.load(run.cfg.dataset, "test", settings.images)
        model = run.model.to(device) if control_levels is None else audit.Quantized(run.model.to(device),
                                                                                     control_levels)
        start = time.perf_counter()
        found = audit.card(model, images.to(device), labels.to(device), settings,
                           {k: src.model.to(device) for k, src in sources.items()})
        return {"audit": settings_name, "settings": dataclasses.asdict(settings),
                "sources": {k: src.cfg.key() for k, src in sources.items()}, "control_levels": control_levels,
                **found, "threads": torch.get_num_threads(), "seconds": time.perf_counter() - start,
                "device": device.type}

    return _load_or_derive(run, audit_file(run.cfg, settings_name, control_levels), compute)
