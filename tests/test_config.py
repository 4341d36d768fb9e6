"""cnode.config: profiles, validation, stable keys."""

from __future__ import annotations

import pytest

from cnode.config import PROFILES, RunConfig


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
