"""cnode.runs.sweeps and ``python -m cnode sweep``: a chapter's missing runs, trained once each, through submitit."""

from __future__ import annotations

from concurrent.futures.process import BrokenProcessPool

import pytest

from cnode.__main__ import main
from cnode.book import registry
from cnode.runs import store, sweeps

pytestmark = pytest.mark.train  # trains models or spawns workers: not in `make check`

SMOKE = [("profile", "smoke"), ("suite", "smoke")]
GRID = [("datasets", "[mnist]"), ("seeds", "[0]"), ("rhos", "[0.5, 2.0]")]  # vanilla + 2 x 2 regularized = 5 runs


@pytest.fixture()
def starts(tmp_path, monkeypatch) -> list[str]:
    """Every training start in this process (the debug executor runs jobs here), by run key."""
    monkeypatch.setenv("CNODE_RESULTS", str(tmp_path / "results"))
    seen: list[str] = []
    real = store.train

    def counted(cfg, **kw):
        seen.append(cfg.key())
        return real(cfg, **kw)

    monkeypatch.setattr(store, "train", counted)
    return seen


def test_a_sweep_trains_each_missing_run_once_and_a_rerun_none(starts, tmp_path, capsys):
    params = sweeps.resolve("04_rho_sweep", SMOKE, GRID)
    done = sweeps.sweep(registry.plan("04_rho_sweep", params),
                        executor="debug", threads=2, log_dir=tmp_path / "logs")
    assert len(done) == 5 and len(starts) == 5 and len(set(starts)) == 5
    assert "5 runs, 0 stored, 5 to run" in capsys.readouterr().out
    assert sweeps.sweep(registry.plan("04_rho_sweep", params),
                        executor="debug", threads=2, log_dir=tmp_path / "logs") == []
    assert len(starts) == 5  # the rerun started nothing
    assert "5 runs, 5 stored, 0 to run" in capsys.readouterr().out


def test_the_command_line_validates_like_the_chapter(starts, capsys):
    assert main(["sweep", "04_rho_sweep", "-p", "rho", "1"]) == 2
    assert capsys.readouterr().err.strip() == ("error: unknown parameter rho; this chapter knows: datasets, "
                                               "profile, seeds, rhos, suite, device")
    assert main(["sweep", "01_contraction"]) == 2
    assert "no sweep for chapter" in capsys.readouterr().err
    args = ["sweep", "book/04_rho_sweep.ipynb", "--dry-run"]
    for name, value in SMOKE:
        args += ["-p", name, value]
    for name, value in GRID:
        args += ["-y", name, value]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "04_rho_sweep: 5 runs, 0 stored, 5 to run (suite smoke)" in out and starts == []


#: Imported at start-up by every Python process the local executor starts (it is on their PYTHONPATH): it
#: records each training start in $CNODE_TEST_STARTS and, with $CNODE_TEST_KILL_AFTER_EPOCH=k, kills the process
#: right after epoch k's checkpoint is written (fault injection at a given epoch, not a timer).
_SITECUSTOMIZE = """
import os

if os.environ.get("CNODE_TEST_STARTS"):
    import cnode.runs.store as _store
    _train = _store.train

    def _counted(cfg, resume=None, on_epoch=None):
        with open(os.environ["CNODE_TEST_STARTS"], "a") as fh:
            fh.write(cfg.key() + "\\n")
        kill = int(os.environ.get("CNODE_TEST_KILL_AFTER_EPOCH", "0"))

        def hooked(state):
            on_epoch(state)
            if kill and len(state["history"]) == kill:
                os._exit(1)
        return _train(cfg, resume=resume, on_epoch=hooked)

    _store.train = _counted
"""


@pytest.fixture()
def local_env(tmp_path, monkeypatch):
    """Processes started by submitit's local executor count training starts into the returned file."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    monkeypatch.setenv("CNODE_RESULTS", str(tmp_path / "results"))
    log = tmp_path / "starts.txt"
    monkeypatch.setenv("CNODE_TEST_STARTS", str(log))
    return log


def _starts(log) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_two_local_workers_start_each_training_once(local_env, tmp_path):
    params = sweeps.resolve("04_rho_sweep", SMOKE, GRID)
    done = sweeps.sweep(registry.plan("04_rho_sweep", params),
                        executor="local", workers=2, threads=1, log_dir=tmp_path / "logs")
    assert len(done) == 5 and len(_starts(local_env)) == 5 and len(set(_starts(local_env))) == 5
    assert sweeps.sweep(registry.plan("04_rho_sweep", params),
                        executor="local", workers=2, threads=1,
                        log_dir=tmp_path / "logs") == []
    assert len(_starts(local_env)) == 5  # the rerun started no training


def test_a_killed_worker_is_finished_by_the_next_sweep_with_identical_results(local_env, tmp_path, monkeypatch):
    params = sweeps.resolve("02_training", [("profile", "smoke"), ("epochs", "2")])
    monkeypatch.setenv("CNODE_TEST_KILL_AFTER_EPOCH", "1")
    with pytest.raises(BrokenProcessPool):  # the killed worker: its run stops after its first epoch
        sweeps.sweep(registry.plan("02_training", params),
                     executor="local", workers=1, threads=1, log_dir=tmp_path / "logs")
    cfg = registry.plan("02_training", params).runs[0]
    assert (store.run_dir(cfg) / "checkpoint.pt").exists() and not (store.run_dir(cfg) / "metrics.json").exists()
    monkeypatch.delenv("CNODE_TEST_KILL_AFTER_EPOCH")
    sweeps.sweep(registry.plan("02_training", params),
                 executor="local", workers=1, threads=1, log_dir=tmp_path / "logs")
    resumed = store.load(cfg)
    assert resumed.metrics["resumed_at_epoch"] == 1
    monkeypatch.setenv("CNODE_RESULTS", str(tmp_path / "fresh"))  # the same run, never interrupted
    sweeps.sweep(registry.plan("02_training", params),
                 executor="local", workers=1, threads=1, log_dir=tmp_path / "logs")
    fresh = store.load(cfg, tmp_path / "fresh")
    assert [h["test_acc"] for h in fresh.history] == [h["test_acc"] for h in resumed.history]
    for a, b in zip(fresh.model.state_dict().values(), resumed.model.state_dict().values(), strict=True):
        assert a.equal(b)
