"""The Task contract: splits, prompts, TRL reward functions and a held-out scorer.

A task is used at three moments:

* when the base model is built: :meth:`Task.split` ("train") gives prompt + gold demonstrations;
* in every GRPO stage: :meth:`Task.reward_funcs` gives TRL reward functions over the training split
  at the stage's difficulty;
* after every stage: :meth:`Task.score` grades greedy completions on "val" (searched on) and, once
  per finished search, on "test" (never searched on).

The three splits never share a prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

SPLITS = ("train", "val", "test")


class TaskError(ValueError):
    """A task that cannot be built as asked; the message is one line naming the problem."""


@dataclass(frozen=True)
class Example:
    """One problem: the prompt the model sees, a gold completion (for SFT) and the source entry."""

    prompt: str
    gold: str
    entry: dict[str, Any] = field(repr=False, compare=False, hash=False)


RewardFunc = Callable[..., list[float]]


@runtime_checkable
class Task(Protocol):
    name: str
    difficulty: int  # the level that val and test are drawn at
    default_max_completion_length: int

    def split(self, name: str, difficulty: int | None = None) -> Sequence[Example]:
        """The examples of a split. ``difficulty`` only applies to "train" (a curriculum knob)."""

    def score(self, example: Example, completion: str) -> float:
        """Grade a completion in [0, 1]; 1.0 means correct. Never raises."""

    def identity(self) -> dict[str, Any]:
        """Everything that determines the task's data: used to key caches."""


def accuracy(task: Task, examples: Sequence[Example], completions: Sequence[str]) -> float:
    """Share of completions that score 1.0 (partial credit does not count as correct)."""
    if not examples:
        return 0.0
    return sum(task.score(e, c) >= 1.0 for e, c in zip(examples, completions, strict=True)) / len(examples)


def make_reward_func(task: Task, examples: Sequence[Example],
                     on_completions: Callable[[int], None] | None = None) -> RewardFunc:
    """A binary TRL reward function over ``examples``; the dataset's ``idx`` column selects the example.

    ``on_completions`` (optional) receives the number of generated tokens of each batch: this is how
    the stage runner counts the compute it spends.
    """

    def reward(completions: list[str], idx: list[int], completion_ids: list[list[int]] | None = None,
               **_: Any) -> list[float]:
        if on_completions is not None and completion_ids is not None:
            on_completions(sum(len(ids) for ids in completion_ids))
        return [1.0 if task.score(examples[i], c) >= 1.0 else 0.0 for c, i in zip(completions, idx, strict=True)]

    reward.__name__ = "accuracy"
    return reward
