"""Where the project's folders are: ``data/`` and ``results/`` at the repository root.

``CNODE_DATA`` and ``CNODE_RESULTS`` override them (e.g. to share one dataset between clones).
"""

from __future__ import annotations

import os
from pathlib import Path


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
