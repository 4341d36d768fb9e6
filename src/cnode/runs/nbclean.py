"""Strip what changes from run to run out of executed notebooks, so that ``make book`` leaves git clean.

Papermill and the kernel record wall-clock times (``start_time``, ``end_time``, ``duration``, the ``execution``
timestamps of every cell) and where a run wrote its copy (``output_path``: a path of the machine that ran it, set
back to the notebook's own ``input_path``); none of it is a result. A busy machine can also deliver one print as two
stream messages (the text, then its newline): adjacent stream outputs of the same name are merged. ``python -m
cnode.runs.nbclean book/*.ipynb`` rewrites the files in place (atomically); ``volatile(nb)`` lists what would be
removed (the test on committed notebooks uses it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from cnode.core.paths import atomic_file

NOTEBOOK_KEYS = ("start_time", "end_time", "duration")  # under metadata.papermill
CELL_KEYS = ("papermill", "execution")  # per-cell metadata written by papermill and the kernel


def volatile(nb: dict[str, Any]) -> list[str]:
    """Where ``nb`` (a notebook as JSON) carries run-to-run metadata: a list of 'metadata.papermill.duration',
    'cell 3: execution', ... (empty when clean)."""
    papermill = nb.get("metadata", {}).get("papermill", {})
    found = [f"metadata.papermill.{key}" for key in NOTEBOOK_KEYS if key in papermill]
    if papermill.get("output_path", papermill.get("input_path")) != papermill.get("input_path"):
        found.append("metadata.papermill.output_path")
    for i, cell in enumerate(nb.get("cells", [])):
        found += [f"cell {i}: {key}" for key in CELL_KEYS if key in cell.get("metadata", {})]
        if len(merged_streams(cell.get("outputs", []))) < len(cell.get("outputs", [])):
            found.append(f"cell {i}: split stream")
    return found


def merged_streams(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``outputs`` with each run of adjacent stream outputs of the same name (stdout, stderr) joined into one."""
    merged: list[dict[str, Any]] = []
    for out in outputs:
        last = merged[-1] if merged else None
        if last and out.get("output_type") == last.get("output_type") == "stream" and out.get("name") == last.get(
                "name"):
            text = "".join(last["text"]) + "".join(out["text"])
            merged[-1] = {**last, "text": text}
        else:
            merged.append(out)
    return merged


def strip(nb: dict[str, Any]) -> dict[str, Any]:
    """Remove the volatile metadata of ``nb`` in place and return it."""
    papermill = nb.get("metadata", {}).get("papermill", {})
    for key in NOTEBOOK_KEYS:
        papermill.pop(key, None)
    if "output_path" in papermill:
        papermill["output_path"] = papermill.get("input_path")
    for cell in nb.get("cells", []):
        for key in CELL_KEYS:
            cell.get("metadata", {}).pop(key, None)
        if "outputs" in cell:
            cell["outputs"] = merged_streams(cell["outputs"])
    return nb


def clean_file(path: Path) -> bool:
    """Strip ``path`` in place, written as ``nbformat.write`` writes it (with a final newline, so a notebook
    edited with nbformat and one executed by papermill compare equal); True when it changed."""
    import nbformat

    nb = json.loads(path.read_text())
    if not volatile(nb):
        return False
    text = nbformat.writes(nbformat.from_dict(strip(nb))).rstrip("\n") + "\n"
    with atomic_file(path) as fh:
        fh.write(text.encode())
    return True


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m cnode.runs.nbclean NOTEBOOK.ipynb ...", file=sys.stderr)
        return 2
    for name in argv:
        clean_file(Path(name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
