"""cnode.core.mechanism on smoke models: gains multiply, the guaranteed flow bound holds, Lanczos meets dense
eigenvalues, and the measurements are stored beside the run and planned by the horizon chapter."""

from __future__ import annotations

import pytest
import torch

from cnode.book import registry
from cnode.core import data, mechanism
from cnode.core.config import RunConfig
from cnode.core.lipschitz import flow_bounds
from cnode.runs import store

pytestmark = pytest.mark.train  # trains models or spawns workers: not in `make check`


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    cfgs = [RunConfig.from_profile("smoke", T=T, regularizer=reg) for T in (0.1, 1.0) for reg in ("none", "weight")]
    return root, [store.load_or_train(cfg, root) for cfg in cfgs]


def test_gains_multiply_and_the_flow_never_beats_its_guaranteed_bound(runs):
    _, found = runs
    u, _ = data.load("mnist", "test", 64)
    for run in found:
        noisy = (u + 0.1 * torch.randn(u.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
        g = mechanism.gains(run.model, u, noisy)
        assert torch.allclose(g["input"] * g["flow"] * g["head"], g["total"], rtol=1e-4)
        bound = torch.tensor(flow_bounds(run.model)).prod()
        assert (g["flow"] <= bound * (1 + 1e-5)).all(), run.cfg.label()


def test_measure_reports_predictions_and_dense_checks(runs):
    _, found = runs
    images, labels = data.load("mnist", "test", 64)
    settings = mechanism.MECHANISMS["smoke"]
    for run in found:
        out = mechanism.measure(run.model, run.cfg.rho, images, labels, settings)
        assert len(out["certified_rate"]) == len(out["step_bounds"]) == len(out["lambda_max_per_step"]) == 4
        assert out["exp_rho_T"] == pytest.approx(torch.exp(torch.tensor(-run.cfg.T)).item())
        assert len(out["dense_checks"]) == (settings.dense_checks if run.cfg.h >= settings.dense_min_h else 0)
        for check in out["dense_checks"]:  # Lanczos never exceeds the true value, and gets close to it
            assert check["lanczos"] <= check["dense"] + 1e-4
            assert check["lanczos"] == pytest.approx(check["dense"], abs=0.05 * max(1.0, abs(check["dense"])))
        for kind in ("gaussian", "pgd"):
            assert set(out[kind]) == {"input", "flow", "head", "total", "perturbation_l2"}
            assert out[kind]["flow"]["max"] <= out["flow_bound"] * (1 + 1e-5)


def test_measurements_are_stored_beside_the_run_and_planned(runs, monkeypatch):
    root, found = runs
    first = store.load_or_measure(found[0], "smoke")
    name = store.mechanism_file("smoke")
    assert (found[0].path / name).exists()
    monkeypatch.setattr(mechanism, "measure", lambda *a, **k: pytest.fail("recomputed a stored measurement"))
    assert store.load_or_measure(found[0], "smoke") == first
    params = dict(profile="smoke", datasets=["mnist"], seeds=[0], horizons=[0.1, 1.0], suite="smoke",
                  mechanism="smoke", fine_steps=8)
    plan = registry.plan("06_horizon", params)
    assert plan.mechanism == "smoke" and len(plan.runs) == 6 + 1 + 2
    unmeasured = {cfg.key() for cfg in plan.unmeasured(root)}
    assert found[0].cfg.key() not in unmeasured and found[1].cfg.key() in unmeasured
    assert {cfg.key() for cfg in plan.todo(root)} >= unmeasured
