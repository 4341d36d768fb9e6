"""cnode.core.config: profiles, validation, stable keys."""

from __future__ import annotations

import pytest

from cnode.core.config import PROFILES, RunConfig


def test_profiles_build_and_overrides_apply():
    for name in PROFILES:
        assert RunConfig.from_profile(name).profile == name
    paper = RunConfig.from_profile("paper")
    assert (paper.batch_size, paper.lr, paper.lr_decay, paper.epochs, paper.channels, paper.steps) == \
        (128, 5e-2, 0.7, 5, 8, 10)
    assert paper.h == pytest.approx(0.01) and paper.train_subset is None
    cfg = RunConfig.from_profile("smoke", regularizer="weight", rho=2)
    assert cfg.rho == 2 and cfg.init == "contractive"
    assert RunConfig.from_profile("smoke").init == "default"


def test_unknown_fields_and_bad_values_are_one_clear_line():
    with pytest.raises(ValueError, match="unknown RunConfig field 'learning_rate'"):
        RunConfig.from_profile("cpu", learning_rate=1)
    with pytest.raises(ValueError, match=r"^rho must be >= 0, got -1(\.0)?$"):
        RunConfig.from_profile("cpu", rho=-1)
    with pytest.raises(ValueError, match="dataset must be one of"):
        RunConfig.from_profile("cpu", dataset="cifar")
    with pytest.raises(ValueError, match="profile must be one of"):
        RunConfig.from_profile("huge")
    with pytest.raises(ValueError, match="regularizer must be 'none' for the cnn"):
        RunConfig.from_profile("cpu", model="cnn", regularizer="weight")


def test_key_is_stable_and_covers_what_changes_the_result():
    base = RunConfig.from_profile("cpu")
    assert base.key() == RunConfig.from_profile("cpu").key()
    assert base.key() == RunConfig.from_profile("cpu", device="cpu").key()  # device is provenance only
    others = {RunConfig.from_profile("cpu", **{k: v}).key() for k, v in
              [("seed", 1), ("rho", 2.0), ("T", 1.0), ("regularizer", "weight"), ("dataset", "fashion"),
               ("epochs", 4)]}
    assert len(others) == 6 and base.key() not in others
    assert len(base.key()) == 12


def test_jacobian_settings_enter_the_key_only_of_jacobian_runs():
    for reg in ("none", "weight"):
        base = RunConfig.from_profile("cpu", regularizer=reg)
        assert base.key() == RunConfig.from_profile("cpu", regularizer=reg, jacobian_iters=5,
                                                    jacobian_samples=None, jacobian_steps=3).key()
    jac = RunConfig.from_profile("cpu", regularizer="jacobian")
    others = {RunConfig.from_profile("cpu", regularizer="jacobian", **{k: v}).key() for k, v in
              [("jacobian_iters", 20), ("jacobian_samples", None), ("jacobian_steps", None)]}
    assert len(others) == 3 and jac.key() not in others


def test_int_and_float_spellings_of_a_number_share_a_key():
    """``rho=1`` (the command line) and ``rho=1.0`` (a chapter) are one experiment: one key, for every numeric field."""
    from dataclasses import fields

    numeric = {f.name: f.type for f in fields(RunConfig) if f.type in ("float", "int", "int | None")}
    assert {"rho", "gamma", "T", "a", "b", "lr", "lr_decay", "epochs", "seed", "jacobian_iters"} <= set(numeric)
    for name, kind in numeric.items():
        base = RunConfig.from_profile("cpu", regularizer="jacobian")
        value = getattr(base, name)
        if value is None:
            value = 3
        if kind == "float":
            other_value = int(value) if float(value).is_integer() else None
            if other_value is None:  # e.g. T = 0.1: compare 1 against 1.0 instead (valid for every such field)
                value, other_value = 1.0, 1
        else:
            other_value = float(value)
        one = RunConfig.from_profile("cpu", regularizer="jacobian", **{name: value})
        two = RunConfig.from_profile("cpu", regularizer="jacobian", **{name: other_value})
        assert one.key() == two.key(), name
        assert type(getattr(two, name)) is type(getattr(one, name)), name
    with pytest.raises(ValueError, match="epochs"):
        RunConfig.from_profile("cpu", epochs=2.5)


def test_weight_decay_is_keyed_only_when_set_and_shrinks_the_weights():
    """The ablation's weight decay (issue 13): absent from the key at 0 (stored runs keep theirs), validated,
    and it reaches the optimizer (two steps with a huge decay shrink every parameter more than without)."""
    import torch

    from cnode.core.train import build_model, make_optimizer

    base = RunConfig.from_profile("smoke")
    decayed = RunConfig.from_profile("smoke", weight_decay=5e-4)
    assert "weight_decay" not in base.identity() and decayed.key() != base.key()
    assert RunConfig.from_profile("smoke", weight_decay=0).key() == base.key()
    assert "wd=0.0005" in decayed.label()
    with pytest.raises(ValueError, match="weight_decay must be >= 0"):
        RunConfig.from_profile("smoke", weight_decay=-1e-4)
    norms = {}
    for wd in (0.0, 10.0):
        cfg = RunConfig.from_profile("smoke", weight_decay=wd, optimizer="sgd", lr=0.01)
        model = build_model(cfg)
        opt = make_optimizer(model, cfg)
        for _ in range(2):
            opt.zero_grad()
            model(torch.rand(8, 1, 28, 28)).sum().backward()
            opt.step()
        norms[wd] = sum(p.norm() ** 2 for p in model.parameters())
    assert norms[10.0] < norms[0.0]


def test_adversarial_training_and_the_init_are_keyed_only_when_set():
    """New fields enter the key only when set, so no stored key moves; the label names what differs."""
    base = RunConfig.from_profile("smoke")
    adv = RunConfig.from_profile("smoke", adv_eps=0.1)
    assert "adv_eps" not in base.identity() and "adv_step" not in base.identity()
    assert adv.key() != base.key() and RunConfig.from_profile("smoke", adv_eps=0.0).key() == base.key()
    assert RunConfig.from_profile("smoke", adv_eps=0.1, adv_step=1.0).key() != adv.key()
    assert "adv=0.1" in adv.label()
    assert RunConfig.from_profile("smoke", init="default").key() == base.key()  # auto resolves to it
    assert "init=contractive" in RunConfig.from_profile("smoke", init="contractive").label()
    assert "init=default" in RunConfig.from_profile("smoke", regularizer="weight", init="default").label()
    with pytest.raises(ValueError, match="adv_eps must be >= 0"):
        RunConfig.from_profile("smoke", adv_eps=-0.1)
