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
    assert steps["vanilla"]["peak_mb"] is not None and math.isfinite(steps["vanilla"]["peak_mb"])
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


@pytest.mark.parametrize("megabytes", [64, 256])
def test_peak_memory_of_a_step_is_what_it_allocates(megabytes: int):
    """``memory.peak_megabytes`` on a step whose peak is known: a fresh tensor of ``megabytes`` MB, written
    through (so its pages are resident), then freed. The first call (setup, like a compilation) takes four times
    as much and is not counted."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import memory
    finally:
        sys.path.pop(0)
    import torch

    calls = []

    def step(_: int) -> None:
        torch.ones((4 if not calls else 1) * megabytes * 2**18)  # float32: 4 bytes each
        calls.append(1)

    peak = memory.peak_megabytes(step, torch.device("cpu"))
    assert 0.9 * megabytes <= peak <= 1.5 * megabytes


def test_the_json_keeps_the_last_runs(tmp_path: Path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from run import with_history
    finally:
        sys.path.pop(0)
    out = tmp_path / "cpu.json"

    def result(i: int, quick: bool = False, cpu: str = "AMD EPYC") -> dict:
        return {"machine": {"device": "cpu", "device_name": cpu, "date": f"d{i}"}, "targets": {"i": i},
                "settings": {"quick": quick}, "steps": [], "pgd": []}

    for i in range(5):
        out.write_text(json.dumps(with_history(result(i), out, keep=3)))
    assert [r["targets"]["i"] for r in json.loads(out.read_text())["runs"]] == [2, 3, 4]
    assert [r["targets"]["i"] for r in with_history(result(9, quick=True), out, keep=3)["runs"]] == [9]
    assert [r["targets"]["i"] for r in with_history(result(9), out, keep=1)["runs"]] == [9]
    assert [r["targets"]["i"] for r in with_history(result(7, cpu="Intel Xeon"), out, keep=3)["runs"]] == [7]


def test_each_machine_has_a_file_and_the_chapter_pools_none(tmp_path: Path):
    """Runs of another machine go to a file of their own (``machine.result_name``), and chapter 5's spread and
    verdicts read only the runs of its machine; the others are listed apart (``benchmark.other_machines``)."""
    from cnode.book import c05_cost
    from cnode.runs import benchmark
    from cnode.runs.benchmark import result_name

    amd = {"device": "cpu", "device_name": "AMD EPYC", "date": "d1", "git_commit": "a", "cores": 2, "threads": 2,
           "torch": "2"}
    intel = {**amd, "device_name": "Intel(R) Xeon(R) Processor", "date": "d2", "machine": {
        "cpu": "Intel(R) Xeon(R) Processor", "cpu_capability": "AVX512", "cpu_flags": "fc7df03f53a7", "gpu": None,
        "torch": "2", "threads": 2}}
    assert result_name(amd) == "cpu-amd-epyc.json"
    assert result_name(intel) == "cpu-intel-xeon-processor-avx512-fc7df0.json"
    targets = {k: 1.0 for k in c05_cost.TARGETS}
    runs = [{"machine": amd, "targets": {**targets, "weight_ratio": 1.01}},
            {"machine": intel, "targets": {**targets, "weight_ratio": 2.0}}]  # a stray run of another machine
    bench = {"machine": amd, "targets": runs[0]["targets"], "steps": [], "runs": runs}
    assert benchmark.machine_runs(bench) == runs[:1]
    assert c05_cost.runs_verdict(bench, "weight_ratio") == "met in 1 of 1 runs"
    (tmp_path / result_name(amd)).write_text(json.dumps(bench))
    (tmp_path / result_name(intel)).write_text(json.dumps({**bench, "machine": intel, "runs": runs[1:]}))
    listed = benchmark.other_machines(tmp_path / result_name(amd))
    assert listed.to_dict("records") == [{"machine, run": "Intel(R) Xeon(R) Processor (AVX512), 2 threads, d2",
                                          "vanilla speedup over the loop": 1.0, "weight / vanilla": 2.0,
                                          "Jacobian / vanilla": 1.0}]


def test_cost_chapter_reads_a_fresh_benchmark(quick: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CNODE_RESULTS", str(tmp_path / "results"))
    nb = run(BOOK / "05_cost.ipynb", tmp_path / "05.ipynb", benchmark=str(quick), gpu_benchmark=str(tmp_path / "none"))
    values = glued(nb)
    bench = json.loads(quick.read_text())
    assert values["ratio_weight"] == pytest.approx(bench["targets"]["weight_ratio"], abs=1e-3)
    assert values["default_iters"] == bench["settings"]["jacobian_default_iters"]
    assert "No GPU" in values["gpu_line"]


def test_bad_benchmark_file_is_one_clear_line(tmp_path: Path):
    from cnode.runs import benchmark

    with pytest.raises(FileNotFoundError, match="run `make bench`"):
        benchmark.load_benchmark(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="is not a benchmark result"):
        benchmark.load_benchmark(tmp_path / "bad.json")
