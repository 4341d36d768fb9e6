"""Papermill smoke runs of every chapter at a tiny setting, asserting on the values each one glues,
plus the book conventions every chapter must keep."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import nbformat
import pytest
from book_pages import figure_pastes, glued_outputs, is_image
from notebooks import BOOK, ROOT, chapters, glued, notebooks, run

from cnode.core import audit
from cnode.core.audit import AUDITS
from cnode.runs import plans


def check_contraction(values: dict, store: Path) -> None:
    assert values["violations"] == 0
    assert values["gap_min"] >= 0
    assert values["conv_error"] == "below 1e-12"
    assert values["observed_rate"] >= 2.0  # the smoke run certifies rho = 2
    assert values["traj_lambda_max"] <= -2.0
    assert values["authors_init_rate"] == pytest.approx(-114.5)
    assert values["h_star"] < values["h_contracting"]
    assert values["shrink_paper"] == pytest.approx(math.exp(-0.2), abs=1e-3)


def check_training(values: dict, store: Path) -> None:
    for name in ("none", "weight", "jacobian"):
        assert 0.1 < values[f"acc_{name}"] <= 1.0
    assert values["epochs_used"] == 1 and values["subset_used"] == 512
    assert values["chosen_rw"] >= 0 and 0 <= values["chosen_certified"] <= values["channels_total"] == 16
    assert values["jac_cost"] > 1  # the Jacobian regularizer costs more than a vanilla epoch


def check_robustness(values: dict, store: Path) -> None:
    assert values["n_runs"] == 4 and values["n_seeds"] == 1 and values["n_test"] == 128
    assert values["n_levels"] == values["n_higher"] + values["n_lower"] + values["n_within"] > 0
    assert 0.1 < values["mnist_clean_van"] <= 1 and 0 <= values["mnist_pgd1_best"] <= 1
    assert values["mnist_pgd1_van"] <= values["mnist_clean_van"]
    assert values["mnist_clean_verdict"] in ("higher", "lower", "within seed spread")
    assert values["n_warnings"] == sum(len(r["warnings"]) for r in stored(store, "eval-*.json"))  # the store's count
    assert "±" in values["sum_mnist_clean_vanilla"] and values["set_seeds"] == "0"


def check_rho_sweep(values: dict, store: Path) -> None:
    assert values["n_runs"] == 5 and values["rho_min"] == 0.5 and values["rho_max"] == 2.0
    for reg in ("weight", "jacobian"):
        assert 0.1 < values[f"clean_mnist_{reg}_lo"] <= 1 and 0.1 < values[f"clean_mnist_{reg}_hi"] <= 1
        assert values[f"clean_mnist_{reg}_verdict"] in ("rises", "falls", "flat within seed spread")
    assert values["channels_total"] == 16
    assert values["hinge_jacobian"].startswith("The final R_J values at the two rates differ by")
    assert values["hinge_weight"].startswith("The weight-regularized models reached their target")
    assert values["hinge_knob"].startswith("Between the smallest and the largest rate")


def check_search(values: dict, store: Path) -> None:
    assert values["n_runs"] == 12 and values["n_settings"] == 4 and values["floor"] == 0.9  # 2 regs x (T, gamma)
    assert values["answer"].startswith(("rho matters", "No setting"))
    assert values["identical"].startswith(("every rate", "some rates"))


def check_cost(values: dict, store: Path) -> None:
    bench = json.loads((ROOT / plans.chapter_defaults("05_cost")["benchmark"]).read_text())  # what the chapter reads
    targets = bench["targets"]
    assert values["speedup_ref"] == pytest.approx(targets["speedup_over_reference"], abs=1e-2)
    assert values["ratio_jac"] == pytest.approx(targets["jacobian_ratio"], abs=1e-2)
    assert values["err_jac"] == pytest.approx(targets["jacobian_max_rel_error"], abs=1e-3)
    assert values["default_iters"] == bench["settings"]["jacobian_default_iters"]
    runs = bench["runs"]
    assert values["n_runs"] == len(runs) and values["met_weight"].endswith(f"of {len(runs)} runs")
    ok = sum(r["targets"]["weight_ratio"] <= 1.05 and r["targets"]["weight_q75_ratio"] <= 1.05 for r in runs)
    assert values["met_weight"] == f"met in {ok} of {len(runs)} runs"
    assert values["grid_runs"] == 48 and values["grid_train_h"] > 0
    assert values["pgd_total"] == 4 * bench["pgd"][0]["images"]
    assert values["pgd_differing"] == sum(r["differing_images"] for r in bench["pgd"] if r["path"] == "new")
    others = [json.loads(p.read_text()) for p in (ROOT / "benchmarks" / "results").glob("cpu-*.json")]
    assert values["n_other_runs"] == sum(len(b["runs"]) for b in others) - len(runs)  # every other machine's run
    assert 0 < values["clean_fp32"] <= 100 and 0 < values["clean_bf16"] <= 100  # the smoke precision runs
    assert 0 <= values["pgd_fp32"] <= values["clean_fp32"] and 0 <= values["pgd_bf16"] <= values["clean_bf16"]
    assert values["epoch_fp32"] > 0 and values["epoch_bf16"] > 0


def check_horizon(values: dict, store: Path) -> None:
    assert values["h_exp_short"] == pytest.approx(math.exp(-0.1), abs=1e-3)
    assert values["h_exp_long"] == pytest.approx(math.exp(-1.0), abs=1e-3)
    assert values["h_dense_n"] == 18 and 0 <= values["h_dense_err"] < 0.05  # one re-check per smoke model
    lines = [line for line in values["h_answers"].splitlines() if line.startswith("- ")]
    assert len(lines) == 7  # weight, jacobian, vanilla + wd at both T, and weight (N=8) at T = 1
    answers = ("nothing to explain", "contraction explains it", "not contraction")
    assert all(sum(a in line for a in answers) == 1 for line in lines)
    assert sum("T = 1, weight (N=8)" in line for line in lines) == 1


def check_trust(values: dict, store: Path) -> None:
    assert values["t_images"] == 48 and values["t_cards"] == 5  # four models at T = 0.1 and weight at T = 1
    assert values["t_slack_min"] >= 1  # the bound is never below an exact local gain
    assert values["t_control"] == "flagged" and values["t_plain"] == "not flagged"
    cards = [c for c in stored(store, "audit-*.json") if c["control_levels"] is None]  # real models, not controls
    flagged = sum(any(audit.verdict(e, AUDITS["smoke"].tolerance) for e in c["eps"].values()) for c in cards)
    assert values["t_cards"] == len(cards) and values["t_flagged"] == flagged
    gaps = [e["acc"]["pgd20"] - e["card_min"] for c in cards for e in c["eps"].values()]
    assert values["t_overstated"] == pytest.approx(max(gaps), abs=5e-4)  # PGD-20 minus the card's minimum
    assert 0 <= values["t_best_cert"] <= 1
    assert 0 <= values["t_newbreak_max"] <= 1 and values["t_drop_to"] == pytest.approx(
        values["t_drop_from"] - values["t_drop_max"], abs=2e-3)  # the three glued numbers of one row
    assert (values["t_flagged_list"] == "none") == (values["t_flagged"] == 0)


def stored(root: Path, pattern: str) -> list[dict]:
    """Every JSON named ``pattern`` beside a run of the store at ``root`` (what a smoke run computed)."""
    return [json.loads(p.read_text()) for p in sorted(root.glob(f"*/*/{pattern}"))]


#: chapter stem -> (tiny parameters, assertions on the glued values). Every chapter needs an entry.
SMOKE = {
    "01_contraction": (dict(kernels=6, starts=2, size=4, channels=2, rho=2.0), check_contraction),
    "02_training": (dict(profile="smoke", epochs=1), check_training),
    "03_robustness": (dict(datasets=["mnist"], profile="smoke", seeds=[0], suite="smoke"), check_robustness),
    "04_rho_sweep": (dict(datasets=["mnist"], profile="smoke", seeds=[0], rhos=[0.5, 2.0], suite="smoke"),
                     check_rho_sweep),
    "05_cost": (dict(grid_seeds=[0, 1, 2], precision_profile="smoke", precision_seeds=[0], precision_suite="smoke"),
                check_cost),
    "06_horizon": (dict(profile="smoke", datasets=["mnist"], seeds=[0, 1], suite="smoke", mechanism="smoke",
                        fine_steps=8, decision_eps=0.1), check_horizon),
    "07_trust": (dict(profile="smoke", datasets=["mnist"], audit="smoke"), check_trust),
    "08_rho_search": (dict(profile="smoke", seeds=[0, 1], rhos=[0.5, 8.0], long_rhos=[1.0], gammas=[1.0],
                           suite="smoke"), check_search),
}


def test_every_chapter_has_a_smoke_run_and_the_toc_lists_chapters_in_order():
    """Every notebook, shown or being written, has a smoke run; the book shows existing chapters in number
    order (a chapter enters the table of contents when its default-parameter outputs are committed)."""
    assert {nb.stem for nb in notebooks()} == set(SMOKE)
    shown = [nb.stem for nb in chapters()]
    assert shown and shown == sorted(shown) and all((BOOK / f"{stem}.ipynb").exists() for stem in shown)


@pytest.mark.parametrize("notebook", chapters(), ids=lambda p: p.stem)
def test_chapter_conventions(notebook: Path):
    nb = nbformat.read(notebook, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    for node in ast.parse(params[0].source).body:  # plain literals, each with a comment
        assert isinstance(node, ast.Assign | ast.AnnAssign)
        assert isinstance(node.value, ast.Constant | ast.List), "parameters are plain literals"
    for line in params[0].source.splitlines():
        assert "#" in line, f"parameter without a comment: {line!r}"
    for cell in code:
        tree = ast.parse(cell.source)
        assert not any(isinstance(n, ast.FunctionDef | ast.ClassDef) for n in ast.walk(tree)), "logic belongs in src/"
        assert not any(o.get("output_type") == "error" for o in cell.get("outputs", []))
    assert all(c.execution_count for c in code if c.source.strip()), "committed notebooks are executed"


@pytest.mark.notebook
@pytest.mark.parametrize("stem", sorted(SMOKE))
def test_chapter_smoke_run(stem: str, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CNODE_RESULTS", str(tmp_path / "results"))  # never train into the repo's store
    parameters, check = SMOKE[stem]
    nb = run(BOOK / f"{stem}.ipynb", tmp_path / f"{stem}.ipynb", **parameters)
    check(glued(nb), tmp_path / "results")
    bundles = glued_outputs(nb)
    for name in figure_pastes(nb):  # what a reader sees must be an image, whatever the backend or kernel
        assert name in bundles, f"{stem}: {{glue:figure}} {name} was never glued"
        assert is_image(bundles[name]), f"{stem}: figure {name} was glued without an image: {sorted(bundles[name])}"


@pytest.mark.notebook
def test_bad_parameter_is_one_clear_line(tmp_path: Path):
    import papermill

    with pytest.raises(papermill.PapermillExecutionError, match="rho must be > 0, got -1"):
        run(BOOK / "01_contraction.ipynb", tmp_path / "bad.ipynb", rho=-1.0, kernels=2)


@pytest.mark.notebook
@pytest.mark.parametrize(("parameters", "message"), [
    (dict(rho=-1), r"unknown parameter rho; this chapter knows: datasets, profile, seeds, rhos, suite, device"),
    (dict(seeds="[0]"), r"seeds must be a list, got the string '\[0\]': pass lists with -y, e.g. -y 'seeds: \[0, 1\]'"),
])
def test_unknown_or_mistyped_parameter_stops_the_chapter(tmp_path: Path, monkeypatch, parameters, message):
    import papermill

    monkeypatch.setenv("CNODE_RESULTS", str(tmp_path / "results"))
    with pytest.raises(papermill.PapermillExecutionError, match=message) as error:
        run(BOOK / "03_robustness.ipynb", tmp_path / "bad.ipynb", **parameters)
    assert error.value.cell_index == 3  # the validation cell right after the parameters (and injected) cells


@pytest.mark.notebook
def test_an_int_is_accepted_where_a_float_is_expected(tmp_path: Path):
    nb = run(BOOK / "01_contraction.ipynb", tmp_path / "int.ipynb", **{**SMOKE["01_contraction"][0], "rho": 2})
    assert glued(nb)["observed_rate"] >= 2.0


def test_nbclean_strips_run_times_and_the_output_path():
    from cnode.runs.nbclean import strip, volatile

    run = {"duration": 1.0, "input_path": "book/x.ipynb", "output_path": "/elsewhere/x.ipynb"}
    nb = {"metadata": {"papermill": run},
          "cells": [{"metadata": {"execution": {}, "tags": ["hide-input"]}}]}
    assert volatile(nb) == ["metadata.papermill.duration", "metadata.papermill.output_path", "cell 0: execution"]
    assert not volatile(strip(nb)) and nb["metadata"]["papermill"]["output_path"] == "book/x.ipynb"
    assert nb["cells"][0]["metadata"] == {"tags": ["hide-input"]}


def test_committed_notebooks_carry_no_volatile_metadata():
    from cnode.runs.nbclean import volatile

    for notebook in chapters():
        assert not volatile(json.loads(notebook.read_text())), f"{notebook.name}: run `python -m cnode.runs.nbclean`"


@pytest.mark.parametrize("notebook", notebooks(), ids=lambda p: p.stem)
def test_committed_notebooks_ran_with_their_default_parameters(notebook: Path):
    """A committed chapter carries the outputs of its default parameters: no cell papermill injects ``-p``/``-y``
    values into (a preview run with other parameters must not be committed as the chapter)."""
    nb = nbformat.read(notebook, as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert not injected, f"{notebook.name} ran with {injected[0].source!r}: re-execute it at its defaults"
