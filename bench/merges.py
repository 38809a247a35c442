"""Merging draws during training: average each stage's GRPO draws, or keep the best one.

    python bench/merges.py CONFIG [--draws 4] [--stages 3] [--runs bench/runs/merges] [--out FILE.json]

Every search here chooses among draws: two draws of one stage train models about 2 points apart
(bench/replicates.py), and the draws control (MCTS whose children only redraw their parent's
parameters) does as well as the skill library's and the agent's moves. A weight soup of the best
checkpoints, built once at the end, adds about 1.8 points for every method (bench/soups.py). This
asks whether averaging helps more when it is done at every stage, so that the next stage starts from
the average, which only a search that branches from checkpoints can do.

For each cell (CONFIG's tasks x seeds, with its overrides: the task's default parameters and
``search.steps_per_stage``), two lineages train ``--stages`` stages, each as ``--draws`` GRPO draws
from one parent checkpoint (other seeds):

- ``select``: the next parent is the draw with the best validation score;
- ``merge``: the next parent is the greedy weight soup of the draws (the best draw first; each next
  one added if the validation score of the average does not drop). It is the best draw's checkpoint
  (optimizer, scheduler and trainer state) with the soup's weights.

Both share the first stage's draws and spend the same compute: draws x stages stages. The test split
scores each lineage's final model once. Resumable: finished cells are kept in ``--out`` and skipped;
an unfinished cell starts again. Run it on the machine whose benchmark runs it is compared with.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
import zlib
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import search as bench_search  # noqa: E402  (bench/search.py: the benchmark's config and task)

from llmzero.training.soup import Souper, averaged_checkpoint  # noqa: E402

LINEAGES = ("select", "merge")


def draw_seed(seed: int, lineage: str, stage: int, draw: int) -> int:
    return zlib.crc32(f"{seed}:{lineage}:{stage}:{draw}".encode()) % (2**31)


def merged_parent(task: Any, draws: list[tuple[str, float]], out: Path,
                  length: int) -> tuple[str, list[int], float]:
    """The greedy soup of ``draws`` (checkpoint, val) as a checkpoint in ``out``: the best draw's
    directory with the soup's weights. A soup of the best draw alone is that draw's checkpoint."""
    order = sorted(range(len(draws)), key=lambda i: (-draws[i][1], i))
    souper = Souper(task, {str(i): draws[i][0] for i in order}, length)
    members, val = souper.greedy([str(i) for i in order])
    if len(members) == 1:
        return draws[order[0]][0], [order[0]], val
    tmp = averaged_checkpoint(draws[order[0]][0], [souper.weights[i] for i in members],
                              out.with_name(out.name + ".tmp"))
    tmp.rename(out)
    return str(out), [int(i) for i in members], val


def run_cell(bench: dict[str, Any], task: str, seed: int, d: Path, draws: int, stages: int,
             pool: Any) -> dict:
    from llmzero.execution import RunnerSpec
    from llmzero.search.loop import _settings, task_spec
    from llmzero.strategy import Stage, StageMode
    from llmzero.tasks import task_space
    from llmzero.training.evaluate import evaluate_checkpoint

    cfg = bench_search.resolved_config(bench, task, bench["methods"][0], seed)
    spec = task_spec(cfg)
    t = spec.build()
    params = task_space(t).validate(cfg.params)
    length = int(params["max_completion_length"])
    base = bench_search.base_dir(bench, cfg)
    runner = RunnerSpec(spec, base, _settings(cfg))
    steps = cfg.search.steps_per_stage
    shutil.rmtree(d, ignore_errors=True)  # an unfinished cell starts again
    parents: dict[str, str | None] = {"select": None, "merge": None}
    out: dict[str, Any] = {k: {"val": [], "soup_sizes": [], "tokens": 0} for k in LINEAGES}
    for k in range(stages):
        lineages = ["shared"] if k == 0 else list(LINEAGES)
        jobs = []
        for lin in lineages:
            parent = None if k == 0 else parents[lin]
            for j in range(draws):
                s = draw_seed(seed, lin, k, j)
                stage = Stage(params, steps, StageMode.CONTINUE, s)
                jobs.append((lin, pool.submit(runner, parent, stage, str(d / lin / f"s{k}d{j}"), s)))
        results: dict[str, list[tuple[str, float]]] = {}
        for lin, fut in jobs:
            res = fut.result()
            if not res.ok:
                raise RuntimeError(f"{task} seed {seed} stage {k} ({lin}) failed: {res.error}")
            results.setdefault(lin, []).append((res.checkpoint, res.val_score))
            for name in (LINEAGES if lin == "shared" else (lin,)):  # the shared draws count for both
                out[name]["tokens"] += res.cost.generated_tokens
        for name in LINEAGES:
            got = results["shared" if k == 0 else name]
            if name == "select":
                best = max(range(len(got)), key=lambda i: (got[i][1], -i))
                parents[name], members, val = got[best][0], [best], got[best][1]
            else:
                parents[name], members, val = merged_parent(t, got, d / name / f"s{k}soup", length)
            out[name]["val"].append(val)
            out[name]["soup_sizes"].append(len(members))
        print(f"  {task} seed {seed} stage {k + 1}: draws val "
              f"{[round(v, 3) for _, v in results['shared' if k == 0 else 'select']]}; select "
              f"{out['select']['val'][-1]:.3f}, merge {out['merge']['val'][-1]:.3f} "
              f"(soup of {out['merge']['soup_sizes'][-1]})", flush=True)
    for name in LINEAGES:
        out[name]["test"] = evaluate_checkpoint(t, parents[name], "test", length)
    return {"task": task, "seed": seed, "draws": draws, "stages": stages, "steps_per_stage": steps,
            **{name: out[name] for name in LINEAGES}}


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by: dict[str, list[dict]] = {}
    for r in rows:
        by.setdefault(r["task"], []).append(r)
    mean = statistics.fmean
    return {t: {"seeds": len(rs), "select_test": round(mean(r["select"]["test"] for r in rs), 4),
                "merge_test": round(mean(r["merge"]["test"] for r in rs), 4),
                "merge_minus_select": round(mean(r["merge"]["test"] - r["select"]["test"] for r in rs), 4),
                "select_val": round(mean(r["select"]["val"][-1] for r in rs), 4),
                "merge_val": round(mean(r["merge"]["val"][-1] for r in rs), 4),
                "tokens": round(mean(r["merge"]["tokens"] for r in rs))}
            for t, rs in by.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", type=Path)
    ap.add_argument("--draws", type=int, default=4, help="GRPO draws per stage (default 4)")
    ap.add_argument("--stages", type=int, default=3, help="stages per lineage (default 3)")
    ap.add_argument("--runs", type=Path, default=Path("bench/runs/merges"), help="where the checkpoints go")
    ap.add_argument("--out", type=Path, help="the results file (machine, cells, summary); resumes from it")
    args = ap.parse_args(argv)
    bad = args.draws < 2 or args.stages < 1
    bench = bench_search.start_script(args.config, bad and "--draws must be at least 2 and --stages at "
                                      f"least 1 (got --draws={args.draws}, --stages={args.stages})")
    if bench is None:
        return 2
    from llmzero.execution import LocalPool

    rows: list[dict[str, Any]] = []
    if args.out and args.out.is_file():
        rows = [r for r in json.loads(args.out.read_text())["cells"]
                if (r["draws"], r["stages"]) == (args.draws, args.stages)]
    with LocalPool(bench["overrides"].get("executor.workers", 2)) as pool:
        pool.start()
        for task in bench["tasks"]:
            for seed in bench["seeds"]:
                if any((r["task"], r["seed"]) == (task, seed) for r in rows):
                    continue
                t0 = time.time()
                d = args.runs / task / f"seed{seed}"
                row = run_cell(bench, task, seed, d, args.draws, args.stages, pool)
                row["seconds"] = round(time.time() - t0, 1)
                rows.append(row)
                print(f"{task:15s} seed {seed}: select test {row['select']['test']:.3f}, merge test "
                      f"{row['merge']['test']:.3f}, {row['merge']['tokens']:,} tokens, {row['seconds']} s",
                      flush=True)
                if args.out:
                    args.out.write_text(json.dumps({"machine": bench_search.machine(args.out),
                                                    "config_file": str(args.config), "draws": args.draws,
                                                    "stages": args.stages, "summary": summary(rows),
                                                    "cells": rows}, indent=1))
    print(json.dumps(summary(rows), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
