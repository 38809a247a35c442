import json
import math
import os
import subprocess
import sys

import pytest

from llmzero.analysis import (
    analysed_paths,
    analyze_runs,
    classify,
    monotonicity,
    oscillation,
    path_params,
    plot_trajectories,
    rank_correlation,
    summarize,
    top_paths,
)
from llmzero.search import JOURNAL
from llmzero.search.journal import Journal, Recorder
from llmzero.search.tree import ROOT, Tree
from llmzero.space import DEFAULT_SPACE, Role

# -- one schedule -------------------------------------------------------------------------------------


def test_strictly_growing_is_monotone():
    v = [32, 64, 128, 256]
    assert monotonicity(v) == 1.0
    assert oscillation(v) == 0.0
    assert rank_correlation(v) == pytest.approx(1.0)
    assert classify(v) == "monotone"


def test_growing_with_plateaus_is_monotone_and_plateaus_do_not_count_as_moves():
    v = [32, 32, 64, 64, 128]
    assert monotonicity(v) == 1.0 and oscillation(v) == 0.0 and classify(v) == "monotone"


def test_alternating_is_oscillating():
    v = [1e-4, 5e-5, 1e-4, 5e-5, 1e-4]
    assert oscillation(v) == 1.0
    assert monotonicity(v) == 0.5
    assert classify(v) == "oscillating"
    # a stage that keeps the value is skipped: up, stay, down is still one reversal in one pair
    assert oscillation([1.0, 2.0, 2.0, 1.0]) == 1.0


def test_constant():
    v = [0.2, 0.2, 0.2]
    assert monotonicity(v) == 1.0  # every transition is non-decreasing
    assert math.isnan(oscillation(v)) and math.isnan(rank_correlation(v))
    assert classify(v) == "constant"
    # float noise from JSON or clamping is not a change
    assert classify([1e-4, 1e-4 * (1 + 1e-12)]) == "constant"


def test_short_schedules():
    assert math.isnan(monotonicity([])) and math.isnan(monotonicity([1.0]))
    assert math.isnan(oscillation([1.0, 2.0]))  # one move cannot reverse
    assert math.isnan(rank_correlation([1.0, 2.0]))
    assert classify([]) == classify([3.0]) == "too short"


def test_rank_correlation_signs_and_ties():
    assert rank_correlation([4, 3, 2, 1]) == pytest.approx(-1.0)
    assert rank_correlation([1, 3, 2, 4]) > 0
    assert rank_correlation([4, 2, 3, 1]) < 0
    # ties share their average rank: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4)
    assert rank_correlation([1, 2, 2, 3]) == pytest.approx(4.5 / math.sqrt(5 * 4.5))


def test_falling_and_peaked_schedules_are_mixed():
    assert classify([3, 2, 1]) == "mixed"  # falls: not the growth the paper means
    assert classify([1, 2, 3, 2]) == "mixed"  # one peak: 1 reversal in 2 pairs
    assert monotonicity([3, 2, 1]) == 0.0


# -- trees ----------------------------------------------------------------------------------------------

BASE = {p.name: p.default for p in DEFAULT_SPACE}


def _stage(record, node_id: str, parent: str, depth: int, val: float, **changes) -> None:
    record("node_created", node_id, {"parent_id": parent, "depth": depth, "params": {**BASE, **changes},
                                     "steps": 5, "transition": {"proposed_by": "test"}})
    record("stage_finished", node_id, {"val_score": val, "history": [], "cost": {"steps": 5},
                                       "checkpoint": f"x/{node_id}", "steps": 5})


def _grow(record, shift: float = 0.0) -> None:
    """Two branches: a long one where the response length grows and the learning rate goes up and down
    (the best), and a short one of two stages that change nothing."""
    record("root", ROOT, {"params": dict(BASE), "val_score": 0.1})
    lr = [1e-4, 5e-5, 1e-4, 5e-5]
    for i, (L, r) in enumerate(zip([32, 64, 128, 256], lr)):
        _stage(record, f"n{i + 1}", ROOT if i == 0 else f"n{i}", i + 1, 0.2 + 0.1 * i + shift,
               max_completion_length=L, learning_rate=r)
    _stage(record, "n5", ROOT, 1, 0.45 + shift)
    _stage(record, "n6", "n5", 2, 0.45 + shift)  # ties n5: the deeper stage comes first


def _tree(shift: float = 0.0) -> Tree:
    tree = Tree()
    _grow(tree.apply, shift)
    return tree


def test_path_params_excludes_the_root():
    tree = _tree()
    p = path_params(tree, "n4")
    assert p["max_completion_length"] == [32, 64, 128, 256]
    assert p["learning_rate"] == [1e-4, 5e-5, 1e-4, 5e-5]
    assert set(p) == set(DEFAULT_SPACE.names)
    assert path_params(tree, ROOT) == {}


def test_top_paths_order_and_tie_break():
    tree = _tree()
    assert top_paths(tree, 3) == ["n4", "n6", "n5"]
    assert top_paths(tree, 0) == []
    assert top_paths(tree, 100)[-1] == "n1"
    assert analysed_paths(tree, 1) == ["n4"]


def test_capacity_grows_and_regularization_oscillates_both_match():
    dyn = {d.name: d for d in analyze_runs([_tree(), _tree(0.01)], DEFAULT_SPACE, k=1)}
    L, lr = dyn["max_completion_length"], dyn["learning_rate"]
    assert L.role is Role.CAPACITY and L.classification == "monotone" and L.verdict == "match" and L.matches
    assert L.paths == 2 and L.changed == 2 and L.monotonicity == 1.0 and L.oscillation == 0.0
    assert L.trend == pytest.approx(1.0)
    assert lr.role is Role.REGULARIZATION and lr.classification == "oscillating" and lr.verdict == "match"
    assert lr.oscillation == 1.0
    beta = dyn["beta"]
    assert beta.classification == "constant" and beta.verdict == "unchanged" and beta.matches is None
    assert beta.changed == 0 and math.isnan(beta.monotonicity)
    s = summarize(list(dyn.values()))
    assert (s.matched, s.mismatched, s.unchanged, s.holds) == (2, 0, len(DEFAULT_SPACE.names) - 2, True)


def test_paths_that_change_nothing_do_not_dilute_the_means():
    # k=3 adds n6 (2 stages, nothing changes) and n5 (1 stage, too short) to the best path n4
    dyn = {d.name: d for d in analyze_runs([_tree()], DEFAULT_SPACE, k=3)}
    L = dyn["max_completion_length"]
    assert L.paths == 2 and L.changed == 1 and L.monotonicity == 1.0 and L.classification == "monotone"


def test_a_capacity_parameter_that_falls_is_a_mismatch():
    tree = Tree()
    tree.apply("root", ROOT, {"params": dict(BASE), "val_score": 0.1})
    for i, g in enumerate([16, 8, 4]):
        _stage(tree.apply, f"n{i + 1}", ROOT if i == 0 else f"n{i}", i + 1, 0.2 + 0.1 * i, num_generations=g)
    dyn = {d.name: d for d in analyze_runs([tree], DEFAULT_SPACE, k=0)}
    G = dyn["num_generations"]
    assert G.verdict == "mismatch" and G.trend == pytest.approx(-1.0)
    assert summarize(list(dyn.values())).holds is False


def test_no_scored_stage_is_too_short():
    tree = Tree()
    tree.apply("root", ROOT, {"params": dict(BASE), "val_score": 0.1})
    dyn = analyze_runs([tree], DEFAULT_SPACE)
    assert all(d.classification == "too short" and d.verdict == "too short" for d in dyn)
    assert summarize(dyn).holds is None


def test_plot_writes_a_png(tmp_path):
    out = plot_trajectories([_tree()], DEFAULT_SPACE, tmp_path / "p.png")
    assert out == tmp_path / "p.png" and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- the command ----------------------------------------------------------------------------------------


def llmzero(*args, cwd):
    return subprocess.run([sys.executable, "-m", "llmzero.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ}, timeout=300)


def test_analyze_command_json_and_plot(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    journal = Journal(run / JOURNAL, create=True)
    _grow(Recorder(journal, Tree()))
    journal.close()
    r = llmzero("analyze", "run", "--json", "--plot", "out.png", "--top-k", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    dyn = {d["name"]: d for d in res["parameters"]}
    L = dyn["max_completion_length"]
    assert L["verdict"] == "match" and L["class"] == "monotone"
    assert dyn["learning_rate"]["verdict"] == "match" and dyn["learning_rate"]["class"] == "oscillating"
    assert dyn["beta"]["verdict"] == "unchanged" and dyn["beta"]["monotonicity"] is None
    assert res["summary"] == {"matched": 2, "mismatched": 0, "unchanged": 7, "holds": True}
    assert res["paths"] == 1 and res["plot"] == "out.png"
    assert (tmp_path / "out.png").stat().st_size > 0
    table = llmzero("analyze", "run", "--top-k", "1", cwd=tmp_path)  # the table, in a pipe's 80 columns
    assert table.returncode == 0, table.stderr
    rows = {cells[0]: cells[1:] for line in table.stdout.splitlines() if len(cells := line.split()) == 7}
    assert rows["max_completion_length"] == ["(C)", "1.00", "0.00", "1/1", "monotone", "yes"], table.stdout
    assert rows["learning_rate"][0] == "(R)" and rows["learning_rate"][-2:] == ["oscillating", "yes"]
    assert rows["beta"] == ["(R)", "-", "-", "0/1", "constant", "unchanged"]
    assert "verdict: the paper's pattern (capacity grows monotonically, regularization oscillates) holds" in \
        " ".join(table.stdout.split())


def test_analyze_without_a_journal_is_one_line_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    r = llmzero("analyze", "empty", "--plot", "out.png", cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "holding journal.sqlite" in lines[0], r.stderr
    assert not (tmp_path / "out.png").exists()
