"""Methods that train whole chains (root to depth D): fixed, grid and random search.

A chain is one full-length run. Its next stage starts once its last stage has finished; a chain
ends at the configured depth, on a failure, or when early stopping prunes it. New chains start
while the budget lasts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

from llmzero.search.methods._base import SearchContext, StageSpec
from llmzero.search.tree import ROOT, Node, NodeState, Tree
from llmzero.space import Space, Value


def _chains(tree: Tree) -> dict[int, Node]:
    """The last node of every chain."""
    last: dict[int, Node] = {}
    for n in tree.stages():
        if n.chain is not None and (n.chain not in last or n.depth > last[n.chain].depth):
            last[n.chain] = n
    return last


class Chains:
    """``first(chain, ctx, tree)`` gives a new chain's parameters (None: no more chains) and
    ``next_(node, ctx, tree)`` the parameters of a chain's next stage."""

    def __init__(self, name: str, first: Callable[[int, SearchContext, Tree], tuple[dict[str, Value], str] | None],
                 next_: Callable[[Node, SearchContext, Tree], tuple[dict[str, Value], str]]):
        self.name, self.first, self.next_ = name, first, next_

    def ask(self, tree: Tree, n: int, ctx: SearchContext) -> list[StageSpec]:
        specs: list[StageSpec] = []
        last = _chains(tree)
        for c, node in sorted(last.items()):
            if len(specs) >= n:
                return specs
            if node.state is NodeState.COMPLETE and node.depth < ctx.cfg.search.depth:
                params, reason = self.next_(node, ctx, tree)
                specs.append(StageSpec(parent_id=node.id, params=params, reason=reason, proposed_by=self.name,
                                       chain=c))
        c = max(last, default=-1) + 1
        while len(specs) < n:
            got = self.first(c, ctx, tree)
            if got is None:
                break
            params, reason = got
            specs.append(StageSpec(parent_id=ROOT, params=params, reason=reason, proposed_by=self.name, chain=c))
            c += 1
        return specs

    def expandable(self, tree: Tree, ctx: SearchContext) -> set[str]:
        return {n.id for n in _chains(tree).values()
                if n.state is NodeState.COMPLETE and n.depth < ctx.cfg.search.depth}


def fixed() -> Chains:
    """The default schedule, repeated with fresh seeds while the budget lasts; best by validation."""
    return Chains("fixed",
                  first=lambda c, ctx, tree: (dict(tree.root.params), f"default schedule, run {c + 1}"),
                  next_=lambda node, ctx, tree: (dict(node.params), "default schedule: next stage"))


def grid_configs(grid: dict[str, list[float]], space: Space, start: dict[str, Value]) -> list[dict[str, Value]]:
    """The static configurations of ``grid`` (the product of its values, on top of ``start``), nearest
    to ``start`` first: distance in units of each value's step in the grid, log scale for log
    parameters; ties keep the product's order. Distances are rounded before they are compared: one
    step of 5e-5 -> 1e-4 and one of 1e-4 -> 2e-4 differ in the last bits of their logarithms, and
    that rounding error must not decide which configuration runs second."""
    out = [{**start, **dict(zip(grid, values))} for values in itertools.product(*grid.values())]

    def distance(cfg: dict[str, Value]) -> float:
        d = 0.0
        for name, values in grid.items():
            log = space[name].log and min(values) > 0 and start[name] > 0
            scale = (lambda v: math.log(v)) if log else (lambda v: float(v))
            pts = sorted(scale(v) for v in values)
            step = min((b - a for a, b in zip(pts, pts[1:]) if b > a), default=1.0)
            d += abs(scale(cfg[name]) - scale(start[name])) / step
        return round(d, 9)

    return sorted(out, key=distance)


def grid() -> Chains:
    """Static configurations over the product of ``search.grid``, each trained for the full depth.

    Configurations run nearest to the starting parameters first (``grid_configs``): when the budget
    cannot pay for the whole grid, the runs it does pay for cover the neighbourhood of the default
    evenly, instead of whichever corner the product happens to list first.
    """

    def first(c: int, ctx: SearchContext, tree: Tree):
        cs = grid_configs(ctx.cfg.search.grid, ctx.space, tree.root.params)
        if c >= len(cs):
            return None
        shown = ", ".join(f"{k}={cs[c][k]:g}" for k in ctx.cfg.search.grid)
        return cs[c], f"grid configuration {c + 1}/{len(cs)}: {shown}"

    return Chains("grid", first=first, next_=lambda node, ctx, tree: (dict(node.params), "static configuration"))


def random_search() -> Chains:
    """Random per-stage schedules: every stage's parameters drawn by the random proposer."""
    from llmzero.agents import RandomProposer

    proposer = RandomProposer()

    def draw(node_id: str, ctx: SearchContext, tree: Tree, salt: str) -> tuple[dict[str, Value], str]:
        p = proposer.propose(ctx.proposal_context(tree, node_id), 1, ctx.rng(tree, salt))[0]
        return dict(p.params), p.reason or "random parameters"

    return Chains("random",
                  first=lambda c, ctx, tree: draw(ROOT, ctx, tree, f"chain{c}"),
                  next_=lambda node, ctx, tree: draw(node.id, ctx, tree, node.id))
