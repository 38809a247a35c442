"""Tasks: a registry of the built-in tasks plus an adapter for any reasoning-gym dataset.

``get_task("countdown")`` gives a built-in task; ``get_task("rg:leg_counting", config={...})`` wraps
reasoning-gym's ``leg_counting`` dataset with its own question text and scorer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from llmzero.space import DEFAULT_SPACE, Space
from llmzero.tasks._base import SPLITS, Example, Task, TaskError, accuracy, make_reward_func
from llmzero.tasks.builtin import BUILTIN, builtin_task
from llmzero.tasks.reasoning_gym import Format, ReasoningGymTask, Sizes, chat_format, plain_format

RG_PREFIX = "rg:"


def task_names() -> list[str]:
    return list(BUILTIN)


def get_task(name: str, *, difficulty: int = 2, sizes: Sizes | None = None, data_seed: int = 0,
             config: dict[str, Any] | None = None, max_completion_length: int | None = None,
             chat: bool = False) -> ReasoningGymTask:
    """A task by name: a built-in one, or ``rg:<dataset>`` for any reasoning-gym dataset (``chat``: its
    prompts as chat messages, for chat models; see ``chat_format``). An ``rg:`` task's default response
    length is ``max_completion_length``, else 64 tokens for an answer, 512 for a chat model's reasoning
    and its answer."""
    if name in BUILTIN:
        if config:
            raise TaskError(f"config is not allowed for built-in task {name!r}: its levels are fixed")
        if chat:
            raise TaskError(f"chat=true is not allowed for built-in task {name!r}: its compact prompts are for "
                            "the tiny models (use rg:<reasoning-gym dataset> with a chat model)")
        return builtin_task(name, difficulty=difficulty, sizes=sizes, data_seed=data_seed)
    if name.startswith(RG_PREFIX):
        import reasoning_gym

        rg_name = name[len(RG_PREFIX):]
        known = sorted(reasoning_gym.factory.DATASETS)
        if rg_name not in known:
            raise TaskError(f"task={name!r} is not a reasoning-gym dataset: see `llmzero tasks --all` "
                            f"for the {len(known)} names")
        return ReasoningGymTask(name=name, rg_name=rg_name, levels={difficulty: dict(config or {})},
                                format=chat_format() if chat else plain_format(), difficulty=difficulty,
                                sizes=sizes or Sizes(), data_seed=data_seed,
                                default_max_completion_length=max_completion_length or (512 if chat else 64),
                                description=f"reasoning-gym {rg_name} (question text as "
                                            f"{'a chat message' if chat else 'prompt'})")
    raise TaskError(f"unknown task {name!r}: expected one of {', '.join(BUILTIN)} or rg:<reasoning-gym dataset>")


@dataclass(frozen=True)
class TaskSpec:
    """A picklable recipe for a task: what crosses into worker processes (tasks hold lambdas)."""

    name: str
    difficulty: int = 2
    sizes: Sizes = field(default_factory=Sizes)
    data_seed: int = 0
    config: tuple[tuple[str, Any], ...] = ()  # only for rg:<dataset> tasks
    max_completion_length: int | None = None  # only for rg:<dataset> tasks (None: get_task's default)
    chat: bool = False  # only for rg:<dataset> tasks

    def build(self) -> ReasoningGymTask:
        return get_task(self.name, difficulty=self.difficulty, sizes=self.sizes, data_seed=self.data_seed,
                        config=dict(self.config), max_completion_length=self.max_completion_length,
                        chat=self.chat)


def model_prompts(task: Task, tokenizer: Any, prompts: Sequence[str]) -> list[str]:
    """The text the model sees for each of a task's prompts: the prompt itself, or for a chat task
    (``task.system``) the system prompt and the prompt as the user's message, rendered by the model's
    chat template with the assistant's turn opened."""
    from llmzero.models.tokenizer import render_chat

    system = getattr(task, "system", None)
    if system is None:
        return list(prompts)
    return [render_chat(tokenizer, system, p) for p in prompts]


def task_space(task: Task, space: Space = DEFAULT_SPACE) -> Space:
    """The space with the task's own defaults (its response length and difficulty: ``TASK_DEFAULTS``)."""
    return space.with_defaults(max_completion_length=task.default_max_completion_length,
                               difficulty=task.difficulty)


__all__ = ["SPLITS", "BUILTIN", "Example", "Format", "ReasoningGymTask", "Sizes", "Task", "TaskError", "TaskSpec",
           "accuracy", "chat_format", "get_task", "make_reward_func", "plain_format", "model_prompts", "task_names",
           "task_space"]
