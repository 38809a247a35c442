"""Held-out evaluation of a checkpoint: greedy decoding, graded by the task's scorer."""

from __future__ import annotations

from llmzero.models.generate import greedy_generate
from llmzero.models.tokenizer import load_tokenizer
from llmzero.tasks import Task, accuracy


def evaluate_checkpoint(task: Task, path: str, split: str, max_new_tokens: int, batch_size: int = 256) -> float:
    """Greedy accuracy of the model in ``path`` on ``split`` ("val" or "test")."""
    import torch
    from transformers import AutoModelForCausalLM

    tok = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    examples = task.split(split)
    outs = greedy_generate(model, tok, [e.prompt for e in examples], max_new_tokens, batch_size=batch_size)
    return accuracy(task, examples, outs)
