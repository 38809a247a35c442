"""A proposer that answers diagnosed pathologies with known remedies ("skills").

Each skill maps one :class:`~llmzero.agents.diagnosis.Finding` to a short list of remedies, best
first; a remedy is one coordinated change to one or more parameters (and how the child starts).
The remedies follow the team notes (grpo_trl.md §3, tiny_tasks.md §2), and the caps below keep
them out of the ranges that were seen to destroy tiny models.

When the diagnosis yields fewer than ``k`` distinct proposals (a healthy stage, or the root),
:func:`fallback_proposals` fills the rest with small, diverse moves; it is public so that other
proposers (an LLM agent) can replace their no-op or duplicate proposals with it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from llmzero.agents._base import NodeView, Proposal, ProposalContext
from llmzero.agents.diagnosis import COLD_TEMPERATURE, HIGH_REWARD, Finding, diagnose
from llmzero.space import Space, Value, params_key
from llmzero.strategy import StageMode

LR_DOWN = 0.5  # halve the learning rate against instability
LR_UP = 1.5  # a gentle raise: on tiny models 3x (3e-4) already hurt
ENTROPY_COEF_FLOOR = 0.005  # the smallest entropy bonus worth trying
ENTROPY_COEF_CEIL = 0.05  # skills never raise it past this: 0.1 blew entropy up to 3.6 within 70 steps
ENTROPY_COEF_OFF = 0.002  # lowering below this switches the bonus off
TEMPERATURE_STEP = 0.2  # rollout temperature move against collapse or blow-up
TEMPERATURE_CEIL = 1.5  # skills never raise it past this (ProRL used 1.2)
TEMPERATURE_FLOOR = 0.7  # nor lower it below this: 0.5 collapsed entropy and emptied groups
BETA_RAISE = 0.01  # the smallest KL coefficient worth switching on; otherwise doubled
EPSILON_HIGH_MIN = 0.28  # DAPO's clip-higher value
EPSILON_HIGH_STEP = 0.08  # widen the upper clip by this when updates saturate it
LENGTH_GROWTH = 1.5  # truncation: lengthen the cap by this factor ...
LENGTH_MIN_STEP = 4  # ... and by at least this many tokens
FALLBACK_TRIES = 50  # random jitters tried per missing fallback before giving up
SIG_DIGITS = 6  # proposals are rounded so that 1e-4 * 1.5 reads 0.00015 and compares equal


@dataclass(frozen=True)
class Remedy:
    """One coordinated change: new values for some parameters, and how the child stage starts."""

    updates: dict[str, Value]
    mode: StageMode = StageMode.CONTINUE


Params = Mapping[str, Value]
Skill = Callable[[Finding, Params], list[Remedy]]


def _raise_entropy_coef(p: Params) -> float:
    return max(p["entropy_coef"], min(max(ENTROPY_COEF_FLOOR, 2 * p["entropy_coef"]), ENTROPY_COEF_CEIL))


def _lower_entropy_coef(p: Params, factor: float = 0.25) -> float:
    v = p["entropy_coef"] * factor
    return 0.0 if v < ENTROPY_COEF_OFF else v


def _raise_temperature(p: Params, step: float = TEMPERATURE_STEP) -> float:
    return max(p["temperature"], min(p["temperature"] + step, TEMPERATURE_CEIL))


def _lower_temperature(p: Params, step: float = TEMPERATURE_STEP) -> float:
    return min(p["temperature"], max(p["temperature"] - step, TEMPERATURE_FLOOR))


def _raise_beta(p: Params) -> float:
    return max(BETA_RAISE, 2 * p["beta"])


def _longer(p: Params, factor: float = LENGTH_GROWTH, at_least: int = LENGTH_MIN_STEP) -> int:
    n = p["max_completion_length"]
    return max(math.ceil(n * factor), n + at_least)


def _lr(p: Params, factor: float) -> float:
    return p["learning_rate"] * factor


def entropy_collapse(f: Finding, p: Params) -> list[Remedy]:
    bonus = Remedy({"entropy_coef": _raise_entropy_coef(p)})
    warmer = Remedy({"temperature": _raise_temperature(p)})
    # Rollouts sampled cold collapse entropy by the sampler's doing, and warming them is what works:
    # word_sorting at 0.5, warmed .7 then .9, scored +.043 on test over 0.5 throughout, and the entropy
    # bonus -.009 (seeds 0-2, bench/configs/cold-sched-ws-epyc512.yaml; number_sorting +.009 and -.013).
    return [warmer, bonus] if p["temperature"] < COLD_TEMPERATURE else [bonus, warmer]


def entropy_blowup(f: Finding, p: Params) -> list[Remedy]:
    first = {"entropy_coef": _lower_entropy_coef(p)} if p["entropy_coef"] > 0 else {}
    return [Remedy({**first, "learning_rate": _lr(p, LR_DOWN)}),
            Remedy({"temperature": _lower_temperature(p), "learning_rate": _lr(p, LR_DOWN)})]


def kl_blowup(f: Finding, p: Params) -> list[Remedy]:
    # A restart resets the KL reference to this checkpoint, so the penalty stops pulling far back.
    return [Remedy({"learning_rate": _lr(p, LR_DOWN), "beta": _raise_beta(p)}),
            Remedy({"learning_rate": _lr(p, LR_DOWN)}, StageMode.RESTART)]


def grad_norm_spike(f: Finding, p: Params) -> list[Remedy]:
    return [Remedy({"learning_rate": _lr(p, LR_DOWN)}),
            Remedy({"learning_rate": _lr(p, LR_DOWN), "beta": _raise_beta(p)})]


def clip_saturation(f: Finding, p: Params) -> list[Remedy]:
    return [Remedy({"learning_rate": _lr(p, LR_DOWN)}),
            Remedy({"epsilon_high": max(EPSILON_HIGH_MIN, p["epsilon_high"] + EPSILON_HIGH_STEP)})]


def reward_plateau(f: Finding, p: Params) -> list[Remedy]:
    if f.evidence.get("reward", 0.0) > HIGH_REWARD:
        return [Remedy({"difficulty": p["difficulty"] + 1}), Remedy({"learning_rate": _lr(p, LR_DOWN)})]
    return [Remedy({"learning_rate": _lr(p, LR_DOWN)}), Remedy({"learning_rate": _lr(p, LR_UP)})]


def reward_collapse(f: Finding, p: Params) -> list[Remedy]:
    # A fresh optimizer drops the Adam moments that carried the run off the cliff.
    return [Remedy({"learning_rate": _lr(p, LR_DOWN)}, StageMode.RESTART),
            Remedy({"learning_rate": _lr(p, LR_DOWN ** 2)})]


def reward_hacking(f: Finding, p: Params) -> list[Remedy]:
    return [Remedy({"beta": _raise_beta(p), "learning_rate": _lr(p, LR_DOWN)}),
            Remedy({"beta": _raise_beta(p)})]


def truncation(f: Finding, p: Params) -> list[Remedy]:
    return [Remedy({"max_completion_length": _longer(p)}),
            Remedy({"max_completion_length": _longer(p, 2.0, 2 * LENGTH_MIN_STEP)})]


def length_collapse(f: Finding, p: Params) -> list[Remedy]:
    return [Remedy({"max_completion_length": _longer(p)}), Remedy({"learning_rate": _lr(p, LR_DOWN)})]


def length_explosion(f: Finding, p: Params) -> list[Remedy]:
    first = {"entropy_coef": _lower_entropy_coef(p, 0.5)} if p["entropy_coef"] > 0 else {}
    return [Remedy({**first, "learning_rate": _lr(p, LR_DOWN)}),
            Remedy({"temperature": _lower_temperature(p)})]


def zero_std_groups(f: Finding, p: Params) -> list[Remedy]:
    # Twice the group costs twice a stage's tokens at the same steps, so under a fixed budget the move
    # that costs what a stage costs (harder problems, or a hotter rollout) comes first. Measured:
    # bench/HISTORY.md, "All-same-reward groups answered by the equal-cost move first".
    more_groups = Remedy({"num_generations": 2 * p["num_generations"]})
    if f.evidence.get("reward", 0.0) > HIGH_REWARD:  # all right: the problems are too easy
        return [Remedy({"difficulty": p["difficulty"] + 1}), more_groups]
    return [Remedy({"temperature": _raise_temperature(p)}), more_groups]


SKILLS: dict[str, Skill] = {s.__name__: s for s in (
    entropy_collapse, entropy_blowup, kl_blowup, grad_norm_spike, clip_saturation, reward_plateau,
    reward_collapse, reward_hacking, truncation, length_collapse, length_explosion, zero_std_groups,
)}


# --- building proposals -------------------------------------------------------------------------

def _tidy(v: Value) -> Value:
    return float(f"{v:.{SIG_DIGITS}g}") if isinstance(v, float) else v


def _key(params: Params) -> tuple[tuple[str, float], ...]:
    return params_key(params, SIG_DIGITS)


def _full(space: Space, params: Params) -> dict[str, Value]:
    """``params`` completed with the space's defaults, in the space's order."""
    return {p.name: params.get(p.name, p.default) for p in space}


def _num(v: object) -> str:
    return f"{v:g}" if isinstance(v, (int, float)) else repr(v)


def _describe(before: Params, after: Params) -> str:
    changes = [f"{k} {_num(before.get(k))} -> {_num(v)}" for k, v in after.items() if before.get(k) != v]
    return ", ".join(changes) or "same parameters"


class _Builder:
    """Repairs candidate parameter sets and keeps only new ones (not proposed, not a sibling's)."""

    def __init__(self, ctx: ProposalContext, proposed_by: str, exclude: Iterable[Params] = ()):
        self.ctx, self.proposed_by = ctx, proposed_by
        self.base = _full(ctx.space, ctx.node.params)
        self.seen = {_key(_full(ctx.space, s.params)) for s in ctx.siblings}
        self.seen |= {_key(_full(ctx.space, e)) for e in exclude}
        self.out: list[Proposal] = []

    def add(self, updates: Params, why: str, mode: StageMode = StageMode.CONTINUE,
            findings: tuple[str, ...] = (), allow_noop: bool = False) -> bool:
        raw = {**self.base, **{k: _tidy(v) for k, v in updates.items() if k in self.ctx.space}}
        params, repairs = self.ctx.space.repair(raw, reason_prefix=f"{self.proposed_by}: ")
        key = _key(params)
        if key in self.seen or (not allow_noop and key == _key(self.base)):
            return False
        self.seen.add(key)
        restart = " (restart: fresh optimizer, KL reference reset)" if mode is StageMode.RESTART else ""
        reason = f"{why}; {_describe(self.base, params)}{restart}"
        self.out.append(Proposal(params=params, reason=reason, proposed_by=self.proposed_by, mode=mode,
                                 repairs=tuple(repairs), findings=findings))
        return True


Move = Callable[[Params], dict[str, Value]]
FALLBACK_MOVES: tuple[tuple[str, Move], ...] = (
    ("lower learning rate", lambda p: {"learning_rate": _lr(p, 0.5)}),
    ("higher learning rate", lambda p: {"learning_rate": _lr(p, 2.0)}),
    ("hotter rollouts", lambda p: {"temperature": _raise_temperature(p, 0.1)}),
    ("cooler rollouts", lambda p: {"temperature": _lower_temperature(p, 0.1)}),
    ("small entropy bonus", lambda p: {"entropy_coef": _raise_entropy_coef(p)}),
    ("larger groups", lambda p: {"num_generations": 2 * p["num_generations"]}),
    ("longer completions", lambda p: {"max_completion_length": _longer(p)}),
)


def _nothing_clipped(node: NodeView) -> bool:
    """The node's stage logged its clipped share and no completion reached the length cap."""
    clipped = [row.get("completions/clipped_ratio") for row in node.history if isinstance(row, Mapping)]
    clipped = [v for v in clipped if isinstance(v, (int, float))]
    return bool(clipped) and max(clipped) == 0


def _try(make: Callable[..., Any], *args: Any) -> Any:
    """Skills and moves read the parameters they change; a space without one has no such move."""
    try:
        return make(*args)
    except KeyError:
        return None


def fallback_proposals(ctx: ProposalContext, k: int, rng: random.Random, exclude: Iterable[Params] = (),
                       proposed_by: str = "skill") -> list[Proposal]:
    """Up to ``k`` diverse small moves from ``ctx.node``, none equal to ``exclude`` or a sibling.

    "Keep going" (the node's own parameters) comes first, since continuing a healthy stage is
    often the best child; then the fixed moves in an order shuffled by ``rng``; then random
    jitters of learning rate and temperature until ``k`` are found or the tries run out.

    "Longer completions" is left out when no completion of the node's stage reached the cap: the
    child would sample what "keep going" samples and train nearly the same stage. It is skipped
    after the shuffle, so the other moves keep the order the same ``rng`` gives them.
    """
    if k <= 0:
        return []
    b = _Builder(ctx, proposed_by, exclude)
    b.add({}, "fallback: keep going", allow_noop=True)
    base = b.base
    moves = [(why, upd) for why, move in FALLBACK_MOVES if (upd := _try(move, base)) is not None]
    rng.shuffle(moves)
    no_op = {"max_completion_length"} if _nothing_clipped(ctx.node) else set()
    for why, updates in moves:
        if len(b.out) >= k:
            break
        if updates.keys() <= no_op:
            continue
        b.add(updates, f"fallback: {why}")
    tries = 0
    while len(b.out) < k and tries < FALLBACK_TRIES * k:
        tries += 1
        updates: dict[str, Value] = {}
        if "learning_rate" in base:
            factor = math.exp(rng.uniform(-math.log(3), math.log(3)))  # within a factor of 3
            updates["learning_rate"] = base["learning_rate"] * factor
        if "temperature" in base:
            updates["temperature"] = base["temperature"] + rng.uniform(-0.2, 0.2)
        b.add(updates, "fallback: random jitter")
    return b.out[:k]


def _directions(remedies: Iterable[Remedy], base: Params) -> set[tuple[str, int]]:
    """The (parameter, +1 or -1) moves that ``remedies`` make from ``base``."""
    return {(k, 1 if v > base[k] else -1) for r in remedies for k, v in r.updates.items()
            if k in base and isinstance(v, (int, float)) and v != base[k]}


def coordinated(answers: Iterable[tuple[Finding, list[Remedy]]],
                base: Params) -> tuple[Remedy, tuple[str, ...]] | None:
    """One move that answers two findings at once: the first remedies of the first two findings (in the
    order given) that change different parameters, merged, or None. A finding joins only if none of its
    remedies moves a parameter the other way from a joined finding's (an entropy blow-up's cooler rollouts
    against all-same groups' hotter ones) and its first remedy continues the stage as the others do; one
    whose first remedy repeats a value already taken counts as answered by it. Under a fixed budget a stage
    that shows two pathologies would otherwise spend a stage on each."""
    updates: dict[str, Value] = {}
    names: list[str] = []
    moves: set[tuple[str, int]] = set()
    mode, adding = None, 0
    for f, remedies in answers:
        if not remedies or (mode is not None and remedies[0].mode is not mode):
            continue
        change = {k: v for k, v in remedies[0].updates.items() if base.get(k) != v}
        if adding == 2 and change.keys() - updates.keys():
            continue
        own = _directions(remedies, base)
        if (not change or any((k, -s) in moves for k, s in own)
                or any(updates.get(k, v) != v for k, v in change.items())):
            continue
        adding += bool(change.keys() - updates.keys())
        updates.update(change)
        names.append(f.name)
        moves |= own
        mode = remedies[0].mode
    return (Remedy(updates, mode), tuple(names)) if adding >= 2 and mode is not None else None


class SkillProposer:
    """Diagnose the node's stage, answer each finding with its skill, fill up with fallbacks.

    Where two findings or more have first remedies that change different parameters, the first child is
    two of them at once (:func:`coordinated`, the paper's coordinated change). Then the findings are
    answered in order of severity: first the best remedy of every finding, then the second ones, so that
    ``k`` children cover as many pathologies as possible.
    """

    name = "skill"

    def __init__(self, skills: Mapping[str, Skill] | None = None):
        self.skills: dict[str, Skill] = dict(SKILLS if skills is None else skills)

    def propose(self, ctx: ProposalContext, k: int, rng: random.Random,
                lead: str | None = None) -> list[Proposal]:
        """``lead`` names a finding to answer first, whatever its severity (the LLM agent's diagnosis)."""
        if k <= 0:
            return []
        b = _Builder(ctx, self.name)
        findings = sorted(diagnose(ctx.path), key=lambda f: f.name != lead)  # stable: the rest by severity
        answers = [(f, _try(self.skills[f.name], f, b.base) or []) for f in findings if f.name in self.skills]
        joint = coordinated(answers, b.base)
        if joint is not None:
            remedy, names = joint
            why = "; ".join(f.message for f in findings if f.name in names)
            b.add(remedy.updates, f"coordinated: {why}", remedy.mode, names)
        for rank in range(max((len(r) for _, r in answers), default=0)):
            for f, remedies in answers:
                if rank < len(remedies) and len(b.out) < k:
                    b.add(remedies[rank].updates, f.message, remedies[rank].mode, (f.name,))
        missing = k - len(b.out)
        if missing > 0:
            b.out += fallback_proposals(ctx, missing, rng, exclude=[p.params for p in b.out],
                                        proposed_by=self.name)
        return b.out[:k]
