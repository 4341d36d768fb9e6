"""cnode.core.data: real MNIST/FashionMNIST (fetched by `make`), checksums, clear errors, atomic writes."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from cnode.core import data


@pytest.mark.parametrize("name", ["mnist", "fashion"])
def test_load_returns_unit_interval_float_images_and_labels(name):
    images, labels = data.load(name, "test", subset=500)
    assert images.shape == (500, 1, 28, 28) and images.dtype == torch.float32
    assert labels.shape == (500,) and labels.dtype == torch.int64
    assert images.min() >= 0 and images.max() <= 1 and images.max() > 0.9
    assert set(labels.tolist()) == set(range(10))  # the head of the (shuffled) split has every class


def test_full_splits_have_the_documented_sizes():
    assert data.load("mnist", "train")[0].shape[0] == 60_000
    assert data.load("fashion", "test")[0].shape[0] == 10_000


def test_the_two_datasets_differ():
    assert not torch.equal(data.load("mnist", "test", 100)[0], data.load("fashion", "test", 100)[0])


def test_bad_names_give_one_clear_line():
    with pytest.raises(ValueError, match=r"^dataset must be one of \['mnist', 'fashion'\], got 'cifar'$"):
        data.load("cifar", "train")
    with pytest.raises(ValueError, match="split must be one of"):
        data.load("mnist", "val")
    with pytest.raises(ValueError, match="subset must be an integer >= 1"):
        data.load("mnist", "test", subset=0)


def _mirror(tmp_path: Path, name: str) -> Path:
    """A data root whose files are links to the verified ones."""
    src, dest = data.raw_dir(name), data.raw_dir(name, tmp_path)
    dest.mkdir(parents=True)
    for fname in data.SHA256[name]:
        (dest / fname).symlink_to(src / fname)
    return dest


def test_fetch_is_a_noop_when_files_are_valid(tmp_path, capsys):
    _mirror(tmp_path, "mnist")
    data.fetch("mnist", tmp_path, use_torchvision=False)
    assert "present, sha256 verified" in capsys.readouterr().out


def test_a_corrupt_file_is_reported_by_name_and_never_used(tmp_path):
    raw = _mirror(tmp_path, "fashion")
    (raw / "t10k-labels-idx1-ubyte").unlink()
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"\x00" * 10)
    with pytest.raises(data.DataError, match=r"t10k-labels-idx1-ubyte is corrupt .*delete it and rerun"):
        data.fetch("fashion", tmp_path, use_torchvision=False)
    with pytest.raises(data.DataError, match="sha256 mismatch.*python -m cnode.core.data fetch"):
        data.load("fashion", "test", root=tmp_path)


def test_missing_data_names_the_command_to_run(tmp_path):
    with pytest.raises(data.DataError, match="missing.*make data"):
        data.load("mnist", "train", root=tmp_path)
    assert data.main(["verify", "--root", str(tmp_path), "--dataset", "mnist"]) == 1


def test_install_verified_is_atomic_and_checks_the_hash(tmp_path):
    src = tmp_path / "src.gz"
    with gzip.open(src, "wb") as fh:
        fh.write(b"hello")
    dest = tmp_path / "out" / "file"
    with pytest.raises(data.DataError, match="sha256"):
        data._install_verified(src, dest, "0" * 64, opener=gzip.open)
    assert not dest.exists() and list(dest.parent.iterdir()) == []  # no half-written or temp file left
    import hashlib
    data._install_verified(src, dest, hashlib.sha256(b"hello").hexdigest(), opener=gzip.open)
    assert dest.read_bytes() == b"hello"


def test_missing_tool_is_one_clear_line(tmp_path):
    with pytest.raises(data.DataError, match="`no-such-tool-xyz` is not installed"):
        data._run(["no-such-tool-xyz"], tmp_path, "do something")


def test_cli_verify_passes_on_the_fetched_data(capsys):
    assert data.main(["verify"]) == 0
    assert capsys.readouterr().out.count("sha256 verified") == 2
