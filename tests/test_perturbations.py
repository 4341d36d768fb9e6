"""cnode.core.perturbations and cnode.core.evaluate: bounds, determinism, attack strength, the evaluation's
sanity checks."""

from __future__ import annotations

import pytest
import torch

from cnode.core import perturbations as pt
from cnode.core.config import RunConfig
from cnode.core.data import load
from cnode.core.evaluate import SUITES, EvalSuite, accuracy, robustness
from cnode.core.runtime import machine
from cnode.runs import store


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small vanilla CNODE good enough (about 80 % accuracy) for attacks to have something to break."""
    cfg = RunConfig.from_profile("smoke", epochs=3, lr=1e-2, train_subset=2048)
    run = store.load_or_train(cfg, tmp_path_factory.mktemp("store"))
    x, y = load("mnist", "test", 128)
    return run, x, y


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_noise_units_bounds_and_determinism():
    x = torch.rand(64, 1, 28, 28, generator=_gen(1))
    clipped, raw = pt.gaussian(x, 0.2, True, _gen()), pt.gaussian(x, 0.2, False, _gen())
    assert clipped.min() >= 0 and clipped.max() <= 1 and (raw.min() < 0 or raw.max() > 1)
    assert (raw - x).std().item() == pytest.approx(0.2, rel=0.02)  # std, not variance
    assert torch.equal(pt.gaussian(x, 0.2, False, _gen()), raw)  # same generator seed, same images
    sp = pt.salt_and_pepper(x, 0.1, _gen())
    changed = (sp != x)
    assert changed.float().mean().item() == pytest.approx(0.1, abs=0.01)
    assert set(sp[changed].unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(pt.salt_and_pepper(x, 0.1, _gen()), sp)
    with pytest.raises(ValueError, match="std must be >= 0"):
        pt.gaussian(x, -0.1, True, _gen())
    with pytest.raises(ValueError, match="amount must be <= 1"):
        pt.salt_and_pepper(x, 1.5, _gen())


@pytest.mark.parametrize("eps", [0.0, 0.05, 0.3])
def test_attacks_stay_in_the_ball_and_the_unit_box(trained, eps):
    run, x, y = trained
    for adv in (pt.fgsm(run.model, x, y, eps),
                pt.pgd(run.model, x, y, eps, steps=5, step_size=max(eps, 1e-3) / 2, restarts=2, generator=_gen())):
        assert (adv - x).abs().max().item() <= eps + 1e-6
        assert adv.min() >= 0 and adv.max() <= 1
    if eps == 0:
        assert torch.equal(pt.pgd(run.model, x, y, 0.0, 3, 0.01, generator=_gen()), x)


def test_attack_accuracy_falls_with_eps_and_pgd_beats_fgsm(trained):
    run, x, y = trained
    clean = accuracy(run.model, x, y)
    fgsm = [accuracy(run.model, pt.fgsm(run.model, x, y, e), y) for e in (0.05, 0.1, 0.2)]
    pgd = [accuracy(run.model, pt.pgd(run.model, x, y, e, 10, 2.5 * e / 10, generator=_gen()), y)
           for e in (0.05, 0.1, 0.2)]
    assert clean > 0.5
    assert clean >= pgd[0] >= pgd[1] >= pgd[2]
    assert all(p <= f + 0.01 for p, f in zip(pgd, fgsm, strict=True))
    assert pgd[-1] < 0.5 * clean  # the attack is real


def test_pgd_is_deterministic_and_restarts_never_weaken_it(trained):
    run, x, y = trained
    one = pt.pgd(run.model, x, y, 0.05, 5, 0.02, restarts=1, generator=_gen(3))
    assert torch.equal(one, pt.pgd(run.model, x, y, 0.05, 5, 0.02, restarts=1, generator=_gen(3)))
    three = pt.pgd(run.model, x, y, 0.05, 5, 0.02, restarts=3, generator=_gen(3))
    assert accuracy(run.model, three, y) <= accuracy(run.model, one, y)


def test_l2_pgd_stays_in_its_ball_and_breaks_more_with_a_larger_radius(trained):
    run, x, y = trained
    accs = []
    for eps in (0.5, 1.0, 2.0):
        adv = pt.pgd(run.model, x, y, eps, 10, 2.5 * eps / 10, norm="l2", generator=_gen())
        assert (adv - x).flatten(1).norm(dim=1).max() <= eps * (1 + 1e-5)
        assert adv.min() >= 0 and adv.max() <= 1
        accs.append(accuracy(run.model, adv, y))
    assert accs[0] >= accs[1] >= accs[2] and accs[2] < accuracy(run.model, x, y)
    with pytest.raises(ValueError, match="norm must be one of"):
        pt.pgd(run.model, x, y, 0.1, 5, 0.05, norm="l1")


def test_linf_pgd_is_bitwise_the_loop_the_stored_evaluations_used(trained):
    """Adding the L2 ball must not move a stored L-inf result: the L-inf path equals the pre-issue-11 loop."""
    import sys

    from cnode.core.paths import repo_root

    sys.path.insert(0, str(repo_root() / "benchmarks"))
    from reference import pgd_reference

    run, x, y = trained
    new = pt.pgd(run.model, x, y, 0.05, 5, 0.02, generator=_gen(4))
    assert torch.equal(new, pgd_reference(run.model, x, y, 0.05, 5, 0.02, generator=_gen(4)))


def test_margin_loss_and_bad_arguments(trained):
    run, x, y = trained
    adv = pt.pgd(run.model, x, y, 0.1, 5, 0.05, loss="margin", generator=_gen())
    assert accuracy(run.model, adv, y) < accuracy(run.model, x, y)
    with pytest.raises(ValueError, match="loss must be one of"):
        pt.fgsm(run.model, x, y, 0.1, loss="hinge")
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        pt.pgd(run.model, x, y, 0.1, 0, 0.05)


def test_robustness_suite_rows_and_sanity_checks(trained):
    run, x, y = trained
    result = robustness(run.model, x, y, SUITES["smoke"])
    by = {(r["kind"], r["level"]): r["acc"] for r in result["rows"]}
    assert by[("fgsm", 0.0)] == by[("pgd", 0.0)] == result["clean"] == result["clean_attacked"]
    assert by[("pgd", 0.3)] <= by[("pgd", 0.1)] <= result["clean"]
    assert set(result["checks"]) == {"eps", "pgd", "pgd_2x_steps", "pgd_margin"}
    assert isinstance(result["warnings"], list) and result["n"] == 128


def test_attack_subset_and_per_image_outcomes(trained):
    """Noise on every image, attacks on the first ``attack_subset``; the stored bits give back each accuracy."""
    import dataclasses

    from cnode.core.evaluate import unpack_bits

    run, x, y = trained
    suite = dataclasses.replace(SUITES["smoke"], attack_subset=40, per_image=True)
    result = robustness(run.model, x, y, suite)
    assert (result["n"], result["n_attacked"]) == (128, 40)
    for r in result["rows"]:
        assert r["n"] == (40 if r["kind"] in ("fgsm", "pgd") else 128)
        assert unpack_bits(r["correct"], r["n"]).mean() == pytest.approx(r["acc"])
    clean = unpack_bits(result["clean_correct"], 128)
    assert clean.mean() == pytest.approx(result["clean"]) and clean[:40].mean() == pytest.approx(
        result["clean_attacked"])
    by = {(r["kind"], r["level"]): r["acc"] for r in result["rows"]}
    assert by[("pgd", 0.0)] == result["clean_attacked"]
    clipped_only = robustness(run.model, x, y, dataclasses.replace(suite, noclip=False, eps=(0.1,)))
    assert {r["kind"] for r in clipped_only["rows"]} == {"gaussian", "salt_pepper", "fgsm", "pgd"}
    # the added fields enter the key when set, and leave the keys of suites that do not set them unchanged (the
    # committed cpu and sweep evaluations are stored under these names)
    assert suite.key() != dataclasses.replace(suite, attack_subset=None).key()
    assert (SUITES["cpu"].key(), SUITES["sweep"].key()) == ("efe57e2060", "9a6dc34ea5")


def test_sanity_checks_raise_warnings_when_violated():
    from cnode.core.evaluate import _sanity

    rows = [{"kind": "fgsm", "level": 0.0, "acc": 0.9}, {"kind": "pgd", "level": 0.0, "acc": 0.8},
            {"kind": "fgsm", "level": 0.1, "acc": 0.2}, {"kind": "pgd", "level": 0.1, "acc": 0.5}]
    found = _sanity(0.9, rows, {"eps": 0.1, "pgd": 0.5, "pgd_2x_steps": 0.7, "pgd_margin": 0.3}, 0.01)
    text = " | ".join(found)
    for phrase in ("pgd at eps 0", "exceeds FGSM", "more PGD steps helped", "margin-loss PGD is stronger"):
        assert phrase in text


def test_evaluation_is_cached_beside_the_run(tmp_path, monkeypatch):
    run = store.load_or_train(RunConfig.from_profile("smoke", epochs=1), tmp_path)
    first = store.load_or_evaluate(run, "smoke", tmp_path)
    assert (run.path / store.eval_file("smoke")).exists()
    assert first["machine"] == machine()  # where the evaluation ran, beside what it found
    monkeypatch.setattr(store, "robustness", lambda *a, **k: pytest.fail("evaluated again"))
    assert store.load_or_evaluate(run, "smoke", tmp_path) == first
    assert EvalSuite().key() != SUITES["cpu"].key()
    with pytest.raises(ValueError, match="suite must be one of"):
        store.load_or_evaluate(run, "huge", tmp_path)


def test_a_runs_files_are_derived_under_their_own_locks(tmp_path):
    """While one file of a finished run is computed, the run's training lock and another file's lock are free:
    two workers can compute a run's suite and its front at once; a second caller of the same file waits."""
    from filelock import FileLock, Timeout

    cfg = RunConfig.from_profile("smoke")
    run = store.Run(cfg, torch.nn.Identity(), {}, tmp_path)

    def compute() -> dict:
        for free in (".lock", ".front-x.json.lock"):
            with FileLock(tmp_path / free, timeout=0):
                pass
        with pytest.raises(Timeout):
            FileLock(tmp_path / ".eval-x.json.lock", timeout=0).acquire()
        return {"value": 1}

    assert store._load_or_derive(run, "eval-x.json", compute)["value"] == 1
