"""One GRPO stage on the CPU and on CUDA (fp32 and bf16), side by side: that stages train on a GPU where
one is visible, where the time goes, and how the devices' validation scores compare.

    python bench/gpu_check.py [--task number_sorting] [--model s] [--steps 20] [--out DIR]

Each device trains the same stage (the task's default parameters, ``--steps`` GRPO steps) from the same
base model with the same seed, in this process, and reports its phases (model load, trainer build,
training, evaluation) and validation score, the device its checkpoint records, and each device's
training time as a ratio to the CPU's. Without a CUDA device it trains on the CPU only and says so
(exit 0); a device that fails its stage is exit 1. Meant as the short, prepared check for a machine
with a GPU; runs anywhere.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="number_sorting")
    ap.add_argument("--model", default="s")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None, help="where the stages' checkpoints go (default: a temp dir)")
    a = ap.parse_args(argv)

    from llmzero.runtime import configure_process

    configure_process(1)
    import torch

    from llmzero.execution import LocalPool, RunnerSpec
    from llmzero.models.base import build_base
    from llmzero.strategy import Stage, StageMode
    from llmzero.tasks import TaskSpec, task_space
    from llmzero.training._base import STAGE_INFO

    spec = TaskSpec(a.task)
    task = spec.build()
    base = build_base(task, a.model, 0).path
    stage = Stage(task_space(task).defaults(), a.steps, StageMode.CONTINUE)
    runs = [("cpu", False)]
    if torch.cuda.is_available():
        runs += [("cuda", False), ("cuda", True)]
        print(f"CUDA: {torch.cuda.device_count()} device(s), {torch.cuda.get_device_name(0)}")
    else:
        print("no CUDA device is visible: the CPU only")
    out = a.out or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    rows, failed = [], 0
    for device, bf16 in runs:
        with LocalPool(0, device=device, bf16=bf16) as pool:
            res = pool.run(RunnerSpec(spec, base), None, stage, str(out / f"{device}{'-bf16' if bf16 else ''}"), 0)
        if not res.ok:
            print(f"{device}{' bf16' if bf16 else ''}: FAILED: {res.error}")
            failed += 1
            continue
        info = json.loads((Path(res.checkpoint) / STAGE_INFO).read_text())
        rows.append((f"{device}{' bf16' if bf16 else ''}", info["device"], res.cost.phases, res.val_score))
    if not rows:
        return 1
    cpu_training = rows[0][2]["training"]
    print(f"\n{a.task}, model {a.model}, {a.steps} GRPO steps, {stage.params['num_generations']} generations")
    print("| run | recorded device | model load s | trainer build s | training s | evaluation s | training speed-up over the CPU | val |")
    print("|---|---|---|---|---|---|---|---|")
    for name, dev, ph, val in rows:
        print(f"| {name} | {dev} | {ph['model_load']:.2f} | {ph['trainer_build']:.2f} | {ph['training']:.2f} | "
              f"{ph['evaluation']:.2f} | {cpu_training / ph['training']:.2f}x | {val:.3f} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
