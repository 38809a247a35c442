"""The parameter space a strategy moves through.

Every parameter has a role. *Capacity* parameters grow what the policy can do or see (response
length, group size, task difficulty); *regularization* parameters constrain or steer the updates
(learning rate, KL coefficient, entropy bonus, clip range, temperature). Names follow TRL's
``GRPOConfig`` wherever TRL has the parameter.

Two operations are kept apart on purpose:

* :meth:`Space.validate` checks user input. It never rewrites a value: a bad value raises a
  :class:`SpaceError` that names the parameter, the value and what is allowed.
* :meth:`Space.repair` makes a *proposal* legal (clamps it into bounds, rounds integers). Each
  change it makes is returned as a :class:`Repair`, so the caller can record it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

Value = float | int


class Role(str, Enum):
    CAPACITY = "capacity"
    REGULARIZATION = "regularization"


class SpaceError(ValueError):
    """A value that the space does not allow. The message is one line, fit for a user."""


@dataclass(frozen=True)
class Param:
    """One tunable parameter of a stage."""

    name: str
    role: Role
    type: type  # int or float
    low: Value
    high: Value
    default: Value
    log: bool = False
    help: str = ""

    def allowed(self) -> str:
        kind = "an integer" if self.type is int else "a number"
        scale = ", log scale" if self.log else ""
        return f"{kind} in [{_fmt(self.low)}, {_fmt(self.high)}]{scale}"

    def check(self, value: Any) -> Value:
        """Return ``value`` as this parameter's type, or raise SpaceError. Never rewrites it."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpaceError(f"{self.name}={value!r} is not allowed: expected {self.allowed()}")
        if not math.isfinite(value):
            raise SpaceError(f"{self.name}={value!r} is not allowed: expected {self.allowed()}")
        if self.type is int:
            if float(value) != int(value):
                raise SpaceError(f"{self.name}={value!r} is not allowed: expected {self.allowed()}")
            value = int(value)
        else:
            value = float(value)
        if not (self.low <= value <= self.high):
            raise SpaceError(f"{self.name}={_fmt(value)} is out of range: expected {self.allowed()}")
        return value

    def clamp(self, value: Value) -> Value:
        v = min(max(float(value), float(self.low)), float(self.high))
        return int(round(v)) if self.type is int else v


@dataclass(frozen=True)
class Repair:
    """A change made to a proposal to make it legal; recorded, never silent."""

    param: str
    before: Any
    after: Any
    reason: str


@dataclass(frozen=True)
class Transition:
    """The change of parameters from a parent stage to a child stage."""

    changes: dict[str, tuple[Value, Value]]  # name -> (from, to)
    reason: str = ""
    proposed_by: str = ""
    repairs: tuple[Repair, ...] = ()

    @classmethod
    def between(cls, parent: Mapping[str, Value], child: Mapping[str, Value], reason: str = "",
                proposed_by: str = "", repairs: Iterable[Repair] = ()) -> Transition:
        changes = {k: (parent.get(k), v) for k, v in child.items() if parent.get(k) != v}
        return cls(changes=changes, reason=reason, proposed_by=proposed_by, repairs=tuple(repairs))

    def apply(self, params: Mapping[str, Value]) -> dict[str, Value]:
        out = dict(params)
        out.update({k: to for k, (_, to) in self.changes.items()})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "changes": {k: {"from": a, "to": b} for k, (a, b) in self.changes.items()},
            "reason": self.reason,
            "proposed_by": self.proposed_by,
            "repairs": [r.__dict__ for r in self.repairs],
        }


@dataclass(frozen=True)
class Space:
    """An ordered set of parameters with their bounds and defaults."""

    params: tuple[Param, ...]
    _by_name: dict[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.params})

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> Param:
        try:
            return self._by_name[name]
        except KeyError:
            raise SpaceError(f"unknown parameter {name!r}: allowed are {', '.join(self.names)}") from None

    def __iter__(self):
        return iter(self.params)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def by_role(self, role: Role) -> list[Param]:
        return [p for p in self.params if p.role is role]

    def defaults(self) -> dict[str, Value]:
        return {p.name: p.default for p in self.params}

    def with_defaults(self, **defaults: Value) -> Space:
        """The same space with other defaults (a task sets its own response length, say)."""
        params = []
        for p in self.params:
            if p.name in defaults:
                p = replace(p, default=p.check(defaults[p.name]))
            params.append(p)
        unknown = set(defaults) - set(self.names)
        if unknown:
            self[sorted(unknown)[0]]  # raises a SpaceError naming it
        return Space(tuple(params))

    def validate(self, values: Mapping[str, Any], *, where: str = "") -> dict[str, Value]:
        """Check user input: every key known, every value allowed. Missing keys take defaults."""
        out = self.defaults()
        for name, value in values.items():
            try:
                out[name] = self[name].check(value)
            except SpaceError as e:
                raise SpaceError(f"{where}{e}") from None
        return out

    def repair(self, values: Mapping[str, Any], reason_prefix: str = "") -> tuple[dict[str, Value], list[Repair]]:
        """Make a proposal legal. Unknown names are dropped, values clamped; each fix is a Repair."""
        out: dict[str, Value] = {}
        repairs: list[Repair] = []
        for name, value in values.items():
            if name not in self:
                repairs.append(Repair(name, value, None, f"{reason_prefix}unknown parameter dropped"))
                continue
            p = self[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                repairs.append(Repair(name, value, p.default, f"{reason_prefix}not a number, set to default"))
                out[name] = p.default
                continue
            fixed = p.clamp(value)
            if fixed != value:
                why = (f"clamped to [{_fmt(p.low)}, {_fmt(p.high)}]" if not p.low <= value <= p.high
                       else "rounded to an integer")
                repairs.append(Repair(name, value, fixed, reason_prefix + why))
            out[name] = fixed
        return out, repairs


def params_key(params: Mapping[str, Any], sig_digits: int | None = None) -> tuple[tuple[str, float], ...]:
    """A parameter set as an order-free, hashable key: proposers use it to spot duplicates.
    ``sig_digits`` rounds floats first, so that 1e-4 * 1.5 and 0.00015 compare equal."""
    def v(x: Any) -> float:
        return float(f"{float(x):.{sig_digits}g}") if sig_digits is not None else float(x)

    return tuple(sorted((k, v(x)) for k, x in params.items()))


def _fmt(v: Value) -> str:
    if isinstance(v, float) and (abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3)):
        return f"{v:.0e}"
    return f"{v:g}" if isinstance(v, float) else str(v)


# The default space. Bounds are wide enough for real models; defaults suit the tiny built-in models
# (a post-SFT tiny model learns at 1e-4 and is destroyed by 1e-3; see the README's task table).
DEFAULT_SPACE = Space((
    Param("max_completion_length", Role.CAPACITY, int, 1, 4096, 32, log=True,
          help="Most tokens generated per completion; longer answers are truncated."),
    Param("num_generations", Role.CAPACITY, int, 2, 64, 8, log=True,
          help="Group size G: completions sampled per prompt."),
    Param("difficulty", Role.CAPACITY, int, 1, 3, 2,
          help="Task difficulty of the training problems (1 easiest); evaluation stays on the task's level."),
    Param("learning_rate", Role.REGULARIZATION, float, 1e-7, 1e-2, 1e-4, log=True,
          help="AdamW learning rate, constant within a stage."),
    Param("beta", Role.REGULARIZATION, float, 0.0, 1.0, 0.0,
          help="KL coefficient against the reference model (0 loads no reference)."),
    Param("entropy_coef", Role.REGULARIZATION, float, 0.0, 1.0, 0.0,
          help="Entropy bonus coefficient."),
    Param("epsilon", Role.REGULARIZATION, float, 0.01, 1.0, 0.2,
          help="Lower clip range of the importance ratio."),
    Param("epsilon_high", Role.REGULARIZATION, float, 0.01, 1.0, 0.28,
          help="Upper clip range (DAPO clip-higher)."),
    Param("temperature", Role.REGULARIZATION, float, 0.05, 3.0, 1.0,
          help="Sampling temperature of rollouts (also scales the training logits, as in TRL)."),
))

# The parameters whose defaults each task sets (``llmzero.tasks.task_space``): the others share one default on
# every task, so a value's distance from it means the same on any task.
TASK_DEFAULTS = ("max_completion_length", "difficulty")


# Where searches *sample* (random search, PBT's resampling): the neighbourhood that works, narrower
# than the legal bounds. From the tiny-task measurements (lr >= 3e-4 hurts and 1e-3 destroys a tiny
# post-SFT model; entropy_coef 0.1 blows entropy up; temperature 0.5 collapses it) and public GRPO
# recipes (beta 0-0.04, clip 0.2/0.28, G 8-16). Proposals outside these ranges are still legal.
SEARCH_RANGES: dict[str, tuple[float, float]] = {
    "learning_rate": (2.5e-5, 4e-4),
    "beta": (0.0, 0.05),
    "entropy_coef": (0.0, 0.02),
    "epsilon": (0.1, 0.3),
    "epsilon_high": (0.2, 0.4),
    "temperature": (0.7, 1.3),
    "num_generations": (4, 16),
}
