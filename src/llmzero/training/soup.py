"""Weight soups: the final model as the average of the search's best checkpoints.

Every search chooses among GRPO draws as much as among parameters: two draws of one stage train
models a couple of points apart, and the nodes of one search all descend from the same base. Their
uniform weight average is often better than any one of them ("Model soups", Wortsman et al. 2022).
The greedy soup starts from the best node and adds each next best checkpoint if the validation
score of the average does not drop, so it is chosen on validation as the best node is, and is never
worse than it there. Costs evaluation only, no training.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llmzero.tasks import Task, accuracy

WEIGHTS = "model.safetensors"


def average(state_dicts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The uniform average, in float32, of state dicts with the same keys and shapes."""
    return {k: sum(sd[k].float() for sd in state_dicts) / len(state_dicts) for k in state_dicts[0]}


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

        first = next(iter(paths.values()))
        self.task, self.paths, self.length = task, dict(paths), max_new_tokens
        self.tokenizer = load_tokenizer(first)
        self.model = AutoModelForCausalLM.from_pretrained(first, dtype=torch.float32)
        self.weights = {i: load_file(str(Path(p) / WEIGHTS)) for i, p in paths.items()}

    def load(self, ids: Sequence[str]) -> None:
        """Put the average of ``ids`` into the model (a tied head is not in the files: kept as tied)."""
        self.model.load_state_dict(average([self.weights[i] for i in ids]), strict=False)

    def score(self, ids: Sequence[str], split: str = "val") -> float:
        from llmzero.models.generate import greedy_generate

        self.load(ids)
        examples = self.task.split(split)
        outs = greedy_generate(self.model, self.tokenizer, [e.prompt for e in examples], self.length)
        return accuracy(self.task, examples, outs)

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
