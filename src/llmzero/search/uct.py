"""Selection and backup for the tree search, as pure functions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def backup(own: float | None, children: Sequence[float | None], rule: str = "max") -> float | None:
    """A node's backed-up value from its own score and its children's backed-up values.

    ``max`` values a node by the best trajectory through it (a schedule is judged by where it can
    lead); ``mean`` by the average, which favours reliably good prefixes.
    """
    vals = [v for v in (own, *children) if v is not None]
    if not vals:
        return None
    if rule == "max":
        return max(vals)
    if rule == "mean":
        return sum(vals) / len(vals)
    raise ValueError(f"backup={rule!r} is not allowed: expected max or mean")


def uct(value: float, visits: int, parent_visits: int, c: float) -> float:
    """UCB1 applied to trees: exploit ``value``, explore nodes visited less than their siblings."""
    if visits <= 0:
        return math.inf
    return value + c * math.sqrt(math.log(max(parent_visits, 1)) / visits)


def backed_up_values(children: Mapping[str, Sequence[str]], own: Mapping[str, float | None], root: str,
                     rule: str = "max") -> tuple[dict[str, float | None], dict[str, int]]:
    """Backed-up value and visit count (nodes in the subtree with a score) of every node under ``root``."""
    values: dict[str, float | None] = {}
    visits: dict[str, int] = {}

    def walk(n: str) -> None:
        for c in children.get(n, ()):
            walk(c)
        values[n] = backup(own.get(n), [values[c] for c in children.get(n, ())], rule)
        visits[n] = (own.get(n) is not None) + sum(visits[c] for c in children.get(n, ()))

    walk(root)
    return values, visits


def select_child(candidates: Sequence[str], values: Mapping[str, float | None], visits: Mapping[str, int],
                 parent_visits: int, c: float) -> str:
    """The candidate with the highest UCT score; ties go to the first (deterministic)."""
    def score(n: str) -> float:
        v = values.get(n)
        return uct(v if v is not None else 0.0, visits.get(n, 0), parent_visits, c)

    return max(candidates, key=score)
