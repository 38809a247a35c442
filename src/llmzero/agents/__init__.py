"""Proposers: given a node of the search tree, propose the parameters of its children.

The contract is in :mod:`llmzero.agents._base`; each implementation is one module, registered by
name in :data:`PROPOSERS` so that a config can say ``proposer: skill``.
"""

from __future__ import annotations

from typing import Any

from llmzero.agents._base import NodeView, Proposal, ProposalContext, Proposer
from llmzero.agents.diagnosis import Finding, diagnose
from llmzero.agents.draws import DrawsProposer
from llmzero.agents.random import RandomProposer
from llmzero.agents.skill import SKILLS, Remedy, SkillProposer, fallback_proposals

PROPOSERS: dict[str, type] = {"skill": SkillProposer, "random": RandomProposer, "draws": DrawsProposer}


def get_proposer(name: str, **kw: Any) -> Proposer:
    """A new proposer by its registered name; ``kw`` are its constructor options."""
    if name not in PROPOSERS:
        raise ValueError(f"proposer={name!r} is not allowed: expected one of {', '.join(PROPOSERS)}")
    return PROPOSERS[name](**kw)


__all__ = [
    "PROPOSERS", "SKILLS", "DrawsProposer", "Finding", "NodeView", "Proposal", "ProposalContext", "Proposer",
    "RandomProposer", "Remedy", "SkillProposer", "diagnose", "fallback_proposals", "get_proposer",
]
