"""Record real stage histories of the built-in tasks as test fixtures for the pathology detectors.

    python bench/record_histories.py    # -> tests/fixtures/real_histories.json

Each entry: a 40- or 100-step stage from the task's base model (seed 0) with one parameter changed, the TRL
metric history it logged, its validation score and the base's, and the pathology it is known to
show (from the README's task table).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

# name: (changes from the defaults, steps, the pathology it must show). temperature 0.5 has no
# expected finding: TRL computes entropy on logits / T, so the stage reads low entropy (0.14 vs 0.41)
# from its first step, and on its own path nothing collapses; a detector could only see it against a
# sibling. entropy_coef 0.1 needs 100 steps to blow up (0.41 -> 0.53 after 40, 4.4 after 100).
CASES = {
    "healthy": ({}, 40, None),
    "lr_1e-3": ({"learning_rate": 1e-3}, 40, "entropy_blowup"),
    "short_length": ({"max_completion_length": 6}, 40, "truncation"),
    "temperature_0.5": ({"temperature": 0.5}, 40, None),
    "entropy_coef_0.1": ({"entropy_coef": 0.1}, 100, "entropy_blowup"),
}


def main() -> None:
    from llmzero.runtime import configure_process

    configure_process(1)
    from llmzero.models.base import build_base
    from llmzero.strategy import Stage
    from llmzero.tasks import get_task, task_space
    from llmzero.training.grpo import GRPOStageRunner

    task = get_task("number_sorting")
    base = build_base(task, "s", 0)
    space = task_space(task)
    runner = GRPOStageRunner(task, base.path)
    out = {"task": "number_sorting", "base_val": base.val_accuracy, "base_params": space.defaults(), "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (change, steps, expected) in CASES.items():
            res = runner.run_stage(None, Stage({**space.defaults(), **change}, steps), f"{tmp}/{name}", 0)
            keep = ("step", "reward", "reward_std", "frac_reward_zero_std", "entropy", "completions/mean_length",
                    "completions/clipped_ratio", "completions/max_length", "grad_norm", "learning_rate",
                    "clip_ratio/region_mean")
            out["cases"][name] = {"params": {**space.defaults(), **change}, "expected": expected,
                                  "val_score": res.val_score,
                                  "history": [{k: r[k] for k in keep if k in r} for r in res.history]}
            print(name, res.val_score, flush=True)
    path = Path(__file__).parent.parent / "tests" / "fixtures" / "real_histories.json"
    path.write_text(json.dumps(out, indent=0))


if __name__ == "__main__":
    main()
