"""Where the project's folders are (``data/`` and ``results/`` at the repository root), and the one way files
are written into them (``atomic_file``).

``CNODE_DATA`` and ``CNODE_RESULTS`` override them (e.g. to share one dataset between clones).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def repo_root() -> Path:
    """The checkout that holds this package (editable install), else the current directory."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file() and (parent / "src" / "cnode").is_dir():
            return parent
    return Path.cwd()


def data_dir() -> Path:
    """Root under which torchvision finds ``MNIST/raw`` and ``FashionMNIST/raw``."""
    return Path(os.environ.get("CNODE_DATA", repo_root() / "data"))


def results_dir() -> Path:
    """Root of the results store (``results/<profile>/<key>/``)."""
    return Path(os.environ.get("CNODE_RESULTS", repo_root() / "results"))


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """Open a temp file beside ``path`` for binary writing; on a clean exit fsync it and rename it to ``path``.

    An exception inside the block (a failed check, a kill's KeyboardInterrupt) removes the temp file, so
    ``path`` is always either the old file or the complete new one, never half-written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
