"""Train a fixed multi-stage schedule end to end: what ``llmzero train`` and ``llmzero transfer`` run.

Each stage continues from the one before (or restarts, as the stage says); the final checkpoint is
scored once on the test split. The run directory gets the strategy, one checkpoint per stage,
``stages.json`` and ``summary.json``; the summary is written last, so a directory with a summary is a
finished run. A weight soup (``soup.yaml``, :class:`~llmzero.strategy.Soup`) trains each member's
stages the same way, then averages the members' weights (``train_soup``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmzero.strategy import Soup, Strategy
from llmzero.tasks import TaskSpec
from llmzero.training._base import StageResult

if TYPE_CHECKING:
    from llmzero.config import ExecutorConfig


def train_schedule(spec: TaskSpec, strategy: Strategy, out_dir: str | Path, base_dir: str, *,
                   base_test: float | None = None, parent: str | None = None, seed: int = 0, workers: int = 1,
                   prompts_per_step: int = 8, executor: ExecutorConfig | None = None, device: str = "auto",
                   on_stage: Callable[[int, StageResult], None] | None = None,
                   say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train ``strategy`` from ``parent`` (default: the base model) and score it on test.

    ``on_stage(i, result)`` is called after each stage, ``say(message)`` before each long step.
    Training stops at the first failed stage (its result is kept and the summary counts it).
    Stages run in a local pool of ``workers`` processes (0: in this process) on ``device`` (auto, cpu
    or cuda), or on the executor that ``executor`` names (its device).
    """
    from llmzero.training.evaluate import evaluate_checkpoint

    say = say or (lambda _msg: None)
    t0, out_dir = time.time(), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    strategy.save(out_dir / "strategy.yaml")
    results, ends = _train_paths(spec, (strategy,), out_dir, base_dir, parent, seed, workers,
                                 prompts_per_step, executor, device, on_stage, say)
    test = None
    if ends:
        say("scoring the final checkpoint on the test split")
        task, length = spec.build(), int(strategy.stages[-1].params["max_completion_length"])
        test = evaluate_checkpoint(task, ends[0][0], "test", length)
        if base_test is None:
            base_test = evaluate_checkpoint(task, base_dir, "test", length)
    return _finish(spec, out_dir, base_dir, results, t0, {
        "val_scores": [r["val_score"] for r in results], "test_score": test, "base_test_score": base_test})


def train_soup(spec: TaskSpec, soup: Soup, out_dir: str | Path, base_dir: str, *,
               base_test: float | None = None, parent: str | None = None, seed: int = 0, workers: int = 1,
               prompts_per_step: int = 8, executor: ExecutorConfig | None = None, device: str = "auto",
               on_stage: Callable[[int, StageResult], None] | None = None,
               say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train every member of ``soup`` from ``parent`` (default: the base model), average their weights
    in the members' order and score the average on validation and test (``RUN/soup/`` is the model).

    Members that begin with the same stages (the same parameters, steps, mode and seed) share those
    stages' checkpoints, so a soup of one search's nodes trains each node of their paths once, as the
    search did. Stops at the first failed stage, as ``train_schedule`` does.
    """
    from llmzero.training.evaluate import evaluate_checkpoint
    from llmzero.training.soup import Souper

    say = say or (lambda _msg: None)
    t0, out_dir = time.time(), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    soup.save(out_dir / "soup.yaml")
    results, ends = _train_paths(spec, soup.members, out_dir, base_dir, parent, seed, workers,
                                 prompts_per_step, executor, device, on_stage, say)
    val = test = None
    if ends:
        say("averaging the members and scoring the soup on the validation and test splits")
        task = spec.build()
        length = int(soup.members[0].stages[-1].params["max_completion_length"])
        souper = Souper(task, {f"m{j}": ckpt for j, (ckpt, _) in enumerate(ends)}, length)
        val = souper.score(list(souper.paths), "val")
        path = souper.save(list(souper.paths), out_dir / "soup")
        test = evaluate_checkpoint(task, str(path), "test", length)
        if base_test is None:
            base_test = evaluate_checkpoint(task, base_dir, "test", length)
    return _finish(spec, out_dir, base_dir, results, t0, {
        "members": len(soup.members), "val_scores": [v for _, v in ends], "soup_val_score": val,
        "test_score": test, "base_test_score": base_test})


def _train_paths(spec: TaskSpec, paths: Sequence[Strategy], out_dir: Path, base_dir: str, parent: str | None,
                 seed: int, workers: int, prompts_per_step: int, executor: ExecutorConfig | None,
                 device: str, on_stage: Callable[[int, StageResult], None] | None,
                 say: Callable[[str], None]) -> tuple[list[dict[str, Any]], list[tuple[str, float]]]:
    """Train each path's stages from ``parent`` into ``out_dir/stage-K``; a stage that paths share
    (the same stages before it, itself the same) is trained once. Returns every stage's result and
    each path's final checkpoint and validation score; no paths' ends after a failed stage."""
    from llmzero.execution import LocalPool, RunnerSpec, make_executor
    from llmzero.training.grpo import TrainingSettings

    results: list[dict[str, Any]] = []
    trained: dict[str, tuple[str, float]] = {}  # the stages of a path so far, as JSON -> checkpoint, val
    ends: list[tuple[str, float]] = []
    runner = RunnerSpec(spec, base_dir, TrainingSettings(prompts_per_step=prompts_per_step))
    total = len({json.dumps([s.to_dict() for s in p.stages[: i + 1]])
                 for p in paths for i in range(len(p.stages))})
    from llmzero.runtime import use_device

    with (make_executor(executor) if executor is not None else LocalPool(workers, device=device)) as pool:
        pool.start()
        device = executor.device if executor is not None else device
        use_device("cpu" if device == "cpu" else "auto")  # this process's own scoring (the test split)
        for p in paths:
            end: tuple[Any, Any] = (parent, None)
            for i, stage in enumerate(p.stages):
                key = json.dumps([s.to_dict() for s in p.stages[: i + 1]])
                if key not in trained:
                    say(f"stage {len(results) + 1}/{total}: {stage.steps} GRPO steps")
                    res = pool.run(runner, end[0], stage, str(out_dir / f"stage-{len(results)}"),
                                   stage.seed if stage.seed is not None else seed + i)
                    results.append(res.to_dict())
                    if on_stage is not None:
                        on_stage(len(results) - 1, res)
                    if not res.ok:
                        return results, []
                    trained[key] = (res.checkpoint, res.val_score)
                end = trained[key]
            ends.append(end)
    return results, ends


def _finish(spec: TaskSpec, out_dir: Path, base_dir: str, results: list[dict[str, Any]], t0: float,
            scores: dict[str, Any]) -> dict[str, Any]:
    """The summary (written last: a directory with a summary is a finished run) and stages.json."""
    summary = {
        "task": spec.name, "out": str(out_dir), "base": base_dir, "stages": len(results),
        "failed": sum(r["status"] == "failed" for r in results), **scores,
        "steps": sum(r["cost"]["steps"] for r in results),
        "generated_tokens": sum(r["cost"]["generated_tokens"] for r in results),
        "wall_seconds": round(time.time() - t0, 1),
    }
    (out_dir / "stages.json").write_text(json.dumps(results, indent=1))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary
