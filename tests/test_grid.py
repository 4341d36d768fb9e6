"""cnode.runs.grid: several chapters' plans merged into one queue (one task per run key), the declared rho search, and
a pool that starts nothing after its deadline."""

from __future__ import annotations

import pytest

from cnode.book import c08_rho_search, registry
from cnode.runs import grid, store


def smoke_grid() -> list:
    """The smoke rehearsal's plans (chapter 3 and the audit, one seed)."""
    return [registry.plan(chapter, params) for chapter, params in registry.SMOKE_GRID]


@pytest.fixture()
def empty_store(tmp_path, monkeypatch):
    monkeypatch.setenv("CNODE_RESULTS", str(tmp_path / "results"))


def test_a_run_shared_by_chapters_is_one_task_with_every_chapter_s_work(empty_store):
    found = grid.tasks(smoke_grid())
    keys = [t.cfg.key() for t in found]
    assert len(keys) == len(set(keys)) == 5  # vanilla, CNN, weight, Jacobian (chapter 3) + weight at T = 1 (audit)
    vanilla = next(t for t in found if t.cfg.model == "cnode" and t.cfg.regularizer == "none")
    assert vanilla.chapters == ["03_robustness", "07_trust"]
    assert (vanilla.suite, vanilla.audit, vanilla.control_levels) == ("smoke", "smoke", 4)  # merged from both plans
    cnn = next(t for t in found if t.cfg.model == "cnn")
    assert cnn.control_levels is None  # the positive control wraps vanilla CNODEs only
    long = next(t for t in found if t.cfg.T == 1.0)
    assert long.suite is None and long.audit == "smoke"  # chapter 7 asks only for its card


def test_longest_first_puts_audits_before_plain_runs(empty_store):
    sweep = registry.plan("04_rho_sweep", {"profile": "smoke", "suite": "smoke", "seeds": [1], "datasets": ["mnist"],
                                           "rhos": [2.0]})
    found = grid.tasks(smoke_grid() + [sweep], longest_first=True)
    audited = [t.audit is not None for t in found]
    assert audited == sorted(audited, reverse=True) and not audited[-1]


def test_conflicting_requests_for_one_run_are_an_error(empty_store):
    cfg = grid.tasks(smoke_grid())[0].cfg
    task = grid.Task(cfg, suite="smoke")
    with pytest.raises(ValueError, match="suite"):
        task.merge(grid.Task(cfg, suite="cpu"))


def test_the_rho_search_is_every_declared_setting_once():
    runs = c08_rho_search.rho_search_runs("smoke", "mnist", [0, 1], [0.25, 4.0], [1.0], 1.0, [1.0, 10.0])
    assert len(runs) == len({c.key() for c in runs}) == 2 * 2 * (2 + 1) * 2  # gammas x regs x rhos x seeds
    assert {(c.T, c.rho) for c in runs} == {(0.1, 0.25), (0.1, 4.0), (1.0, 1.0)}
    assert {c.regularizer for c in runs} == {"weight", "jacobian"} and {c.gamma for c in runs} == {1.0, 10.0}
    cut = c08_rho_search.rho_search_runs("smoke", "mnist", [0, 1], [0.25, 4.0], [1.0], 1.0, [1.0, 10.0], [1.0])
    assert {(c.T, c.gamma) for c in cut} == {(0.1, 1.0), (0.1, 10.0), (1.0, 1.0)}  # the amendment: gamma 10 at T 0.1
    assert len(cut) == len(runs) - 2 * 2  # one gamma x regs x one long rho x seeds fewer
    with pytest.raises(ValueError, match="rho"):
        c08_rho_search.rho_search_runs("smoke", "mnist", [0], [-1.0], [], 1.0, [1.0])
    with pytest.raises(ValueError, match="gamma"):
        c08_rho_search.rho_search_runs("smoke", "mnist", [0], [1.0], [1.0], 1.0, [1.0], [-1.0])


@pytest.mark.train
def test_no_task_starts_after_the_deadline(empty_store):
    found = grid.tasks(smoke_grid())[:2]
    done = grid.run(found, workers=1, deadline_s=-1.0)
    assert [status for _, status, _ in done] == ["skipped", "skipped"]


@pytest.mark.train
def test_a_task_is_done_into_the_store_and_a_failing_one_is_reported_not_raised(empty_store):
    """The pool's two other outcomes: a run trained and evaluated into the store ("done"), and a task that fails
    (an unknown suite) reported as one error line while the pool goes on."""
    from cnode.runs.store import run_dir

    cfg = next(t.cfg for t in grid.tasks(smoke_grid()) if t.cfg.model == "cnn")
    done = grid.run([grid.Task(cfg, suite="no-such-suite"), grid.Task(cfg, suite="smoke")], workers=1,
                    deadline_s=600.0)
    status = {label_status for _, label_status, _ in done}
    assert "done" in status and len(done) == 2
    error = next(s for s in status if s != "done")
    assert error.startswith("error: ValueError: suite must be one of") and "\n" not in error
    assert (run_dir(cfg) / "metrics.json").exists() and (run_dir(cfg) / store.eval_file("smoke")).exists()


def test_the_command_line_lists_the_queue_on_a_dry_run(empty_store, capsys):
    from cnode.__main__ import main

    assert main(["grid", "--grid", "smoke", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "grid: 5 runs with work outstanding" in out and "[03_robustness, 07_trust]" in out
