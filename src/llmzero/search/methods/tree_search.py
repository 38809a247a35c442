"""Tree-growing methods: MCTS (UCT over backed-up values) and the skill agent's best-first search."""

from __future__ import annotations

import math
from dataclasses import replace

from llmzero.agents.diagnosis import VAL_GAIN
from llmzero.search.methods._base import (DEEPEST, MIN_STAGE_SHARE, SearchContext, StageSpec, prior_proposal,
                                          propose_specs, usable)
from llmzero.search.methods.chains import grid_configs
from llmzero.search.tree import ROOT, Node, NodeState, Tree, node_order
from llmzero.search.uct import backed_up_values, select_child

GROW_MARGIN = VAL_GAIN  # deepen "improving": the best node beats its parent's validation score by this much


def _closed(tree: Tree, ctx: SearchContext) -> set[str]:
    """Nodes the agent decided to stop growing (journaled, or closed during this ask), unless reopened."""
    return (tree.closed | set(getattr(ctx.proposer, "closed", ()))) - tree.reopened


def _beaten(tree: Tree, node: Node, stages: int = 1) -> Node | None:
    """The nearest of ``node``'s ``stages`` nearest ancestors whose validation score it beats by
    ``GROW_MARGIN`` (1: its parent only), or None."""
    anc = node
    for _ in range(stages):
        if anc.parent_id is None:
            return None
        anc = tree.nodes[anc.parent_id]
        if anc.val_score is not None and node.val_score >= anc.val_score + GROW_MARGIN:
            return anc
    return None


def _improving(tree: Tree, node: Node) -> bool:
    """Whether ``node``'s stage beat its parent's validation score by ``GROW_MARGIN``."""
    return _beaten(tree, node) is not None


def _best_leaf(tree: Tree, depth: int, closed: set[str] = frozenset()) -> Node | None:
    """The best scored, usable node at ``depth`` not in ``closed`` (ties: the earlier node)."""
    leaves = [n for n in tree.stages() if n.depth == depth and n.val_score is not None
              and usable(tree, n.id) and n.id not in closed]
    return min(leaves, key=lambda n: (-n.val_score, int(n.id.lstrip("n"))), default=None)


def _dive_node(tree: Tree, ctx: SearchContext, depth: int) -> tuple[Node, Node] | None:
    """The node at ``depth`` a dive goes on from, and the ancestor it beat: the best node if it beat
    its parent; with ``search.dive_patience`` p, else the best leaf at ``depth`` if it beat one of its
    p + 1 nearest ancestors (a stage that stalled within a rising path)."""
    best, closed = tree.best(), _closed(tree, ctx)
    if best is not None and best.depth == depth and usable(tree, best.id) and best.id not in closed:
        anc = _beaten(tree, best)
        if anc is not None:
            return best, anc
    patience = ctx.cfg.search.dive_patience
    leaf = _best_leaf(tree, depth, closed) if patience else None
    if leaf is None:
        return None
    anc = _beaten(tree, leaf, 1 + patience)
    return (leaf, anc) if anc is not None else None


def _room(tree: Tree, node_id: str, ctx: SearchContext, planned: dict[str, int], *,
          closures: bool = True) -> int:
    """How many more children ``node_id`` may get (``closures=False``: were its branch reopened)."""
    node = tree.nodes[node_id]
    if not usable(tree, node_id) or node.depth >= ctx.max_depth(tree):
        return 0
    if closures and node_id in _closed(tree, ctx):
        return 0
    return ctx.cfg.search.max_children - len(tree.trained_children(node_id)) - planned.get(node_id, 0)


def _lineage_tips(tree: Tree) -> list[Node]:
    """``search.lineages``: each lineage's last stage, the deepest node under a trained child of the
    root (the latest at that depth), in the order the lineages started."""
    tips = []
    for first in tree.trained_children(ROOT):
        tip, todo = tree.nodes[first], [first]
        while todo:
            node = tree.nodes[todo.pop()]
            todo += node.children
            if (node.depth, node_order(node.id)) > (tip.depth, node_order(tip.id)):
                tip = node
        tips.append(tip)
    return tips


def _lineages(tree: Tree, n: int, ctx: SearchContext) -> list[StageSpec]:
    """``search.lineages``: up to ``n`` stages, one per lineage whose last stage is done (the shortest
    lineage first), each the agent's proposal for that checkpoint; then new lineages from the base
    model for those that ended (failed, pruned, or at the depth bound), up to ``search.lineages`` at
    once. A lineage the agent stops is reopened (queued ``branches_reopened``): lineages grow while
    the budget lasts, as grid's runs do, and the search's budget goes to them alone."""
    bound = ctx.max_depth(tree) if ctx.cfg.search.deepen == "off" else DEEPEST
    tips = _lineage_tips(tree)
    busy = [t for t in tips if t.state in (NodeState.PENDING, NodeState.RUNNING)]
    ready = sorted((t for t in tips if usable(tree, t.id) and t.depth < bound),
                   key=lambda t: (t.depth, node_order(t.id)))
    new = ctx.cfg.search.lineages - len(busy) - len(ready)
    targets = [t.id for t in ready] + ([ROOT] if new > 0 else [])
    specs: list[StageSpec] = []
    for target in targets:
        k = min(n - len(specs), new if target == ROOT else 1)
        if k <= 0:
            break
        if target == ROOT and ctx.cfg.search.lineage_start != "agent":
            specs += _lineage_starts(tree, k, ctx)
            break
        got = propose_specs(ctx, tree, target, k, ctx.proposer, ctx.rng(tree, f"{target}:{len(specs)}"))
        if hasattr(ctx.proposer, "backup_to"):
            ctx.proposer.backup_to.clear()  # lineages do not branch: a lineage grows from its last stage
        if not got and target in _closed(tree, ctx):
            reason = "a lineage grows while the budget lasts (search.lineages)"
            ctx.events.append(("branches_reopened", None, {"nodes": [target], "reason": reason}))
        specs += got[:k]
    return specs


def _lineage_starts(tree: Tree, k: int, ctx: SearchContext) -> list[StageSpec]:
    """``k`` new lineages' first stages, without asking the agent (a base model has no GRPO dynamics
    to read); their stages' own seeds give each its data order.

    ``search.lineage_start: start``: each with the starting parameters (a prior's first move, with
    ``search.prior``). ``grid``: lineage i with the i-th of ``search.grid``'s configurations nearest
    to the starting parameters (``grid_configs``, the order grid search runs them in; a lineage that
    replaces one takes the next configuration, round the grid again after its last)."""
    started, how = len(tree.trained_children(ROOT)), ctx.cfg.search.lineage_start
    if how == "grid":
        configs = grid_configs(ctx.cfg.search.grid, ctx.space, tree.root.params)
        n, starts = len(configs), []
        for i in range(started, started + k):
            c = configs[i % n]
            shown = ", ".join(f"{name}={c[name]:g}" for name in ctx.cfg.search.grid)
            starts.append((c, f"grid configuration {i % n + 1}/{n}: {shown}", "continue", ()))
    else:
        pctx = ctx.proposal_context(tree, ROOT)
        pctx.extra.update(ctx.extra)
        prior = prior_proposal(replace(pctx, siblings=()))  # every lineage starts with the prior's move
        starts = [(tree.root.params, "the starting parameters", "continue", ()) if prior is None
                  else (prior.params, prior.reason, prior.mode.value, prior.repairs)] * k
    return [StageSpec(parent_id=ROOT, params=dict(params), proposed_by="lineages",
                      reason=f"lineage {started + i + 1} starts with {why} (search.lineage_start: {how})",
                      mode=mode, repairs=repairs)
            for i, (params, why, mode, repairs) in enumerate(starts)]


class _Expander:
    """Shared ask loop: pick a target with ``_target``, ask the proposer for up to ``branching``
    children of it, repeat until ``n`` stages are planned or nothing is left to expand.

    A tree with nothing left to expand while budget is left (a fifth of a stage at least, what the
    loop still runs) reopens the branches the agent closed: its "stop" is a judgement of where the
    budget is best spent, and spending it there beats leaving it unspent. Their checkpoints are kept
    for that (``expandable``). With nothing to reopen either, the search deepens (``search.deepen``):
    one more stage is allowed along every path, so the nodes at the old full depth whose checkpoints
    are still kept (the best path, the top k, and always the best of them: ``expandable``) get
    children, the best first.

    With ``search.deepen: improving`` the search also deepens as soon as the best node is at the full
    depth and its stage improved on its parent's validation score (by ``GROW_MARGIN``) while a whole
    stage of budget is left: the curve is still rising where the search is best, so that path trains
    longer instead of the budget going to a wider tree. That node is grown first (``_dive_target``),
    before the tree widens, so a path dives for as long as its curve rises. With
    ``search.dive_branching`` that node gets that many children, and they are the whole batch: with
    one, the path grows a stage per batch rather than a stage per ``branching`` stages, a larger share
    of the budget along the rising path at the cost of idle workers.
    """

    def _target(self, tree: Tree, ctx: SearchContext, planned: dict[str, int],
                specs: list[StageSpec]) -> str | None:
        raise NotImplementedError

    def ask(self, tree: Tree, n: int, ctx: SearchContext) -> list[StageSpec]:
        if ctx.cfg.search.lineages > 1:
            return _lineages(tree, n, ctx)
        if self._grow(tree, ctx):
            return []  # the loop journals the new depth and asks again
        specs = self._expand(tree, n, ctx)
        if not specs and self._budget_left(tree, ctx) and not self._reopen(tree, ctx):
            self._deepen(tree, ctx)
        return specs

    @staticmethod
    def _budget_left(tree: Tree, ctx: SearchContext) -> bool:
        return ctx.stage_tokens is None or ctx.tokens_left >= MIN_STAGE_SHARE * ctx.stage_tokens(tree.root.params)

    @staticmethod
    def _reopen(tree: Tree, ctx: SearchContext) -> bool:
        nodes = [i for i in _closed(tree, ctx) if i in tree.nodes and _room(tree, i, ctx, {}, closures=False) > 0]
        if nodes:
            reason = f"nothing else to expand with {ctx.tokens_left:,.0f} tokens of budget left"
            nodes.sort(key=lambda i: int(i.lstrip("n")))
            ctx.events.append(("branches_reopened", None, {"nodes": nodes, "reason": reason}))
        return bool(nodes)

    @staticmethod
    def _grow(tree: Tree, ctx: SearchContext) -> bool:
        depth = ctx.max_depth(tree)
        if ctx.cfg.search.deepen != "improving" or depth >= DEEPEST:
            return False
        found = _dive_node(tree, ctx, depth)
        if found is None:
            return False
        node, anc = found
        if ctx.stage_tokens is not None and ctx.tokens_left < ctx.stage_tokens(node.params):
            return False
        who = "best node" if node is tree.best() else "best leaf"
        since = "" if anc.id == node.parent_id else f" since {anc.id}"
        reason = (f"the {who} {node.id} is at the full depth {depth} and still improving{since} (val "
                  f"{anc.val_score:.3f} -> {node.val_score:.3f}): the paths may grow to {depth + 1} stages")
        ctx.events.append(("depth_extended", None, {"depth": depth + 1, "nodes": [node.id], "reason": reason}))
        return True

    @staticmethod
    def _deepen(tree: Tree, ctx: SearchContext) -> None:
        depth = ctx.max_depth(tree)
        if ctx.cfg.search.deepen == "off" or depth >= DEEPEST:
            return
        closed = _closed(tree, ctx)
        leaves = [n for n in tree.stages() if n.depth == depth and usable(tree, n.id) and n.id not in closed]
        if leaves:
            leaves.sort(key=lambda n: (-(n.val_score if n.val_score is not None else -1.0), int(n.id.lstrip("n"))))
            reason = (f"nothing left to expand at depth {depth} with {ctx.tokens_left:,.0f} tokens of budget left: "
                      f"the paths may grow to {depth + 1} stages")
            ctx.events.append(("depth_extended", None, {"depth": depth + 1, "nodes": [n.id for n in leaves],
                                                        "reason": reason}))

    def _expand(self, tree: Tree, n: int, ctx: SearchContext) -> list[StageSpec]:
        specs: list[StageSpec] = []
        planned: dict[str, int] = {}
        while len(specs) < n:
            dive = self._dive_target(tree, ctx, planned)
            narrow = dive is not None and ctx.cfg.search.dive_branching is not None
            target = (self._backup_target(tree, ctx, planned) or dive or self._target(tree, ctx, planned, specs))
            if target is None:
                break
            if self._too_late(tree, ctx, specs, target):  # its path could not count any more: look elsewhere
                planned[target] = planned.get(target, 0) + ctx.cfg.search.max_children
                continue
            width = ctx.cfg.search.dive_branching if narrow and target == dive else ctx.cfg.search.branching
            k = min(width, n - len(specs), _room(tree, target, ctx, planned))
            new = propose_specs(ctx, tree, target, k, ctx.proposer, ctx.rng(tree, f"{target}:{len(specs)}"))
            if not new:  # the agent stopped this branch: look elsewhere
                planned[target] = planned.get(target, 0) + ctx.cfg.search.max_children
                continue
            kept = self._affordable(tree, ctx, planned, specs, target, new)
            planned[target] = planned.get(target, 0) + len(kept)
            if len(kept) < len(new):  # the budget keeps the rest for the best path: no more here this round
                planned[target] += ctx.cfg.search.max_children
            specs += kept
            if narrow and target == dive and kept:
                break  # search.dive_branching: the dive's children are the batch
        return specs

    def _affordable(self, tree: Tree, ctx: SearchContext, planned: dict[str, int], specs: list[StageSpec],
                    target: str, new: list[StageSpec]) -> list[StageSpec]:
        """The proposed children of ``target`` that the budget lets the search train now."""
        return new

    def _too_late(self, tree: Tree, ctx: SearchContext, specs: list[StageSpec], target: str) -> bool:
        """Whether the budget left is too short for a child of ``target`` to count (never, here)."""
        return False

    def expandable(self, tree: Tree, ctx: SearchContext) -> set[str]:
        """Nodes with room for children, and, while the search may deepen, the best leaf at the full
        depth: deepening grows it first, so the tree always has a leaf to deepen from (else garbage
        collection may delete every leaf at that depth and leave the rest of the budget unspent)."""
        if ctx.cfg.search.lineages > 1:
            return {t.id for t in _lineage_tips(tree) if usable(tree, t.id)}
        keep = {i for i in tree.nodes if i != ROOT and _room(tree, i, ctx, {}, closures=False) > 0}
        depth = ctx.max_depth(tree)
        leaf = _best_leaf(tree, depth)
        if ctx.cfg.search.deepen != "off" and depth < DEEPEST and leaf is not None:
            keep.add(leaf.id)
        return keep

    @staticmethod
    def _dive_target(tree: Tree, ctx: SearchContext, planned: dict[str, int]) -> str | None:
        """With ``deepen: improving``: the best node, if it is one stage short of the full depth, has no
        children yet and improved on its parent (by ``GROW_MARGIN``), as the node that deepened the tree
        is. A rising curve is followed at once rather than after the tree has widened. With
        ``search.dive_patience``, also the leaf a stalled dive deepened from (``_dive_node``)."""
        if ctx.cfg.search.deepen != "improving":
            return None
        depth, best = ctx.max_depth(tree), tree.best()
        node = best if best is not None and best.depth == depth - 1 and _improving(tree, best) else None
        patience = ctx.cfg.search.dive_patience
        if node is None and patience and tree.extended_from and tree.extended_from[0] in tree.nodes:
            node = tree.nodes[tree.extended_from[0]]  # the leaf a stalled dive went on from
            if node.depth != depth - 1 or _beaten(tree, node, 1 + patience) is None:
                node = None
        if (node is None or tree.trained_children(node.id) or planned.get(node.id)
                or _room(tree, node.id, ctx, planned) <= 0):
            return None
        return node.id

    @staticmethod
    def _backup_target(tree: Tree, ctx: SearchContext, planned: dict[str, int]) -> str | None:
        """A parent the agent asked to grow instead of its child (decision "backup"), if it has room."""
        queue = getattr(ctx.proposer, "backup_to", None)
        while queue:
            node_id = queue.pop(0)
            if node_id in tree.nodes and _room(tree, node_id, ctx, planned) > 0:
                return node_id
        return None


class MCTS(_Expander):
    """UCT selection with progressive widening: a node may have ``1 + floor(sqrt(visits))`` children
    (at most ``max_children``); below that it is expanded, otherwise the search descends into the
    child with the best UCT score. Children come from the proposer, ``branching`` at a time.

    The budget keeps a reserve: while the best node is short of the full depth, a stage elsewhere is
    planned only if what is left after it still pays for extending the best node to the full depth.
    Otherwise the best node is extended. A strategy is only as good as its training is long, so the
    search never spends its budget on a wide tree whose best path ends halfway. The reserve holds for
    every child planned, at what its own parameters cost (a larger group costs more): of the children
    proposed elsewhere at once, only those it leaves room for are trained. It also holds among the
    best node's own children: a second child is trained only if what is left after it still extends
    one of them to the full depth.

    At the end of the budget the stages go where they can still count: a node is not expanded when
    its child, with every stage the budget left could add below it, would end short of the best
    node's depth (``_too_late``). Late stages at depth 1 under a best node at depth 6 had spent up to a
    fifth of a dive's budget on models that could neither win nor join a soup.
    """

    name = "mcts"

    def _target(self, tree: Tree, ctx: SearchContext, planned: dict[str, int],
                specs: list[StageSpec]) -> str | None:
        own = {i: nd.val_score for i, nd in tree.nodes.items() if nd.state is NodeState.COMPLETE}
        children = {i: [c for c in nd.children if tree.nodes[c].state is NodeState.COMPLETE]
                    for i, nd in tree.nodes.items()}
        values, visits = backed_up_values(children, own, ROOT, ctx.cfg.search.backup)
        target = self._select(tree, ROOT, ctx, planned, children, values, visits)
        return self._reserve(tree, ctx, planned, specs, target)

    def _select(self, tree, node_id, ctx, planned, children, values, visits) -> str | None:
        width = min(ctx.cfg.search.max_children, 1 + math.isqrt(max(visits.get(node_id, 0), 0)))
        grown = len(tree.trained_children(node_id)) + planned.get(node_id, 0)
        if _room(tree, node_id, ctx, planned) > 0 and grown < width:
            return node_id
        candidates = list(children.get(node_id, []))
        while candidates:
            c = select_child(candidates, values, visits, visits.get(node_id, 1), ctx.cfg.search.exploration)
            found = self._select(tree, c, ctx, planned, children, values, visits)
            if found is not None:
                return found
            candidates.remove(c)
        return node_id if _room(tree, node_id, ctx, planned) > 0 else None

    @staticmethod
    def _best(tree: Tree) -> Node:
        """The node the reserve keeps a full path for: the best scored stage, else the root."""
        return tree.best() or tree.root

    def _kept_for_best(self, tree: Tree, ctx: SearchContext, planned: dict[str, int]) -> float | None:
        """Tokens the reserve keeps for extending the best node to the full depth (None: no reserve)."""
        best = self._best(tree)
        if ctx.stage_tokens is None:
            return None
        extending = planned.get(best.id, 0) > 0
        if not extending and _room(tree, best.id, ctx, planned) <= 0:
            return None  # the best node cannot grow (full, closed or at the full depth)
        stages_needed = ctx.max_depth(tree) - best.depth - (1 if extending else 0)
        return stages_needed * ctx.stage_tokens(best.params) if stages_needed > 0 else None

    @staticmethod
    def _free(ctx: SearchContext, specs: list[StageSpec]) -> float:
        """Budget not yet spent nor planned in this round (each planned stage at its own parameters' cost)."""
        return ctx.tokens_left - sum(ctx.stage_tokens(s.params) for s in specs)

    def _reserve(self, tree: Tree, ctx: SearchContext, planned: dict[str, int], specs: list[StageSpec],
                 target: str | None) -> str | None:
        best = self._best(tree)
        if target is None or target == best.id:
            return target
        kept = self._kept_for_best(tree, ctx, planned)
        if kept is None or self._free(ctx, specs) - ctx.stage_tokens(tree.nodes[target].params) >= kept:
            return target
        return None if planned.get(best.id, 0) > 0 else best.id  # keep the reserve: extend the best node

    def _too_late(self, tree: Tree, ctx: SearchContext, specs: list[StageSpec], target: str) -> bool:
        """The end of the budget: a child of ``target`` and every stage the budget left (after what is
        planned) could add below it would still end short of the best node's depth. Such a path cannot
        overtake the best node's, nor join its soups, so its stages go to the nodes that still can (the
        best node's parent and deeper); with none left the tree deepens from its best leaves."""
        best = tree.best()
        if ctx.stage_tokens is None or best is None:
            return False
        node = tree.nodes[target]
        stages = max(1, int(self._free(ctx, specs) // ctx.stage_tokens(node.params)))  # the last one shortened
        return node.depth + stages < best.depth

    def _affordable(self, tree: Tree, ctx: SearchContext, planned: dict[str, int], specs: list[StageSpec],
                    target: str, new: list[StageSpec]) -> list[StageSpec]:
        """Elsewhere, each child must leave the best node's reserve. At the best node, each child after
        the first must leave what extending one of them to the full depth costs (``stages`` more, at
        the dearest child's cost): siblings must not spend the stages their own path needs."""
        best = self._best(tree)
        if ctx.stage_tokens is None:
            return new
        if target == best.id:  # what is left must extend one of these children to the full depth
            stages, kept = ctx.max_depth(tree) - best.depth - 1, 0.0
            if stages <= 0:
                return new
        else:  # what is left must keep the best node's reserve
            stages, kept = 0, self._kept_for_best(tree, ctx, planned)
            if kept is None:
                return new
        free = self._free(ctx, specs)
        out = new[:1]  # the first passed the reserve when its parent was chosen
        free -= ctx.stage_tokens(out[0].params)
        for spec in new[1:]:
            free -= ctx.stage_tokens(spec.params)
            if free < kept + stages * max(ctx.stage_tokens(s.params) for s in [*out, spec]):
                break
            out.append(spec)
        return out


class BestFirst(_Expander):
    """The skill-based agent's search: always grow the best node so far (by validation score)."""

    name = "skill"

    def _target(self, tree: Tree, ctx: SearchContext, planned: dict[str, int],
                specs: list[StageSpec]) -> str | None:
        open_ = [nd for nd in tree.nodes.values() if _room(tree, nd.id, ctx, planned) > 0]
        best = max(open_, key=lambda nd: nd.val_score if nd.val_score is not None else -1.0, default=None)
        return best.id if best is not None else None
