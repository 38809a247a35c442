"""The benchmark's headroom section: per seed, the searched cell with the best validation score is
picked across methods and reported on test, never by its test score."""

import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("bench_search", Path(__file__).parent.parent / "bench" / "search.py")
search = importlib.util.module_from_spec(spec)
spec.loader.exec_module(search)


def rec(task, method, seed, val, test, spent=1000):
    return {"task": task, "method": method, "seed": seed, "best_val": val, "test_score": test,
            "budget_spent": spent}


def test_pooled_pick_is_chosen_on_validation_and_reported_on_test():
    records = [
        rec("t", "base", 0, 0.9, 0.9, 0),          # base is no search: never pooled
        rec("t", "grid", 0, 0.40, 0.40),
        rec("t", "skill", 0, 0.45, 0.38),          # best val: picked although its test is lower
        rec("t", "random", 0, 0.41, 0.50),         # best test, but not picked
        rec("t", "grid", 1, 0.50, 0.40, 2000),
        rec("t", "llmzero", 1, 0.49, 0.44),
        rec("u", "llmzero", 0, 0.6, 0.6),          # no grid cell for (u, 0): no headroom row
    ]
    h = search.headroom(records)
    assert set(h) == {"t"}
    t = h["t"]
    assert t["seeds"] == [0, 1] and t["methods"] == ["skill", "grid"]
    assert t["pooled"] == [0.38, 0.40] and t["grid"] == [0.40, 0.40]
    assert t["rel"] == pytest.approx(0.39 / 0.40 - 1)
    assert t["compute"] == [3.0, 1.5]  # the pooled cells' spend over grid's


def test_headroom_section_in_the_table():
    records = [rec("t", "grid", 0, 0.40, 0.40), rec("t", "llmzero", 0, 0.45, 0.44)]
    lines = search.headroom_table({"records": records, "config": {"tasks": ["t"]}})
    row = next(x for x in lines if x.startswith("| t |"))
    assert "| 0.400 | 0.440 | +10.0% | 2.0x | seed 0: 0.440 (llmzero) |" in row
    assert search.headroom_table({"records": records[1:], "config": {"tasks": ["t"]}}) == []  # no grid: none
