"""Diagnose GRPO pathologies from the TRL metric histories along a path of the tree.

A detector judges the last node's stage by its own history (what happened in this stage) against a
reference taken from the path (the entropy and length at the start of training, the parent's val
score), because a value alone rarely says much: an entropy of 0.2 is healthy for one task and a
collapse for another. Detectors are pure functions of the path, so they are cheap to unit-test and
the proposers that act on them stay free of metric plumbing.

Thresholds are tuned to the tiny built-in tasks (see the team notes, tiny_tasks.md §2 and
grpo_trl.md §3) and are named below so that they can be read and changed in one place.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmzero.agents._base import NodeView

# --- shape of a curve ---
MIN_ROWS = 3  # fewer logged steps than this say nothing about a trend within a stage
WINDOW = 0.25  # head and tail of a stage are its first and last quarter of rows (at least one row)

# --- entropy ---
ENTROPY_LOW = 0.05  # nats; letter_counting collapsed .43 -> .04 while greedy accuracy stood still
ENTROPY_PATH_RATIO = 0.3  # end below 30% of the path's starting entropy; a healthy 600-step run kept 39%
ENTROPY_STAGE_RATIO = 0.4  # end below 40% of the stage's own start is a fast fall; a healthy stage kept 56%
REWARD_SOLVED = 0.95  # once the task is solved entropy falls legitimately (copy task: 0.02 at reward .99)
ENTROPY_BLOWUP_RATIO = 1.4  # tail over the path's head; lr 1e-3 went .63 -> 1.04, entropy_coef .1 to 3.6
ENTROPY_BLOWUP_MIN = 0.75  # nats; high in absolute terms too, so recovering from a collapse is no blow-up

# --- KL (only logged when beta > 0) ---
KL_HIGH = 0.5  # per-token kl this large means the policy has left its reference far behind
KL_GROWTH = 4.0  # tail kl over head kl: growing fast within one stage
KL_GROWTH_MIN = 0.05  # ... counted only once kl is large enough to matter

# --- reward and val ---
REWARD_FLAT = 0.03  # a reward change (tail minus head) smaller than this is flat
REWARD_RISE = 0.05  # a reward change larger than this is a rise
VAL_GAIN = 0.005  # val must beat the parent's by this to count as improving (the search's dive goes on at it:
# at 0.01, stages of a slowly rising path read as plateaus, and the plateau remedy halved the learning rate
# at every stage of a countdown dive, 1e-4 to 3e-6)
VAL_RISE = 0.01  # ... or the path's val must have risen by this over its last VAL_RISE_STAGES stages: a
VAL_RISE_STAGES = 3  # countdown dive rising .002-.004 a stage read four plateaus by the one-stage test alone
# and halved the learning rate four times (longdive.yaml, seed 0); the default schedule rose for 12 stages
VAL_DROP = 0.03  # val below the parent's by more than this is a fall (200 problems: SE about .035)
REWARD_DEAD = 0.05  # a tail reward at or below this is about zero
REWARD_WAS = 0.15  # ... and a collapse needs a reward of at least this before it
PLATEAU_MAX_SEVERITY = 0.6  # a plateau is never urgent: a diverging run outranks it

# --- completion length ---
LENGTH_COLLAPSE_RATIO = 0.5  # mean length below half the path's start (with no gain to show for it)
LENGTH_EXPLOSION_RATIO = 1.5  # mean length above 1.5x the path's start ...
LENGTH_STAGE_GROWTH = 1.2  # ... and still climbing within the stage (a raised cap is a step, not a climb)
TRUNCATION_HIGH = 0.10  # completions/clipped_ratio; near 1 means no gradient at all (cap 6 on number_sorting).
# Healthy stages of the four tasks at their level clip at most .05 (tail; 791 stages of the EPYC runs),
# word_sorting at difficulty 3 under difficulty 2's cap .11-.32 in a search's first stages: at .25 the finding
# waited for a stage that crossed it, and the cap rose up to two stages later than the first clipping allowed

# --- groups, clipping, gradients ---
ZERO_STD_HIGH = 0.6  # frac_reward_zero_std; healthy .35-.45, temperature .5 gave .56-.70, lr 3e-4 .70-.82
COLD_TEMPERATURE = 0.8  # rollouts sampled below this are cold: their all-same groups are the sampler's doing, so
# they are a finding even while val rises. word_sorting started at temperature .5 ended its stages with .62-.78 of
# its groups all-same, and three stages warmed .5 -> .7 -> .9 scored +.043 on test over three at .5 (seeds 0-2;
# bench/configs/cold-sched-ws-epyc512.yaml), while the entropy bonus at .5 scored -.009
HIGH_REWARD = 0.7  # a plateau or all-same-reward groups at a reward this high: the problems are too easy
CLIP_REGION_HIGH = 0.1  # clip_ratio/region_mean; mu=2 gave .001-.03 and it is exactly 0 when on-policy
GRAD_SPIKE_RATIO = 10.0  # max grad_norm over the median of the positive ones
GRAD_SPIKE_MIN_ROWS = 5  # a median of fewer steps is not a baseline


@dataclass(frozen=True)
class Finding:
    """A pathology seen in a stage: how bad (0..1), the numbers behind it, and a one-line message."""

    name: str
    severity: float
    evidence: dict[str, float] = field(default_factory=dict)
    message: str = ""


def _finite(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def _sev(value: float, start: float, worst: float) -> float:
    """Severity 0.3 at the threshold ``start``, rising linearly to 1.0 at ``worst`` (either direction)."""
    frac = (value - start) / (worst - start) if worst != start else 1.0
    return round(0.3 + 0.7 * min(max(frac, 0.0), 1.0), 3)


def _g(x: float) -> str:
    return f"{x:.3g}"


class _View:
    """Curves of one path, read once: the node's stage series, its head and tail, and path references."""

    def __init__(self, path: Sequence[NodeView]):
        self.node = path[-1]
        self.path = tuple(path)
        self.parent = path[-2] if len(path) >= 2 else None
        self.val = _finite(self.node.val_score)
        self.parent_val = _finite(self.parent.val_score) if self.parent is not None else None
        self._cache: dict[str, list[float]] = {}

    def series(self, key: str, node: NodeView | None = None) -> list[float]:
        node = node or self.node
        if node is self.node and key in self._cache:
            return self._cache[key]
        out = [v for row in node.history if isinstance(row, Mapping)
               if (v := _finite(row.get(key))) is not None]
        if node is self.node:
            self._cache[key] = out
        return out

    def head(self, key: str) -> float | None:
        s = self.series(key)
        return statistics.fmean(s[:max(1, int(len(s) * WINDOW))]) if s else None

    def tail(self, key: str) -> float | None:
        s = self.series(key)
        return statistics.fmean(s[-max(1, int(len(s) * WINDOW)):]) if s else None

    def start(self, key: str) -> float | None:
        """Head of the first stage on the path that logged ``key``: the reference for drifts."""
        for node in self.path:
            s = self.series(key, node)
            if s:
                return statistics.fmean(s[:max(1, int(len(s) * WINDOW))])
        return None

    def enough(self, key: str, rows: int = MIN_ROWS) -> bool:
        return len(self.series(key)) >= rows

    @property
    def val_gain(self) -> float | None:
        return self.val_rise(1)

    def val_rise(self, stages: int) -> float | None:
        """The node's val minus that of its ancestor ``stages`` stages up (the root on a shorter path);
        None when either has no val."""
        anc = self.path[max(0, len(self.path) - 1 - stages)]
        before = _finite(anc.val_score) if anc is not self.node else None
        return None if self.val is None or before is None else self.val - before

    def risen_from(self) -> NodeView | None:
        """The ancestor the path's val still rises from at the node: the parent if the node beat it by
        VAL_GAIN, else the ancestor VAL_RISE_STAGES up (the root on a shorter path) if val rose VAL_RISE
        since; None when neither."""
        if (gain := self.val_gain) is not None and gain >= VAL_GAIN:
            return self.parent
        if (rise := self.val_rise(VAL_RISE_STAGES)) is not None and rise >= VAL_RISE:
            return self.path[max(0, len(self.path) - 1 - VAL_RISE_STAGES)]
        return None


Detector = Callable[[_View], Finding | None]


def entropy_collapse(v: _View) -> Finding | None:
    if not v.enough("entropy"):
        return None
    end, stage0, path0 = v.tail("entropy"), v.head("entropy"), v.start("entropy")
    reward = v.tail("reward")
    if reward is not None and reward >= REWARD_SOLVED:
        return None
    sevs = []
    if end < ENTROPY_LOW:
        sevs.append(_sev(end, ENTROPY_LOW, 0.0))
    if path0 and end / path0 < ENTROPY_PATH_RATIO:
        sevs.append(_sev(end / path0, ENTROPY_PATH_RATIO, 0.0))
    if stage0 and end / stage0 < ENTROPY_STAGE_RATIO:
        sevs.append(_sev(end / stage0, ENTROPY_STAGE_RATIO, 0.0))
    if not sevs:
        return None
    ev = {"entropy": end, "stage_start": stage0, "path_start": path0}
    return Finding("entropy_collapse", max(sevs), ev,
                   f"entropy_collapse: entropy {_g(stage0)} -> {_g(end)} in this stage "
                   f"(path start {_g(path0)})")


def entropy_blowup(v: _View) -> Finding | None:
    if not v.enough("entropy"):
        return None
    end, path0 = v.tail("entropy"), v.start("entropy")
    if not path0 or end < ENTROPY_BLOWUP_MIN or end / path0 < ENTROPY_BLOWUP_RATIO:
        return None
    ratio = end / path0
    return Finding("entropy_blowup", _sev(ratio, ENTROPY_BLOWUP_RATIO, 4.0),
                   {"entropy": end, "path_start": path0, "ratio": ratio},
                   f"entropy_blowup: entropy {_g(path0)} -> {_g(end)} ({ratio:.1f}x the path start)")


def kl_blowup(v: _View) -> Finding | None:
    if not v.enough("kl"):
        return None
    head, end = v.head("kl"), v.tail("kl")
    growth = end / head if head > 0 else (math.inf if end > 0 else 1.0)
    sevs = []
    if end >= KL_HIGH:
        sevs.append(_sev(end, KL_HIGH, 4 * KL_HIGH))
    if end >= KL_GROWTH_MIN and growth >= KL_GROWTH:
        sevs.append(_sev(min(growth, 1e6), KL_GROWTH, 4 * KL_GROWTH))
    if not sevs:
        return None
    return Finding("kl_blowup", max(sevs), {"kl": end, "kl_start": head, "growth": min(growth, 1e6)},
                   f"kl_blowup: kl {_g(head)} -> {_g(end)} in this stage")


def reward_plateau(v: _View) -> Finding | None:
    if not v.enough("reward"):
        return None
    head, end = v.head("reward"), v.tail("reward")
    delta, gain = end - head, v.val_gain
    if abs(delta) >= REWARD_FLAT:
        return None
    if v.risen_from() is not None:
        return None  # flat reward while val still rises, over this stage or over the last few
    ev = {"reward": end, "reward_start": head}
    msg = f"reward_plateau: reward {_g(head)} -> {_g(end)}"
    if gain is not None:
        ev.update(val=v.val, parent_val=v.parent_val)
        msg += f", val {_g(v.parent_val)} -> {_g(v.val)}"
    severity = round(PLATEAU_MAX_SEVERITY * _sev(abs(delta), REWARD_FLAT, 0.0), 3)
    return Finding("reward_plateau", severity, ev, msg)


def reward_collapse(v: _View) -> Finding | None:
    if not v.enough("reward"):
        return None
    end = v.tail("reward")
    before = [v.head("reward")]
    if v.parent is not None and (s := v.series("reward", v.parent)):
        before.append(statistics.fmean(s[-max(1, int(len(s) * WINDOW)):]))
    was = max(before)
    if end > REWARD_DEAD or was < REWARD_WAS:
        return None
    return Finding("reward_collapse", _sev(was - end, REWARD_WAS - REWARD_DEAD, 0.5),
                   {"reward": end, "reward_before": was},
                   f"reward_collapse: reward {_g(was)} -> {_g(end)}")


def length_collapse(v: _View) -> Finding | None:
    key = "completions/mean_length"
    if not v.enough(key):
        return None
    end, path0 = v.tail(key), v.start(key)
    if not path0 or end / path0 >= LENGTH_COLLAPSE_RATIO:
        return None
    # Shorter answers that earn more are learning (the copy task dropped 4 -> 2 tokens once it emitted EOS).
    rise = (v.tail("reward") or 0.0) - (v.head("reward") or 0.0)
    if rise >= REWARD_RISE or (v.val_gain or 0.0) >= VAL_GAIN:
        return None
    ratio = end / path0
    return Finding("length_collapse", _sev(ratio, LENGTH_COLLAPSE_RATIO, 0.1),
                   {"mean_length": end, "path_start": path0, "ratio": ratio},
                   f"length_collapse: mean length {_g(path0)} -> {_g(end)} tokens with no reward gain")


def length_explosion(v: _View) -> Finding | None:
    key = "completions/mean_length"
    if not v.enough(key):
        return None
    head, end, path0 = v.head(key), v.tail(key), v.start(key)
    if not path0 or not head or end / path0 < LENGTH_EXPLOSION_RATIO or end / head < LENGTH_STAGE_GROWTH:
        return None
    ratio = end / path0
    return Finding("length_explosion", _sev(ratio, LENGTH_EXPLOSION_RATIO, 4.0),
                   {"mean_length": end, "stage_start": head, "path_start": path0, "ratio": ratio},
                   f"length_explosion: mean length {_g(head)} -> {_g(end)} tokens "
                   f"({ratio:.1f}x the path start)")


def truncation(v: _View) -> Finding | None:
    key = "completions/clipped_ratio"
    if not v.series(key):
        return None
    end = v.tail(key)
    if end < TRUNCATION_HIGH:
        return None
    ev = {"clipped_ratio": end}
    cap = _finite(v.node.params.get("max_completion_length"))
    if cap is not None:
        ev["max_completion_length"] = cap
    return Finding("truncation", _sev(end, TRUNCATION_HIGH, 1.0), ev,
                   f"truncation: {end:.0%} of completions clipped at max_completion_length="
                   f"{_g(cap) if cap is not None else '?'}")


def zero_std_groups(v: _View) -> Finding | None:
    key = "frac_reward_zero_std"
    if not v.series(key):
        return None
    end = v.tail(key)
    if end < ZERO_STD_HIGH:
        return None
    reward = v.tail("reward")
    temperature = _finite(v.node.params.get("temperature"))
    cold = temperature is not None and temperature < COLD_TEMPERATURE
    if (reward is None or reward <= HIGH_REWARD) and not cold and v.risen_from() is not None:
        return None  # groups all wrong at a low reward while val still rises: a hard task being learnt
    ev = {"frac_reward_zero_std": end}
    if reward is not None:
        ev["reward"] = reward
    if cold:
        ev["temperature"] = temperature
    return Finding("zero_std_groups", _sev(end, ZERO_STD_HIGH, 1.0), ev,
                   f"zero_std_groups: {end:.0%} of groups have zero reward variance"
                   + (f" (reward {_g(reward)})" if reward is not None else "")
                   + (f" at a cold temperature of {_g(temperature)}" if cold else ""))


def clip_saturation(v: _View) -> Finding | None:
    key = "clip_ratio/region_mean"
    if not v.series(key):
        return None
    end = v.tail(key)
    if end < CLIP_REGION_HIGH:
        return None
    return Finding("clip_saturation", _sev(end, CLIP_REGION_HIGH, 0.4), {"clip_region": end},
                   f"clip_saturation: {end:.0%} of tokens clipped (clip_ratio/region_mean)")


def grad_norm_spike(v: _View) -> Finding | None:
    s = [x for x in v.series("grad_norm") if x > 0]  # 0 is logged when every group has zero variance
    if len(s) < GRAD_SPIKE_MIN_ROWS:
        return None
    peak, median = max(s), statistics.median(s)
    ratio = peak / median
    if ratio < GRAD_SPIKE_RATIO:
        return None
    return Finding("grad_norm_spike", _sev(ratio, GRAD_SPIKE_RATIO, 10 * GRAD_SPIKE_RATIO),
                   {"grad_norm_max": peak, "grad_norm_median": median, "ratio": ratio},
                   f"grad_norm_spike: grad_norm peaked at {_g(peak)}, {ratio:.0f}x its median {_g(median)}")


def reward_hacking(v: _View) -> Finding | None:
    if not v.enough("reward") or v.val_gain is None:
        return None
    rise = v.tail("reward") - v.head("reward")
    if rise < REWARD_RISE or -v.val_gain < VAL_DROP:
        return None
    return Finding("reward_hacking", _sev(-v.val_gain, VAL_DROP, 0.2),
                   {"reward_rise": rise, "val": v.val, "parent_val": v.parent_val},
                   f"reward_hacking: train reward rose {rise:+.3g} while val fell "
                   f"{_g(v.parent_val)} -> {_g(v.val)}")


DETECTORS: dict[str, Detector] = {d.__name__: d for d in (
    entropy_collapse, entropy_blowup, kl_blowup, reward_plateau, reward_collapse, length_collapse,
    length_explosion, truncation, zero_std_groups, clip_saturation, grad_norm_spike, reward_hacking,
)}


def diagnose(path: Sequence[NodeView]) -> list[Finding]:
    """Pathologies of the last node's stage on ``path`` (root ... node), most severe first."""
    if not path:
        return []
    view = _View(path)
    found = [f for detect in DETECTORS.values() if (f := detect(view)) is not None]
    return sorted(found, key=lambda f: (-f.severity, f.name))


def risen_from(path: Sequence[NodeView]) -> NodeView | None:
    """The ancestor the path's val still rises from at its last node (``_View.risen_from``): the same
    test that reads no reward plateau, for whoever weighs closing the branch."""
    return _View(path).risen_from() if len(path) >= 2 else None
