"""Replicate stages: the same parameters trained from the same base model with other draws.

    python bench/replicates.py CONFIG RUNS_A:METHOD RUNS_B:METHOD [RUNS_C:METHOD RUNS_D:METHOD ...] \\
        [--extra 4000] [--out FILE.json]

Two benchmark runs of one cell (task, seed) on the same base model, the second with ``seed_offset``,
hold first stages (children of the root) with identical parameters but other node seeds, so other
GRPO draws. Each such pair is scored on the cell's validation split (from the journals), on its test
split, and on ``--extra`` fresh problems of the task that are in neither split. If the pairs' score
differences are evaluation noise, the fresh problems do not repeat them; if the draws trained
different models, they do, and the validation difference predicts the fresh one.

Pairs with the same node seed (the same stage in two methods' trees) are counted once. Nodes whose
checkpoints a run did not keep are skipped. The cells are CONFIG's tasks x seeds; run it on the
machine that trained the runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import search as bench_search  # noqa: E402  (bench/search.py: the benchmark's config and task)

from llmzero.space import params_key  # noqa: E402


def first_stages(tree: Any, nodes_dir: Path) -> dict[tuple, Any]:
    """The root's children that kept a checkpoint, by their parameters."""
    out = {}
    for n in tree.nodes.values():
        if n.parent_id == "root" and (nodes_dir / n.id / "model.safetensors").is_file():
            out[params_key(n.params)] = n
    return out


def replicate_pairs(a: dict[tuple, Any], b: dict[tuple, Any]) -> list[tuple[Any, Any]]:
    """Stages of ``a`` and ``b`` with the same parameters and other seeds, in parameter order."""
    return [(a[k], b[k]) for k in sorted(set(a) & set(b)) if a[k].seed != b[k].seed]


def fresh_problems(task: Any, cfg: Any, n: int) -> list[Any]:
    """``n`` problems of ``cfg``'s task that are in neither its validation nor its test split."""
    from llmzero.tasks import Sizes, TaskSpec

    c = cfg.task
    held = {e.prompt for e in task.split("test")} | {e.prompt for e in task.split("val")}
    sizes = Sizes(train=c.sizes.train, val=c.sizes.val, test=c.sizes.test + 2 * n)
    big = TaskSpec(c.name, c.difficulty, sizes, c.data_seed, tuple(sorted(c.config.items()))).build()
    return [e for e in big.split("test") if e.prompt not in held][:n]


def scores(task: Any, path: Path, length: int, splits: list[list[Any]]) -> list[float]:
    """Greedy accuracy of the checkpoint in ``path`` on each list of problems (decoded in one pass)."""
    from llmzero.tasks import accuracy
    from llmzero.training.evaluate import greedy_completions

    outs = greedy_completions(str(path), [e.prompt for s in splits for e in s], length)
    res, i = [], 0
    for s in splits:
        res.append(accuracy(task, s, outs[i:i + len(s)]))
        i += len(s)
    return res


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    d = {k: [r[k][1] - r[k][0] for r in rows] for k in ("val", "test", "fresh")}
    rms = {k: (sum(x * x for x in v) / len(v)) ** 0.5 for k, v in d.items()}
    out = {"pairs": len(rows), **{f"rms_{k}_difference": round(v, 4) for k, v in rms.items()},
           "max_fresh_difference": round(max(abs(x) for x in d["fresh"]), 4),
           "same_sign_val_fresh": sum((a > 0) == (b > 0) for a, b in zip(d["val"], d["fresh"]))}
    if len(rows) > 2:
        out["corr_val_fresh"] = round(statistics.correlation(d["val"], d["fresh"]), 3)
        out["corr_test_fresh"] = round(statistics.correlation(d["test"], d["fresh"]), 3)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", type=Path)
    ap.add_argument("runs", nargs="+", help="RUNS_DIR:METHOD, in pairs: each pair is compared cell by cell")
    ap.add_argument("--extra", type=int, default=4000, help="fresh problems per cell (default 4000)")
    ap.add_argument("--out", type=Path, help="also write the machine, the pairs and the summary to this file")
    args = ap.parse_args(argv)
    runs = [r.rsplit(":", 1) for r in args.runs]
    bad = bool(len(runs) % 2) or any(len(r) != 2 for r in runs) or args.extra < 1
    bench = bench_search.start_script(args.config, bad and "runs must come in pairs of RUNS_DIR:METHOD, "
                                      f"and --extra must be at least 1 (got {len(runs)} runs, "
                                      f"--extra={args.extra})")
    if bench is None:
        return 2
    from llmzero.search.journal import Journal

    rows: list[dict[str, Any]] = []
    for task in bench["tasks"]:
        for seed in bench["seeds"]:
            cfg = bench_search.resolved_config(bench, task, bench["methods"][0], seed)
            t = bench_search.task_of(cfg)
            splits = [list(t.split("test")), fresh_problems(t, cfg, args.extra)]
            seen: set[tuple[int, int]] = set()
            for (da, ma), (db, mb) in zip(runs[::2], runs[1::2]):
                dirs = [bench_search.run_dir(Path(d), task, m, seed) for d, m in ((da, ma), (db, mb))]
                if not all((d / "journal.sqlite").is_file() for d in dirs):
                    continue
                ta, tb = (Journal(d / "journal.sqlite").replay() for d in dirs)
                root = ta.nodes["root"].params
                stages = (first_stages(tr, d / "nodes") for tr, d in zip((ta, tb), dirs))
                for na, nb in replicate_pairs(*stages):
                    if (na.seed, nb.seed) in seen:
                        continue
                    seen.add((na.seed, nb.seed))
                    length = int(na.params["max_completion_length"])
                    sa, sb = (scores(t, d / "nodes" / n.id, length, splits) for d, n in zip(dirs, (na, nb)))
                    row = {"task": task, "seed": seed, "runs": [f"{da}:{ma}", f"{db}:{mb}"],
                           "nodes": [na.id, nb.id],
                           "changes": {k: v for k, v in na.params.items() if root.get(k) != v},
                           "val": [na.val_score, nb.val_score], "test": [sa[0], sb[0]],
                           "fresh": [sa[1], sb[1]], "n_fresh": len(splits[1])}
                    rows.append(row)
                    print(f"{task:15s} seed {seed} {na.id}/{nb.id}: "
                          f"val {na.val_score:.3f}/{nb.val_score:.3f} "
                          f"test {sa[0]:.3f}/{sb[0]:.3f} fresh {sa[1]:.3f}/{sb[1]:.3f} ({len(splits[1])})",
                          flush=True)
    if not rows:
        print("error: no replicate pairs: the runs share no first stage with a kept checkpoint",
              file=sys.stderr)
        return 2
    s = summary(rows)
    print(json.dumps(s, indent=1))
    if args.out:
        out = {"machine": bench_search.machine(args.out), "config_file": str(args.config), "runs": args.runs,
               "extra": args.extra, "summary": s, "pairs": rows}
        args.out.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
