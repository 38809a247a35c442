"""Fixed multi-stage schedules, paired by seed: does a schedule that changes between stages beat one
that does not, at the same compute?

    python bench/schedules.py run CONFIG --out RUNS [--parallel 2]
    python bench/schedules.py table CONFIG --out RUNS [--soup] [--json FILE]

CONFIG names a task, seeds, a model preset, the level of the validation and test problems
(``difficulty``, 1-3, default 2) and schedules (name -> stages, as ``llmzero train`` reads
them; every stage of one cost). ``run`` trains each schedule on each seed with ``llmzero train --seed S``
(the same base model and data order for every schedule of a seed, each stage's draw seeded by its seed and
position), each in its own directory ``RUNS/NAME/seedS``; a run with a ``summary.json`` is done and kept, an
unfinished one is trained again, so a killed probe resumes where it stopped; a run that fails is reported
with its error, and ``run`` then ends with exit 1. ``table`` prints each
schedule's validation score after each stage and its test score (the final checkpoint), averaged over the
seeds, and, paired by seed, its last stage and its test score against the first schedule's (95% bootstrap
interval over the seeds); ``--json`` writes every run's record and the machine it ran on. ``--soup`` also
builds each run's greedy weight soup of its stages' checkpoints (the best by validation first, each next one
kept if the average's validation score does not drop, as a search's final soup), scores it on test once
(kept in the run's ``soup.json``) and pairs it the same way.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))

import probes  # noqa: E402  (bench/probes.py: the config, the jobs and the command line)
import search as bench_search  # noqa: E402  (bench/search.py: bootstrap intervals)
from probes import ProbeError  # noqa: E402


def load(path: Path) -> dict[str, Any]:
    raw = probes.read_config(path, "task, seeds and schedules")
    for key, kind in (("task", str), ("seeds", list), ("schedules", dict)):
        if not isinstance(raw.get(key), kind):
            raise ProbeError(f"{path}: {key}={raw.get(key)!r} is not allowed: expected a {kind.__name__}")
    if not raw["schedules"]:
        raise ProbeError(f"{path}: schedules is empty: expected at least one (the first is the reference)")
    level = raw.get("difficulty", 2)
    if type(level) is not int or not 1 <= level <= 3:
        raise ProbeError(f"{path}: difficulty={level!r} is not allowed: expected 1, 2 or 3 (the level of the "
                         "validation and test problems; a stage's own difficulty parameter sets its training level)")
    return {"model": "s", "difficulty": 2, **raw}


def _dir(out: Path, name: str, seed: int) -> Path:
    return out / name / f"seed{seed}"


def _train(cfg: dict[str, Any], out: Path, name: str, seed: int) -> str:
    d = _dir(out, name, seed)
    if (d / "summary.json").is_file():
        return f"{name} seed {seed}: done before"
    shutil.rmtree(d, ignore_errors=True)  # an unfinished run trains again
    d.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump({"stages": cfg["schedules"][name]}, f)
    try:
        r = subprocess.run([sys.executable, "-m", "llmzero.cli", "train", "--task", cfg["task"], "--schedule", f.name,
                            "--model", cfg["model"], "--seed", str(seed), "--difficulty", str(cfg["difficulty"]),
                            "--out", str(d), "--workers", "1",
                            "--json"], capture_output=True, text=True)
    finally:
        Path(f.name).unlink()
    if r.returncode != 0:
        return f"{name} seed {seed}: FAILED (exit {r.returncode}): {r.stderr.strip().splitlines()[-1:]}"
    s = json.loads(r.stdout)
    return f"{name} seed {seed}: val {s['val_scores']}, test {s['test_score']}, {s['wall_seconds']} s"


def run(cfg: dict[str, Any], out: Path, parallel: int) -> int:
    """Train every schedule on every seed; the number of runs that failed."""
    jobs = [(cfg, out, name, seed) for seed in cfg["seeds"] for name in cfg["schedules"]]
    return probes.run_jobs(_train, jobs, parallel)


def soup(cfg: dict[str, Any], d: Path) -> dict[str, Any]:
    """The greedy soup of the run in ``d``'s stage checkpoints and its scores, computed once (``soup.json``)."""
    from llmzero.tasks import TaskSpec
    from llmzero.training.soup import path_soup

    stages = json.loads((d / "stages.json").read_text())
    res = path_soup(TaskSpec(cfg["task"], cfg["difficulty"]).build(), d, len(stages))
    if res is None:  # a single stage: its own model
        return {"members": ["stage-0"], "soup_val": stages[0]["val_score"],
                "soup_test": json.loads((d / "summary.json").read_text())["test_score"]}
    if "members" in res:  # kept by an earlier release of this script
        return res
    return {"members": res["stages"], "soup_val": res["val_score"], "soup_test": res["test_score"]}


def records(cfg: dict[str, Any], out: Path, soups: bool = False) -> list[dict[str, Any]]:
    recs = []
    for name in cfg["schedules"]:
        for seed in cfg["seeds"]:
            p = _dir(out, name, seed) / "summary.json"
            if p.is_file():
                s = json.loads(p.read_text())
                recs.append({"schedule": name, "seed": seed, "val_scores": s["val_scores"],
                             "test_score": s["test_score"], "base_test_score": s["base_test_score"],
                             "generated_tokens": s["generated_tokens"], "wall_seconds": s["wall_seconds"],
                             **(soup(cfg, p.parent) if soups else {})})
    return recs


def table(cfg: dict[str, Any], recs: list[dict[str, Any]]) -> str:
    by = {(r["schedule"], r["seed"]): r for r in recs}
    names = list(cfg["schedules"])
    ref = names[0]
    depth = max((len(r["val_scores"]) for r in recs), default=0)
    soups = all("soup_test" in r for r in recs) and bool(recs)
    head = ["schedule", "seeds", *[f"val {i + 1}" for i in range(depth)], "test", "tokens",
            f"last val vs {ref}", f"test vs {ref}", *(["soup test", f"soup test vs {ref}"] if soups else [])]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        mine = [by[name, s] for s in cfg["seeds"] if (name, s) in by]
        if not mine:
            continue
        vals = [bench_search._mean([r["val_scores"][i] for r in mine if len(r["val_scores"]) > i]) for i in range(depth)]
        paired = [(by[name, s], by[ref, s]) for s in cfg["seeds"] if (name, s) in by and (ref, s) in by]
        dv = [a["val_scores"][-1] - b["val_scores"][-1] for a, b in paired]
        dt = [a["test_score"] - b["test_score"] for a, b in paired]
        row = [name, str(len(mine)), *["-" if v is None else f"{v:.3f}" for v in vals],
               f"{bench_search._mean([r['test_score'] for r in mine]):.3f}",
               f"{bench_search._mean([r['generated_tokens'] for r in mine]):,.0f}",
               "-" if name == ref else bench_search._mean_ci(dv), "-" if name == ref else bench_search._mean_ci(dt)]
        if soups:
            ds = [a["soup_test"] - b["soup_test"] for a, b in paired]
            row += [f"{bench_search._mean([r['soup_test'] for r in mine]):.3f}",
                    "-" if name == ref else bench_search._mean_ci(ds)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def results(cfg: dict[str, Any], out: Path, args: Any) -> tuple[list[dict[str, Any]], str]:
    if args.soup:
        from llmzero.runtime import configure_process

        configure_process(1)
    recs = records(cfg, out, soups=args.soup)
    return recs, table(cfg, recs)


def main(argv: list[str] | None = None) -> int:
    return probes.main(__doc__, argv, load, run, results, lambda ap: ap.add_argument(
        "--soup", action="store_true", help="also each run's greedy soup of its stages (table)"))


if __name__ == "__main__":
    sys.exit(main())
