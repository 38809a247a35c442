"""The four built-in tasks: compact prompts that a tiny character-level model can learn on a CPU.

Each wraps a reasoning-gym dataset and is graded by reasoning-gym's scorer. Formats and sizes follow
measured recipes (see the README's task table). Known reasoning-gym pitfalls are handled here:

* basic_arithmetic without parentheses labels some problems left to right (``3+2*3`` -> 15): such
  entries are dropped, so the labels the model learns from are correct arithmetic;
* word_sorting's scorer ignores extra trailing words: a strict word-count check closes that hole;
* a few word_sorting entries hold non-ASCII characters the tokenizer cannot write: dropped;
* number_sorting's scorer wants a Python list of strings: completions are converted;
* countdown's scorer evaluates the answer with sympy, and some short strings never finish
  (``1e999999``, ``9**9**9``) and hung a training stage: answers with a power, a factorial or an
  exponent, none of them countdown's ``+ - * /``, are scored as unusable (0.01, the scorer's own
  credit for an empty answer) without being evaluated.
"""

from __future__ import annotations

import operator
import re
from typing import Any

from llmzero.models.tokenizer import is_encodable
from llmzero.tasks.reasoning_gym import Format, ReasoningGymTask, Sizes

_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul}


def _direction(meta: dict[str, Any]) -> str:
    return "<" if meta["direction"] == "ascending" else ">"


# -- number_sorting: "<56 25 75=" -> "25 56 75" -------------------------------------------------

def _numbers(xs: list[str]) -> str:
    return " ".join(str(int(float(x))) for x in xs)


NUMBER_SORTING = Format(
    prompt=lambda e: _direction(e["metadata"]) + _numbers(e["metadata"]["original_numbers"]) + "=",
    gold=lambda e: _numbers(e["metadata"]["sorted_numbers"]),
    to_answer=lambda c: str(c.strip().split(" ")),
)

# -- countdown: "7:10 5 2=" -> "10+2-5" ----------------------------------------------------------

# Syntax sympy's parser accepts that countdown does not use, and whose evaluation can run for hours:
# powers, factorials, and exponents (1e999999) of floats.
_EXPLOSIVE = re.compile(r"\*\*|!|\d\s*[eE]")


def _countdown_answer(completion: str) -> str:
    c = completion.strip()
    return "" if _EXPLOSIVE.search(c) else c


COUNTDOWN = Format(
    prompt=lambda e: f'{e["metadata"]["target"]}:' + " ".join(map(str, e["metadata"]["numbers"])) + "=",
    gold=lambda e: e["answer"].replace(" ", ""),
    to_answer=_countdown_answer,
)

# -- word_sorting: "<plans would Email=" -> "Email plans would" ----------------------------------

WORD_SORTING = Format(
    prompt=lambda e: _direction(e["metadata"]) + " ".join(e["metadata"]["transformed_words"]) + "=",
    gold=lambda e: " ".join(e["metadata"]["sorted_words"]),
    to_answer=lambda c: ", ".join(c.strip().split(" ")),
    strict=lambda e, c: len(c.strip().split(" ")) == len(e["metadata"]["sorted_words"]),
    keep=lambda e: is_encodable(" ".join(e["metadata"]["transformed_words"])),
)

# -- basic_arithmetic with a one-step scratchpad: "9-0+1=" -> "9+1=10" --------------------------


def _tokens(e: dict[str, Any]) -> list[str]:
    return e["metadata"]["expression"].split(" ")


def _reduce_once(tokens: list[str]) -> list[str]:
    """Apply the first operation that precedence picks (leftmost *, else leftmost + or -)."""
    ops = tokens[1::2]
    k = ops.index("*") if "*" in ops else 0
    a, op, b = tokens[2 * k], tokens[2 * k + 1], tokens[2 * k + 2]
    return tokens[: 2 * k] + [str(_OPS[op](int(a), int(b)))] + tokens[2 * k + 3:]


def _evaluate(tokens: list[str]) -> int:
    while len(tokens) > 1:
        tokens = _reduce_once(tokens)
    return int(tokens[0])


def _arith_gold(e: dict[str, Any]) -> str:
    t = _tokens(e)
    if len(t) == 3:
        return e["answer"]
    return "".join(_reduce_once(t)) + "=" + e["answer"]


ARITHMETIC = Format(
    prompt=lambda e: e["metadata"]["expression"].replace(" ", "") + "=",
    gold=_arith_gold,
    to_answer=lambda c: c.strip().split("=")[-1],
    keep=lambda e: str(_evaluate(_tokens(e))) == e["answer"],  # drop reasoning-gym's left-to-right labels
)


def _arith_level(terms: tuple[int, int], digits: int) -> dict[str, Any]:
    # + and - only: with *, a tiny model's GRPO gains stayed within noise (0.288 -> 0.312 test after
    # 300 steps); with + and - they are clear (0.26 -> 0.43).
    return dict(min_terms=terms[0], max_terms=terms[1], min_digits=1, max_digits=digits,
                operators=("+", "-"), allow_parentheses=False, allow_negation=False)


BUILTIN: dict[str, dict[str, Any]] = {
    "number_sorting": dict(
        rg_name="number_sorting", format=NUMBER_SORTING, default_max_completion_length=18,
        description="sort 3-5 integers up or down: '<56 25 75=' -> '25 56 75'",
        levels={
            1: dict(min_numbers=2, max_numbers=4, min_value=0, max_value=99, min_decimals=0, max_decimals=0),
            2: dict(min_numbers=3, max_numbers=5, min_value=0, max_value=99, min_decimals=0, max_decimals=0),
            3: dict(min_numbers=4, max_numbers=6, min_value=0, max_value=99, min_decimals=0, max_decimals=0),
        }),
    "countdown": dict(
        rg_name="countdown", format=COUNTDOWN, default_max_completion_length=12,
        description="reach the target with the numbers: '7:10 5 2=' -> '10+2-5'",
        levels={
            1: dict(min_numbers=3, max_numbers=3, min_value=1, max_value=9, min_target=1, max_target=15),
            2: dict(min_numbers=3, max_numbers=3, min_value=1, max_value=9, min_target=1, max_target=30),
            3: dict(min_numbers=3, max_numbers=4, min_value=1, max_value=9, min_target=1, max_target=40),
        }),
    "word_sorting": dict(
        rg_name="word_sorting", format=WORD_SORTING, default_max_completion_length=26,
        description="sort 3-4 words by ASCII order: '<plans would Email=' -> 'Email plans would'",
        levels={
            1: dict(min_words=2, max_words=3, min_word_length=3, max_word_length=5),
            2: dict(min_words=3, max_words=4, min_word_length=3, max_word_length=5),
            3: dict(min_words=4, max_words=5, min_word_length=3, max_word_length=5),
        }),
    "arithmetic": dict(
        rg_name="basic_arithmetic", format=ARITHMETIC, default_max_completion_length=12,
        description="+ and - with one scratchpad step: '9-0+1=' -> '9+1=10'",
        levels={1: _arith_level((2, 3), 1), 2: _arith_level((3, 3), 1), 3: _arith_level((4, 4), 1)}),
}


def builtin_task(name: str, difficulty: int = 2, sizes: Sizes | None = None, data_seed: int = 0) -> ReasoningGymTask:
    spec = BUILTIN[name]
    return ReasoningGymTask(name=name, difficulty=difficulty, sizes=sizes or Sizes(), data_seed=data_seed, **spec)
