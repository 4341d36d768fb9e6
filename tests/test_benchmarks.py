"""benchmarks/run.py end to end at its tiny ``--quick`` setting, and chapter 5 reading what it wrote.

No timing is asserted: only that every figure is measured, finite and consistent with its definition.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from notebooks import BOOK, ROOT, glued, run

pytestmark = pytest.mark.notebook


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "quick.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "x vanilla" in done.stdout and "Jacobian regularizer" in done.stdout  # the printed table
    return out


def test_quick_benchmark_measures_every_figure(quick: Path):
    bench = json.loads(quick.read_text())
    steps = {row["name"]: row for row in bench["steps"]}
    assert {"reference", "vanilla", "odeint", "weight", "jacobian", "cnn"} <= set(steps)
    assert steps["vanilla"]["ratio"] == 1.0
    for row in steps.values():
        assert row["median_ms"] > 0 and row["q25_ms"] <= row["median_ms"] <= row["q75_ms"] and row["saved_mb"] > 0
    assert steps["vanilla"]["peak_mb"] is not None and steps["vanilla"]["peak_mb"] >= 0
    assert steps["jacobian"]["iters"] == bench["settings"]["jacobian_default_iters"]
    for row in bench["estimates"]:  # a Rayleigh quotient never exceeds the dense lambda_max
        assert row["estimate"] <= row["dense"] + 1e-4 * max(1.0, abs(row["dense"]))
        assert math.isfinite(row["rel_error"])
    assert {row["model"] for row in bench["pgd"]} == {"vanilla", "weight", "jacobian", "cnn"}
    assert all(row["images_per_s"] > 0 and 0 <= row["robust_acc"] <= 1 for row in bench["pgd"])
    new = [row for row in bench["pgd"] if row["path"] == "new"]
    assert len(new) == 4 and all(row["speedup"] > 0 and row["differing_images"] >= 0 for row in new)
    assert bench["machine"]["threads"] == 2 and "/" not in bench["machine"]["device_name"]
    assert not any(row["compiled"] for row in bench["steps"])  # --quick never waits for a compiler
    assert all(row["first_call_s"] > 0 and row["round_ratio_q25"] <= row["round_ratio_q75"] for row in bench["steps"])
    assert steps["vanilla"]["q75_ratio"] == 1.0 and len(steps["vanilla"]["times_ms"]) == bench["settings"]["rounds"]
    bounds = bench["bounds"]
    assert bounds["copy_gb_s"] > 0 and bounds["matmul_gflop_s"] > 0 and bounds["vanilla_gflop"] > 0
    assert len(bench["runs"]) == 1 and bench["runs"][0]["targets"] == bench["targets"]  # quick: no history


def test_the_json_keeps_the_last_runs(tmp_path: Path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from run import with_history
    finally:
        sys.path.pop(0)
    out = tmp_path / "cpu.json"

    def result(i: int, quick: bool = False) -> dict:
        return {"machine": {"device": "cpu", "date": f"d{i}"}, "targets": {"i": i}, "settings": {"quick": quick},
                "steps": [], "pgd": []}

    for i in range(5):
        out.write_text(json.dumps(with_history(result(i), out, keep=3)))
    assert [r["targets"]["i"] for r in json.loads(out.read_text())["runs"]] == [2, 3, 4]
    assert [r["targets"]["i"] for r in with_history(result(9, quick=True), out, keep=3)["runs"]] == [9]
    assert [r["targets"]["i"] for r in with_history(result(9), out, keep=1)["runs"]] == [9]


def test_cost_chapter_reads_a_fresh_benchmark(quick: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CNODE_RESULTS", str(tmp_path / "results"))  # the precision runs train there
    nb = run(BOOK / "05_cost.ipynb", tmp_path / "05.ipynb", benchmark=str(quick), gpu_benchmark=str(tmp_path / "none"),
             precision_profile="smoke", precision_seeds=[0], precision_suite="smoke")
    values = glued(nb)
    bench = json.loads(quick.read_text())
    assert values["ratio_weight"] == pytest.approx(bench["targets"]["weight_ratio"], abs=1e-3)
    assert values["default_iters"] == bench["settings"]["jacobian_default_iters"]
    assert "No GPU" in values["gpu_line"]


def test_bad_benchmark_file_is_one_clear_line(tmp_path: Path):
    from cnode import cost

    with pytest.raises(FileNotFoundError, match="run `make bench`"):
        cost.load_benchmark(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="is not a benchmark result"):
        cost.load_benchmark(tmp_path / "bad.json")
