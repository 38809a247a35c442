"""Population-based training (as Ray Tune's PBT): members train side by side; at every stage
boundary the bottom quantile copies a top member's checkpoint (exploit) and perturbs its
parameters (explore). Like Ray's PBT it trains generations until the budget is spent, so its paths
may be deeper than ``search.depth``."""

from __future__ import annotations

import math
import random

from llmzero.search.methods._base import SearchContext, StageSpec
from llmzero.search.tree import ROOT, Node, NodeState, Tree
from llmzero.space import SEARCH_RANGES, Value

RESAMPLE = 0.25  # share of explore steps that resample from SEARCH_RANGES instead of perturbing


def explore(params: dict[str, Value], ctx: SearchContext, rng: random.Random) -> tuple[dict[str, Value], list]:
    cfg = ctx.cfg.search.pbt
    out = dict(params)
    for name in cfg.params:
        if rng.random() < RESAMPLE and name in SEARCH_RANGES:
            lo, hi = SEARCH_RANGES[name]
            log = ctx.space[name].log and lo > 0
            out[name] = math.exp(rng.uniform(math.log(lo), math.log(hi))) if log else rng.uniform(lo, hi)
        else:
            out[name] = out[name] * rng.choice(cfg.perturb)
    fixed, repairs = ctx.space.repair(out, reason_prefix="pbt explore: ")
    return fixed, repairs


class PBT:
    name = "pbt"

    def _members(self, tree: Tree) -> dict[int, dict[int, Node]]:
        by: dict[int, dict[int, Node]] = {}
        for n in tree.stages():
            if n.chain is not None:
                by.setdefault(n.chain, {})[n.depth] = n
        return by

    def ask(self, tree: Tree, n: int, ctx: SearchContext) -> list[StageSpec]:
        P = ctx.cfg.search.pbt.population
        members = self._members(tree)
        specs: list[StageSpec] = []
        if len(members) < P:  # generation 1: member 0 takes the defaults, the others explore from them
            for m in range(len(members), P):
                if len(specs) >= n:
                    break
                rng = random.Random(f"{ctx.cfg.seed}:pbt:0:{m}")
                params, repairs = (dict(tree.root.params), ()) if m == 0 else explore(tree.root.params, ctx, rng)
                specs.append(StageSpec(ROOT, params, "initial member" if m == 0 else "initial member (explored)",
                                       self.name, chain=m, repairs=tuple(repairs)))
            return specs
        g = min(max(d) for d in members.values())
        latest = {m: nodes[g] for m, nodes in members.items()}
        if any(nd.state in (NodeState.PENDING, NodeState.RUNNING) for nd in latest.values()):
            return []
        waiting = [m for m, nodes in members.items() if g + 1 not in nodes]
        if not waiting:
            return []

        def score(nd: Node) -> float:
            return nd.val_score if nd.state is NodeState.COMPLETE and nd.val_score is not None else -1.0

        ranked = sorted(latest, key=lambda m: (-score(latest[m]), m))
        q = max(1, math.floor(P * ctx.cfg.search.pbt.quantile))
        top, bottom = ranked[:q], set(ranked[-q:])
        for m in waiting:
            if len(specs) >= n:
                break
            rng = random.Random(f"{ctx.cfg.seed}:pbt:{g}:{m}")
            mine = latest[m]
            if m in bottom or mine.state is not NodeState.COMPLETE:
                donor = latest[rng.choice(top)]
                params, repairs = explore(donor.params, ctx, rng)
                specs.append(StageSpec(donor.id, params, f"exploit member {donor.chain} (val {score(donor):.3f} vs "
                                       f"{score(mine):.3f}) and explore", self.name, chain=m, repairs=tuple(repairs)))
            else:
                specs.append(StageSpec(mine.id, dict(mine.params), "keep training (not in the bottom quantile)",
                                       self.name, chain=m))
        return specs

    def expandable(self, tree: Tree, ctx: SearchContext) -> set[str]:
        members = self._members(tree)
        if not members:
            return set()
        # Donors of the generation being formed sit at depth g; members already past it continue
        # from their own latest node.
        g = min(max(d) for d in members.values())
        keep = {nodes[g].id for nodes in members.values() if g in nodes}
        keep |= {nodes[max(nodes)].id for nodes in members.values()}
        return {i for i in keep if tree.nodes[i].state is NodeState.COMPLETE}
