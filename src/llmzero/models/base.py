"""The base model: a supervised warm start of a tiny model on the task's demonstrations.

GRPO needs a policy that is sometimes right: a random model never earns a reward. The base model is
trained with TRL's SFTTrainer on prompt + gold completion (loss on the completion only) until its
greedy validation accuracy enters a target band, so that RL has room to improve it. It is
deterministic by seed and cached by a hash of everything that built it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from llmzero.cache import cache_root, content_hash
from llmzero.models.generate import greedy_generate
from llmzero.models.tiny import ModelError, TinyModelConfig, build_tiny, preset
from llmzero.tasks import Task, accuracy

log = logging.getLogger(__name__)

BASE_INFO = "llmzero_base.json"


@dataclass(frozen=True)
class SFTSettings:
    target_accuracy: float = 0.25  # stop once greedy val accuracy reaches this
    max_steps: int = 3000
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    eval_every: int = 25
    eval_size: int = 200  # val examples used for the stop rule


@dataclass(frozen=True)
class BaseInfo:
    path: str
    task: str
    model: dict[str, Any]
    seed: int
    sft_steps: int
    val_accuracy: float
    test_accuracy: float
    seconds: float
    cached: bool = False


def base_key(task: Task, model_cfg: TinyModelConfig, seed: int, sft: SFTSettings) -> str:
    return content_hash({"task": task.identity(), "model": model_cfg.to_dict(), "seed": seed, "sft": asdict(sft)})


def build_base(task: Task, model: str | TinyModelConfig = "s", seed: int = 0,
               sft: SFTSettings = SFTSettings(), root: Path | None = None,
               progress=None) -> BaseInfo:
    """Build (or fetch from the cache) the base model for ``task``; returns where it is and how good.

    ``progress(step, val_accuracy)`` is called at every evaluation when given.
    """
    cfg = preset(model) if isinstance(model, str) else model
    root = root or cache_root() / "base"
    out = root / f"{task.name.replace(':', '_')}-{base_key(task, cfg, seed, sft)}"
    info_path = out / BASE_INFO
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        return BaseInfo(**{**info, "path": str(out), "cached": True})

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".building-"))
    try:
        info = _train_base(task, cfg, seed, sft, tmp, progress)
        info_dict = {**asdict(info), "path": str(out)}
        (tmp / BASE_INFO).write_text(json.dumps(info_dict, indent=2))
        try:
            os.replace(tmp, out)  # atomic: readers see no base or a whole one
        except OSError:  # another process finished the same base first
            if not info_path.is_file():
                raise
        return BaseInfo(**info_dict)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _train_base(task: Task, cfg: TinyModelConfig, seed: int, sft: SFTSettings, out: Path, progress) -> BaseInfo:
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    t0 = time.perf_counter()
    model, tok = build_tiny(cfg, seed, out)
    train = task.split("train")
    val = list(task.split("val"))[: sft.eval_size]
    max_len = task.default_max_completion_length
    rows = [{"prompt": e.prompt, "completion": e.gold} for e in train]

    class StopInBand(TrainerCallback):
        """Greedy val accuracy every ``eval_every`` steps; stop once it reaches the target."""

        def __init__(self) -> None:
            self.last = 0.0

        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step % sft.eval_every == 0:
                self.last = accuracy(task, val, greedy_generate(model, tok, [e.prompt for e in val], max_len))
                if progress is not None:
                    progress(state.global_step, self.last)
                if self.last >= sft.target_accuracy:
                    control.should_training_stop = True

    stop = StopInBand()
    args = SFTConfig(
        output_dir=str(out / "sft"), max_steps=sft.max_steps, per_device_train_batch_size=sft.batch_size,
        learning_rate=sft.learning_rate, lr_scheduler_type="constant_with_warmup", warmup_steps=sft.warmup_steps,
        weight_decay=0.01, max_grad_norm=1.0, logging_steps=50, save_strategy="no", report_to="none",
        use_cpu=True, bf16=False, gradient_checkpointing=False, seed=seed, data_seed=seed, disable_tqdm=True,
        completion_only_loss=True, max_length=256, dataset_num_proc=None,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok,
                         callbacks=[stop])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    shutil.rmtree(out / "sft", ignore_errors=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    test = list(task.split("test"))
    test_acc = accuracy(task, test, greedy_generate(model, tok, [e.prompt for e in test], max_len))
    if stop.last < sft.target_accuracy:
        log.warning("%s: SFT stopped at %d steps with val accuracy %.3f, under the target %.2f",
                    task.name, trainer.state.global_step, stop.last, sft.target_accuracy)
    return BaseInfo(path=str(out), task=task.name, model=cfg.to_dict(), seed=seed,
                    sft_steps=trainer.state.global_step, val_accuracy=stop.last, test_accuracy=test_acc,
                    seconds=round(time.perf_counter() - t0, 2))


def check_model_dir(path: str | Path) -> Path:
    """A Hugging Face model directory that can be loaded, or a one-line ModelError."""
    p = Path(path)
    if not p.is_dir():
        raise ModelError(f"model directory {str(p)!r} does not exist")
    if not (p / "config.json").is_file():
        raise ModelError(f"model directory {str(p)!r} has no config.json: not a Hugging Face model directory")
    if not any((p / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        raise ModelError(f"model directory {str(p)!r} has no tokenizer files")
    return p
