"""The Proposer contract: given a node of the tree, propose the parameters of its children.

``Proposer.propose`` is called by the searcher each time it has chosen a node to expand and has
free workers: once per expansion, asking for ``k`` children. It sees the node, the path to it and
the siblings already tried as plain read-only views (never the tree itself), and a seeded
generator that it must use for all its randomness. It returns at most ``k`` proposals; each one is
a full parameter set for the child stage, legal in ``ctx.space`` (use ``Space.repair`` and keep the
repairs), with a reason and the proposer's name.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Protocol

from llmzero.space import Repair, Space, Value
from llmzero.strategy import StageMode


@dataclass(frozen=True)
class NodeView:
    """What a proposer may know about one node. The root (the base model) has depth 0, no
    history, and the task's default parameters."""

    id: str
    depth: int
    params: dict[str, Value]
    state: str  # pending | running | complete | failed | pruned
    val_score: float | None = None
    history: tuple[dict[str, float], ...] = ()  # TRL metric rows of the node's stage, in step order
    proposed_by: str = ""
    reason: str = ""


@dataclass(frozen=True)
class ProposalContext:
    space: Space
    node: NodeView  # the node to expand
    path: tuple[NodeView, ...]  # root ... node, inclusive
    siblings: tuple[NodeView, ...] = ()  # children of ``node`` already created
    best_val: float | None = None
    budget_left: float = 1.0  # share of the compute budget not yet spent, in [0, 1]
    max_depth: int = 3
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Proposal:
    params: dict[str, Value]  # the child's full parameter set
    reason: str
    proposed_by: str
    mode: StageMode = StageMode.CONTINUE
    repairs: tuple[Repair, ...] = ()
    findings: tuple[str, ...] = ()  # names of the pathologies this proposal answers


class Proposer(Protocol):
    name: str

    def propose(self, ctx: ProposalContext, k: int, rng: random.Random) -> list[Proposal]:
        """At most ``k`` children for ``ctx.node``; all randomness from ``rng``."""
