"""The random-search baseline: every child samples its parameters independently.

Each parameter is drawn uniformly (log-uniformly for log-scale ones) within ``SEARCH_RANGES``, the
region a sensible practitioner would search (not the whole legal space, most of which destroys a
model: a baseline that wastes its budget there would be a straw man). ``difficulty`` stays at the
node's value unless asked for, and ``max_completion_length`` moves by at most a factor of two.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from llmzero.agents._base import Proposal, ProposalContext
from llmzero.space import SEARCH_RANGES, Param, Value, params_key

LENGTH_PARAM = "max_completion_length"
LENGTH_FACTOR = 2.0  # sample the response length within [node/2, node*2]
KEPT_BY_DEFAULT = ("difficulty",)  # the task's difficulty is a curriculum choice, not noise
SIG_DIGITS = 4  # sampled floats are rounded so that schedules stay readable
TRIES_PER_PROPOSAL = 20  # resamples allowed per child when a draw repeats a sibling


def sample_param(p: Param, current: Value, rng: random.Random) -> Value:
    """One draw of ``p``, uniform (or log-uniform) in its search range; lengths stay near ``current``."""
    low, high = (float(v) for v in SEARCH_RANGES.get(p.name, (p.low, p.high)))
    if p.name == LENGTH_PARAM:
        low, high = max(low, current / LENGTH_FACTOR), min(high, current * LENGTH_FACTOR)
    if p.log and low > 0:
        x = math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        x = rng.uniform(low, high)
    return int(round(x)) if p.type is int else float(f"{x:.{SIG_DIGITS}g}")


class RandomProposer:
    """Children with independently sampled parameters: the baseline every search is compared to.

    ``params`` names the parameters to sample (default: all but ``difficulty``); the others keep
    the node's values.
    """

    name = "random"

    def __init__(self, params: Sequence[str] | None = None):
        self.params = tuple(params) if params is not None else None

    def propose(self, ctx: ProposalContext, k: int, rng: random.Random) -> list[Proposal]:
        space = ctx.space
        wanted = self.params if self.params is not None else [n for n in space.names
                                                              if n not in KEPT_BY_DEFAULT]
        names = [space[n].name for n in wanted]  # an unknown name raises a SpaceError naming it
        base = {p.name: ctx.node.params.get(p.name, p.default) for p in space}
        seen = {params_key({**base, **{n: v for n, v in s.params.items() if n in space}}) for s in ctx.siblings}
        out: list[Proposal] = []
        for _ in range(TRIES_PER_PROPOSAL * max(k, 0)):
            if len(out) >= k:
                break
            raw = dict(base)
            for n in names:
                raw[n] = sample_param(space[n], base[n], rng)
            params, repairs = space.repair(raw, reason_prefix="random: ")
            if params_key(params) in seen:
                continue
            seen.add(params_key(params))
            changes = ", ".join(f"{n} {base[n]:g} -> {params[n]:g}" for n in names if params[n] != base[n])
            out.append(Proposal(params=params, reason=f"random sample: {changes or 'same parameters'}",
                                proposed_by=self.name, repairs=tuple(repairs)))
        return out

