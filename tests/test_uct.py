import math

import pytest

from llmzero.search.uct import backed_up_values, backup, select_child, uct


def test_backup_rules():
    assert backup(0.3, [0.5, None, 0.4], "max") == 0.5
    assert backup(0.3, [0.5, 0.4], "mean") == pytest.approx(0.4)
    assert backup(None, [None]) is None
    with pytest.raises(ValueError, match="backup='median'"):
        backup(0.1, [], "median")


def test_uct_prefers_unvisited_then_balances():
    assert uct(0.1, 0, 10, 1.0) == math.inf
    assert uct(0.5, 1, 10, 0.0) == 0.5
    # exploration favours the less-visited of two equal values
    assert uct(0.5, 1, 10, 1.0) > uct(0.5, 5, 10, 1.0)


def test_backed_up_values_and_visits():
    children = {"r": ["a", "b"], "a": ["c"], "b": [], "c": []}
    own = {"r": 0.2, "a": 0.3, "b": 0.4, "c": 0.9}
    v, n = backed_up_values(children, own, "r", "max")
    assert v == {"c": 0.9, "a": 0.9, "b": 0.4, "r": 0.9} and n == {"c": 1, "a": 2, "b": 1, "r": 4}
    v, _ = backed_up_values(children, own, "r", "mean")
    assert v["a"] == pytest.approx(0.6) and v["r"] == pytest.approx((0.2 + 0.6 + 0.4) / 3)


def test_select_child_exploit_vs_explore():
    values, visits = {"a": 0.6, "b": 0.5}, {"a": 10, "b": 1}
    assert select_child(["a", "b"], values, visits, 11, 0.0) == "a"
    assert select_child(["a", "b"], values, visits, 11, 1.0) == "b"
    assert select_child(["a", "b"], {"a": 0.5, "b": 0.5}, {"a": 1, "b": 1}, 2, 1.0) == "a"  # ties: first
