"""Stages and strategies: what a run trains, stage by stage, and its YAML form.

A schedule file lists stages. Each stage names only what it changes; the rest is carried over from
the stage before (the first stage starts from the space's defaults)::

    stages:
      - steps: 100
        params: {learning_rate: 1e-4}
      - steps: 100
        mode: restart            # fresh optimizer, KL reference reset to the parent
        params: {max_completion_length: 24, entropy_coef: 0.01}
      - steps: 100
        draws: 4                 # four GRPO draws from the same parent, averaged (a greedy weight soup)
      - steps: 100
        params: {learning_rate: 2e-4}
        merge:                   # sibling stages from the same parent (same steps and mode, their own
          - {params: {learning_rate: 5e-5}, seed: 7}   # parameters and seeds), all averaged with it
      - steps: 100
        scale: 0.5               # the stage's update from its parent halved: parent + 0.5 (trained - parent)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from llmzero.space import DEFAULT_SPACE, Space, SpaceError, Value

MAX_STAGE_STEPS = 1_000_000
MAX_DRAWS = 16
MAX_SCALE = 4.0


class StageMode(str, Enum):
    """How a stage starts from its parent checkpoint."""

    CONTINUE = "continue"  # keep the optimizer state, the scheduler and the KL reference
    RESTART = "restart"  # warm restart: fresh optimizer, KL reference reset to the parent


_NO_STAGES = "expected a mapping with a non-empty list 'stages'"


class StrategyError(ValueError):
    """A schedule that cannot be used; the message is one line naming the problem."""


@dataclass(frozen=True)
class Stage:
    """One contiguous block of GRPO steps with fixed parameters."""

    params: dict[str, Value]
    steps: int
    mode: StageMode = StageMode.CONTINUE
    seed: int | None = None  # a replayed strategy trains each stage with the seed it was found with
    draws: int = 1  # > 1: trained that many times from the parent (other seeds), the draws averaged
    # siblings averaged with this stage (a search's sibling soup): each trained from the same parent with
    # the same steps and mode but its own parameters and seed; the checkpoint is the uniform average
    merge: tuple[Stage, ...] = ()
    # the trained (or averaged) model's update from the parent, scaled: parent + scale * (model - parent)
    scale: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"steps": self.steps, "mode": self.mode.value, "params": dict(self.params)}
        if self.seed is not None:
            d["seed"] = self.seed
        if self.draws != 1:
            d["draws"] = self.draws
        if self.merge:
            d["merge"] = [{"params": dict(m.params), **({"seed": m.seed} if m.seed is not None else {})}
                          for m in self.merge]
        if self.scale != 1.0:
            d["scale"] = self.scale
        return d

    def members(self) -> list[Stage]:
        """The stages whose average this stage is: itself first, then its ``merge`` siblings."""
        siblings = (replace(self, params=m.params, seed=m.seed, merge=(), scale=1.0) for m in self.merge)
        return [replace(self, merge=(), scale=1.0), *siblings]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, space: Space = DEFAULT_SPACE,
                  previous: Mapping[str, Value] | None = None, where: str = "stage") -> Stage:
        if not isinstance(raw, Mapping):
            raise StrategyError(f"{where}: expected a mapping with steps, params and mode, got {raw!r}")
        unknown = set(raw) - {"steps", "params", "mode", "seed", "draws", "merge", "scale"}
        if unknown:
            raise StrategyError(f"{where}: unknown field {sorted(unknown)[0]!r}: allowed are steps, params, "
                                "mode, seed, draws, merge, scale")
        scale = raw.get("scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= MAX_SCALE:
            raise StrategyError(f"{where}.scale={scale!r} is not allowed: expected a number in "
                                f"(0, {MAX_SCALE:g}]")
        seed = _seed(raw, where)
        draws = raw.get("draws", 1)
        if isinstance(draws, bool) or not isinstance(draws, int) or not 1 <= draws <= MAX_DRAWS:
            raise StrategyError(f"{where}.draws={draws!r} is not allowed: expected an integer in "
                                f"[1, {MAX_DRAWS}]")
        steps = raw.get("steps")
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STAGE_STEPS:
            raise StrategyError(f"{where}.steps={steps!r} is not allowed: expected an integer in "
                                f"[1, {MAX_STAGE_STEPS}]")
        mode = raw.get("mode", StageMode.CONTINUE.value)
        try:
            mode = StageMode(mode)
        except ValueError:
            raise StrategyError(f"{where}.mode={mode!r} is not allowed: expected one of "
                                f"{', '.join(m.value for m in StageMode)}") from None
        merged = _params(raw, space, previous, where)
        merge = raw.get("merge") or []
        if not isinstance(merge, list) or len(merge) > MAX_DRAWS - 1:
            raise StrategyError(f"{where}.merge={merge!r} is not allowed: expected a list of at most "
                                f"{MAX_DRAWS - 1} sibling stages, each with params and seed")
        siblings = []
        for j, m in enumerate(merge):
            at = f"{where}.merge[{j}]"
            if not isinstance(m, Mapping) or set(m) - {"params", "seed"}:
                raise StrategyError(f"{at}={m!r} is not allowed: expected a mapping with params and seed "
                                    "(steps and mode are the stage's)")
            siblings.append(cls(params=_params(m, space, previous, at), steps=steps, mode=mode,
                                seed=_seed(m, at), draws=draws))
        return cls(params=merged, steps=steps, mode=mode, seed=seed, draws=draws, merge=tuple(siblings),
                   scale=float(scale))


def _seed(raw: Mapping[str, Any], where: str) -> int | None:
    seed = raw.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise StrategyError(f"{where}.seed={seed!r} is not allowed: expected an integer >= 0")
    return seed


def _params(raw: Mapping[str, Any], space: Space, previous: Mapping[str, Value] | None,
            where: str) -> dict[str, Value]:
    """A stage's full parameters: ``previous`` (or the space's defaults) updated with what it names."""
    params = raw.get("params") or {}
    if not isinstance(params, Mapping):
        raise StrategyError(f"{where}.params: expected a mapping of parameter names to values, "
                            f"got {params!r}")
    merged = dict(previous) if previous is not None else space.defaults()
    try:
        checked = space.validate(params, where=f"{where}.params.")
    except SpaceError as e:
        raise StrategyError(str(e)) from None
    merged.update({k: checked[k] for k in params})
    return merged


@dataclass(frozen=True)
class Strategy:
    """A sequence of stages along a root-to-node path."""

    stages: tuple[Stage, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.meta)
        out["stages"] = [s.to_dict() for s in self.stages]
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        _save_yaml(self.to_dict(), path)

    @classmethod
    def from_dict(cls, raw: Any, *, space: Space = DEFAULT_SPACE) -> Strategy:
        if not isinstance(raw, Mapping) or not isinstance(raw.get("stages"), list) or not raw["stages"]:
            raise StrategyError(f"schedule: {_NO_STAGES}")
        stages: list[Stage] = []
        previous: Mapping[str, Value] | None = None
        for i, s in enumerate(raw["stages"]):
            stage = Stage.from_dict(s, space=space, previous=previous, where=f"stages[{i}]")
            stages.append(stage)
            previous = stage.params
        meta = {k: v for k, v in raw.items() if k != "stages"}
        return cls(stages=tuple(stages), meta=meta)

    @classmethod
    def from_yaml(cls, text: str, *, space: Space = DEFAULT_SPACE) -> Strategy:
        return cls.from_dict(_parse_yaml(text), space=space)

    @classmethod
    def load(cls, path: str | Path, *, space: Space = DEFAULT_SPACE) -> Strategy:
        text = _read(path)
        try:
            return cls.from_yaml(text, space=space)
        except StrategyError as e:
            raise StrategyError(f"{Path(path).name}: {e}") from None


@dataclass(frozen=True)
class Soup:
    """A weight soup as a recipe: each member strategy is trained from the same start (members that
    share first stages share their checkpoints), then the members' weights are averaged uniformly.
    A search with ``search.soup`` writes one (``soup.yaml``) when its final model is a soup::

        val_score: 0.41          # the soup's, as the search measured it
        soup:
          - {node: n5, val_score: 0.39, stages: [...]}
          - {node: n3, val_score: 0.37, stages: [...]}
    """

    members: tuple[Strategy, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**self.meta, "soup": [m.to_dict() for m in self.members]}

    def save(self, path: str | Path) -> None:
        _save_yaml(self.to_dict(), path)

    @classmethod
    def from_dict(cls, raw: Any, *, space: Space = DEFAULT_SPACE) -> Soup:
        members = raw.get("soup") if isinstance(raw, Mapping) else None
        if not isinstance(members, list) or len(members) < 2:
            raise StrategyError(f"soup={members!r} is not allowed: expected a list of at least 2 strategies")
        out = []
        for i, m in enumerate(members):
            try:
                out.append(Strategy.from_dict(m, space=space))
            except StrategyError as e:
                msg = str(e).removeprefix("schedule: ")
                raise StrategyError(f"soup[{i}]{'.' if msg.startswith('stages[') else ': '}{msg}") from None
        return cls(members=tuple(out), meta={k: v for k, v in raw.items() if k != "soup"})


def load_schedule(path: str | Path, *, space: Space = DEFAULT_SPACE) -> Strategy | Soup:
    """A schedule file: one strategy (``stages``), or a weight soup of several (``soup``)."""
    text = _read(path)
    try:
        raw = _parse_yaml(text)
        if isinstance(raw, Mapping) and "soup" in raw:
            return Soup.from_dict(raw, space=space)
        if not isinstance(raw, Mapping) or "stages" not in raw:
            raise StrategyError(f"schedule: {_NO_STAGES} (one strategy) or 'soup' (a weight soup of several)")
        return Strategy.from_dict(raw, space=space)
    except StrategyError as e:
        raise StrategyError(f"{Path(path).name}: {e}") from None


def schedule_meta(path: str | Path) -> dict[str, Any]:
    """What a schedule file says besides its stages: a search's export names its task (``task``, and the
    whole task config as ``task_config``), model, base seed and training settings; {} for a hand-written one."""
    try:
        raw = _parse_yaml(_read(path))
    except StrategyError as e:
        raise StrategyError(f"{Path(path).name}: {e}") from None
    if not isinstance(raw, Mapping):
        return {}
    return {k: v for k, v in raw.items() if k not in ("stages", "soup")}


def _read(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise StrategyError(f"schedule file {str(path)!r} does not exist")
    return path.read_text()


def yaml_problem(e: yaml.YAMLError) -> str:
    """Where and why a YAML text does not parse, for a one-line error: " at line L, column C: why"."""
    mark = getattr(e, "problem_mark", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"{at}: {problem}"


def _parse_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise StrategyError(f"schedule does not parse as YAML{yaml_problem(e)}") from None


def _save_yaml(obj: dict[str, Any], path: str | Path) -> None:
    """Written whole or not at all: a temporary file, then one rename."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(obj, sort_keys=False))
    tmp.replace(path)


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` as a float (YAML 1.1 wants ``1.0e-4``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                 |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                 |\.[0-9_]+(?:[eE][-+][0-9]+)?
                 |[-+]?\.(?:inf|Inf|INF)
                 |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)
