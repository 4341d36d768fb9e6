"""Reproduction: retraining the first epoch of a committed run gives its stored record, bit for bit on the machine
that stored it and within ``cnode.runs.reproduction``'s tolerance on another; every committed model file matches the
sha256 in its metrics. The pure tests at the bottom show each mode failing on a record perturbed just beyond it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch._dynamo

from cnode.book import registry
from cnode.core.paths import results_dir
from cnode.core.runtime import machine, machine_id, machine_of
from cnode.core.train import train
from cnode.runs import reproduction
from cnode.runs.store import load

#: a record as the store keeps it (chapter 2's laptop run, rounded), for the pure tests
RECORD = {"ce": 10.453632425308227, "certified_channels": 0, "certified_rate": [-23.51001739501953, -23.5119],
          "channels_total": 80, "epoch": 1, "loss": 11308.47304296875, "lr": 0.05, "reg": 11298.019352734374,
          "test_acc": 0.8285, "train_acc": 0.7018, "weight_reg": 3794.6865234375, "seconds": 10.0}
IMAGES = {"test_acc": 2000, "train_acc": 10000}


def first_epoch(cfg, threads: int) -> dict:
    """The first epoch's record of ``cfg`` retrained here with ``threads`` threads, compiled afresh as the training
    process did (no graphs or guards from earlier tests)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)  # float sums depend on the thread split
    torch._dynamo.reset()
    try:
        _, history = train(dataclasses.replace(cfg, epochs=1))
    finally:
        torch.set_num_threads(before)
    return history[0]


@pytest.fixture(scope="module")
def committed():
    """Chapter 2's weight-regularized CNODE on the laptop profile (a paper-scale epoch would cost a minute), its
    stored run, and its first epoch retrained on this machine."""
    cfg = registry.plan("02_training", {"profile": "cpu"}).runs[1]
    stored = load(cfg)
    assert stored is not None, f"{cfg.label()} is not in the committed store"
    return cfg, stored, first_epoch(cfg, stored.metrics["provenance"]["threads"])


@pytest.mark.train
def test_first_epoch_of_a_committed_run_is_reproduced(committed, capsys):
    cfg, stored, mine = committed
    theirs = machine_of(stored.metrics)
    here = {**machine(), "threads": stored.metrics["provenance"]["threads"]}
    how = reproduction.mode(theirs, here)
    with capsys.disabled():
        print(f"\nreproduction: {how} mode (stored on {machine_id(theirs) or 'an unrecorded machine'}; "
              f"retrained on {machine_id(here)})")
    sizes = {"test_acc": cfg.test_subset, "train_acc": cfg.train_subset}
    assert reproduction.differences(mine, stored.history[0], how, sizes) == []


@pytest.mark.train
def test_a_second_retraining_on_this_machine_is_identical_bit_for_bit(committed):
    """The bitwise mode on a real record: this machine's own retrained epoch, stored with its machine, is met
    exactly by a second retraining (no tolerance involved)."""
    cfg, stored, mine = committed
    threads = stored.metrics["provenance"]["threads"]
    here = {**machine(), "threads": threads}
    assert reproduction.mode(here, here) == "bitwise"
    again = first_epoch(cfg, threads)
    assert reproduction.differences(again, mine, "bitwise", {}) == []


def test_committed_models_match_their_sha256():
    found = sorted(Path(results_dir()).glob("*/*/metrics.json"))
    assert found
    for path in found:
        expected = json.loads(path.read_text()).get("model_sha256")
        assert expected, f"{path} carries no model_sha256"
        assert hashlib.sha256((path.parent / "model.pt").read_bytes()).hexdigest() == expected, path.parent


# ---- pure: the modes and their tolerances (make check) ----

HERE = {"cpu": "Intel(R) Xeon(R) Processor", "cpu_capability": "AVX512", "cpu_flags": "fc7df03f53a7", "gpu": None,
        "torch": "2.14.1", "threads": 2}


def test_the_mode_is_bitwise_only_for_a_record_of_this_machine():
    assert reproduction.mode(HERE, dict(HERE)) == "bitwise"
    assert reproduction.mode({**HERE, "cpu": "AMD EPYC", "cpu_capability": "AVX2"}, HERE) == "tolerance"  # faked
    assert reproduction.mode({**HERE, "threads": 1}, HERE) == "tolerance"
    assert reproduction.mode(None, HERE) == "tolerance"  # stored before machines were recorded


def test_bitwise_mode_fails_on_one_ulp():
    assert reproduction.differences(dict(RECORD), RECORD, "bitwise", IMAGES) == []
    nudged = {**RECORD, "ce": float(np.nextafter(RECORD["ce"], np.inf))}
    assert [d.split(":")[0] for d in reproduction.differences(nudged, RECORD, "bitwise", IMAGES)] == ["ce"]


@pytest.mark.parametrize("field", ["ce", "loss", "reg", "weight_reg"])
def test_tolerance_mode_holds_just_within_and_fails_just_beyond(field):
    tol = reproduction.REL_TOL
    within = {**RECORD, field: RECORD[field] * (1 + 0.99 * tol)}
    beyond = {**RECORD, field: RECORD[field] * (1 + 1.01 * tol)}
    assert reproduction.differences(within, RECORD, "tolerance", IMAGES) == []
    assert [d.split(":")[0] for d in reproduction.differences(beyond, RECORD, "tolerance", IMAGES)] == [field]


def test_tolerance_mode_counts_accuracies_in_images_and_rates_elementwise():
    n = IMAGES["test_acc"]
    within = {**RECORD, "test_acc": RECORD["test_acc"] + reproduction.IMAGES / n}
    beyond = {**RECORD, "test_acc": RECORD["test_acc"] + (reproduction.IMAGES + 1) / n}
    assert reproduction.differences(within, RECORD, "tolerance", IMAGES) == []
    assert reproduction.differences(beyond, RECORD, "tolerance", IMAGES)[0].startswith("test_acc:")
    rates = list(RECORD["certified_rate"])
    rates[1] *= 1 + 1.01 * reproduction.REL_TOL
    assert reproduction.differences({**RECORD, "certified_rate": rates}, RECORD, "tolerance", IMAGES)
    for exact in ("epoch", "channels_total"):
        assert reproduction.differences({**RECORD, exact: RECORD[exact] + 1}, RECORD, "tolerance", IMAGES)
    assert reproduction.differences({**RECORD, "certified_channels": 2}, RECORD, "tolerance", IMAGES)
    assert reproduction.differences({**RECORD, "new": 1.0}, RECORD, "tolerance", IMAGES) == [
        "new: only in the retrained record"]
