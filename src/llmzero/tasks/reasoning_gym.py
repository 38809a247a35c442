"""Any reasoning-gym dataset as a Task, graded by reasoning-gym's own scorer.

Splits are drawn with far-apart seeds (reasoning-gym makes entry ``i`` from ``Random(seed + i)``, so
nearby seeds overlap) and de-duplicated by prompt: no prompt is in two splits.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from llmzero.cache import content_hash, load_pickle, save_pickle
from llmzero.tasks._base import SPLITS, Example, TaskError

log = logging.getLogger(__name__)

# Split seeds are this far apart; a split never asks for more entries than that.
SEED_STRIDE = 10_000_000
OVERSAMPLE = 3  # entries drawn per wanted example, to make up for de-duplication


@dataclass(frozen=True)
class Sizes:
    train: int = 20_000
    val: int = 500
    test: int = 500

    def __post_init__(self) -> None:
        for name in SPLITS:
            n = getattr(self, name)
            if not 1 <= n <= SEED_STRIDE // OVERSAMPLE:
                raise TaskError(f"sizes.{name}={n} is not allowed: expected an integer in "
                                f"[1, {SEED_STRIDE // OVERSAMPLE}]")


@dataclass(frozen=True)
class Format:
    """How entries become prompts and gold completions, and completions become answers."""

    prompt: Callable[[dict[str, Any]], str]
    gold: Callable[[dict[str, Any]], str]
    to_answer: Callable[[str], str] = lambda c: c.strip()
    # An extra check on top of the scorer (for scorers that can be gamed); None means none.
    strict: Callable[[dict[str, Any], str], bool] | None = None
    # Drop entries whose label is wrong or that the tokenizer cannot write; None keeps all.
    keep: Callable[[dict[str, Any]], bool] | None = None
    # A chat task's system prompt: the prompt is then the user's message, and the model's chat template
    # renders both (``llmzero.tasks.model_prompts``); None: the prompt is the text itself.
    system: str | None = None


def plain_format() -> Format:
    """reasoning-gym's own question and answer text, for datasets without a compact format."""
    return Format(prompt=lambda e: e["question"] + "\nAnswer: ", gold=lambda e: str(e["answer"]))


def chat_format() -> Format:
    """For chat models: reasoning-gym's default system prompt (think step by step, then the answer in
    ``<answer>`` tags), the question as the user's message, and the answer read from the completion's
    last ``<answer>...</answer>`` (none: no answer, scored 0), as reasoning-gym's own evaluation does."""
    from reasoning_gym.utils import SYSTEM_PROMPTS, extract_answer

    return Format(prompt=lambda e: e["question"], gold=lambda e: f"<answer>{e['answer']}</answer>",
                  to_answer=lambda c: extract_answer(c) or "", system=SYSTEM_PROMPTS["default"])


@dataclass
class ReasoningGymTask:
    """A reasoning-gym dataset (by name and config) as a Task.

    ``levels`` maps a difficulty (1, 2, 3...) to the dataset config at that level; val and test are
    drawn at ``difficulty``, train at whatever level a stage asks for.
    """

    name: str
    rg_name: str
    levels: Mapping[int, Mapping[str, Any]]
    format: Format = field(default_factory=plain_format)
    difficulty: int = 2
    sizes: Sizes = field(default_factory=Sizes)
    data_seed: int = 0
    default_max_completion_length: int = 64
    description: str = ""

    def __post_init__(self) -> None:
        if self.difficulty not in self.levels:
            raise TaskError(f"difficulty={self.difficulty} is not allowed for task {self.name!r}: "
                            f"expected one of {sorted(self.levels)}")
        if not 0 <= self.data_seed < 100:
            raise TaskError(f"data_seed={self.data_seed} is not allowed: expected an integer in [0, 99]")
        import reasoning_gym  # noqa: F401 - fail early with a clear error if it is missing

    # -- data ---------------------------------------------------------------------------------

    def _seed(self, split: str, level: int) -> int:
        # val and test sit at 1x and 2x the stride, train at (2 + level)x; data_seed shifts all
        # of them by a whole block of strides so that no two data seeds overlap either.
        slot = {"val": 1, "test": 2}.get(split, 2 + level)
        return (self.data_seed * 16 + slot) * SEED_STRIDE

    def _draw(self, split: str, level: int, size: int, exclude: set[str]) -> list[Example]:
        """``size`` distinct examples not in ``exclude``; cached on disk (countdown takes ~40 s)."""
        if level not in self.levels:
            raise TaskError(f"difficulty={level} is not allowed for task {self.name!r}: "
                            f"expected one of {sorted(self.levels)}")
        key = content_hash({"task": self.identity(), "split": split, "level": level, "size": size,
                            "exclude": sorted(exclude)})
        cached = load_pickle("splits", key)
        if cached is None:
            cached = self._generate(split, level, size, exclude)
            save_pickle("splits", key, cached)
        return cached

    def _generate(self, split: str, level: int, size: int, exclude: set[str]) -> list[Example]:
        import reasoning_gym

        if level not in self.levels:
            raise TaskError(f"difficulty={level} is not allowed for task {self.name!r}: "
                            f"expected one of {sorted(self.levels)}")
        n = size * OVERSAMPLE
        try:
            ds = reasoning_gym.create_dataset(self.rg_name, size=n, seed=self._seed(split, level),
                                              **dict(self.levels[level]))
        except Exception as e:  # reasoning-gym raises assorted errors on a bad name or config
            raise TaskError(f"reasoning-gym dataset {self.rg_name!r} with config {dict(self.levels[level])} "
                            f"cannot be built: {e}") from None
        out: list[Example] = []
        seen = set(exclude)
        misses = 0  # draws in a row that gave nothing new: the problem space is nearly used up
        for i in range(n):
            entry = ds[i]
            if self.format.keep is not None and not self.format.keep(entry):
                continue
            prompt = self.format.prompt(entry)
            if prompt in seen:
                misses += 1
                if misses > max(1000, size // 4):
                    break
                continue
            misses = 0
            seen.add(prompt)
            out.append(Example(prompt=prompt, gold=self.format.gold(entry), entry=entry))
            if len(out) == size:
                break
        if len(out) < size:
            log.info("%s %s: only %d distinct prompts (asked for %d)", self.name, split, len(out), size)
        return out

    @cached_property
    def _held_out(self) -> dict[str, list[Example]]:
        test = self._draw("test", self.difficulty, self.sizes.test, set())
        val = self._draw("val", self.difficulty, self.sizes.val, {e.prompt for e in test})
        return {"val": val, "test": test}

    @cached_property
    def _train(self) -> dict[int, list[Example]]:
        return {}

    def split(self, name: str, difficulty: int | None = None) -> Sequence[Example]:
        if name in ("val", "test"):
            return self._held_out[name]
        if name != "train":
            raise TaskError(f"split={name!r} is not allowed: expected one of {', '.join(SPLITS)}")
        level = self.difficulty if difficulty is None else difficulty
        if level not in self._train:
            held = {e.prompt for s in ("val", "test") for e in self._held_out[s]}
            self._train[level] = self._draw("train", level, self.sizes.train, held)
        return self._train[level]

    # -- grading ------------------------------------------------------------------------------

    @cached_property
    def _scorer(self) -> Any:
        import reasoning_gym

        return reasoning_gym.create_dataset(self.rg_name, size=1, seed=0, **dict(self.levels[self.difficulty]))

    def score(self, example: Example, completion: str) -> float:
        if self.format.strict is not None and not self.format.strict(example.entry, completion):
            return 0.0
        try:
            with warnings.catch_warnings():  # sympy compiles garbage such as "(1,2)(3)": Python's
                warnings.simplefilter("ignore", SyntaxWarning)  # SyntaxWarning about it is noise in a run
                return float(self._scorer.score_answer(self.format.to_answer(completion), example.entry))
        except Exception:  # a scorer that chokes on garbage means the answer is wrong
            return 0.0

    @property
    def system(self) -> str | None:
        """The system prompt of a chat task (its prompts are user messages); None for a text task."""
        return self.format.system

    def identity(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rg_name": self.rg_name,
            "levels": {str(k): dict(v) for k, v in self.levels.items()},
            "difficulty": self.difficulty,
            "sizes": [self.sizes.train, self.sizes.val, self.sizes.test],
            "data_seed": self.data_seed,
            **({"chat": True} if self.system is not None else {}),  # other prompts: other cached splits
        }
