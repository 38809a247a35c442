"""The Method contract: which stages to run next.

``Method.ask(tree, n, ctx)`` is called by the search loop whenever workers are free, with the tree
as the journal has it; it returns at most ``n`` new stages (a parent, full parameters, a reason).
It never trains and never writes: the loop records the stages as nodes, runs them, and the results
reach the method through the tree on the next ``ask``. ``expandable(tree, ctx)`` names the nodes the
method may still grow from, so that garbage collection keeps their checkpoints.

Events a method wants journaled (a proposal that closed its node, branches it reopened) go to
``ctx.events``; the loop records them before the stages it returns, and asks again when it returned
none, since the tree changed.

Randomness comes from ``ctx.rng(tree)``, a generator seeded by the run's seed and the tree's size:
the same config and seed give the same tree, and a resumed search draws what the first one would
have drawn.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any, Protocol

from llmzero.agents._base import Proposal, ProposalContext, Proposer
from llmzero.config import ExperimentConfig
from llmzero.search.tree import NodeState, Tree
from llmzero.space import Space, Transition, Value, params_key
from llmzero.strategy import StageMode


MIN_STAGE_SHARE = 0.2  # a stage shortened to fit the budget must keep at least this share of its steps
DEEPEST = 50  # search.depth's own bound: deepening stops there


@dataclass(frozen=True)
class StageSpec:
    parent_id: str
    params: dict[str, Value]
    reason: str
    proposed_by: str
    mode: str = "continue"
    chain: int | None = None
    repairs: tuple = ()
    findings: tuple[str, ...] = ()
    proposal_record: dict[str, Any] | None = None  # the proposer's full input and output, for the journal

    def transition(self, parent_params: dict[str, Value]) -> dict[str, Any]:
        t = Transition.between(parent_params, self.params, reason=self.reason, proposed_by=self.proposed_by,
                               repairs=self.repairs)
        d = t.to_dict()
        d["findings"] = list(self.findings)
        return d


@dataclass
class SearchContext:
    cfg: ExperimentConfig
    space: Space
    proposer: Proposer | None = None
    budget_left: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)
    tokens_left: float = float("inf")  # compute budget not yet spent, in generated tokens
    stage_tokens: Callable[[dict[str, Value]], float] | None = None  # expected cost of one full stage
    events: list[tuple[str, str | None, dict[str, Any]]] = field(default_factory=list)  # for the journal

    def rng(self, tree: Tree, salt: str = "") -> random.Random:
        return random.Random(f"{self.cfg.seed}:{len(tree.nodes)}:{salt}")

    def proposal_context(self, tree: Tree, node_id: str) -> ProposalContext:
        node = tree.nodes[node_id]
        best = tree.best()
        return ProposalContext(
            space=self.space, node=node.view(), path=tuple(n.view() for n in tree.path(node_id)),
            siblings=tuple(tree.nodes[c].view() for c in node.children),
            best_val=best.val_score if best else tree.root.val_score, budget_left=self.budget_left,
            max_depth=self.max_depth(tree))

    def max_depth(self, tree: Tree) -> int:
        """The tree's depth: the configured one, or more once the search deepened (``search.deepen``);
        with ``search.lineages`` (not ``deepen: off``) one past the deepest stage, as lineages grow while
        the budget lasts."""
        depth = tree.depth_limit or self.cfg.search.depth
        if self.cfg.search.lineages > 1 and self.cfg.search.deepen != "off":
            depth = max(depth, 1 + max((n.depth for n in tree.stages()), default=0))
        return depth


class Method(Protocol):
    name: str

    def ask(self, tree: Tree, n: int, ctx: SearchContext) -> list[StageSpec]:
        """At most ``n`` stages to run now; [] when the method has nothing to run until results come."""

    def expandable(self, tree: Tree, ctx: SearchContext) -> set[str]:
        """Nodes this method may still train children from."""


def usable(tree: Tree, node_id: str) -> bool:
    """A node whose checkpoint children can start from: complete and not garbage-collected (the root
    is the base model)."""
    node = tree.nodes[node_id]
    return node.state is NodeState.COMPLETE and not node.deleted


def prior_proposal(pctx: ProposalContext) -> Proposal | None:
    """The prior's move for this stage (``search.prior``), unless a sibling already made it or it
    changes nothing here."""
    prior = pctx.extra.get("prior")
    move = prior.move(pctx.node.depth) if prior is not None else None
    if move is None:
        return None
    from llmzero.transfer import apply_move

    params, repairs = apply_move(pctx.space, dict(pctx.node.params), move)
    tried = {params_key(s.params) for s in pctx.siblings} | {params_key(pctx.node.params)}
    if params_key(params) in tried:
        return None
    return Proposal(params, f"prior from {prior.task}, stage {pctx.node.depth + 1}: {move.describe()}", "prior",
                    StageMode(move.mode), tuple(repairs), ())


def propose_specs(ctx: SearchContext, tree: Tree, node_id: str, k: int, proposer: Proposer,
                  rng: random.Random) -> list[StageSpec]:
    pctx = ctx.proposal_context(tree, node_id)
    pctx.extra.update(ctx.extra)
    first = prior_proposal(pctx)
    asked = k - 1 if first else k
    proposals = proposer.propose(pctx, asked, rng)[:asked] if asked else []
    agent = getattr(proposer, "last_record", None) if asked else None  # an LLM agent's prompt, answer and cost
    closed = bool(asked) and node_id in getattr(proposer, "closed", ())
    if closed and node_id in tree.reopened:  # the search reopened this branch: the closure is overruled,
        closed = False  # and the options the answer picked before closing it are trained
        proposals = list(getattr(proposer, "last_picks", ()))[:asked]
        if agent is not None:
            why = "the search reopened this branch (budget left and nothing else to grow)"
            agent = {**agent, "overruled": f"{agent.get('decision')} overruled: {why}"}
    if first and not closed:  # the prior does not overrule an agent that stopped this branch
        proposals = [first] + [p for p in proposals if params_key(p.params) != params_key(first.params)]
    record = {"proposer": proposer.name, "node": node_id, "k": k,
              "input": {"node": pctx.node.__dict__ | {"history": f"{len(pctx.node.history)} rows"},
                        "path": [v.id for v in pctx.path], "siblings": [v.id for v in pctx.siblings],
                        "best_val": pctx.best_val, "budget_left": pctx.budget_left},
              "output": [{"params": p.params, "reason": p.reason, "findings": list(p.findings),
                          "repairs": [r.__dict__ for r in p.repairs]} for p in proposals],
              "agent": agent}
    if closed:  # journaled on its own: the tree learns the closure, and the call's cost counts
        ctx.events.append(("proposal", node_id, {**record, "output": [], "closed": True}))
        return []
    return [StageSpec(parent_id=node_id, params=dict(p.params), reason=p.reason, proposed_by=p.proposed_by,
                      mode=p.mode.value, repairs=p.repairs, findings=p.findings,
                      proposal_record=record if i == 0 else None)
            for i, p in enumerate(proposals)]
