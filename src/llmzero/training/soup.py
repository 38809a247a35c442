"""Weight soups: the final model as the average of the search's best checkpoints, and stages
trained as several draws whose average is the stage's checkpoint (``Stage.draws``), as siblings
averaged (``Stage.merge``) or with their update from the parent scaled (``Stage.scale``).

Every search chooses among GRPO draws as much as among parameters: two draws of one stage train
models a couple of points apart, and the nodes of one search all descend from the same base. Their
uniform weight average is often better than any one of them ("Model soups", Wortsman et al. 2022).
The greedy soup starts from the best node and adds each next best checkpoint if the validation
score of the average does not drop, so it is chosen on validation as the best node is, and is never
worse than it there. Costs evaluation only, no training.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmzero.tasks import Task, accuracy, model_prompts

if TYPE_CHECKING:
    from llmzero.strategy import Stage
    from llmzero.training._base import StageResult, StageRunner

WEIGHTS = "model.safetensors"


def average(state_dicts: Sequence[dict[str, Any]], coefs: Sequence[float] | None = None) -> dict[str, Any]:
    """The uniform average, in float32, of state dicts with the same keys and shapes; with ``coefs``,
    the linear combination with those coefficients instead (they sum to 1 for a point on the line
    through the models, e.g. ``[s, 1 - s]``: a child's update from its parent scaled by ``s``)."""
    if coefs is None:
        return {k: sum(sd[k].float() for sd in state_dicts) / len(state_dicts) for k in state_dicts[0]}
    return {k: sum(c * sd[k].float() for c, sd in zip(coefs, state_dicts)) for k in state_dicts[0]}


def greedy_soup(ids: Sequence[str], score: Callable[[list[str]], float]) -> tuple[list[str], float]:
    """Wortsman's greedy soup: ``ids`` best first; each is kept if the soup's score does not drop."""
    soup, best = [ids[0]], score([ids[0]])
    for i in ids[1:]:
        s = score(soup + [i])
        if s >= best:
            soup, best = soup + [i], s
    return soup, best


class Souper:
    """Scores averages of the checkpoints in ``paths`` (id -> model directory) on a task's splits,
    loading each checkpoint's weights once. The first path gives the architecture and tokenizer."""

    def __init__(self, task: Task, paths: dict[str, str], max_new_tokens: int):
        import torch
        from safetensors.torch import load_file
        from transformers import AutoModelForCausalLM

        from llmzero.models.tokenizer import load_tokenizer
        from llmzero.runtime import device

        first = next(iter(paths.values()))
        self.task, self.paths, self.length = task, dict(paths), max_new_tokens
        self.tokenizer = load_tokenizer(first)
        # scored on this process's device; the checkpoints' weights stay in memory, averaged on the CPU
        self.model = AutoModelForCausalLM.from_pretrained(first, dtype=torch.float32).to(device())
        self.weights = {i: load_file(str(Path(p) / WEIGHTS)) for i, p in paths.items()}

    def load(self, ids: Sequence[str], coefs: Sequence[float] | None = None) -> None:
        """Put the average of ``ids`` (or their combination with ``coefs``) into the model (a tied head
        is not in the files: kept as tied)."""
        self.model.load_state_dict(average([self.weights[i] for i in ids], coefs), strict=False)

    def score(self, ids: Sequence[str], split: str = "val", coefs: Sequence[float] | None = None) -> float:
        from llmzero.models.generate import greedy_generate

        self.load(ids, coefs)
        examples = self.task.split(split)
        outs = greedy_generate(self.model, self.tokenizer, self.prompts(examples), self.length)
        return accuracy(self.task, examples, outs)

    def prompts(self, examples: Sequence[Any]) -> list[str]:
        """What the model is prompted with for ``examples`` (a chat task's: templated)."""
        return model_prompts(self.task, self.tokenizer, [e.prompt for e in examples])

    def greedy(self, ids: Sequence[str]) -> tuple[list[str], float]:
        """The greedy soup of ``ids`` (best first) on the validation split."""
        return greedy_soup(list(ids), lambda s: self.score(s, "val"))

    def save(self, ids: Sequence[str], out: str | Path) -> Path:
        """The average of ``ids`` as a model directory at ``out``, written whole or not at all."""
        out = Path(out)
        self.load(ids)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            if out.exists():
                shutil.rmtree(out)
            os.replace(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out


PATH_SOUP = "soup.json"


def path_soup(task: Task, run_dir: str | Path, top: int) -> dict[str, Any] | None:
    """The final soup of a schedule trained in ``run_dir`` (``llmzero train``'s layout: ``stages.json`` and
    ``stage-K``), as a search's final soup: the greedy weight soup of its best stage by validation and up to
    ``top - 1`` more of its stages, best first, scored once on test; the model in ``run_dir/soup`` when it
    averages two or more. Built once and kept in ``run_dir/soup.json``; None when ``top`` < 2 or fewer than
    two stages have a checkpoint and a validation score."""
    run_dir = Path(run_dir)
    done = run_dir / PATH_SOUP
    if done.is_file():
        return json.loads(done.read_text())
    stages = json.loads((run_dir / "stages.json").read_text())
    scored = [(i, st) for i, st in enumerate(stages)
              if st.get("val_score") is not None and (run_dir / f"stage-{i}").is_dir()]
    if top < 2 or len(scored) < 2:
        return None
    scored.sort(key=lambda x: (-x[1]["val_score"], x[0]))
    ids = [f"stage-{i}" for i, _ in scored[:top]]
    length = int(scored[0][1]["stage"]["params"]["max_completion_length"])
    souper = Souper(task, {i: str(run_dir / i) for i in ids}, length)
    members, val = souper.greedy(ids)
    rec = {"candidates": ids, "stages": members, "val_score": val, "test_score": souper.score(members, "test"),
           "path": str(souper.save(members, run_dir / "soup")) if len(members) > 1 else None}
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(rec, indent=1) + "\n")
    os.replace(tmp, done)
    return rec


def averaged_checkpoint(src: str | Path, weights: Sequence[dict[str, Any]], out: str | Path,
                        coefs: Sequence[float] | None = None) -> Path:
    """A copy of the checkpoint ``src`` (its optimizer, scheduler and trainer state) at ``out`` whose
    model is the uniform average of ``weights`` (a single one: ``src``'s own), or their combination
    with ``coefs``."""
    from safetensors.torch import save_file

    out = Path(out)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(src, out)
    if len(weights) > 1:
        save_file(average(weights, coefs), str(out / WEIGHTS), metadata={"format": "pt"})
    return out


def scaled_coefs(scale: float) -> list[float]:
    """The coefficients of (child, parent) that scale the child's update from its parent by ``scale``:
    ``parent + scale * (child - parent)``."""
    return [scale, 1.0 - scale]


def draw_seed(seed: int, draw: int) -> int:
    """The seed of a stage's ``draw``-th draw (counting from 0): the stage's own seed for the first."""
    return seed if draw == 0 else zlib.crc32(f"{seed}:draw{draw}".encode()) % (2**31)


def run_draws(runner: StageRunner, task: Task, parent: str | None, stage: Stage, out_dir: str, seed: int,
              token_limit: int | None = None, samples: int = 0) -> StageResult:
    """Train ``stage.draws`` GRPO draws of ``stage`` from ``parent`` (seeds ``draw_seed``) and publish
    their greedy soup at ``out_dir``: the draws best first by validation score, each added to the
    uniform average if the validation score does not drop. The checkpoint is the best draw's (its
    optimizer, scheduler, trainer state and step count carry on) with the soup's weights, so the
    next stage continues from the average. The result reports the soup's validation score, the best
    draw's training curves and the cost of all the draws; a draw that fails fails the stage.

    Draws of one parent share its basin, so their average is often better than each (weight soups,
    Wortsman et al. 2022); averaging them at every stage lets the next stage start from the average.
    """
    members = [dataclasses.replace(stage, seed=draw_seed(seed, d), draws=1) for d in range(stage.draws)]
    return _soup_stage(runner, task, parent, stage, members, out_dir, seed, token_limit, samples, greedy=True)


def run_merged(runner: StageRunner, task: Task, parent: str | None, stage: Stage, out_dir: str, seed: int,
               token_limit: int | None = None, samples: int = 0) -> StageResult:
    """Train ``stage`` and its ``merge`` siblings from ``parent`` (each with its own parameters and
    seed) and publish their uniform average at ``out_dir``: the first's checkpoint (optimizer,
    scheduler, trainer state) with the average's weights. This rebuilds a search's sibling soup
    (``search.sibling_soup``), whose members the search chose greedily; all of them are averaged. A
    sibling without a seed gets ``draw_seed(seed, j)``."""
    members = stage.members()
    for j, m in enumerate(members):
        if j == 0 or m.seed is None:
            members[j] = dataclasses.replace(m, seed=seed if j == 0 else draw_seed(seed, j))
    return _soup_stage(runner, task, parent, stage, members, out_dir, seed, token_limit, samples,
                       greedy=False)


def _soup_stage(runner: StageRunner, task: Task, parent: str | None, stage: Stage, members: list[Stage],
                out_dir: str, seed: int, token_limit: int | None, samples: int, *,
                greedy: bool) -> StageResult:
    """Train ``members`` from ``parent`` one by one and publish their soup at ``out_dir`` (``greedy``:
    the greedy soup, best first; else the average of all, the first's checkpoint carrying on)."""
    from llmzero.training._base import STAGE_INFO, StageResult

    k, out = len(members), Path(out_dir)
    result = StageResult(status="failed", stage=stage.to_dict(), seed=seed, parent=parent)
    if out.exists():
        result.error = f"output directory {str(out)!r} already exists"
        return result
    dirs = [Path(f"{out_dir}.tmp-draw{d}") for d in range(k)]  # the search's requeue removes *.tmp-*
    tmp = Path(f"{out_dir}.tmp-soup")
    try:
        draws: list[StageResult] = []
        for d, (path, member) in enumerate(zip(dirs, members)):
            shutil.rmtree(path, ignore_errors=True)  # left by a run killed mid-stage
            limit = None if token_limit is None else max(1, token_limit // k)
            res = runner.run_stage(parent, member, str(path), member.seed, limit)
            draws.append(res)
            for key in ("steps", "generated_tokens", "seconds"):
                setattr(result.cost, key, getattr(result.cost, key) + getattr(res.cost, key))
            for phase, sec in res.cost.phases.items():
                result.cost.phases[phase] = round(result.cost.phases.get(phase, 0.0) + sec, 4)
            if not res.ok:
                result.error = f"{'draw' if greedy else 'member'} {d + 1} of {k}: {res.error}"
                return result
        t = time.perf_counter()
        order = list(range(k))
        if greedy:
            order.sort(key=lambda i: (-(draws[i].val_score or 0.0), i))
        best = draws[order[0]]
        souper = Souper(task, {str(i): str(draws[i].checkpoint) for i in order},
                        int(stage.params["max_completion_length"]))
        ids = [str(i) for i in order]
        members_in, val = souper.greedy(ids) if greedy else (ids, souper.score(ids, "val"))
        averaged_checkpoint(str(best.checkpoint), [souper.weights[i] for i in members_in], tmp)
        result.draws = [{"seed": m.seed, "val_score": draws[i].val_score,
                         "generated_tokens": draws[i].cost.generated_tokens, "in_soup": str(i) in members_in}
                        for i, m in enumerate(members)]
        info = json.loads((tmp / STAGE_INFO).read_text())
        info.update(stage=stage.to_dict(), seed=seed, val_score=val, draws=result.draws)
        (tmp / STAGE_INFO).write_text(json.dumps(info, indent=1, default=str))
        if samples:
            souper.load(members_in)
            result.val_samples = _val_samples(souper, task, samples)
        os.replace(tmp, out)
        result.cost.phases["soup"] = round(time.perf_counter() - t, 4)
        result.cost.seconds = round(result.cost.seconds + time.perf_counter() - t, 4)
        result.status, result.checkpoint, result.val_score = "complete", str(out), val
        result.start_step, result.end_step, result.history = best.start_step, best.end_step, best.history
    except Exception as e:  # failure is data, as in a single stage
        result.error = f"{e.__class__.__name__}: {e}"
    finally:
        for path in [*dirs, tmp]:
            shutil.rmtree(path, ignore_errors=True)
    return result


def run_scaled(runner: StageRunner, task: Task, parent: str | None, parent_model: str, stage: Stage,
               out_dir: str, seed: int, token_limit: int | None = None, samples: int = 0) -> StageResult:
    """Train ``stage`` from ``parent`` as if its ``scale`` were 1, then publish at ``out_dir`` the trained
    checkpoint (optimizer, scheduler, trainer state) with its update from the parent scaled:
    ``parent + scale * (trained - parent)``; ``parent_model`` is the parent's model directory (the
    base model's for a first stage). This rebuilds a search's scaled update (``search.scale_updates``):
    a line search along the stage's update, less than 1 toward the parent, more than 1 beyond."""
    from llmzero.training._base import STAGE_INFO, StageResult

    inner, tmp, out = Path(f"{out_dir}.tmp-unscaled"), Path(f"{out_dir}.tmp-scaled"), Path(out_dir)
    if out.exists():
        return StageResult(status="failed", stage=stage.to_dict(), seed=seed, parent=parent,
                           error=f"output directory {str(out)!r} already exists")
    shutil.rmtree(inner, ignore_errors=True)  # left by a run killed mid-stage
    result = runner.run_stage(parent, dataclasses.replace(stage, scale=1.0), str(inner), seed, token_limit)
    result.stage = stage.to_dict()
    try:
        if not result.ok:
            return result
        t = time.perf_counter()
        coefs = scaled_coefs(stage.scale)
        souper = Souper(task, {"stage": str(inner), "parent": parent_model},
                        int(stage.params["max_completion_length"]))
        val = souper.score(["stage", "parent"], "val", coefs)
        averaged_checkpoint(inner, [souper.weights["stage"], souper.weights["parent"]], tmp, coefs)
        info = json.loads((tmp / STAGE_INFO).read_text())
        info.update(stage=stage.to_dict(), val_score=val, unscaled_val_score=result.val_score)
        (tmp / STAGE_INFO).write_text(json.dumps(info, indent=1, default=str))
        if samples:
            result.val_samples = _val_samples(souper, task, samples)
        os.replace(tmp, out)
        result.cost.phases["scale"] = round(time.perf_counter() - t, 4)
        result.cost.seconds = round(result.cost.seconds + time.perf_counter() - t, 4)
        result.checkpoint, result.val_score = str(out), val
    except Exception as e:  # failure is data, as in a single stage
        result.status, result.checkpoint, result.error = "failed", None, f"{e.__class__.__name__}: {e}"
    finally:
        for path in (inner, tmp):
            shutil.rmtree(path, ignore_errors=True)
    return result


def _val_samples(souper: Souper, task: Task, samples: int) -> list[dict[str, str]]:
    """The first ``samples`` validation prompts with the souper's loaded model's greedy completions."""
    from llmzero.models.generate import greedy_generate

    val_split = task.split("val")[:samples]
    outs = greedy_generate(souper.model, souper.tokenizer, souper.prompts(val_split), souper.length)
    return [{"prompt": e.prompt, "completion": c, "gold": e.gold} for e, c in zip(val_split, outs)]
