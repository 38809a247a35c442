"""The built-in tasks under GRPO: base accuracy, gains with default parameters, and how much the
parameters matter (schedules that do better or worse, and reachable pathologies).

    python bench/tasks.py run --task number_sorting      # one task -> bench/results/tasks/<task>.json
    python bench/tasks.py table                         # the README's table from those files

Each task: the base model (SFT warm start, seed 0); the default parameters for 3 stages of 100
steps (test accuracy after each); and single 100-step stages from the base with one parameter
changed. Scores are greedy accuracy on the test split (500 problems, about +-2 points).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "tasks"
TASKS = ["number_sorting", "countdown", "word_sorting", "arithmetic"]


def variants(default_len: int) -> dict[str, dict]:
    return {
        "lr 3e-4": {"learning_rate": 3e-4},
        "lr 1e-3": {"learning_rate": 1e-3},
        f"max_completion_length {default_len // 3}": {"max_completion_length": max(2, default_len // 3)},
        "temperature 0.5": {"temperature": 0.5},
        "entropy_coef 0.1": {"entropy_coef": 0.1},
        "entropy_coef 0.01": {"entropy_coef": 0.01},
    }


def _signature(res) -> dict:
    """Mean of the last 20 logged steps of the metrics that show pathologies."""
    rows = res.history[-20:]
    keys = ["reward", "entropy", "frac_reward_zero_std", "completions/clipped_ratio", "completions/mean_length"]
    return {k: round(sum(r[k] for r in rows) / len(rows), 3) for k in keys if rows and k in rows[0]}


def run(task_name: str, steps: int, stages: int, seed: int) -> dict:
    from llmzero.runtime import configure_process

    configure_process(1)
    from llmzero.models.base import build_base
    from llmzero.strategy import Stage
    from llmzero.tasks import get_task, task_space
    from llmzero.training.evaluate import evaluate_checkpoint
    from llmzero.training.grpo import GRPOStageRunner

    t0 = time.time()
    task = get_task(task_name)
    base = build_base(task, "s", seed)
    space = task_space(task)
    runner = GRPOStageRunner(task, base.path)
    L = task.default_max_completion_length
    out: dict = {"task": task_name, "description": task.description, "base_test": base.test_accuracy,
                 "base_val": base.val_accuracy, "sft_steps": base.sft_steps, "steps_per_stage": steps,
                 "seed": seed, "default": [], "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        parent = None
        for i in range(stages):
            res = runner.run_stage(parent, Stage(space.defaults(), steps), f"{tmp}/default{i}", seed)
            assert res.ok, res.error
            test = evaluate_checkpoint(task, res.checkpoint, "test", L)
            out["default"].append({"step": res.end_step, "val": res.val_score, "test": test,
                                   "signature": _signature(res),
                                   "s_per_step": round(res.cost.phases["training"] / res.cost.steps, 3)})
            print(f"{task_name} default step {res.end_step}: val {res.val_score:.3f} test {test:.3f}", flush=True)
            parent = res.checkpoint
        for name, change in variants(L).items():
            stage = Stage({**space.defaults(), **change}, steps)
            res = runner.run_stage(None, stage, f"{tmp}/{name.replace(' ', '_')}", seed)
            if not res.ok:
                out["variants"][name] = {"error": res.error}
                continue
            test = evaluate_checkpoint(task, res.checkpoint, "test", int(stage.params["max_completion_length"]))
            out["variants"][name] = {"val": res.val_score, "test": test, "signature": _signature(res)}
            print(f"{task_name} {name}: val {res.val_score:.3f} test {test:.3f} {_signature(res)}", flush=True)
    out["seconds"] = round(time.time() - t0, 1)
    out["machine"] = f"{platform.machine()}, {platform.system()}, 1 torch thread"
    return out


def table() -> str:
    rows = [json.loads((RESULTS / f"{t}.json").read_text()) for t in TASKS if (RESULTS / f"{t}.json").exists()]
    if not rows:
        return "no results yet: run `python bench/tasks.py run --task T` first"
    lines = ["| task | base test | default GRPO: test after 100 / 200 / 300 steps | best one-change stage "
             "(100 steps) | worst one-change stage (100 steps) | pathologies reached (100 steps from the base) |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        d = " / ".join(f"{s['test']:.3f}" for s in r["default"])
        ok = {k: v for k, v in r["variants"].items() if "test" in v}
        best = max(ok, key=lambda k: ok[k]["test"])
        worst = min(ok, key=lambda k: ok[k]["test"])
        ref_entropy = r["default"][0]["signature"]["entropy"]
        found: dict[str, list[str]] = {}
        for k, v in ok.items():
            s = v["signature"]
            if s.get("completions/clipped_ratio", 0) > 0.5:
                found.setdefault("truncation", []).append(f"{k} (clipped {s['completions/clipped_ratio']:.2f})")
            if s.get("frac_reward_zero_std", 0) > 0.8:
                found.setdefault("all-same-reward groups", []).append(f"{k} ({s['frac_reward_zero_std']:.2f})")
            if s.get("entropy", 1) < 0.4 * ref_entropy:
                found.setdefault("entropy collapse", []).append(f"{k} ({s['entropy']:.2f} vs {ref_entropy:.2f})")
            elif s.get("entropy", 0) > 3 * ref_entropy:
                found.setdefault("entropy blow-up", []).append(f"{k} ({s['entropy']:.2f} vs {ref_entropy:.2f})")
        path = "; ".join(f"{name}: {', '.join(where)}" for name, where in found.items())
        lines.append(f"| {r['task']} | {r['base_test']:.3f} | {d} | {best}: {ok[best]['test']:.3f} "
                     f"| {worst}: {ok[worst]['test']:.3f} | {path or '-'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--task", required=True, choices=TASKS)
    r.add_argument("--steps", type=int, default=100)
    r.add_argument("--stages", type=int, default=3)
    r.add_argument("--seed", type=int, default=0)
    sub.add_parser("table")
    a = ap.parse_args()
    if a.cmd == "table":
        print(table())
        return
    res = run(a.task, a.steps, a.stages, a.seed)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{a.task}.json").write_text(json.dumps(res, indent=1))
    print(json.dumps({k: res[k] for k in ("task", "base_test", "seconds")}), file=sys.stderr)


if __name__ == "__main__":
    main()
