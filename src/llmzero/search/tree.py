"""Nodes and the tree of training trajectories, rebuilt from journal events.

The tree is never edited directly: every change is an event (see ``journal.py``) and
``Tree.apply(event)`` is the only writer. The live search applies each event as it appends it, and a
resumed search replays the journal through the same function, so the two trees are equal by
construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from llmzero.agents._base import NodeView
from llmzero.space import Value

ROOT = "root"


class NodeState(str, Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    PRUNED = "pruned"


@dataclass
class Node:
    id: str
    parent_id: str | None
    depth: int  # stage index along the path; the root (base model) is 0
    params: dict[str, Value]
    steps: int = 0
    mode: str = "continue"
    seed: int = 0
    transition: dict[str, Any] = field(default_factory=dict)  # changes, reason, proposed_by, repairs
    state: NodeState = NodeState.PENDING
    history: list[dict[str, float]] = field(default_factory=list)
    val_score: float | None = None
    cost: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    error: str | None = None
    chain: int | None = None  # for chain-based methods (grid, random, fixed, pbt): which run/member
    draws: int = 1  # search.draws: GRPO draws of the stage, averaged into its checkpoint
    draw_scores: list[float] = field(default_factory=list)  # a stage of several draws: each draw's val score
    # a sibling soup (search.sibling_soup): the other siblings averaged with this node's stage, each
    # {"node", "params", "seed"}; the node itself repeats the best sibling's stage and trains nothing
    merge: list[dict[str, Any]] = field(default_factory=list)
    # a scaled update (search.scale_updates): a sibling's stage with its update from the parent scaled
    scale: float = 1.0
    children: list[str] = field(default_factory=list)
    deleted: bool = False  # checkpoint removed by garbage collection
    token_limit: int | None = None  # the token cap of the stage's first start (kept when trained again)

    def view(self) -> NodeView:
        return NodeView(id=self.id, depth=self.depth, params=dict(self.params), state=self.state.value,
                        val_score=self.val_score, history=tuple(self.history),
                        proposed_by=self.transition.get("proposed_by", ""), reason=self.transition.get("reason", ""))

    @property
    def free(self) -> bool:
        """Built from other nodes' checkpoints (a sibling soup, or a scaled update of a sibling and the
        parent), not trained."""
        return bool(self.merge) or self.scale != 1.0

    @property
    def compute(self) -> int:
        return int(self.cost.get("generated_tokens", 0))


class Tree:
    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.best_id: str | None = None
        self.meta: dict[str, Any] = {}
        self.pruned_savings: int = 0  # estimated compute that early stopping saved
        self.finished: dict[str, Any] | None = None
        self.closed: set[str] = set()  # nodes the agent stopped growing (its "stop" or "backup" decision)
        self.reopened: set[str] = set()  # closed nodes the search reopened: budget left, nothing else to grow
        self.depth_limit: int | None = None  # the search's depth, once it deepened past the configured one
        self.extended_from: list[str] = []  # the nodes the last depth extension grows, the first first
        self.draws: int | None = None  # draws per stage from now on, once search.draws_min_gain decided it

    # -- the only writer ----------------------------------------------------------------------------

    def apply(self, kind: str, node_id: str | None, payload: dict[str, Any]) -> None:
        n = self.nodes.get(node_id) if node_id else None
        if kind == "run_started":
            self.meta = dict(payload)
        elif kind == "root":
            self.nodes[ROOT] = Node(id=ROOT, parent_id=None, depth=0, params=payload["params"],
                                    state=NodeState.COMPLETE, val_score=payload.get("val_score"),
                                    checkpoint=None)
        elif kind == "node_created":
            node = Node(id=node_id, **payload)
            self.nodes[node_id] = node
            self.nodes[node.parent_id].children.append(node_id)
        elif kind in ("sibling_soup", "scaled_update"):  # created complete: built, not trained
            node = Node(id=node_id, state=NodeState.COMPLETE, **payload)
            self.nodes[node_id] = node
            self.nodes[node.parent_id].children.append(node_id)
        elif kind == "stage_started":
            n.state = NodeState.RUNNING
            if n.token_limit is None:
                n.token_limit = payload.get("token_limit")
        elif kind == "stage_requeued":
            n.state = NodeState.PENDING
        elif kind in ("stage_finished", "stage_failed"):
            n.state = NodeState.COMPLETE if kind == "stage_finished" else NodeState.FAILED
            n.history = payload.get("history", [])
            n.val_score = payload.get("val_score")
            n.cost = payload.get("cost", {})
            n.checkpoint = payload.get("checkpoint")
            n.error = payload.get("error")
            n.steps = payload.get("steps", n.steps)
            n.draw_scores = [d["val_score"] for d in payload.get("draws", [])
                             if d.get("val_score") is not None]
        elif kind == "node_pruned":
            n.state = NodeState.PRUNED
            self.pruned_savings += int(payload.get("saved_compute", 0))
        elif kind == "best_changed":
            self.best_id = node_id
        elif kind == "checkpoint_deleted":
            n.deleted = True
        elif kind == "proposal":
            if payload.get("closed"):
                self.closed.add(node_id)
        elif kind == "branches_reopened":
            self.reopened |= set(payload["nodes"])
        elif kind == "depth_extended":
            self.depth_limit = int(payload["depth"])
            self.extended_from = list(payload.get("nodes") or [])
        elif kind == "draws_decided":
            self.draws = int(payload["draws"])
        elif kind == "run_finished":
            self.finished = dict(payload)
        # "soup_built" and "test_scored" events carry records only; the tree does not change.

    # -- queries ----------------------------------------------------------------------------------------

    @property
    def root(self) -> Node:
        return self.nodes[ROOT]

    def path(self, node_id: str) -> list[Node]:
        out = []
        n: Node | None = self.nodes[node_id]
        while n is not None:
            out.append(n)
            n = self.nodes.get(n.parent_id) if n.parent_id else None
        return out[::-1]

    def trained_children(self, node_id: str) -> list[str]:
        """``node_id``'s children that are stages of their own (not built from them: sibling soups,
        scaled updates)."""
        return [c for c in self.nodes[node_id].children if not self.nodes[c].free]

    def stages(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.id != ROOT]

    def in_state(self, *states: NodeState) -> list[Node]:
        return [n for n in self.stages() if n.state in states]

    def spent(self) -> int:
        return sum(n.compute for n in self.stages())

    def best(self) -> Node | None:
        done = [n for n in self.stages() if n.state in (NodeState.COMPLETE, NodeState.PRUNED)
                and n.val_score is not None]
        # ties go to the earlier node: cheaper and found first
        return max(done, key=lambda n: (n.val_score, -node_order(n.id)), default=None)

    def best_at_depth(self, depth: int) -> float | None:
        vals = [n.val_score for n in self.stages() if n.depth == depth and n.val_score is not None
                and n.state in (NodeState.COMPLETE, NodeState.PRUNED)]
        return max(vals, default=None)

    def signature(self) -> list[tuple]:
        """What determines the tree's shape and results: for determinism checks."""
        return [(n.id, n.parent_id, n.depth, tuple(sorted(n.params.items())), n.steps, n.state.value, n.val_score)
                for n in sorted(self.nodes.values(), key=lambda n: node_order(n.id))]


def node_order(node_id: str) -> int:
    return -1 if node_id == ROOT else int(node_id.lstrip("n"))
