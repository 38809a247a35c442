"""Search methods by name; each is a Method (see _base.py)."""

from __future__ import annotations

from llmzero.search.methods._base import MIN_STAGE_SHARE, Method, SearchContext, StageSpec
from llmzero.search.methods.chains import fixed, grid, random_search
from llmzero.search.methods.pbt import PBT
from llmzero.search.methods.tree_search import MCTS, BestFirst

METHODS = {"mcts": MCTS, "skill": BestFirst, "fixed": fixed, "grid": grid, "random": random_search, "pbt": PBT}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]()
    except KeyError:
        raise ValueError(f"method={name!r} is not allowed: expected one of {', '.join(METHODS)}") from None


__all__ = ["METHODS", "MIN_STAGE_SHARE", "Method", "SearchContext", "StageSpec", "get_method"]
