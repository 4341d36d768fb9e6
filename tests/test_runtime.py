"""Denormals are flushed in every process that loads data or builds a model (issue 11, target 6)."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = "import torch; {imports}print((torch.tensor(1e-39) * 1).item())"


def probe(imports: str) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE.format(imports=imports)], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip())


def test_a_bare_torch_process_keeps_denormals():  # the control: without cnode the probe is not zero
    assert probe("") != 0.0


@pytest.mark.parametrize("module", ["cnode.core.data", "cnode.core.models", "cnode.core.train", "cnode.runs.store",
                                    "cnode.core.theory"])
def test_importing_cnode_flushes_denormals(module: str):
    assert probe(f"import {module}; ") == 0.0


def test_the_machine_record_names_cpu_instruction_set_and_threads():
    import torch

    from cnode.core import runtime

    found = runtime.machine()
    assert found["cpu"] and found["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert found["threads"] == torch.get_num_threads() and found["gpu"] is None and found["torch"] == torch.__version__
    assert runtime.machine_id(found).startswith(f"{found['cpu']}, {found['cpu_capability']}, flags ")
    assert runtime.same_machine(found, dict(found)) is True
    assert runtime.same_machine(found, {**found, "cpu_flags": "0" * 12}) is False  # same name, other kernels
    assert runtime.same_machine(found, None) is None and runtime.machine_id(None) is None  # older records
    assert runtime.machine_of({"provenance": {"machine": found}}) == found == runtime.machine_of({"machine": found})
    assert runtime.machine_label({"device": "cpu", "device_name": "AMD EPYC"}) == "cpu: AMD EPYC"
