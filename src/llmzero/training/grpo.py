"""The TRL backend of the stage runner: one GRPOTrainer per stage, resumed from the parent.

TRL's resume has three traps (see the project notes), all handled here:

* the parent's learning rate and logging cadence come back from the checkpoint and silently win:
  ``_ApplyStage`` rewrites them after the restore;
* ``max_steps`` is cumulative: it is set to the parent's step plus the stage's steps;
* temperature is baked in when the trainer is built: every stage builds a new trainer.

Stage modes:

* continue: the policy is loaded from the KL reference directory and resumed from the parent, so
  the optimizer, scheduler and reference carry over;
* restart: the policy is loaded from the parent checkpoint itself with no resume, so the optimizer
  is fresh and the reference (when ``beta > 0``) is the parent.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from llmzero import runtime
from llmzero.models.generate import greedy_generate
from llmzero.models.tokenizer import load_tokenizer
from llmzero.strategy import Stage, StageMode
from llmzero.tasks import Task, accuracy, make_reward_func, model_prompts
from llmzero.training._base import (STAGE_INFO, CheckpointError, StageResult, check_checkpoint,
                                    locate_checkpoint)

log = logging.getLogger(__name__)


class StageDiverged(RuntimeError):
    pass


@dataclass(frozen=True)
class TrainingSettings:
    """Knobs of every stage that the search does not move."""

    prompts_per_step: int = 8  # completions per step = prompts_per_step * num_generations
    logging_steps: int = 1
    loss_type: str = "dapo"
    max_grad_norm: float = 1.0
    eval_batch_size: int = 256
    val_samples: int = 8  # greedy completions kept in the result, for reading


def _now() -> float:
    return time.perf_counter()


class GRPOStageRunner:
    """Runs stages of GRPO for one task and one base model (a tiny base or any HF model directory)."""

    def __init__(self, task: Task, base_dir: str, settings: TrainingSettings = TrainingSettings()):
        self.task = task
        self.base_dir = str(base_dir)
        self.settings = settings

    # -- the contract -----------------------------------------------------------------------------

    def run_stage(self, parent: str | None, stage: Stage, out_dir: str, seed: int,
                  token_limit: int | None = None) -> StageResult:
        if stage.scale != 1.0:  # the stage's update from the parent scaled (a line search along it)
            from llmzero.training.soup import run_scaled

            return run_scaled(self, self.task, parent, parent or self.base_dir, stage, out_dir, seed,
                              token_limit, self.settings.val_samples)
        if stage.merge:  # siblings from the parent, averaged: the soup is the stage's checkpoint
            from llmzero.training.soup import run_merged

            return run_merged(self, self.task, parent, stage, out_dir, seed, token_limit,
                              self.settings.val_samples)
        if stage.draws > 1:  # several draws from the parent, averaged: the soup is the stage's checkpoint
            from llmzero.training.soup import run_draws

            return run_draws(self, self.task, parent, stage, out_dir, seed, token_limit,
                             self.settings.val_samples)
        result = StageResult(status="failed", stage=stage.to_dict(), seed=seed, parent=parent)
        t0 = _now()
        tmp = Path(f"{out_dir}.tmp-{os.getpid()}")
        try:
            self._run(parent, stage, Path(out_dir), tmp, seed, result, token_limit)
            result.status = "complete"
        except Exception as e:  # failure is data: the caller gets the error, never the exception
            import torch

            if isinstance(e, (MemoryError, torch.OutOfMemoryError)):
                result.error = f"out of memory: {e}"
            elif isinstance(e, (StageDiverged, CheckpointError)):
                result.error = str(e)
            else:
                result.error = f"{e.__class__.__name__}: {e}"
            log.warning("stage into %s failed: %s\n%s", out_dir, result.error, traceback.format_exc(limit=6))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            result.cost.seconds = round(_now() - t0, 3)
        return result

    # -- one stage, top to bottom -----------------------------------------------------------------

    def _run(self, parent: str | None, stage: Stage, out: Path, tmp: Path, seed: int, result: StageResult,
             token_limit: int | None) -> None:
        import torch
        from datasets import Dataset
        from transformers import AutoModelForCausalLM, PrinterCallback
        from trl import GRPOConfig, GRPOTrainer

        p, phases = stage.params, result.cost.phases
        if out.exists():
            raise CheckpointError(f"output directory {str(out)!r} already exists")

        # Where the policy, the KL reference and the step counter come from.
        if parent is None:
            load_from, reference, resume, trl_start, path_start = self.base_dir, self.base_dir, None, 0, 0
        else:
            info = check_checkpoint(parent, stage.mode)
            path_start = int(info["end_step"])
            if stage.mode is StageMode.CONTINUE:
                reference = locate_checkpoint(info["reference"], Path(parent).parent)
                load_from, resume = reference, parent
                trl_start = json.loads((Path(parent) / "trainer_state.json").read_text())["global_step"]
            else:
                load_from, reference, resume, trl_start = parent, parent, None, 0
        result.start_step = path_start

        t = _now()
        tok = load_tokenizer(load_from)
        model = AutoModelForCausalLM.from_pretrained(load_from, dtype=torch.float32)
        phases["model_load"] = round(_now() - t, 4)

        t = _now()
        examples = self.task.split("train", int(p["difficulty"]))
        order = list(range(len(examples)))
        random.Random(f"{seed}:{path_start}").shuffle(order)  # each stage sees its own data order
        prompts = model_prompts(self.task, tok, [e.prompt for e in examples])  # a chat task's: templated
        dataset = Dataset.from_dict({"prompt": [prompts[i] for i in order], "idx": order})
        generated = [0]
        reward = make_reward_func(self.task, examples, on_completions=lambda n: generated.__setitem__(0, generated[0] + n))
        s = self.settings
        G = int(p["num_generations"])
        args = GRPOConfig(
            output_dir=str(tmp), max_steps=trl_start + stage.steps, seed=seed,
            learning_rate=float(p["learning_rate"]), lr_scheduler_type="constant", warmup_steps=0,
            beta=float(p["beta"]), entropy_coef=float(p["entropy_coef"]), epsilon=float(p["epsilon"]),
            epsilon_high=float(p["epsilon_high"]), temperature=float(p["temperature"]),
            num_generations=G, per_device_train_batch_size=s.prompts_per_step * G,
            max_completion_length=int(p["max_completion_length"]), loss_type=s.loss_type,
            max_grad_norm=s.max_grad_norm, logging_steps=s.logging_steps,
            save_strategy="steps", save_steps=trl_start + stage.steps, save_only_model=False,
            shuffle_dataset=False, ignore_data_skip=True, report_to="none",
            use_cpu=runtime.device() == "cpu", bf16=runtime.bf16(), gradient_checkpointing=False,
            disable_tqdm=True, dataloader_num_workers=0,
        )
        apply = _ApplyStage(float(p["learning_rate"]), seed, generated, token_limit)
        trainer = GRPOTrainer(model=model, reward_funcs=[reward], args=args, train_dataset=dataset,
                              processing_class=tok, callbacks=[apply])
        trainer.remove_callback(PrinterCallback)
        phases["trainer_build"] = round(_now() - t, 4)

        t = _now()
        trainer.train(resume_from_checkpoint=resume)
        phases["training"] = round(apply.last_step_end - t, 4)
        phases["checkpoint_save"] = round(apply.saved_at - apply.last_step_end, 4)

        trl_end = trainer.state.global_step
        result.end_step = path_start + (trl_end - trl_start)
        result.history = [
            {**{k: float(v) for k, v in row.items() if isinstance(v, (int, float))},
             "step": path_start + int(row["step"]) - trl_start}
            for row in trainer.state.log_history if "reward" in row and row["step"] > trl_start
        ]
        result.cost.steps = trl_end - trl_start
        result.cost.generated_tokens = generated[0]

        t = _now()
        val = self.task.split("val")
        outs = greedy_generate(trainer.model, tok, model_prompts(self.task, tok, [e.prompt for e in val]),
                               int(p["max_completion_length"]), batch_size=s.eval_batch_size)
        result.val_score = accuracy(self.task, val, outs)
        result.val_samples = [{"prompt": e.prompt, "completion": c, "gold": e.gold}
                              for e, c in list(zip(val, outs))[: s.val_samples]]
        phases["evaluation"] = round(_now() - t, 4)

        # Publish: the stage info goes in last, then one rename makes the checkpoint visible whole.
        ckpt = tmp / f"checkpoint-{trl_end}"
        info = {"end_step": result.end_step, "trl_step": trl_end, "reference": reference,
                "base": self.base_dir, "parent": parent, "stage": stage.to_dict(), "seed": seed,
                "val_score": result.val_score, "task": self.task.identity(), "settings": asdict(s),
                "device": runtime.device_name(), "bf16": runtime.bf16()}
        (ckpt / STAGE_INFO).write_text(json.dumps(info, indent=1, default=str))
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(ckpt, out)
        result.checkpoint = str(out)


class _ApplyStage(TrainerCallback):
    """Makes the stage's settings win over what a resumed checkpoint restores, watches for NaN, and
    ends the stage early (with a checkpoint) before a step that could take it past ``token_limit``
    generated tokens: one whose completions all ran to the length cap."""

    def __init__(self, lr: float, seed: int, generated: list[int], token_limit: int | None):
        self.lr, self.seed = lr, seed
        self.generated, self.token_limit = generated, token_limit
        self.seeded = False
        self.last_step_end = self.saved_at = _now()

    def on_train_begin(self, args, state, control, optimizer=None, lr_scheduler=None, **kw):
        # Runs after the optimizer, scheduler and state are restored from the parent.
        state.logging_steps, state.save_steps, state.eval_steps = args.logging_steps, args.save_steps, args.eval_steps
        if optimizer is not None:
            for g in optimizer.param_groups:
                g["lr"] = g["initial_lr"] = self.lr
        if lr_scheduler is not None:
            n = len(optimizer.param_groups) if optimizer is not None else 1
            lr_scheduler.base_lrs = [self.lr] * n
            lr_scheduler._last_lr = [self.lr] * n

    def on_step_begin(self, args, state, control, **kw):
        if not self.seeded:  # after the RNG restore: siblings from one parent sample independently
            from transformers import set_seed

            set_seed(self.seed + state.global_step)
            self.seeded = True

    def on_step_end(self, args, state, control, **kw):
        self.last_step_end = _now()
        worst_next = args.generation_batch_size * args.max_completion_length  # every completion capped
        if self.token_limit is not None and self.generated[0] + worst_next > self.token_limit:
            control.should_training_stop = True
            control.should_save = True

    def on_log(self, args, state, control, logs=None, **kw):
        for key in ("loss", "grad_norm", "reward"):
            v = (logs or {}).get(key)
            if isinstance(v, float) and not math.isfinite(v):
                raise StageDiverged(f"stage diverged: {key} is {v} at step {state.global_step}")

    def on_save(self, args, state, control, **kw):
        self.saved_at = _now()


def describe(result: StageResult) -> dict[str, Any]:
    """Key numbers of a stage for tables: last logged values of the main metrics."""
    last = result.history[-1] if result.history else {}
    keys = ("reward", "entropy", "frac_reward_zero_std", "completions/mean_length", "completions/clipped_ratio", "kl")
    return {k: last.get(k) for k in keys if k in last}
