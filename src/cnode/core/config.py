"""Run configurations: one frozen, validated dataclass per training run, built from a named profile.

``RunConfig.from_profile("cpu", regularizer="weight", rho=1)`` starts from the profile's values and applies
overrides; an unknown field or a bad value raises one ``ValueError`` line. ``cfg.key()`` is a stable hash of
every field that changes the result (not ``device``: a run is the same experiment on CPU or GPU; the store
records where it ran; nor the Jacobian regularizer's settings for runs without it).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from cnode.core import checks
from cnode.core.data import FOLDERS
from cnode.core.settings import Hashed

#: Bump when a change in training code makes stored results stale; it is part of every key.
SCHEMA = 1
#: The same for the Jacobian regularizer alone, part of the key of R_J runs only. 2: the Lanczos loop rewritten
#: for speed and R_J's states recomputed for the sampled images; the same math, but float rounding
#: moved the 3rd-epoch test accuracy of a stored run by 0.25 points, beyond what the chapters print.
JACOBIAN_SCHEMA = 2


REGULARIZERS = ("none", "weight", "jacobian")
MODELS = ("cnode", "cnn")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("float32", "bfloat16")


@dataclass(frozen=True)
class RunConfig(Hashed):
    """Everything that defines one training run. Units: ``T`` in time, ``lr`` per Adam step, ``rho`` 1/time."""

    profile: str = "cpu"  # the profile this config was built from (results/<profile>/)
    dataset: str = "mnist"  # "mnist" or "fashion"
    model: str = "cnode"  # "cnode" (the paper's) or "cnn" (baseline)
    regularizer: str = "none"  # "none", "weight" (R_W) or "jacobian" (R_J)
    rho: float = 1.0  # target contraction rate of the regularizer
    gamma: float = 1.0  # weight of the regularizer in the loss: CE + gamma * R
    jacobian_iters: int = 60  # Lanczos products per lambda_max estimate (R_J only)
    jacobian_samples: int | None = None  # images per batch R_J penalizes, drawn at random; None: all
    jacobian_steps: int | None = None  # solver steps per batch R_J penalizes, drawn at random; None: all
    jacobian_warm: bool = False  # start each solver step's Lanczos from its vector of the previous batch
    channels: int = 8  # C
    steps: int = 10  # N solver steps, one conv each
    T: float = 0.1  # horizon; step size h = T / steps
    solver: str = "euler"  # "euler" or "rk4" (fixed grid)
    a: float = 0.1  # activation slope bounds
    b: float = 1.0
    init: str = "auto"  # "default", "contractive" (authors' -5 I3), "auto": contractive iff regularized
    optimizer: str = "adam"
    lr: float = 5e-2
    lr_decay: float = 0.7  # StepLR gamma, applied once per epoch
    epochs: int = 5
    batch_size: int = 128
    train_subset: int | None = None  # first n training images; None: all 60000
    test_subset: int | None = None  # first n test images for per-epoch accuracy; None: all 10000
    seed: int = 0
    device: str = "auto"  # "auto", "cpu" or "cuda" (not part of the key)
    compile: bool = False  # torch.compile the training forward pass (not part of the key: the same math)
    precision: str = "float32"  # "bfloat16": autocast of the training forward pass (opt-in; in the key if set)
    weight_decay: float = 0.0  # L2 coefficient of the optimizer, on every parameter (in the key if set)
    adv_eps: float = 0.0  # adversarial training: FGSM-RS at this L-inf eps on every batch (0: none; in the key if set)
    adv_step: float = 1.25  # its step, in units of adv_eps (Wong et al.'s 1.25; in the key if not 1.25)
    op_norm: float = 0.0  # > 0: input conv and head (CNN: every conv) projected to this operator norm every step
    flow_norm: float = 0.0  # > 0: every flow kernel's convolution projected to this operator norm every step

    def __post_init__(self) -> None:
        self._normalize_numbers()
        checks.one_of("profile", self.profile, PROFILES)
        checks.one_of("dataset", self.dataset, FOLDERS)
        checks.one_of("model", self.model, MODELS)
        checks.one_of("regularizer", self.regularizer, REGULARIZERS)
        if self.model == "cnn" and self.regularizer != "none":
            raise ValueError("regularizer must be 'none' for the cnn baseline")
        checks.nonnegative("rho", self.rho)
        checks.nonnegative("gamma", self.gamma)
        for name in ("jacobian_iters", "channels", "steps", "epochs", "batch_size"):
            checks.positive_int(name, getattr(self, name))
        checks.positive("T", self.T)
        checks.one_of("solver", self.solver, ("euler", "rk4"))
        checks.slopes(self.a, self.b)
        checks.one_of("init", self.init, ("auto", "default", "contractive"))
        if self.init == "auto":
            object.__setattr__(self, "init", "default" if self.regularizer == "none" else "contractive")
        checks.one_of("optimizer", self.optimizer, ("adam", "sgd"))
        checks.positive("lr", self.lr)
        checks.positive("lr_decay", self.lr_decay)
        for name in ("train_subset", "test_subset", "jacobian_samples", "jacobian_steps"):
            if getattr(self, name) is not None:
                checks.positive_int(name, getattr(self, name))
        if not isinstance(self.jacobian_warm, bool):
            raise ValueError(f"jacobian_warm must be true or false, got {self.jacobian_warm!r}")
        checks.nonnegative("seed", self.seed)
        checks.one_of("device", self.device, DEVICES)
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile must be true or false, got {self.compile!r}")
        checks.one_of("precision", self.precision, PRECISIONS)
        checks.nonnegative("weight_decay", self.weight_decay)
        checks.nonnegative("adv_eps", self.adv_eps)
        checks.positive("adv_step", self.adv_step)
        checks.nonnegative("op_norm", self.op_norm)
        checks.nonnegative("flow_norm", self.flow_norm)
        if self.flow_norm and self.model != "cnode":
            raise ValueError("flow_norm bounds the flow kernels of a cnode; the cnn's convs take op_norm")

    def _normalize_numbers(self) -> None:
        """Every numeric field as its declared type: an int where a float is declared becomes that float, an
        integral float where an int is declared that int (``rho=1`` and ``rho=1.0`` are one experiment, so they
        must hash to one key). Other values are left for the checks to reject."""
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                continue
            if f.type == "float" and isinstance(value, int):
                object.__setattr__(self, f.name, float(value))
            elif f.type.startswith("int") and isinstance(value, float) and value.is_integer():
                object.__setattr__(self, f.name, int(value))

    @classmethod
    def from_profile(cls, profile: str, **overrides: Any) -> RunConfig:
        """The profile's settings with ``overrides`` applied; unknown names are an error."""
        checks.one_of("profile", profile, PROFILES)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown RunConfig field {unknown[0]!r}; known fields: {', '.join(sorted(known))}")
        return cls(**{**PROFILES[profile], "profile": profile, **overrides})

    @property
    def h(self) -> float:
        """Solver step size T / steps."""
        return self.T / self.steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    #: where and how fast, not what
    KEPT_OUT: ClassVar[tuple[str, ...]] = ("device", "compile")
    #: fields added after results were stored, with the default at which they stay out of the key
    LATER: ClassVar[dict[str, Any]] = {"precision": "float32", "weight_decay": 0.0, "adv_eps": 0.0, "adv_step": 1.25,
                                       "op_norm": 0.0, "flow_norm": 0.0}
    KEY_DIGITS: ClassVar[int] = 12

    def identity(self) -> dict[str, Any]:
        """The fields that define the result (``Hashed.identity``), the ``jacobian_*`` fields only for
        Jacobian-regularized runs (no other run reads them, so tuning R_J never invalidates other results)."""
        return {k: v for k, v in super().identity().items()
                if self.regularizer == "jacobian" or not k.startswith("jacobian_")}

    def key_payload(self) -> dict[str, Any]:
        """``identity()`` with the store schema, and ``JACOBIAN_SCHEMA`` for R_J runs only."""
        payload = {**self.identity(), "schema": SCHEMA}
        if self.regularizer == "jacobian":
            payload["jacobian_schema"] = JACOBIAN_SCHEMA
        return payload

    def label(self) -> str:
        """Short human label, e.g. ``cnode/weight rho=1 seed=0``."""
        reg = "" if self.model == "cnn" else f"/{self.regularizer}"
        rho = f" rho={self.rho:g}" if self.regularizer != "none" else ""
        wd = f" wd={self.weight_decay:g}" if self.weight_decay else ""
        adv = f" adv={self.adv_eps:g}" if self.adv_eps else ""
        adv += f" op<={self.op_norm:g}" if self.op_norm else ""
        adv += f" flow<={self.flow_norm:g}" if self.flow_norm else ""
        init = f" init={self.init}" if self.model == "cnode" and self.init != (
            "default" if self.regularizer == "none" else "contractive") else ""
        return f"{self.model}{reg}{rho}{wd}{adv}{init} seed={self.seed}"


#: R_J penalizes 8 random images at 1 random solver step per batch (an unbiased estimate of the mean over
#: all 128 x 10), 60 Lanczos products each, warm-started from the previous batch: chosen in
#: ``benchmarks/run.py`` so that the estimate is within a few percent of the dense lambda_max and a step costs
#: <= 1.5x a vanilla one (book chapter 5).
_JACOBIAN_SAMPLING: dict[str, Any] = dict(jacobian_iters=60, jacobian_samples=8, jacobian_steps=1,
                                          jacobian_warm=True)

#: Named starting points. ``paper`` is the authors' MNIST script (batch 128, Adam 5e-2, StepLR 0.7, 5 epochs,
#: C = 8, N = 10, h = 0.01); ``cpu`` keeps the architecture and shrinks data and epochs for a laptop;
#: ``smoke`` is for tests only. ``cpu`` and ``paper`` compile the training forward pass (``train.compiled``: about
#: 20 s of compilation, once per process and batch shape, then a faster step); ``smoke`` stays eager so that tests
#: do not pay for compilation.
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": dict(channels=4, steps=4, epochs=2, batch_size=64, train_subset=512, test_subset=256,
                  jacobian_iters=8, jacobian_samples=8, jacobian_steps=2, jacobian_warm=True),
    "cpu": dict(epochs=3, batch_size=128, train_subset=10_000, test_subset=2_000, compile=True, **_JACOBIAN_SAMPLING),
    "paper": dict(compile=True, **_JACOBIAN_SAMPLING),
}
