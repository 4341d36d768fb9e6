"""What each page of the built book must show, derived from its source (never a hard-coded count).

For every page in ``_toc.yml``: the figures its sources paste (``{glue:figure}`` directives, by name and
``:name:`` id), the images and tables its visible outputs and ``{glue}`` pastes display, and whether it has math.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
HIDDEN_TAGS = {"remove-cell", "remove-output"}

DIRECTIVE = re.compile(r"^(`{3,}|:{3,})\{(glue|glue:figure|glue:any|glue:md)\}\s+(\S+)\s*\n"
                       r"((?:\s*:[\w-]+:.*\n)*)", re.M)
OPTION = re.compile(r":([\w-]+):\s*(.*)")
PIPE_TABLE = re.compile(r"^\|.*\|\s*\n\|\s*:?-{3,}", re.M)
MATH = re.compile(r"\$[^$\n]+\$|\$\$|\{math\}|\\\(")


@dataclass
class Expected:
    """What a reader must see on one page."""

    page: str  # toc entry, e.g. "book/02_training"
    html: Path
    figure_ids: list[str] = field(default_factory=list)  # ids of {glue:figure} pastes (":name:")
    figures: int = 0  # {glue:figure} pastes
    images: int = 0  # every image the page must show (figures + displayed or pasted images)
    tables: int = 0  # tables displayed by visible outputs, pasted with {glue}, or written in markdown
    math: bool = False


def toc_pages(root: Path = ROOT) -> list[str]:
    """The book's pages in order: the root, then every chapter file of ``_toc.yml``."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    return [toc["root"], *(entry["file"] for entry in toc.get("chapters", []))]


def source(page: str, root: Path = ROOT) -> Path:
    for suffix in (".ipynb", ".md"):
        path = root / f"{page}{suffix}"
        if path.exists():
            return path
    raise FileNotFoundError(f"no source for toc entry {page}")


def glued_outputs(nb: nbformat.NotebookNode) -> dict[str, dict[str, Any]]:
    """Glue name -> its mime bundle (papermill record prefixes removed)."""
    out = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is not None:
                out[name] = {k.removeprefix("application/papermill.record/"): v
                             for k, v in output.get("data", {}).items()}
    return out


def is_image(bundle: dict[str, Any]) -> bool:
    return any(key.startswith("image/") for key in bundle)


def is_table(bundle: dict[str, Any]) -> bool:
    """An HTML table (a displayed DataFrame) or a MyST pipe table (``report.glue_table``)."""
    return "<table" in "".join(bundle.get("text/html", "")) or bool(
        PIPE_TABLE.search("".join(bundle.get("text/markdown", ""))))


def figure_pastes(nb: nbformat.NotebookNode) -> list[str]:
    """Names the notebook's prose pastes with ``{glue:figure}`` (same-document pastes only)."""
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    return [m.group(3) for m in DIRECTIVE.finditer(markdown + "\n")
            if m.group(2) == "glue:figure" and ":doc:" not in m.group(4)]


def expected(page: str, root: Path = ROOT) -> Expected:
    """Derive what ``page`` must show from its notebook or markdown source."""
    path = source(page, root)
    result = Expected(page=page, html=root / "_build" / "html" / f"{page}.html")
    if path.suffix == ".ipynb":
        nb = nbformat.read(path, as_version=4)
        markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        own = glued_outputs(nb)
        for cell in nb.cells:
            if cell.cell_type != "code" or HIDDEN_TAGS & set(cell.metadata.get("tags", [])):
                continue
            for output in cell.get("outputs", []):
                bundle = output.get("data", {})
                if output.get("metadata", {}).get("scrapbook"):
                    continue  # a glue record is shown only where the prose pastes it
                result.images += is_image(bundle)
                result.tables += is_table(bundle)
    else:
        markdown, own = path.read_text(), {}
    for match in DIRECTIVE.finditer(markdown + "\n"):
        kind, name = match.group(2), match.group(3)
        options = dict(OPTION.match(line.strip()).groups() for line in match.group(4).splitlines() if line.strip())
        glued = own if "doc" not in options else glued_outputs(
            nbformat.read((path.parent / options["doc"]).resolve(), as_version=4))
        bundle = glued.get(name, {})
        if kind == "glue:figure" and not is_table(bundle):  # a figure: an image must load, whatever was glued
            result.figures += 1
            result.images += 1
            if "name" in options:
                result.figure_ids.append(options["name"])
        else:
            result.images += is_image(bundle)
            result.tables += is_table(bundle)
    result.tables += len(PIPE_TABLE.findall(markdown))
    result.math = bool(MATH.search(markdown))
    return result
