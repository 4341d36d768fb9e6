"""The book conventions every chapter must keep, and how a chapter reacts to bad parameters (each chapter's own
smoke run is in its test file, ``tests/test_cNN_topic.py``)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import pytest
from notebooks import BOOK, ROOT, chapters, glued, notebooks, run
from test_c01_contraction import PARAMS as C01_PARAMS


#: chapter stem -> (tiny parameters, assertions on the glued values). Every chapter needs an entry.
def test_every_chapter_is_a_notebook_a_module_and_a_test_file():
    """Every notebook, shown or being written, has its module (``cnode.book.cNN_topic``, which the registry finds)
    and its test file with a smoke run (``tests/test_cNN_topic.py``); the book shows existing chapters in number
    order (a chapter enters the table of contents when its default-parameter outputs are committed)."""
    from cnode.book import registry

    stems = {nb.stem for nb in notebooks()}
    assert stems == set(registry.modules())
    assert stems == {p.stem.removeprefix("test_c") for p in ROOT.glob("tests/test_c[0-9][0-9]_*.py")}
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
        assert not any(o.get("output_type") == "execute_result" for o in cell.get("outputs", [])), \
            "a cell's last expression shows its value on the page: assign it (`_ = ...`)"
    assert all(c.execution_count for c in code if c.source.strip()), "committed notebooks are executed"


@pytest.mark.notebook
def test_bad_parameter_is_one_clear_line(tmp_path: Path):
    import papermill

    with pytest.raises(papermill.PapermillExecutionError, match="rho must be > 0, got -1"):
        run(BOOK / "01_contraction.ipynb", tmp_path / "bad.ipynb", rho=-1.0, kernels=2)


@pytest.mark.notebook
@pytest.mark.parametrize(("parameters", "message"), [
    (dict(rho=-1), r"unknown parameter rho; this chapter knows: datasets, profile, seeds, rhos, suite, "
                   r"noise_suite, target, device"),
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
    nb = run(BOOK / "01_contraction.ipynb", tmp_path / "int.ipynb", **{**C01_PARAMS, "rho": 2})
    assert glued(nb)["observed_rate"] >= 2.0


def test_nbclean_strips_run_times_and_the_output_path():
    from cnode.runs.nbclean import strip, volatile

    run = {"duration": 1.0, "input_path": "book/x.ipynb", "output_path": "/elsewhere/x.ipynb"}
    nb = {"metadata": {"papermill": run},
          "cells": [{"metadata": {"execution": {}, "tags": ["hide-input"]}}]}
    assert volatile(nb) == ["metadata.papermill.duration", "metadata.papermill.output_path", "cell 0: execution"]
    assert not volatile(strip(nb)) and nb["metadata"]["papermill"]["output_path"] == "book/x.ipynb"
    assert nb["cells"][0]["metadata"] == {"tags": ["hide-input"]}


def test_nbclean_joins_one_print_delivered_as_two_stream_messages():
    from cnode.runs.nbclean import strip, volatile

    split = [{"output_type": "stream", "name": "stdout", "text": ["40 runs evaluated"]},
             {"output_type": "stream", "name": "stdout", "text": ["\n"]},
             {"output_type": "stream", "name": "stderr", "text": ["warning\n"]},
             {"output_type": "display_data", "data": {}, "metadata": {}}]
    nb = {"metadata": {}, "cells": [{"metadata": {}, "outputs": split}]}
    assert volatile(nb) == ["cell 0: split stream"]
    assert [o.get("text") for o in strip(nb)["cells"][0]["outputs"]] == ["40 runs evaluated\n", ["warning\n"], None]
    assert not volatile(nb)


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
