"""Weight soups of a search's kept checkpoints: what averaging the best nodes adds to choosing one.

    python bench/soups.py CONFIG RUNS:METHOD [RUNS:METHOD ...] [--top 5] [--out FILE.json]

Two draws of one stage train models about 2 points apart (bench/replicates.py), and every search
here chooses among such draws. Models fine-tuned from one base often average well (Wortsman et al.,
"Model soups", 2022), and a tree's nodes share their ancestors. For each cell (CONFIG's tasks x
seeds) of each run, this takes the ``--top`` checkpoints the search kept, by validation score, and
builds the greedy soup: start from the best node, add each next one to the uniform average if the
validation score does not drop. It reports the best node's and the soup's validation and test
scores (test only for reporting: the soup is chosen on validation, as the search chooses its node),
and the uniform soup of all ``--top``. No training: only evaluation, a few seconds per candidate.
Run it on the machine that trained the runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import search as bench_search  # noqa: E402  (bench/search.py: the benchmark's config and task)

from llmzero.training.soup import WEIGHTS, Souper  # noqa: E402


def kept_nodes(tree: Any, nodes_dir: Path, top: int) -> list[Any]:
    """The ``top`` scored stages whose checkpoints are still on disk, best validation score first."""
    kept = [n for n in tree.stages() if n.val_score is not None and (nodes_dir / n.id / WEIGHTS).is_file()]
    kept.sort(key=lambda n: (-n.val_score, int(n.id.lstrip("n"))))
    return kept[:top]


def cell(task: Any, nodes_dir: Path, nodes: list[Any]) -> dict[str, Any]:
    """The best node's, the greedy soup's and the uniform soup's scores for one cell."""
    ids = [n.id for n in nodes]
    souper = Souper(task, {i: str(nodes_dir / i) for i in ids}, int(nodes[0].params["max_completion_length"]))
    soup, soup_val = souper.greedy(ids)
    return {"best": ids[0], "best_val": nodes[0].val_score, "best_test": souper.score(ids[:1], "test"),
            "soup": soup, "soup_val": soup_val, "soup_test": souper.score(soup, "test"),
            "uniform_test": souper.score(ids, "test"), "candidates": ids,
            "same_parent": len({n.parent_id for n in nodes if n.id in soup}) == 1}


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per run and task: the mean test score of the best node, the greedy soup and the uniform soup."""
    out: dict[str, Any] = {}
    for r in rows:
        out.setdefault(r["run"], {}).setdefault(r["task"], []).append(r)
    mean = statistics.fmean
    return {run: {t: {"seeds": len(rs), "best_test": round(mean(r["best_test"] for r in rs), 4),
                      "soup_test": round(mean(r["soup_test"] for r in rs), 4),
                      "uniform_test": round(mean(r["uniform_test"] for r in rs), 4),
                      "soup_gain": round(mean(r["soup_test"] - r["best_test"] for r in rs), 4),
                      "mean_soup_size": round(mean(len(r["soup"]) for r in rs), 2)}
                  for t, rs in tasks.items()} for run, tasks in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", type=Path)
    ap.add_argument("runs", nargs="+", help="RUNS_DIR:METHOD, each a benchmark run of CONFIG's cells")
    ap.add_argument("--top", type=int, default=5, help="kept checkpoints the soup may use (default 5)")
    ap.add_argument("--out", type=Path, help="also write the machine, the cells and the summary to this file")
    args = ap.parse_args(argv)
    runs = [r.rsplit(":", 1) for r in args.runs]
    bad = any(len(r) != 2 for r in runs) or args.top < 1
    bench = bench_search.start_script(args.config, bad and "runs must be RUNS_DIR:METHOD and --top at "
                                      f"least 1 (got {args.runs}, --top={args.top})")
    if bench is None:
        return 2
    from llmzero.search.journal import Journal

    rows: list[dict[str, Any]] = []
    for task in bench["tasks"]:
        for seed in bench["seeds"]:
            dirs = [(r, m, bench_search.run_dir(Path(r), task, m, seed)) for r, m in runs]
            dirs = [x for x in dirs if (x[2] / "journal.sqlite").is_file()]
            if not dirs:
                continue
            t = bench_search.task_of(bench_search.resolved_config(bench, task, bench["methods"][0], seed))
            for runs_dir, method, d in dirs:
                nodes = kept_nodes(Journal(d / "journal.sqlite").replay(), d / "nodes", args.top)
                if not nodes:
                    continue
                t0 = time.time()
                row = {"run": f"{runs_dir}:{method}", "task": task, "seed": seed,
                       **cell(t, d / "nodes", nodes), "seconds": round(time.time() - t0, 1)}
                rows.append(row)
                print(f"{task:15s} seed {seed} {runs_dir}:{method}: best {row['best']} test "
                      f"{row['best_test']:.3f}, soup of {len(row['soup'])} test {row['soup_test']:.3f}, "
                      f"uniform {row['uniform_test']:.3f}", flush=True)
    if not rows:
        print("error: no cell of CONFIG has a run with kept checkpoints in the runs given", file=sys.stderr)
        return 2
    s = summary(rows)
    print(json.dumps(s, indent=1))
    if args.out:
        out = {"machine": bench_search.machine(args.out), "config_file": str(args.config), "runs": args.runs,
               "top": args.top, "summary": s, "cells": rows}
        args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
