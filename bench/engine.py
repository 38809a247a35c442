"""Where a stage's wall time goes, per built-in task, on the default tiny model.

    python bench/engine.py [--steps 50] [--tasks number_sorting countdown ...]

For each task, one persistent worker runs two stages of ``--steps`` GRPO steps: the first from the
base model (it pays the worker's start-up and the task's data load), the second continued from the
first (the steady state of a search). Each row splits the stage's wall time, measured from the
parent process, into phases. The goal: everything except training and evaluation is at most 10% of
a 50-step stage's wall time.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time

PHASES = ["worker_start", "task_load", "model_load", "trainer_build", "training", "evaluation", "checkpoint_save"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--tasks", nargs="*", default=["number_sorting", "countdown", "word_sorting", "arithmetic"])
    a = ap.parse_args()

    from llmzero.runtime import configure_process

    configure_process(1)
    from llmzero.execution import LocalPool, RunnerSpec
    from llmzero.models.base import build_base
    from llmzero.strategy import Stage
    from llmzero.tasks import TaskSpec, task_space

    print(f"machine: {platform.machine()} {platform.system()}, 1 torch thread per worker; "
          f"{a.steps} GRPO steps per stage, model preset 's' (0.87M parameters)\n")
    head = ["task", "stage", "wall s"] + PHASES + ["other", "overhead %", "steps/s"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    worst_steady = 0.0
    for name in a.tasks:
        spec = TaskSpec(name)
        task = spec.build()
        base = build_base(task, "s", 0)  # cached after the first build; not part of a stage
        space = task_space(task)
        with tempfile.TemporaryDirectory() as tmp, LocalPool(workers=1) as pool:
            runner = RunnerSpec(spec, base.path)
            parent = None
            for i, label in enumerate(["first (cold worker)", "continued (warm)"]):
                t = time.perf_counter()
                res = pool.run(runner, parent, Stage(space.defaults(), a.steps), f"{tmp}/s{i}", 0)
                wall = time.perf_counter() - t
                assert res.ok, res.error
                ph = res.cost.phases
                other = wall - sum(ph.get(k, 0.0) for k in PHASES)
                overhead = 100 * (wall - ph["training"] - ph["evaluation"]) / wall
                if i == 1:
                    worst_steady = max(worst_steady, overhead)
                cells = [name, label, f"{wall:.2f}"] + [f"{ph.get(k, 0.0):.2f}" for k in PHASES] + [
                    f"{other:.2f}", f"{overhead:.1f}", f"{res.cost.steps / ph['training']:.2f}"]
                print("| " + " | ".join(cells) + " |", flush=True)
                parent = res.checkpoint
    print(f"\nworst overhead of a warm {a.steps}-step stage: {worst_steady:.1f}% of its wall time "
          f"(goal: at most 10%) -> {'met' if worst_steady <= 10 else 'NOT met'}")


if __name__ == "__main__":
    main()
