"""Parameter dynamics along discovered strategies: does capacity grow while regularization oscillates?

The paper reports that along the strategies LLMZero finds, *capacity* parameters
(``max_completion_length``, ``num_generations``, ``difficulty``) grow monotonically from stage to
stage while *regularization* parameters (``learning_rate``, ``beta``, ``entropy_coef``, ``epsilon``,
``epsilon_high``, ``temperature``) go up and down. This module checks that claim on finished runs.

Everything here is a pure function of a schedule (one value per stage) or of replayed trees, so a
claim in the README can be re-derived from journals alone. The scores:

* :func:`monotonicity` - the share of stage-to-stage transitions that do not decrease the value;
* :func:`oscillation` - the share of direction reversals among the successive moves that change it;
* :func:`rank_correlation` - Spearman's rho of the value against the stage index (the trend's sign);
* :func:`classify` - one word from those scores, with the thresholds below.

Pooling (:func:`analyze_runs`) looks at the best path and the top-k paths of every run, because a
single best path of a few stages is too little evidence for a claim about a method.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llmzero.search.tree import Node, NodeState, Tree
from llmzero.space import Role, Space

DynamicsClass = Literal["monotone", "oscillating", "constant", "mixed", "too short"]
Verdict = Literal["match", "mismatch", "unchanged", "too short"]

# A schedule is "monotone" only if it never decreases: the paper's claim is that capacity *grows*
# monotonically, and a single step back already contradicts that for one path. Noise across paths is
# absorbed by pooling (a majority of paths decides a parameter's class), not by a looser threshold.
MONOTONE_MIN = 1.0
# A schedule "oscillates" when at least two thirds of its successive moves reverse direction. Lower
# would call rise-then-fall (+, +, -: one reversal in two) an oscillation; that is one peak, not a
# back-and-forth, so it is "mixed".
OSCILLATING_MIN = 2 / 3
# Values closer than this (relative) count as unchanged: journals store floats that went through
# JSON and clamping, and 1e-4 vs 1.0000000000000002e-4 is not a change a strategy made.
REL_TOL = 1e-9

# What the paper expects of each role; a parameter whose class is this "matches".
EXPECTED: dict[Role, DynamicsClass] = {Role.CAPACITY: "monotone", Role.REGULARIZATION: "oscillating"}

# Nodes whose val_score is a finished measurement (a pruned node was trained and scored, then stopped).
_SCORED = (NodeState.COMPLETE, NodeState.PRUNED)


# -- scores of one schedule ---------------------------------------------------------------------------


def _deltas(values: Sequence[float]) -> list[int]:
    """The sign (-1, 0, +1) of each stage-to-stage change, with float noise read as 0."""
    out = []
    for a, b in zip(values, values[1:]):
        out.append(0 if math.isclose(a, b, rel_tol=REL_TOL, abs_tol=0.0) else (1 if b > a else -1))
    return out


def monotonicity(values: Sequence[float]) -> float:
    """Share of transitions (stage i -> i+1) that do not decrease the value.

    Every transition counts, whether the value rises, stays or falls, so a constant schedule scores
    1 and a strictly falling one 0. Returns nan for fewer than 2 values (no transition).
    """
    signs = _deltas(values)
    if not signs:
        return math.nan
    return sum(s >= 0 for s in signs) / len(signs)


def oscillation(values: Sequence[float]) -> float:
    """Share of direction reversals among successive moves that change the value.

    Stages that keep the value are skipped: (up, stay, down) is one reversal out of one pair. So
    strictly growing scores 0 and up/down/up/down scores 1. Returns nan when fewer than 2 moves
    change the value, since a direction can only reverse between two moves.
    """
    moves = [s for s in _deltas(values) if s != 0]
    if len(moves) < 2:
        return math.nan
    return sum(a != b for a, b in zip(moves, moves[1:])) / (len(moves) - 1)


def _ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank (as Spearman's rho requires)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for t in range(i, j + 1):
            ranks[order[t]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def rank_correlation(values: Sequence[float]) -> float:
    """Spearman's rho of the value against the stage index: +1 always growing, -1 always falling.

    Unlike :func:`monotonicity` it sees the overall trend through a dip. Returns nan for fewer than 3
    values (two points always correlate perfectly) or a constant schedule (no ranking to correlate).
    """
    if len(values) < 3 or all(math.isclose(v, values[0], rel_tol=REL_TOL, abs_tol=0.0) for v in values):
        return math.nan
    x = [float(i + 1) for i in range(len(values))]  # stage ranks: never tied
    y = _ranks(values)
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y))
    vx = sum((a - mx) ** 2 for a in x)
    vy = sum((b - my) ** 2 for b in y)
    return cov / math.sqrt(vx * vy)


def classify(values: Sequence[float]) -> DynamicsClass:
    """One word for a schedule: "too short" (< 2 stages), "constant", "oscillating" (see
    OSCILLATING_MIN), "monotone" (never decreases, see MONOTONE_MIN) or "mixed" (anything else:
    a single fall, rise-then-fall, ...)."""
    if len(values) < 2:
        return "too short"
    if all(s == 0 for s in _deltas(values)):
        return "constant"
    osc = oscillation(values)
    if not math.isnan(osc) and osc >= OSCILLATING_MIN:
        return "oscillating"
    if monotonicity(values) >= MONOTONE_MIN:
        return "monotone"
    return "mixed"


# -- paths in a tree ------------------------------------------------------------------------------------


def path_params(tree: Tree, node_id: str) -> dict[str, list[float]]:
    """Each parameter's value per stage along the root-to-node path, the root (base model) excluded.

    The root holds the starting parameters, not a stage a strategy chose, so it is left out. Only
    parameters present in every stage of the path are returned (stages carry full parameter sets, so
    in practice that is all of them), in the order of the first stage.
    """
    stages = tree.path(node_id)[1:]
    if not stages:
        return {}
    names = [k for k in stages[0].params if all(k in n.params for n in stages)]
    return {k: [float(n.params[k]) for n in stages] for k in names}


def top_paths(tree: Tree, k: int) -> list[str]:
    """The ids of the k best scored stages by val_score, ties going to the deeper stage (a longer
    strategy that scores the same says more about dynamics), then to the earlier one."""
    if k <= 0:
        return []
    scored = [n for n in tree.stages() if n.state in _SCORED and n.val_score is not None]
    scored.sort(key=lambda n: (-float(n.val_score), -n.depth, _order(n)))  # type: ignore[arg-type]
    return [n.id for n in scored[:k]]


def _order(n: Node) -> int:
    digits = n.id.lstrip("n")
    return int(digits) if digits.isdigit() else 0


def analysed_paths(tree: Tree, k: int = 3) -> list[str]:
    """The end nodes analysed in one run: its best stage (as the search chose it) and its top k,
    each once. A top-k stage may lie on the best path; its path is then a prefix and is counted as
    its own path, as the search did reach and score it."""
    ends: list[str] = []
    best = tree.best()
    for node_id in ([best.id] if best is not None else []) + top_paths(tree, k):
        if node_id not in ends:
            ends.append(node_id)
    return ends


# -- pooled over runs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParamDynamics:
    """How one parameter moved along the analysed paths of all runs, and whether that is the paper's
    pattern for its role."""

    name: str
    role: Role
    paths: int
    """Analysed paths with at least 2 stages (shorter ones have no transition to judge)."""
    changed: int
    """Of those, paths along which the parameter changes at least once."""
    monotonicity: float
    """Mean :func:`monotonicity` over the paths that change it (nan if none): constant paths would
    score 1 and hide what the changing ones do."""
    oscillation: float
    """Mean :func:`oscillation` over the paths where it is defined (at least 2 moves; nan if none)."""
    trend: float
    """Mean :func:`rank_correlation` over the paths where it is defined (nan if none)."""
    classification: DynamicsClass
    """The class most of the changing paths have (a tie is "mixed"); "constant" if no path changes
    it, "too short" if no path has 2 stages."""
    verdict: Verdict
    """"match" or "mismatch" against EXPECTED[role]; "unchanged" (constant) and "too short" count as
    neither."""

    @property
    def expected(self) -> DynamicsClass:
        return EXPECTED[self.role]

    @property
    def matches(self) -> bool | None:
        """True/False for a parameter that changed; None when there is nothing to judge."""
        return {"match": True, "mismatch": False}.get(self.verdict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: nan becomes None, since JSON has no nan."""
        return {"name": self.name, "role": self.role.value, "paths": self.paths, "changed": self.changed,
                "monotonicity": _finite(self.monotonicity), "oscillation": _finite(self.oscillation),
                "trend": _finite(self.trend), "class": self.classification, "expected": self.expected,
                "verdict": self.verdict, "matches": self.matches}


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else x


def _mean(xs: Sequence[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return sum(xs) / len(xs) if xs else math.nan


def _pooled_class(classes: Sequence[DynamicsClass]) -> DynamicsClass:
    judged = [c for c in classes if c != "too short"]
    if not judged:
        return "too short"
    changing = [c for c in judged if c != "constant"]
    if not changing:
        return "constant"
    (top, n), *rest = Counter(changing).most_common()
    if rest and rest[0][1] == n:  # no majority class: the paths disagree
        return "mixed"
    return top


def _schedules(trees: Sequence[Tree], k: int) -> list[dict[str, list[float]]]:
    return [path_params(tree, end) for tree in trees for end in analysed_paths(tree, k)]


def analyze_runs(trees: Sequence[Tree], space: Space, k: int = 3) -> list[ParamDynamics]:
    """Pool the best path and the top-k paths of every run and judge each parameter of ``space``.

    Returned in the space's order. A parameter absent from every path is reported as "too short".
    """
    schedules = _schedules(trees, k)
    out = []
    for p in space:
        series = [s[p.name] for s in schedules if p.name in s and len(s[p.name]) >= 2]
        classes = [classify(v) for v in series]
        moving = [v for v, c in zip(series, classes) if c != "constant"]
        cls = _pooled_class(classes) if series else "too short"
        if cls in ("constant", "too short"):
            verdict: Verdict = "unchanged" if cls == "constant" else "too short"
        else:
            verdict = "match" if cls == EXPECTED[p.role] else "mismatch"
        out.append(ParamDynamics(
            name=p.name, role=p.role, paths=len(series), changed=len(moving),
            monotonicity=_mean([monotonicity(v) for v in moving]),
            oscillation=_mean([oscillation(v) for v in moving]),
            trend=_mean([rank_correlation(v) for v in moving]),
            classification=cls, verdict=verdict))
    return out


@dataclass(frozen=True)
class Summary:
    """The verdict over all parameters: does the paper's pattern hold on these runs?"""

    matched: int
    mismatched: int
    unchanged: int  # constant, or too short to judge
    holds: bool | None  # None when no parameter changed: there is nothing to judge

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def summarize(dynamics: Sequence[ParamDynamics]) -> Summary:
    """The pattern holds when every parameter that changed behaves as its role predicts."""
    matched = sum(d.verdict == "match" for d in dynamics)
    mismatched = sum(d.verdict == "mismatch" for d in dynamics)
    judged = matched + mismatched
    return Summary(matched=matched, mismatched=mismatched, unchanged=len(dynamics) - judged,
                   holds=(mismatched == 0) if judged else None)


# -- plot -------------------------------------------------------------------------------------------------


def plot_trajectories(trees: Sequence[Tree], space: Space, path: str | Path, k: int = 3) -> Path:
    """Write a PNG with one small panel per parameter of ``space``; each line is one analysed path
    (the same paths as :func:`analyze_runs`), x the stage index. Log parameters get a log axis.

    matplotlib is imported here, and drawn through the Agg canvas directly rather than pyplot, so
    importing this module costs nothing and never touches a global backend or figure registry.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    schedules = _schedules(trees, k)
    params = list(space)
    cols = min(3, max(1, len(params)))
    rows = max(1, math.ceil(len(params) / cols))
    fig = Figure(figsize=(3.4 * cols, 2.4 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= len(params):
            ax.set_axis_off()
            continue
        p = params[i]
        for s in schedules:
            if p.name in s:
                xs = range(1, len(s[p.name]) + 1)
                ax.plot(xs, s[p.name], marker="o", markersize=3, linewidth=1, alpha=0.7)
        if p.log:
            ax.set_yscale("log")
        ax.set_title(f"{p.name} ({p.role.value})", fontsize=9)
        ax.set_xlabel("stage", fontsize=8)
        ax.tick_params(which="both", labelsize=7)
        ax.xaxis.get_major_locator().set_params(integer=True)
    out = Path(path)
    fig.savefig(out, format="png", dpi=100)
    return out
