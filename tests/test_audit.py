"""cnode.core.audit and certified radii on smoke models: AutoAttack stays in its ball, the masked control is flagged
and the plain model is not, solver variants keep K(t) piecewise constant, certificates survive L2 PGD."""

from __future__ import annotations

import pytest
import torch

from cnode.core import audit, data
from cnode.core.config import RunConfig
from cnode.core.lipschitz import certified_radius, lipschitz_bound
from cnode.core.perturbations import pgd
from cnode.runs import store


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    mp = pytest.MonkeyPatch()
    mp.setenv("CNODE_RESULTS", str(root))  # the audit trains its transfer sources into the default store
    common = dict(epochs=3, lr=1e-2, train_subset=2048)
    vanilla = store.load_or_train(RunConfig.from_profile("smoke", **common), root)
    cnn = store.load_or_train(RunConfig.from_profile("smoke", model="cnn", **common), root)
    x, y = data.load("mnist", "test", 48)
    yield vanilla, cnn, x, y
    mp.undo()


@pytest.mark.train
def test_autoattack_wrapper_stays_in_the_ball_and_the_box(models):
    vanilla, _, x, y = models
    adv, info = audit.autoattack(vanilla.model, x, y, 0.1, audit.AUDITS["smoke"])
    assert (adv - x).abs().max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert set(info["after"]) == {"APGD-CE", "APGD-DLR"} and isinstance(info["flags"], list)
    assert all(p.requires_grad for p in vanilla.model.parameters())  # frozen only while attacking


@pytest.mark.train
def test_masked_control_is_flagged_and_the_plain_model_is_not(models, tmp_path):
    vanilla, cnn, _, _ = models
    plain = store.load_or_audit(vanilla, "smoke")
    control = store.load_or_audit(vanilla, "smoke", control_levels=4)
    assert plain["sources"] == {"cnn": cnn.cfg.key()} and set(control["sources"]) == {"cnn", "vanilla"}
    tol = audit.AUDITS["smoke"].tolerance
    assert audit.verdict(plain["eps"]["0.1"], tol) == []
    reasons = audit.verdict(control["eps"]["0.1"], tol)
    assert any("black-box" in r or "zero gradient" in r for r in reasons), reasons
    entry = plain["eps"]["0.1"]
    assert entry["card_min"] <= min(entry["acc"].values()) + 1e-9  # the per-image minimum is below every attack
    assert set(entry["solvers"]) == {"euler2x", "rk4"}
    # cached: a second call reads the file
    assert store.load_or_audit(vanilla, "smoke") == plain
    assert (vanilla.path / store.audit_file(vanilla.cfg, "smoke")).exists()
    certificate = plain["certificate"]
    assert certificate["max_local_gain"] <= certificate["bound"]["total"]
    assert len(certificate["radius"]) == plain["n"] and set(certificate["l2_pgd"]) == {"0.1", "0.5", "2"}


def test_transfer_sources_are_trained_like_the_target():
    cfg = RunConfig.from_profile("paper", dataset="fashion", seed=2, regularizer="weight", rho=0.25, T=1.0)
    sources = audit.sources_for(cfg)
    assert sources["vanilla"] == RunConfig.from_profile("paper", dataset="fashion", seed=2)
    assert sources["cnn"] == RunConfig.from_profile("paper", dataset="fashion", seed=2, model="cnn")
    assert set(audit.sources_for(sources["vanilla"])) == {"cnn"}


@pytest.mark.train
def test_solver_variants_keep_the_weights_and_converge_to_each_other(models):
    vanilla, _, x, _ = models
    model = vanilla.model
    euler2, rk4 = audit.with_solver(model, "euler2x"), audit.with_solver(model, "rk4")
    assert euler2.steps == 2 * model.steps and euler2.convs[0] is euler2.convs[1]
    with torch.no_grad():
        base, e2, r4 = model(x), euler2(x), rk4(x)
    # halving h moves Euler towards RK4's (more accurate) flow of the same piecewise-constant field
    assert (e2 - r4).abs().max() < (base - r4).abs().max()
    assert model.solver == "euler" and model.steps == vanilla.cfg.steps  # the original is untouched


@pytest.mark.train
def test_no_certified_image_is_broken_by_l2_pgd_at_its_radius(models):
    """Soundness of the certificate. The bound is loose on this model (a bound 100x too small lets this attack
    break certified images, 30x does not), so gross errors fail here; ``test_lipschitz`` checks it closely."""
    vanilla, _, x, y = models
    model = vanilla.model.eval()
    bound = lipschitz_bound(model)["total"]
    with torch.no_grad():
        radius = certified_radius(model(x), y, bound)
    r = radius[radius > 0].median().item()
    certified = radius >= r
    assert r > 1e-3 and certified.sum() >= 10
    adv = pgd(model, x[certified], y[certified], r, 50, 2.5 * r / 50, restarts=3, norm="l2", loss="margin",
              generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (model(adv).argmax(1) == y[certified]).all()


def test_square_stage_rule_reads_autoattack_stages_in_order():
    entry = {"broken_only_by_black_box": 0.0, "acc": {"pgd20": 0.97, "pgd_strong": 0.96},
             "autoattack": {"after": {"APGD-CE": 0.966, "APGD-T": 0.958, "FAB-T": 0.958, "SQUARE": 0.886},
                            "flags": []}}
    assert audit.square_stage_breaks(entry["autoattack"]["after"]) == pytest.approx(0.072)
    assert any("Square stage breaks 7.2%" in r for r in audit.verdict(entry, 0.01))
    entry["autoattack"]["after"] = {"APGD-CE": 0.25, "APGD-T": 0.246, "FAB-T": 0.246, "SQUARE": 0.244}
    assert audit.verdict(entry, 0.01) == []  # 0.2 % is within the tolerance
    assert audit.square_stage_breaks({"APGD-CE": 0.0}) == 0.0  # Square never ran: nothing was left


def test_autoattack_flags_are_summarized_one_line_per_kind():
    flags = [f"there are {n} points with zero gradient! This might lead to unreliable evaluation." for n in (250, 175)]
    flags.append("Square Attack has decreased the robust accuracy of 30.00%. This might indicate that ...")
    assert audit.flag_summary(flags) == ["there are 250 points with zero gradient! (the largest of 2)",
                                         "Square Attack has decreased the robust accuracy of 30.00%."]




