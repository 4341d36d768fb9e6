"""Helpers for the notebook tests: run a chapter with papermill, read back what it glued."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import nbformat
from book_pages import glued_outputs

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"


def chapters() -> list[Path]:
    """The chapter notebooks the book shows (``_toc.yml``), in its order."""
    import yaml

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [ROOT / f"{entry['file']}.ipynb" for entry in toc["chapters"]
            if Path(entry["file"]).name[:2].isdigit()]


def notebooks() -> list[Path]:
    """Every chapter notebook, shown (book/) or still being written, its runs not yet stored (drafts/)."""
    return sorted([*BOOK.glob("[0-9][0-9]_*.ipynb"), *(ROOT / "drafts").glob("[0-9][0-9]_*.ipynb")])


def run(notebook: Path, out: Path, **parameters: Any) -> nbformat.NotebookNode:
    """Execute ``notebook`` into ``out`` with papermill (cwd = book/) and return the executed notebook."""
    import papermill

    papermill.execute_notebook(str(notebook), str(out), parameters=parameters, cwd=str(BOOK),
                               kernel_name="python3", progress_bar=False)
    return nbformat.read(out, as_version=4)


def glued(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """Values glued with ``myst_nb.glue``, parsed from their text/plain representation (a phrase glued as
    Markdown keeps its text/markdown)."""
    values: dict[str, Any] = {}
    for name, data in glued_outputs(nb).items():
        text = data.get("text/markdown", data.get("text/plain"))
        if "text/markdown" in data or text is None:
            values[name] = text if text is not None else data
            continue
        try:
            values[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            values[name] = text
    return values


def stored(root: Path, pattern: str) -> list[dict[str, Any]]:
    """Every JSON named ``pattern`` beside a run of the store at ``root`` (what a smoke run computed)."""
    import json

    return [json.loads(p.read_text()) for p in sorted(root.glob(f"*/*/{pattern}"))]


def smoke_run(stem: str, parameters: dict[str, Any], check: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """Run chapter ``stem`` at ``parameters`` into a temporary store, then ``check(glued values, store)``; every
    figure the text pastes must have been glued as an image."""
    from book_pages import figure_pastes, is_image

    monkeypatch.setenv("CNODE_RESULTS", str(tmp_path / "results"))  # never train into the repo's store
    from cnode.runs.plans import chapter_path

    nb = run(chapter_path(stem), tmp_path / f"{stem}.ipynb", **parameters)
    check(glued(nb), tmp_path / "results")
    bundles = glued_outputs(nb)
    for name in figure_pastes(nb):  # what a reader sees must be an image, whatever the backend or kernel
        assert name in bundles, f"{stem}: {{glue:figure}} {name} was never glued"
        assert is_image(bundles[name]), f"{stem}: figure {name} was glued without an image: {sorted(bundles[name])}"
