"""What the probe scripts share (bench/schedules.py, bench/transfer.py): a YAML config read with one-line
errors, jobs run side by side and reported a line each, and the command line ``run|table CONFIG --out RUNS
[--parallel N] [--json FILE]`` that ends in a table and, with ``--json``, a results file with the machine."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))

import search as bench_search  # noqa: E402  (bench/search.py: the machine record)


class ProbeError(ValueError):
    """A config this probe cannot run; one line."""


def read_config(path: Path, expected: str) -> dict[str, Any]:
    """The YAML mapping in ``path`` (``expected``: what it should hold, for the error)."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ProbeError(f"{path}: cannot be read as YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ProbeError(f"{path}: expected a mapping with {expected}")
    return raw


def run_jobs(job: Callable[..., str], jobs: Iterable[tuple[Any, ...]], parallel: int) -> int:
    """``job(*args)`` for every ``args`` of ``jobs``, ``parallel`` at a time, each line it returns printed in
    order; the number of jobs whose line says ``FAILED``."""
    failed = 0
    with ThreadPoolExecutor(parallel) as pool:
        for line in pool.map(lambda args: job(*args), jobs):
            print(line, flush=True)
            failed += ": FAILED " in line
    return failed


def main(doc: str, argv: list[str] | None, load: Callable[[Path], dict[str, Any]],
         run: Callable[[dict[str, Any], Path, int], int],
         results: Callable[[dict[str, Any], Path, argparse.Namespace], tuple[list[dict[str, Any]], str]],
         options: Callable[[argparse.ArgumentParser], None] = lambda ap: None) -> int:
    """The probe's command line: exit 2 with one line for a bad config, 1 if a job failed, else 0.
    ``results(cfg, out, args)`` gives the records and their table; ``options`` adds the probe's own flags."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("command", choices=["run", "table"])
    ap.add_argument("config", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    options(ap)
    a = ap.parse_args(argv)
    try:
        cfg = load(a.config)
        if a.parallel < 1:
            raise ProbeError(f"--parallel={a.parallel} is not allowed: expected an integer >= 1")
    except ProbeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = run(cfg, a.out, a.parallel) if a.command == "run" else 0
    recs, text = results(cfg, a.out, a)
    print(text)
    if a.json is not None:
        a.json.write_text(json.dumps({"machine": bench_search.machine(a.json), "config_file": str(a.config),
                                      "config": cfg, "runs_dir": str(a.out), "records": recs}, indent=1) + "\n")
    return 1 if failed else 0
