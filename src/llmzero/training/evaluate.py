"""Held-out evaluation of a checkpoint: greedy decoding, graded by the task's scorer."""

from __future__ import annotations

from collections.abc import Sequence

from llmzero.models.generate import greedy_generate
from llmzero.models.tokenizer import load_tokenizer
from llmzero.tasks import Task, accuracy, model_prompts


def greedy_completions(path: str, prompts: Sequence[str], max_new_tokens: int,
                       batch_size: int = 256, task: Task | None = None) -> list[str]:
    """The greedy completions of the model in ``path`` for ``prompts``, on this process's device; the
    prompts of ``task`` if given (a chat task's rendered by the model's chat template)."""
    import torch
    from transformers import AutoModelForCausalLM

    from llmzero.runtime import device

    tok = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device())
    prompts = list(prompts) if task is None else model_prompts(task, tok, prompts)
    return greedy_generate(model, tok, prompts, max_new_tokens, batch_size=batch_size)


def evaluate_checkpoint(task: Task, path: str, split: str, max_new_tokens: int, batch_size: int = 256) -> float:
    """Greedy accuracy of the model in ``path`` on ``split`` ("val" or "test")."""
    examples = task.split(split)
    outs = greedy_completions(path, [e.prompt for e in examples], max_new_tokens, batch_size, task)
    return accuracy(task, examples, outs)
