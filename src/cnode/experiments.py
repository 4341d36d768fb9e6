"""Which runs each chapter needs: the chapter's parameters in, validated ``RunConfig``s out.

Chapters call these so that a parameter typo fails in one line before any training starts.
"""

from __future__ import annotations

from cnode import checks
from cnode.config import REGULARIZERS, RunConfig


def training_runs(profile: str, dataset: str, rho: float, seed: int, device: str = "auto",
                  epochs: int = 0) -> dict[str, RunConfig]:
    """Chapter 2: vanilla, weight- and Jacobian-regularized CNODEs, identical but for the regularizer.

    ``epochs = 0`` keeps the profile's number of epochs.
    """
    checks.nonnegative("epochs", epochs)
    extra = {"epochs": epochs} if epochs else {}
    return {reg: RunConfig.from_profile(profile, dataset=dataset, regularizer=reg, rho=rho, seed=seed,
                                        device=device, **extra) for reg in REGULARIZERS}


def _seeds(seeds: list[int]) -> list[int]:
    if not seeds:
        raise ValueError("seeds must be a non-empty list of integers, got []")
    for seed in seeds:
        checks.nonnegative("seed", seed)
    return list(seeds)


def _grid(profile: str, datasets: list[str], seeds: list[int], rhos: list[float], device: str,
          with_cnn: bool) -> list[RunConfig]:
    """Per dataset and seed: the vanilla CNODE, optionally the CNN baseline, and both regularizers per rho."""
    runs = []
    for dataset in datasets:
        for seed in _seeds(seeds):
            common = dict(dataset=dataset, seed=seed, device=device)
            runs.append(RunConfig.from_profile(profile, **common))
            if with_cnn:
                runs.append(RunConfig.from_profile(profile, model="cnn", **common))
            for rho in rhos:
                checks.positive("rho", rho)
                for reg in ("weight", "jacobian"):
                    runs.append(RunConfig.from_profile(profile, regularizer=reg, rho=rho, **common))
    return runs


def robustness_runs(profile: str, datasets: list[str], seeds: list[int], rhos: list[float],
                    device: str = "auto") -> list[RunConfig]:
    """Chapter 3: per dataset and seed, the vanilla CNODE, the CNN baseline, and both regularizers per rho."""
    return _grid(profile, datasets, seeds, rhos, device, with_cnn=True)


def sweep_runs(profile: str, datasets: list[str], seeds: list[int], rhos: list[float],
               device: str = "auto") -> list[RunConfig]:
    """Chapter 4: both regularizers at every rho, plus the vanilla CNODE (its mean is the plots' reference)."""
    return _grid(profile, datasets, seeds, rhos, device, with_cnn=False)


def precision_runs(profile: str, dataset: str, regularizer: str, rho: float, seeds: list[int],
                   device: str = "auto") -> dict[str, list[RunConfig]]:
    """Chapter 5: one configuration trained in float32 (the default) and with bfloat16 autocast, per seed."""
    checks.one_of("regularizer", regularizer, REGULARIZERS)
    return {precision: [RunConfig.from_profile(profile, dataset=dataset, regularizer=regularizer, rho=rho, seed=seed,
                                               device=device, precision=precision) for seed in _seeds(seeds)]
            for precision in ("float32", "bfloat16")}


def horizon_runs(profile: str, datasets: list[str], seeds: list[int], horizons: list[float], rho: float,
                 fine_T: float, fine_steps: int, fine_dataset: str, fine_regularizer: str, weight_decay: float,
                 device: str = "auto") -> dict[str, list[RunConfig]]:
    """Chapter 6: the horizon T as an axis (issue 13), in the order a sweep should train them.

    ``main``: vanilla, weight- and Jacobian-regularized CNODEs (N of the profile) at every T, dataset and seed;
    ``fine``: one configuration at ``fine_T`` with ``fine_steps`` steps, to separate T from h = T / N;
    ``decay``: the vanilla CNODE with ``weight_decay`` at every T, dataset and seed (the rival explanation:
    smaller weights, not contraction).
    """
    checks.positive("rho", rho)
    checks.positive("weight_decay", weight_decay)
    checks.positive_int("fine_steps", fine_steps)
    checks.one_of("fine_regularizer", fine_regularizer, REGULARIZERS)
    if not horizons:
        raise ValueError("horizons must be a non-empty list of positive numbers, got []")
    for T in horizons:
        checks.positive("T", T)
    main, decay = [], []
    for T in horizons:
        for dataset in datasets:
            for seed in _seeds(seeds):
                common = dict(dataset=dataset, seed=seed, device=device, T=T)
                main.append(RunConfig.from_profile(profile, **common))
                main += [RunConfig.from_profile(profile, regularizer=reg, rho=rho, **common)
                         for reg in ("weight", "jacobian")]
                decay.append(RunConfig.from_profile(profile, weight_decay=weight_decay, **common))
    fine = [RunConfig.from_profile(profile, dataset=fine_dataset, regularizer=fine_regularizer, rho=rho, seed=seed,
                                   T=fine_T, steps=fine_steps, device=device) for seed in _seeds(seeds)]
    return {"main": main, "fine": fine, "decay": decay}


def trust_runs(profile: str, datasets: list[str], seeds: list[int], rho: float, long_T: float,
               device: str = "auto") -> list[RunConfig]:
    """Chapter 7: the headline models the audit cards cover, per dataset and seed: the vanilla, weight- and
    Jacobian-regularized CNODEs and the CNN of chapter 3 (the profile's T), and the weight-regularized CNODE at
    ``long_T`` (chapter 6)."""
    checks.positive("rho", rho)
    checks.positive("long_T", long_T)
    runs = []
    for dataset in datasets:
        for seed in _seeds(seeds):
            common = dict(dataset=dataset, seed=seed, device=device)
            runs += [RunConfig.from_profile(profile, **common), RunConfig.from_profile(profile, model="cnn", **common)]
            runs += [RunConfig.from_profile(profile, regularizer=reg, rho=rho, **common)
                     for reg in ("weight", "jacobian")]
            runs.append(RunConfig.from_profile(profile, regularizer="weight", rho=rho, T=long_T, **common))
    return runs


def rho_search_runs(profile: str, dataset: str, seeds: list[int], rhos: list[float], long_rhos: list[float],
                    long_T: float, gammas: list[float], long_gammas: list[float] | None = None,
                    device: str = "auto") -> list[RunConfig]:
    """Chapter 8's declared rho search (issue 13, item 4): both regularizers on ``dataset``, per seed, at every rho
    of ``rhos`` with the profile's T for every gamma of ``gammas``, and at every rho of ``long_rhos`` at ``long_T``
    (the profile's N steps, so h = long_T / N) for every gamma of ``long_gammas`` (``gammas`` when None). Every
    setting tried is reported."""
    checks.positive("long_T", long_T)
    runs = []
    long_gammas = gammas if long_gammas is None else long_gammas
    for T, values, weights in ((None, rhos, gammas), (long_T, long_rhos, long_gammas)):
        for gamma in weights:
            checks.positive("gamma", gamma)
            for rho in values:
                checks.positive("rho", rho)
                for reg in ("weight", "jacobian"):
                    for seed in _seeds(seeds):
                        extra = {} if T is None else {"T": T}
                        runs.append(RunConfig.from_profile(profile, dataset=dataset, regularizer=reg, rho=rho,
                                                           gamma=gamma, seed=seed, device=device, **extra))
    return runs
