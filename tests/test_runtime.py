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


@pytest.mark.parametrize("module", ["cnode.data", "cnode.models", "cnode.train", "cnode.store", "cnode.theory"])
def test_importing_cnode_flushes_denormals(module: str):
    assert probe(f"import {module}; ") == 0.0
