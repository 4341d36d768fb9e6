"""cnode.core.train and cnode.runs.store on the smoke profile: learning, caching, resuming, bad files, the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnode.core.config import RunConfig
from cnode.core.runtime import machine
from cnode.core.train import TrainingError, train
from cnode.runs import store

pytestmark = pytest.mark.train  # trains models or spawns workers: not in `make check`

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("regularizer", ["none", "weight", "jacobian"])
def test_smoke_run_learns_above_chance(regularizer, tmp_path):
    run = store.load_or_train(RunConfig.from_profile("smoke", regularizer=regularizer), tmp_path)
    assert run.final["test_acc"] > 0.2  # 10 classes: chance is 0.1
    assert len(run.history) == 2 and run.metrics["provenance"]["torch"] == torch.__version__
    assert run.metrics["provenance"]["machine"] == machine()  # the CPU, its instruction set, threads
    assert len(run.final["certified_rate"]) == 4
    if regularizer != "none":
        assert run.final["reg"] > 0


def test_second_call_is_a_cache_hit(tmp_path, monkeypatch):
    cfg = RunConfig.from_profile("smoke", epochs=1)
    first = store.load_or_train(cfg, tmp_path)
    monkeypatch.setattr(store, "train", lambda *a, **k: pytest.fail("trained again instead of loading"))
    second = store.load_or_train(cfg, tmp_path)
    assert second.metrics == first.metrics
    for p, q in zip(first.model.parameters(), second.model.parameters(), strict=True):
        assert torch.equal(p, q)
    files = sorted(f.name for f in second.path.iterdir())
    assert files == [".lock", "config.json", "metrics.json", "model.pt"]  # .lock: the key's lock, git-ignored


def _cli(*args: str, results: Path) -> subprocess.Popen:
    env = {**os.environ, "CNODE_RESULTS": str(results), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "cnode", *args], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_killed_training_resumes_from_its_last_epoch_with_the_same_result(tmp_path):
    cfg = RunConfig.from_profile("smoke", regularizer="jacobian", epochs=3)
    killed = tmp_path / "killed"
    proc = _cli("train", "--profile", "smoke", "--regularizer", "jacobian", "--epochs", "3", results=killed)
    ckpt = store.run_dir(cfg, killed) / "checkpoint.pt"
    deadline = time.monotonic() + 120
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), "the subprocess finished or failed before its first checkpoint"
    assert not (ckpt.parent / "metrics.json").exists()
    resumed = store.load_or_train(cfg, killed)
    assert resumed.metrics["resumed_at_epoch"] >= 1
    fresh = store.load_or_train(cfg, tmp_path / "fresh")
    assert fresh.metrics["resumed_at_epoch"] is None
    assert [h["test_acc"] for h in resumed.history] == [h["test_acc"] for h in fresh.history]
    for p, q in zip(resumed.model.parameters(), fresh.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-5)
    assert not any(f.name.endswith(".tmp") for f in resumed.path.iterdir())


def test_truncated_and_foreign_files_are_reported(tmp_path):
    cfg = RunConfig.from_profile("smoke", epochs=1)
    run = store.load_or_train(cfg, tmp_path)
    model_pt = run.path / "model.pt"
    assert run.metrics["model_sha256"] == hashlib.sha256(model_pt.read_bytes()).hexdigest()
    model_pt.write_bytes(model_pt.read_bytes()[:100])
    with pytest.raises(store.StoreError, match="model.pt does not match the sha256 in its metrics.json"):
        store.load(cfg, tmp_path)
    metrics = json.loads((run.path / "metrics.json").read_text())
    del metrics["model_sha256"]  # a run stored before the sums: the file itself is still checked
    (run.path / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(store.StoreError, match="model.pt is unreadable"):
        store.load(cfg, tmp_path)
    (run.path / "config.json").write_text('{"dataset": "fashion"}')
    with pytest.raises(store.StoreError, match="belongs to another configuration"):
        store.load(cfg, tmp_path)
    (run.path / "config.json").write_text("{not json")
    with pytest.raises(store.StoreError, match="unreadable"):
        store.load(cfg, tmp_path)


def test_diverging_loss_stops_with_a_message():
    with pytest.raises(TrainingError, match="loss became .* lower lr"):
        train(RunConfig.from_profile("smoke", lr=1e30, epochs=1))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match="no CUDA GPU is available"):
        train(RunConfig.from_profile("smoke", device="cuda"))


@pytest.mark.parametrize("args, message", [
    (["train", "--dataset", "cifar"], "error: dataset must be one of"),
    (["train", "--rho", "-1"], "error: rho must be >= 0, got -1"),
    (["train", "--learning-rate", "3"], "error: unrecognized arguments"),
    (["fly"], "error: argument command: invalid choice"),
])
def test_bad_cli_input_is_one_line_exit_2(args, message, tmp_path):
    proc = _cli(*args, results=tmp_path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip().startswith(message) and len(err.strip().splitlines()) == 1, err


def test_cli_trains_then_lists(tmp_path):
    proc = _cli("train", "--profile", "smoke", "--epochs", "1", "--seed", "3", results=tmp_path)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "cnode/none seed=3" in out and "test accuracy" in out
    proc = _cli("list", results=tmp_path)
    out, _ = proc.communicate(timeout=60)
    assert '"seed": 3' in out and '"profile": "smoke"' in out
    assert '"chapter": "03_robustness"' in out and '"trained": 0' in out  # the chapters' runs are elsewhere


#: A process that trains one smoke run through the store, counting training starts in ``starts``; with
#: ``hold`` it waits inside training (after the key's lock is taken) until the file ``release`` exists.
_OVERLAP = """
import sys, time
from pathlib import Path
from cnode.runs import store
from cnode.core.config import RunConfig


starts, inside, release = map(Path, sys.argv[1:4])
hold = sys.argv[4] == "hold"
real_train = store.train

def counted(cfg, **kw):
    with starts.open("a") as fh:
        fh.write("start\\n")
    if hold:
        inside.touch()
        while not release.exists():
            time.sleep(0.05)
    return real_train(cfg, **kw)

store.train = counted
cfg = RunConfig.from_profile("smoke", regularizer="weight", epochs=1, train_subset=128, test_subset=64)
run = store.load_or_train(cfg)
print(run.final["test_acc"])
"""


def test_two_processes_on_one_key_train_it_once(tmp_path):
    """The first process holds the key inside training; the second must wait for it and load its run."""
    env = {**os.environ, "CNODE_RESULTS": str(tmp_path / "results"), "OMP_NUM_THREADS": "1"}
    starts, inside, release = tmp_path / "starts", tmp_path / "inside", tmp_path / "release"

    def spawn(mode: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", _OVERLAP, str(starts), str(inside), str(release), mode],
                                env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    first = spawn("hold")
    deadline = time.monotonic() + 120
    while not inside.exists():
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1][-2000:]
        time.sleep(0.05)
    second = spawn("free")
    time.sleep(3)  # long enough for an unlocked second process to load data and start training
    assert second.poll() is None, "the second process did not wait for the key"
    release.touch()
    out_first, err_first = first.communicate(timeout=300)
    out_second, err_second = second.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, err_first[-2000:] + err_second[-2000:]
    assert starts.read_text().count("start") == 1  # trained once, by the first process
    assert out_first.split() == out_second.split()  # the second read the first one's run


def test_adversarial_training_raises_pgd_accuracy_over_its_twin(tmp_path):
    """FGSM-RS training (Wong et al.) of a smoke CNODE (2048 images, 3 epochs: 512 images learn too little for any
    robustness): the same model and seed trained on attacked batches keeps more PGD accuracy at its eps than its
    plainly trained twin (measured 0.41 against 0.04), and records FGSM and PGD every epoch."""
    from cnode.core import data
    from cnode.core.evaluate import accuracy
    from cnode.core.perturbations import pgd

    eps = 0.1
    twin = dict(train_subset=2048, epochs=3)
    plain = store.load_or_train(RunConfig.from_profile("smoke", **twin), tmp_path)
    adv = store.load_or_train(RunConfig.from_profile("smoke", adv_eps=eps, **twin), tmp_path)
    assert {"adv_fgsm_acc", "adv_pgd_acc"} <= set(adv.final) and "adv_pgd_acc" not in plain.final
    x, y = data.load("mnist", "test", 256)
    robust = {name: accuracy(run.model, pgd(run.model, x, y, eps, 10, 2.5 * eps / 10,
                                            generator=torch.Generator().manual_seed(0)), y)
              for name, run in (("plain", plain), ("adv", adv))}
    assert robust["adv"] > robust["plain"] + 0.2, robust


def test_the_front_measurement_is_stored_beside_the_run_and_never_above_clean(tmp_path):
    """APGD-CE then APGD-DLR (pyautoattack) on a smoke model: per-image outcomes on the measured images, robust
    accuracy at most the clean accuracy of the same images, cached beside the run (a second call reads it)."""
    from cnode.core.evaluate import unpack_bits

    run = store.load_or_train(RunConfig.from_profile("smoke"), tmp_path)
    found = store.load_or_front(run, "smoke")
    row = found["rows"][0]
    assert row["eps"] == 0.1 and row["n"] == 32 and set(row["after"]) == {"APGD-CE", "APGD-DLR"}
    assert unpack_bits(row["correct"], 32).mean() == pytest.approx(row["acc"]) and row["acc"] <= found["clean_subset"]
    assert store.load_or_front(run, "smoke") == found and list(run.path.glob("front-*.json"))


def test_a_killed_front_measurement_resumes_after_its_last_finished_radius(tmp_path, monkeypatch):
    """A front killed during its second radius keeps the first (a partial file); the rerun attacks the second
    radius alone and stores what an unbroken measurement stores (AutoAttack reseeds every attack)."""
    import dataclasses

    from cnode.core import data, front

    two = dataclasses.replace(front.FRONTS["smoke"], eps=(0.05, 0.1))
    monkeypatch.setitem(front.FRONTS, "smoke", two)
    run = store.load_or_train(RunConfig.from_profile("smoke"), tmp_path)
    whole = front.measure(run.model, *data.load("mnist", "test", two.images), two)
    real, attacked = front.autoattack, []

    def attack(model, x, y, eps, *args):
        attacked.append(eps)
        if eps == 0.1 and len(attacked) == 2:
            raise KeyboardInterrupt  # killed during the second radius
        return real(model, x, y, eps, *args)

    monkeypatch.setattr(front, "autoattack", attack)
    with pytest.raises(KeyboardInterrupt):
        store.load_or_front(run, "smoke")
    partial = run.path / store.front_file("smoke").replace(".json", ".partial.json")
    assert partial.exists() and not (run.path / store.front_file("smoke")).exists()
    found = store.load_or_front(run, "smoke")
    assert attacked == [0.05, 0.1, 0.1] and not partial.exists()  # the first radius was not attacked again
    assert [{k: r[k] for k in ("eps", "acc", "correct", "after")} for r in found["rows"]] == \
        [{k: r[k] for k in ("eps", "acc", "correct", "after")} for r in whole["rows"]]


def test_the_certificate_survives_the_margin_attack(tmp_path):
    """The certifiable point's training (operator norms projected every step) on a smoke CNODE and CNN: L2 PGD
    on the logit margin, at each certified image's own radius, never changes a certified prediction, and no
    attacked or random pair moves the logits by more than the bound allows."""
    import math

    from cnode.core import data, lipschitz
    from cnode.core.perturbations import pgd

    x, y = data.load("mnist", "test", 48)
    certified_somewhere = 0
    for kw in (dict(regularizer="weight", op_norm=1.0, flow_norm=8.0), dict(model="cnn", op_norm=1.0)):
        model = store.load_or_train(RunConfig.from_profile("smoke", train_subset=2048, epochs=3, **kw),
                                    tmp_path).model.eval()
        bound = lipschitz.lipschitz_bound(model)["total"]
        assert bound <= 1.0 + 1e-6  # input and head at most 1, flow (or the CNN's convs) at most 1
        with torch.no_grad():
            logits = model(x)
        radius = lipschitz.certified_radius(logits, y, bound)
        for i in torch.nonzero(radius > 0).flatten().tolist():
            adv = pgd(model, x[i:i + 1], y[i:i + 1], 0.999 * radius[i].item(), 50, 0.05 * radius[i].item(),
                      restarts=2, loss="margin", generator=torch.Generator().manual_seed(i), norm="l2")
            with torch.no_grad():
                moved = model(adv)
            assert moved.argmax(1).item() == y[i].item()
            change = (moved - logits[i:i + 1]).norm().item()
            assert change <= bound * (adv - x[i:i + 1]).norm().item() * (1 + 1e-5) + 1e-6
            certified_somewhere += 1
        noise = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
        with torch.no_grad():
            change = (model(noise) - logits).norm(dim=1)
        assert (change <= bound * (noise - x).flatten(1).norm(dim=1) * (1 + 1e-5) + 1e-6).all()
    assert certified_somewhere > 10 and not math.isnan(bound)
