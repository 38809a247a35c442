"""A search run as the report reads it: the tree replayed from the journal, its config and space,
and who proposed each node (with the LLM agent's record, where there was one).

Everything comes from ``journal.sqlite``, the run's truth: the summary is the ``run_finished``
event (the same dict as ``summary.json``), so a run that is still going or was stopped is read
the same way, only without a summary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmzero.config import ConfigError, ExperimentConfig, parse_config
from llmzero.search import JOURNAL, ROOT, Journal, JournalError, Node, Tree
from llmzero.space import Space
from llmzero.tasks import get_task, task_space


@dataclass(frozen=True)
class AgentCall:
    """One proposal event: a proposer asked for children of ``parent``."""

    seq: int
    parent: str
    proposer: str
    output: tuple[dict[str, Any], ...]
    """The proposals as recorded: params, reason, findings, repairs."""
    agent: dict[str, Any] | None
    """The LLM agent's record (prompt, answer, findings, llm cost, decision, repaired, fallback); None
    for the rule-based proposers."""
    children: list[str] = field(default_factory=list)
    """The nodes created from this proposal (fewer than ``output`` when the budget ran short)."""
    closed: bool = False
    """The agent's answer closed ``parent``'s branch ("stop" or "backup" on a stage that got worse)."""

    @property
    def diagnosis(self) -> str:
        return agent_diagnosis(self.agent)


@dataclass
class Run:
    path: Path
    tree: Tree
    config: ExperimentConfig
    space: Space
    calls: list[AgentCall]
    proposed_by: dict[str, AgentCall]
    """Node id -> the proposal event its node_created followed."""

    @property
    def summary(self) -> dict[str, Any] | None:
        """The run's summary (as in summary.json), or None while it has not finished."""
        return self.tree.finished

    @property
    def finished(self) -> bool:
        return self.tree.finished is not None

    @property
    def best(self) -> Node | None:
        """The best node as the finished search reported it, else the best scored so far."""
        best_id = (self.summary or {}).get("best_node")
        if best_id in self.tree.nodes:
            return self.tree.nodes[best_id]
        return self.tree.best()

    @property
    def best_path(self) -> list[Node]:
        """The best node's path without the root (the discovered schedule's stages)."""
        best = self.best
        return self.tree.path(best.id)[1:] if best is not None else []

    @property
    def method(self) -> str:
        return method_label(self.config)

    @property
    def task(self) -> str:
        return self.config.task.name


def method_label(cfg: ExperimentConfig) -> str:
    """The method as the paper's tables name it: MCTS is told apart by its proposer (the LLM agent
    against the no-LLM ablation), and a search guided by a prior run is marked as such."""
    label: str = cfg.search.method
    if label == "mcts":
        label = f"mcts ({cfg.search.proposer})"
    if getattr(cfg.search, "prior", None):
        label += " + prior"
    return label


def agent_diagnosis(agent: dict[str, Any] | None) -> str:
    """The diagnosis in the LLM's raw answer; '' without an agent, a note if the answer is not JSON."""
    if not agent:
        return ""
    try:
        answer = json.loads(agent.get("answer") or "")
    except (json.JSONDecodeError, TypeError):
        return "(the answer was not JSON)"
    return str(answer.get("diagnosis", "")) if isinstance(answer, dict) else "(the answer was not an object)"


def load_run(path: Path) -> Run:
    """Read a search run directory; ConfigError (one line naming the path) if it is not one."""
    journal_path = path / JOURNAL
    if not path.is_dir():
        raise ConfigError(f"run={str(path)!r} is not allowed: expected a search run directory "
                          f"(made by llmzero search), and there is no such directory")
    if not journal_path.is_file():
        raise ConfigError(f"run={str(path)!r} is not allowed: expected a search run directory "
                          f"(made by llmzero search) holding {JOURNAL}, and there is none")
    try:
        journal = Journal(journal_path)
        try:
            tree = journal.replay()
            calls, proposed_by = _proposals(journal)
        finally:
            journal.close()
    except (JournalError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ConfigError(f"run={str(path)!r}: {JOURNAL} cannot be read ({e})") from None
    if "config" not in tree.meta or ROOT not in tree.nodes:
        raise ConfigError(f"run={str(path)!r} is not allowed: {JOURNAL} holds no tree yet "
                          "(expected at least the scored base model)")
    config = parse_config(tree.meta["config"], where=f"{path / JOURNAL}: config: ")
    task = get_task(config.task.name, difficulty=config.task.difficulty, data_seed=config.task.data_seed,
                    config=config.task.config)
    return Run(path=path, tree=tree, config=config, space=task_space(task), calls=calls,
               proposed_by=proposed_by)


def _proposals(journal: Journal) -> tuple[list[AgentCall], dict[str, AgentCall]]:
    """Each proposal event, and which nodes it created.

    The search appends a proposal right before the first node_created of its batch, so a node
    belongs to the latest proposal made from its parent. Methods without a proposer (grid, fixed,
    random, pbt) write no proposal events, and their nodes map to nothing.
    """
    calls: list[AgentCall] = []
    latest: dict[str, AgentCall] = {}
    proposed_by: dict[str, AgentCall] = {}
    for seq, _, kind, node_id, payload in journal.events():
        if kind == "proposal" and node_id is not None:
            call = AgentCall(seq=seq, parent=node_id, proposer=str(payload.get("proposer", "")),
                             output=tuple(payload.get("output") or ()), agent=payload.get("agent") or None,
                             closed=bool(payload.get("closed")))
            calls.append(call)
            latest[node_id] = call
        elif kind == "node_created" and node_id is not None:
            owner = latest.get(payload["parent_id"])
            if owner is not None and len(owner.children) < len(owner.output):
                owner.children.append(node_id)
                proposed_by[node_id] = owner
    return calls, proposed_by
