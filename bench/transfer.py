"""Transfer over several source runs and targets: does a strategy found on one task help on another?

    python bench/transfer.py run CONFIG --out RUNS [--parallel 2]
    python bench/transfer.py table CONFIG --out RUNS [--json FILE]

CONFIG names source runs (search run directories; shell-style patterns allowed, relative to the current
directory) and target tasks, and which parts of ``llmzero transfer`` to run (default ``replay`` and
``default``; ``search``, ``noprior`` and ``fixed`` may be added, with ``budget``); ``params`` (a mapping,
default none) sets the targets' starting parameters (``--param``), e.g. ``{temperature: 0.5}`` for targets
started cold. ``run`` calls ``llmzero transfer --from SRC --task T`` for every pair, each in ``RUNS/<source
task>-<method>-<seed dir>-to-<T>``; the command resumes what is unfinished and keeps what is done, so a killed
probe resumes where it stopped; a pair that fails is reported with its error, and ``run`` then ends with exit
1. Every pair trains on the source run's seed and base seed, so the replay and its control (``default``: the
replay's stages with the target's starting parameters, the same stage seeds and data) are paired. ``table``
prints, per source task and target, the mean test scores of the base model and of each part, and, paired by
source run, the replay against its control and against the base model, and the search with the prior against
the same search without it where both ran (95% bootstrap interval over the source runs), with how many replays
kept the target's starting parameters throughout (their own control); where the sources had a final soup, each
path's test score is its soup's (``llmzero transfer``'s), and the replay against its control is also given for
the paths' last stages alone. ``--json`` writes every pair's record and the machine it ran on.
"""

from __future__ import annotations

import glob
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import probes  # noqa: E402  (bench/probes.py: the config, the jobs and the command line)
import search as bench_search  # noqa: E402  (bench/search.py: bootstrap intervals)
from probes import ProbeError  # noqa: E402

from llmzero.transfer import PARTS  # noqa: E402


def load(path: Path) -> dict[str, Any]:
    raw = probes.read_config(path, "sources and targets")
    for key in ("sources", "targets"):
        if not isinstance(raw.get(key), list) or not raw[key]:
            raise ProbeError(f"{path}: {key}={raw.get(key)!r} is not allowed: expected a non-empty list")
    cfg = {"parts": ["replay", "default"], "budget": None, "params": {}, **raw}
    if not isinstance(cfg["params"], dict):
        raise ProbeError(f"{path}: params={cfg['params']!r} is not allowed: expected a mapping of parameter names "
                         "to the targets' starting values")
    for p in cfg["parts"]:
        if p not in PARTS:
            raise ProbeError(f"{path}: parts has {p!r}, which is not allowed: expected some of {', '.join(PARTS)}")
    sources = []
    for pattern in cfg["sources"]:
        found = sorted(glob.glob(str(pattern)))
        if not found:
            raise ProbeError(f"{path}: sources has {pattern!r}, which matches no directory")
        sources += [f for f in found if f not in sources]
    cfg["sources"] = sources
    return cfg


def _label(source: str) -> str:
    """``.../arithmetic/llmzero/seed5`` -> ``arithmetic-llmzero-seed5``: the source's task, method and seed."""
    return "-".join(Path(source).parts[-3:])


def _dir(out: Path, source: str, target: str) -> Path:
    return out / f"{_label(source)}-to-{target.replace(':', '_')}"


def _transfer(cfg: dict[str, Any], out: Path, source: str, target: str) -> str:
    d = _dir(out, source, target)
    cmd = [sys.executable, "-m", "llmzero.cli", "transfer", "--from", source, "--task", target, "--out", str(d),
           "--workers", "1", "--json", *[a for p in cfg["parts"] for a in ("--only", p)]]
    if cfg["budget"] is not None:
        cmd += ["--budget", str(cfg["budget"])]
    cmd += [a for k, v in cfg["params"].items() for a in ("--param", f"{k}={v}")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return f"{_label(source)} -> {target}: FAILED (exit {r.returncode}): {r.stderr.strip().splitlines()[-1:]}"
    res = json.loads(r.stdout.strip().splitlines()[-1])["results"]
    return f"{_label(source)} -> {target}: " + ", ".join(f"{p} {x['test_score']:.3f}" for p, x in res.items())


def run(cfg: dict[str, Any], out: Path, parallel: int) -> int:
    """Every source run carried to every target; the number of pairs that failed."""
    return probes.run_jobs(_transfer, [(cfg, out, s, t) for t in cfg["targets"] for s in cfg["sources"]], parallel)


def records(cfg: dict[str, Any], out: Path) -> list[dict[str, Any]]:
    recs = []
    for target in cfg["targets"]:
        for source in cfg["sources"]:
            p = _dir(out, source, target) / "transfer.json"
            if not p.is_file():
                continue
            t = json.loads(p.read_text())
            res = t["results"]
            any_part = next(iter(res.values()))
            recs.append({"source": source, "source_task": t["source_task"], "task": target,
                         "target_params": cfg["params"],
                         "moves": [m["changes"] for m in t["prior"]["moves"]],
                         "base_test_score": any_part["base_test_score"],
                         **{f"{p}_test_score": r["test_score"] for p, r in res.items()},
                         **{f"{p}_path_test_score": r.get("path_test_score", r["test_score"])
                            for p, r in res.items() if p in ("replay", "default")},
                         **{f"{p}_soup": r["soup"]["stages"] for p, r in res.items() if r.get("soup")},
                         **{f"{p}_compute": r["compute"] for p, r in res.items()},
                         "replay_is_default": res.get("default", {}).get("same_as") == "replay"})
    return recs


def table(cfg: dict[str, Any], recs: list[dict[str, Any]]) -> str:
    parts = [p for p in PARTS if any(f"{p}_test_score" in r for r in recs)]
    searched = "search" in parts and "noprior" in parts
    head = ["source -> target", "runs", "base", *parts, "replay vs default", "the same, last stages",
            *(["search vs noprior"] if searched else []),
            "replay vs base", "replays that keep the defaults", "replay tokens", "default tokens"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    m = bench_search._mean
    for key in dict.fromkeys((r["source_task"], r["task"]) for r in recs):
        mine = [r for r in recs if (r["source_task"], r["task"]) == key]
        paired = [r for r in mine if "replay_test_score" in r and "default_test_score" in r]
        replayed = [r for r in mine if "replay_test_score" in r]
        row = [f"{key[0]} -> {key[1]}", str(len(mine)), f"{m([r['base_test_score'] for r in mine]):.3f}"]
        for p in parts:
            xs = [r[f"{p}_test_score"] for r in mine if f"{p}_test_score" in r]
            row.append(f"{m(xs):.3f}" if xs else "-")
        row += [bench_search._mean_ci([r["replay_test_score"] - r["default_test_score"] for r in paired])
                if paired else "-",
                bench_search._mean_ci([r["replay_path_test_score"] - r["default_path_test_score"] for r in paired])
                if paired else "-"]
        if searched:
            primed = [r for r in mine if "search_test_score" in r and "noprior_test_score" in r]
            row.append(bench_search._mean_ci([r["search_test_score"] - r["noprior_test_score"] for r in primed])
                       if primed else "-")
        row += [bench_search._mean_ci([r["replay_test_score"] - r["base_test_score"] for r in replayed])
                if replayed else "-",
                f"{sum(r['replay_is_default'] for r in paired)} of {len(paired)}",
                f"{m([r['replay_compute'] for r in replayed]):,.0f}" if replayed else "-",
                f"{m([r['default_compute'] for r in paired]):,.0f}" if paired else "-"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def results(cfg: dict[str, Any], out: Path, _args: Any) -> tuple[list[dict[str, Any]], str]:
    recs = records(cfg, out)
    return recs, table(cfg, recs)


def main(argv: list[str] | None = None) -> int:
    return probes.main(__doc__, argv, load, run, results)


if __name__ == "__main__":
    sys.exit(main())
