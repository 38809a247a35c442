"""Methods that train whole chains (root to depth D): fixed, grid and random search.

A chain is one full-length run. Its next stage starts once its last stage has finished; a chain
ends at the configured depth, on a failure, or when early stopping prunes it. New chains start
while the budget lasts. A method that runs out of chains with budget left (grid, once every
configuration has run) deepens as the tree searches do (``search.deepen``, not ``off``): its best
runs at the full depth, by their last stage's validation score, train one more stage, again while
the budget lasts, so that the budget is not left unspent.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

from llmzero.search.methods._base import DEEPEST, MIN_STAGE_SHARE, SearchContext, StageSpec, usable
from llmzero.search.tree import ROOT, Node, Tree
from llmzero.space import Space, Value


def _chains(tree: Tree) -> dict[int, Node]:
    """The last node of every chain."""
    last: dict[int, Node] = {}
    for n in tree.stages():
        if n.chain is not None and (n.chain not in last or n.depth > last[n.chain].depth):
            last[n.chain] = n
    return last


def _val(node: Node) -> float:
    """A node's validation score for ranking runs (-1 when it has none)."""
    return node.val_score if node.val_score is not None else -1.0


class Chains:
    """``first(chain, ctx, tree)`` gives a new chain's parameters (None: no more chains) and
    ``next_(node, ctx, tree)`` the parameters of a chain's next stage."""

    def __init__(self, name: str, first: Callable[[int, SearchContext, Tree], tuple[dict[str, Value], str] | None],
                 next_: Callable[[Node, SearchContext, Tree], tuple[dict[str, Value], str]]):
        self.name, self.first, self.next_ = name, first, next_

    def ask(self, tree: Tree, n: int, ctx: SearchContext) -> list[StageSpec]:
        specs: list[StageSpec] = []
        last = _chains(tree)
        ends = sorted(last.items())
        if tree.depth_limit:  # deepened: the best runs first
            ends.sort(key=lambda item: -_val(item[1]))
        for c, node in ends:
            if len(specs) >= n:
                return specs
            if self._grows(tree, node, ctx):
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
        if not specs:
            self._deepen(tree, n, ctx)
        return specs

    @staticmethod
    def _grows(tree: Tree, node: Node, ctx: SearchContext) -> bool:
        """Whether the chain that ends at ``node`` trains another stage: below the configured depth, or,
        once the search deepened, a run it chose to deepen from, below the new depth."""
        if not usable(tree, node.id) or node.depth >= ctx.max_depth(tree):
            return False
        return node.depth < ctx.cfg.search.depth or node.id in tree.extended_from

    @staticmethod
    def _deepest_ends(tree: Tree, ctx: SearchContext) -> list[Node]:
        """The runs at the full depth whose checkpoints remain, best last-stage validation score first."""
        depth = ctx.max_depth(tree)
        ends = [n for n in _chains(tree).values() if n.depth == depth and usable(tree, n.id)]
        return sorted(ends, key=lambda n: (-_val(n), int(n.id[1:])))

    def _deepen(self, tree: Tree, n: int, ctx: SearchContext) -> None:
        """No run left to start or continue: with budget left for a stage, the best ``n`` runs at the
        full depth may train one stage more (``search.deepen`` not ``off``)."""
        depth = ctx.max_depth(tree)
        if ctx.cfg.search.deepen == "off" or depth >= DEEPEST:
            return
        if ctx.stage_tokens is not None and ctx.tokens_left < MIN_STAGE_SHARE * ctx.stage_tokens(tree.root.params):
            return
        ends = self._deepest_ends(tree, ctx)[:n]
        if ends:
            reason = (f"every {self.name} run has ended, with {ctx.tokens_left:,.0f} tokens of budget left: the best "
                      f"{len(ends)} may grow to {depth + 1} stages")
            ctx.events.append(("depth_extended", None, {"depth": depth + 1, "nodes": [e.id for e in ends],
                                                        "reason": reason}))

    def expandable(self, tree: Tree, ctx: SearchContext) -> set[str]:
        """The runs that train on, and, while the search may deepen, the best run at the full depth, so
        that garbage collection leaves one to deepen from."""
        keep = {node.id for node in _chains(tree).values() if self._grows(tree, node, ctx)}
        ends = self._deepest_ends(tree, ctx)
        if ctx.cfg.search.deepen != "off" and ends:
            keep.add(ends[0].id)
        return keep


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
