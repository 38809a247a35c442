"""Transfer: carry a strategy discovered on one task to another.

A discovered strategy is read as *moves*: the changes each stage made to the stage before it (stage 1
against the source task's starting parameters). A move transfers relatively where it can: a
parameter that went from 64 to 96 tokens goes from the target's own starting value up by x1.5, and
one that went from 0 to 0.01 (no ratio exists) takes the value itself. Unchanged parameters keep the
target task's values, so a strategy never imports a length or a difficulty that only suited the
source task. A move back toward a parameter's default (a temperature warmed from a cold 0.5 to 0.7,
toward 1.0) undoes a departure from it, so it transfers only where the target has the same departure,
and not past the default: a target already at 1.0 keeps 1.0 rather than being heated to 1.4. Every
result is made legal in the target's space, with the repairs recorded.

The same moves, with the source run's dynamics summary (which parameters grew monotonically and
which oscillated), form the :class:`Prior` a search on the target task starts from: the agent sees
it in its prompt, and each node's first child follows the prior's move for that stage unless a
sibling already did.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmzero.space import TASK_DEFAULTS, Repair, Space, Value
from llmzero.strategy import Stage, StageMode, Strategy


PARTS = ("replay", "default", "search", "noprior", "fixed")
DEFAULT_PARTS = ("replay", "default", "search", "fixed")  # noprior, the search's control, on request


class TransferError(ValueError):
    """A source run that cannot be transferred; one line."""


@dataclass(frozen=True)
class Move:
    """What one stage changed: parameter -> (value before, value after)."""

    changes: dict[str, tuple[Value, Value]]
    steps: int
    mode: str = "continue"

    def describe(self) -> str:
        return ", ".join(f"{k} {_g(a)}->{_g(b)}" for k, (a, b) in self.changes.items()) or "no change"


@dataclass(frozen=True)
class Prior:
    """A discovered strategy as moves, and the source run's dynamics, for a search on another task."""

    source: str  # the source run directory
    task: str  # the source task
    val_score: float | None
    moves: tuple[Move, ...]
    pattern: str  # one line: which parameters grew, which oscillated
    config: dict[str, Any] = field(default_factory=dict, compare=False)  # the source run's experiment

    def move(self, depth: int) -> Move | None:
        """The move of the stage that follows a node at ``depth`` (0 is the root)."""
        return self.moves[depth] if depth < len(self.moves) else None

    def text(self) -> str:
        """The prior as the agent reads it: a few short lines."""
        steps = "; ".join(f"stage {i + 1}: {m.describe()}" for i, m in enumerate(self.moves))
        val = f" (val {self.val_score:.3f})" if self.val_score is not None else ""
        return (f"Prior from a search on {self.task}{val}: {steps}. Pattern there: {self.pattern}. "
                "Moves transfer as ratios; adapt them to this task's findings.")

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "task": self.task, "val_score": self.val_score, "pattern": self.pattern,
                "moves": [{"changes": {k: list(v) for k, v in m.changes.items()}, "steps": m.steps, "mode": m.mode}
                          for m in self.moves]}


def _g(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _side(value: Any, default: Any) -> int:
    """-1, 0 or 1: where ``value`` lies from ``default`` (0 for a value that is not a number)."""
    if not isinstance(value, (int, float)) or not isinstance(default, (int, float)):
        return 0
    return (value > default) - (value < default)


def returns(name: str, before: Value, after: Value, default: Value) -> bool:
    """Whether a move of ``name`` from ``before`` to ``after`` goes back toward its ``default``, not past
    it: it undoes a departure (a parameter whose default each task sets has no shared default to go back to)."""
    side = _side(before, default)
    return name not in TASK_DEFAULTS and side != 0 and _side(after, default) in (0, side) and \
        abs(after - default) < abs(before - default)


def apply_move(space: Space, params: dict[str, Value], move: Move) -> tuple[dict[str, Value], list[Repair]]:
    """``params`` changed as ``move`` changed its stage: by the same ratio where the value before was
    positive, to the same value otherwise; then made legal in ``space``. A move back toward the default
    (:func:`returns`) applies only where ``params`` departs from it on the same side, and stops at it."""
    changes: dict[str, Value] = {}
    for name, (before, after) in move.changes.items():
        if name not in space.names:
            continue  # a parameter the target task does not have
        default = space[name].default
        cur = params.get(name, default)
        back = returns(name, before, after, default)
        if back and _side(cur, default) != _side(before, default):
            continue  # the target has no such departure to undo
        if isinstance(before, (int, float)) and before > 0 and isinstance(cur, (int, float)) and cur > 0:
            value = cur * (after / before)
            value = int(round(value)) if space[name].type is int else value
        else:
            value = after
        if back and _side(value, default) not in (0, _side(before, default)):
            value = default  # back to the default, not past it
        changes[name] = value
    legal, repairs = space.repair(changes, reason_prefix="transfer: ")
    return {**params, **legal}, repairs


def load_prior(run_dir: str | Path, k: int = 3) -> Prior:
    """The best path of a finished (or stopped) search as a :class:`Prior`."""
    from llmzero.analysis import analyze_runs
    from llmzero.search.journal import Journal, JournalError
    from llmzero.search.loop import JOURNAL
    from llmzero.space import DEFAULT_SPACE

    path = Path(run_dir) / JOURNAL
    if not path.is_file():
        raise TransferError(f"from={str(run_dir)!r} is not allowed: no {JOURNAL} in that directory "
                            "(expected a search run directory)")
    try:
        journal = Journal(path)
        tree = journal.replay()
        journal.close()
    except JournalError as e:
        raise TransferError(str(e)) from None
    best = tree.best()
    if best is None:
        raise TransferError(f"from={str(run_dir)!r} holds no scored stage yet: nothing to transfer")
    nodes = tree.path(best.id)
    moves = []
    for prev, n in zip(nodes, nodes[1:]):
        changes = {k: (prev.params[k], v) for k, v in n.params.items() if prev.params.get(k) != v}
        moves.append(Move(changes=changes, steps=n.steps, mode=n.mode))
    dynamics = analyze_runs([tree], DEFAULT_SPACE, k=k)
    grew = [d.name for d in dynamics if d.classification == "monotone"]
    osc = [d.name for d in dynamics if d.classification == "oscillating"]
    pattern = (f"monotone: {', '.join(grew) or 'none'}; oscillating: {', '.join(osc) or 'none'}")
    config = tree.meta.get("config", {})
    return Prior(source=str(run_dir), task=config.get("task", {}).get("name", "?"), val_score=best.val_score,
                 moves=tuple(moves), pattern=pattern, config=config)


def map_strategy(prior: Prior, space: Space, start: dict[str, Value] | None = None) -> tuple[Strategy, list[Repair]]:
    """The prior's moves replayed from the target task's starting parameters, as a strategy."""
    params = dict(start) if start is not None else space.defaults()
    stages, repairs = [], []
    for m in prior.moves:
        params, fixed = apply_move(space, params, m)
        repairs += fixed
        stages.append(Stage(dict(params), m.steps, StageMode(m.mode)))
    meta = {"transferred_from": prior.source, "source_task": prior.task}
    return Strategy(tuple(stages), meta=meta), repairs


def default_strategy(strategy: Strategy, start: dict[str, Value]) -> Strategy:
    """The replay's control: the same stages (steps and modes) with the target's starting parameters
    throughout. Trained with the replay's seed, a stage both keep at the starting parameters is the same
    stage bit for bit, so replay against this is the moves' own effect on the target, paired."""
    stages = tuple(Stage(dict(start), s.steps, s.mode) for s in strategy.stages)
    return Strategy(stages, meta={"control_of": "replay", "source_task": strategy.meta.get("source_task")})


def target_config(prior: Prior, task: str, overrides: dict[str, Any] | None = None):
    """The source run's experiment moved to ``task``: the same model, search, budget and seeds, the
    target task's own starting parameters, and the prior. ``overrides`` are dotted keys (None: unset)."""
    from llmzero.config import apply_overrides, parse_config

    raw = json.loads(json.dumps(prior.config))  # a deep copy
    source_task = raw.get("task", {})
    raw["task"] = {"name": task, "difficulty": source_task.get("difficulty", 2)}
    if "sizes" in source_task:
        raw["task"]["sizes"] = source_task["sizes"]
    if source_task.get("chat") and task.startswith("rg:"):  # the same chat model: chat prompts on the target too
        raw["task"]["chat"] = True
    raw["params"] = {}
    search = raw.setdefault("search", {})
    search["prior"] = prior.source
    if search.get("lineage_start") == "grid":  # lineages that start as grid's runs: the prior's first move
        search["lineage_start"] = "start"      # starts them instead (a grid lineage has no prior to follow)
    return parse_config(apply_overrides(raw, overrides))


def noprior_config(cfg: Any):
    """The search part's control: ``cfg`` (the target's experiment) without the prior, all else the same
    (seed, budget, lineages), so the search with the prior against it is the prior's own effect, paired."""
    from llmzero.config import parse_config

    raw = cfg.model_dump(mode="json")
    raw["search"]["prior"] = None
    return parse_config(raw)


def fixed_config(cfg: Any, prior: Prior):
    """The reference for a transfer: ``cfg`` (the target's experiment) with the target's default schedule
    in chains of as many stages as the source's strategy has (or ``search.depth``, if more), one after the
    other while the budget lasts, the best chain's end picked on validation as the search picks its node
    (and averaged by the final soup if ``search.soup`` says so). A source that grew lineages or dove
    deeper than ``search.depth`` is compared with chains as deep as its strategy."""
    from llmzero.config import parse_config

    raw = cfg.model_dump(mode="json")
    search = raw["search"]
    search.update(method="fixed", prior=None, depth=max(cfg.search.depth, len(prior.moves)), lineages=1,
                  lineage_start="agent", sibling_soup=False, scale_updates=False, dive_branching=None,
                  dive_patience=0)
    return parse_config(raw)


def relative(score: float | None, reference: float | None) -> float | None:
    """score / reference - 1, or None when either is missing or the reference is 0."""
    if score is None or not reference:
        return None
    return score / reference - 1
