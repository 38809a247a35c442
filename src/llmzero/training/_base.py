"""The stage-runner contract and what a stage returns.

``StageRunner.run_stage`` is called once per node of the search: it trains one stage from a parent
checkpoint (or the base model), evaluates the result on the validation split and saves a resumable
checkpoint. It never raises for a stage that goes wrong: failure is data (``status == "failed"``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from llmzero.strategy import Stage, StageMode

STAGE_INFO = "llmzero_stage.json"  # written into every finished checkpoint, last


class CheckpointError(ValueError):
    """A parent checkpoint that is missing or unusable; one line naming the problem."""


@dataclass
class Cost:
    steps: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    # Wall time per phase: model_load, trainer_build, training, evaluation, checkpoint_save.
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def compute(self) -> int:
        """The budget unit shared by every method: GRPO steps times generated tokens per step,
        which is simply the generated tokens summed over the stage."""
        return self.generated_tokens


@dataclass
class StageResult:
    status: str  # "complete" or "failed"
    stage: dict[str, Any]
    seed: int
    parent: str | None
    checkpoint: str | None = None
    start_step: int = 0  # cumulative GRPO steps before this stage (along the path)
    end_step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)  # TRL's metric names, one row per log
    val_score: float | None = None
    val_samples: list[dict[str, str]] = field(default_factory=list)  # a few greedy completions
    cost: Cost = field(default_factory=Cost)
    error: str | None = None
    draws: list[dict[str, Any]] = field(default_factory=list)  # a stage of several draws: each one's seed,
    # val score, tokens and whether the soup took it (``llmzero.training.soup.run_draws``)

    @property
    def ok(self) -> bool:
        return self.status == "complete"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StageResult:
        d = dict(d)
        d["cost"] = Cost(**d.get("cost", {}))
        return cls(**d)


class StageRunner(Protocol):
    def run_stage(self, parent: str | None, stage: Stage, out_dir: str, seed: int,
                  token_limit: int | None = None) -> StageResult:
        """Train ``stage`` from ``parent`` (a checkpoint written by an earlier stage; None means the
        base model) into ``out_dir``. Called by an executor, in a worker process. With
        ``token_limit`` the stage ends early, checkpoint and all, before a step that could take it past
        that many generated tokens: this is how a search never overspends its budget."""


def read_stage_info(path: str | Path) -> dict[str, Any]:
    p = Path(path) / STAGE_INFO
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a finished llmzero stage ({STAGE_INFO}: "
                              f"{e.__class__.__name__})") from None


def locate_checkpoint(path: str, nodes_dir: str | Path) -> str:
    """``path`` as recorded, or the same node's checkpoint in ``nodes_dir`` (a run's ``nodes/``) when the
    recorded path no longer leads to it. A run's stages sit side by side in its ``nodes/`` and record each
    other by path; a path recorded relative to the directory a search ran from, or inside a run directory
    that was moved since, is found again by its node's name."""
    if Path(path).is_dir():
        return path
    moved = Path(nodes_dir) / Path(path).name
    return str(moved) if Path(path).parent.name == "nodes" and moved.is_dir() else path


def locate_soup(path: str | None, run_dir: str | Path) -> str | None:
    """A search's final weight soup as recorded, or ``run_dir``'s own ``soup/`` when the recorded path no
    longer leads to it (the run directory was moved or copied since, like ``locate_checkpoint``)."""
    if path is None or Path(path).is_dir():
        return path
    here = Path(run_dir) / "soup"
    return str(here) if Path(path).name == "soup" and here.is_dir() else path


def check_checkpoint(path: str | Path, mode: StageMode = StageMode.CONTINUE) -> dict[str, Any]:
    """Check that ``path`` is a whole checkpoint that a stage in ``mode`` can start from.

    Returns its stage info. Reads headers only, so it is cheap enough for input validation.
    """
    p = Path(path)
    if not p.is_dir():
        raise CheckpointError(f"checkpoint {str(p)!r} does not exist")
    info = read_stage_info(p)
    needed = ["config.json", "model.safetensors", "trainer_state.json"]
    if mode is StageMode.CONTINUE:
        needed += ["optimizer.pt", "scheduler.pt"]
    for name in needed:
        if not (p / name).is_file():
            raise CheckpointError(f"checkpoint {str(p)!r} is missing {name}")
    try:
        json.loads((p / "trainer_state.json").read_text())["global_step"]
    except (OSError, ValueError, KeyError):
        raise CheckpointError(f"checkpoint {str(p)!r} has a corrupt trainer_state.json") from None
    try:
        from safetensors import safe_open

        with safe_open(str(p / "model.safetensors"), framework="pt") as f:
            keys = list(f.keys())
        if not keys:
            raise ValueError("no tensors")
    except Exception as e:  # safetensors raises its own error types for bad headers
        raise CheckpointError(f"checkpoint {str(p)!r} has a corrupt model.safetensors ({e})") from None
    return info
