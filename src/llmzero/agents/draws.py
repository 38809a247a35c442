"""The draws control: every child repeats its node's parameters; only the training draw differs.

Two GRPO stages with the same parameters and other seeds (sampling, shuffling) can train models
that differ as much as a parameter change does. MCTS with this proposer keeps the default schedule
and only chooses among its draws: the best-of-n over seeds that every search also does without
saying so. Compared with the same MCTS and a real proposer, it measures what the parameter moves
add beyond the choice among draws.

This is the one proposer whose siblings share their parameters (``repeats``): the search gives
each child its own node seed, so no two children are the same stage.
"""

from __future__ import annotations

import random

from llmzero.agents._base import Proposal, ProposalContext


class DrawsProposer:
    """Children with the node's own parameters (the root's: the task's defaults), new draws each."""

    name = "draws"
    repeats = True  # siblings share parameters by design; the node seed tells them apart

    def propose(self, ctx: ProposalContext, k: int, rng: random.Random) -> list[Proposal]:
        params = {p.name: ctx.node.params.get(p.name, p.default) for p in ctx.space}
        tried = len(ctx.siblings)
        return [Proposal(params=dict(params), reason=f"another training draw of {ctx.node.id}'s parameters "
                         f"(draw {tried + i + 1})", proposed_by=self.name)
                for i in range(max(k, 0))]
