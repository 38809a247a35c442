"""The search benchmark: methods x tasks x seeds under one compute budget, with the targets checked.

    python bench/search.py run bench/configs/full.yaml          # every cell; after a kill, run it again
    python bench/search.py run bench/configs/full.yaml --only-task countdown --only-method grid
    python bench/search.py status bench/configs/full.yaml       # cells done, started, left
    python bench/search.py table                                # the README's tables from the results file
    python bench/search.py compare A.json:llmzero B.json:grid   # one method against another, paired by seed
    python bench/search.py compare A.json:llmzero@node B.json:grid  # the best node, not its final soup
    python bench/search.py headroom A.json B.json C.json        # the best of all their cells against grid

A benchmark config (bench/configs/*.yaml) names the tasks, seeds and methods, the experiment file
each task starts from (``experiment: examples/{task}.yaml``), dotted ``overrides`` applied to every
cell (``budget.compute: 250000``), ``llm`` settings for the llmzero cells only, and optionally
``base_sft`` (SFT settings for the base model: the benchmark then builds the base itself, cached,
and gives its directory to every method). Relative paths are read from the repository root.
``--set key=value`` (repeatable) adds overrides on the command line.

Methods: base (no search: the base model scored on val and test), fixed, grid, random, pbt, skill,
llmzero (mcts with the LLM agent), llmzero-noLLM (mcts with the skill proposer: the ablation) and
llmzero-1.5b (llmzero with the embedded model's 1.5B tier: is the 0.5B agent the bottleneck?) and
draws (the control: the same mcts whose children repeat their node's parameters, new draws only).
Seeds are paired: the cell (task, method, seed s) runs with ``seed=s`` and ``base_seed=s``, so every
method on seed s shares the base model, the splits and the evaluation problems (with a model
directory instead of a preset, every seed shares that one model). A config's ``seed_offset: n`` runs
``seed=s+n`` instead, with the same base model and problems: the same method with other draws of the
search and its stages, to measure how far a rerun moves the scores.

Cells run in a fixed order (task, seed, method), each in OUT/<task>/<method>/seed<s>. A cell whose
journal holds ``run_finished`` is done and only collected; one with a journal but no
``run_finished`` is resumed from it (only its in-flight stages are trained again); any other is
started. After every cell the results file is rewritten atomically from all finished cells, with the
machine it ran on, so a killed benchmark loses at most the cells in flight.

compute_to_grid_best: for (task, seed), G is the grid cell's best validation score; a cell's value is
the compute (generated tokens, the budget's meter) summed over its stages in the order they finished
up to the first stage with a validation score >= G (null: never). The table also shows it as a share
of what the grid cell spent. Each record keeps its val_curve (compute and val after each stage, in
that order), so that ``compare`` can measure one file's cells against another file's grid: the
compute at which A first reached B's best validation score, as a share of what B spent. Wall seconds
are the summary's (a resumed cell counts its last process only, a continued one the sum of its
finished runs; the first cell of a (task, seed) also pays for building the base model unless it is
cached).

``run --continue-unspent`` also resumes the finished tree searches (mcts, skill) that left more than
5% of their budget: a search that can now spend it (``search.deepen``) grows the tree it left.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from llmzero.report.compare import mean as _mean
from llmzero.report.compare import sample_std as _std

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "bench" / "runs" / "search"
DEFAULT_RESULTS = REPO / "bench" / "results" / "search.json"

# Method name in the results -> overrides of the experiment (None: no search).
METHODS: dict[str, dict[str, Any] | None] = {
    "base": None,
    "fixed": {"search.method": "fixed"},
    "grid": {"search.method": "grid"},
    "random": {"search.method": "random"},
    "pbt": {"search.method": "pbt"},
    "skill": {"search.method": "skill"},
    "llmzero": {"search.method": "mcts", "search.proposer": "llm"},
    "llmzero-noLLM": {"search.method": "mcts", "search.proposer": "skill"},
    "llmzero-1.5b": {"search.method": "mcts", "search.proposer": "llm", "llm.tier": "1.5b"},
    "draws": {"search.method": "mcts", "search.proposer": "draws"},
}
LLM_METHODS = ("llmzero", "llmzero-1.5b")
CONFIG_KEYS = {"description", "experiment", "tasks", "seeds", "methods", "overrides", "llm", "base_sft",
               "seed_offset"}
TOP_K = 3  # dynamics: the best path and the paths to the 3 best stages of every llmzero run


class BenchError(ValueError):
    """A benchmark config or option that is not allowed; one line."""


# -- the benchmark config ------------------------------------------------------------------------------


def _loader():
    from llmzero.strategy import _Loader  # a SafeLoader that reads 1e-4 as a float, as experiment files do

    return _Loader


def _parse(text: str, what: str) -> Any:
    """YAML as experiment files read it (1e-4 a float); a text that does not parse is a BenchError."""
    from llmzero.strategy import yaml_problem

    try:
        return yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise BenchError(f"{what}{yaml_problem(e)}") from None


def repo_path(p: str | Path) -> Path:
    p = Path(p)
    return p if p.is_absolute() else REPO / p


def load_bench(path: str | Path, sets: list[str] | None = None) -> dict[str, Any]:
    """Read and check a benchmark config; ``sets`` are ``key=value`` overrides added to ``overrides``."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"benchmark config {str(path)!r} does not exist")
    raw = _parse(path.read_text(), f"{path.name}: does not parse as YAML")
    if not isinstance(raw, dict):
        raise BenchError(f"{path.name}: expected a mapping with experiment, tasks, seeds and methods")
    unknown = set(raw) - CONFIG_KEYS
    if unknown:
        raise BenchError(f"{path.name}: unknown key(s) {', '.join(sorted(unknown))}: expected "
                         f"{', '.join(sorted(CONFIG_KEYS))}")
    for key in ("experiment", "tasks", "seeds", "methods"):
        if key not in raw:
            raise BenchError(f"{path.name}: {key} is missing")
    cfg = {"description": str(raw.get("description", "")), "experiment": str(raw["experiment"]),
           "tasks": [str(t) for t in raw["tasks"]], "seeds": raw["seeds"],
           "methods": [str(m) for m in raw["methods"]],
           "overrides": dict(raw.get("overrides") or {}), "llm": dict(raw.get("llm") or {}),
           "base_sft": raw.get("base_sft"), "seed_offset": raw.get("seed_offset", 0)}
    offset = cfg["seed_offset"]
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise BenchError(f"{path.name}: seed_offset={offset!r} is not allowed: expected an integer >= 0")
    if not cfg["tasks"] or len(set(cfg["tasks"])) != len(cfg["tasks"]):
        raise BenchError(f"{path.name}: tasks={cfg['tasks']!r} is not allowed: expected distinct task names")
    if not cfg["seeds"] or not all(isinstance(s, int) and s >= 0 for s in cfg["seeds"]) \
            or len(set(cfg["seeds"])) != len(cfg["seeds"]):
        raise BenchError(f"{path.name}: seeds={cfg['seeds']!r} is not allowed: expected distinct "
                         "integers >= 0")
    bad = [m for m in cfg["methods"] if m not in METHODS]
    if bad or not cfg["methods"]:
        raise BenchError(f"{path.name}: methods={bad or cfg['methods']!r} is not allowed: expected some of "
                         f"{', '.join(METHODS)}")
    if "{task}" not in cfg["experiment"] and len(cfg["tasks"]) > 1:
        raise BenchError(f"{path.name}: experiment={cfg['experiment']!r} is not allowed: expected a path "
                         "with {task} when there are several tasks")
    if cfg["base_sft"] is not None:
        from llmzero.models.base import SFTSettings

        try:
            SFTSettings(**cfg["base_sft"])
        except TypeError as e:
            raise BenchError(f"{path.name}: base_sft={cfg['base_sft']!r} is not allowed: {e}") from None
    for s in sets or []:
        key, eq, value = s.partition("=")
        if not eq or not key:
            raise BenchError(f"--set {s!r} is not allowed: expected key=value")
        cfg["overrides"][key] = _parse(value, f"--set {s!r}: the value does not parse as YAML")
    if cfg["llm"].get("path"):
        cfg["llm"]["path"] = str(repo_path(cfg["llm"]["path"]))
    for t in cfg["tasks"]:  # every experiment parses, before any training
        for m in cfg["methods"]:
            cell_config(cfg, t, m, cfg["seeds"][0])
    return cfg


def load_bench_or_say(path: Path) -> dict[str, Any] | None:
    """The benchmark config at ``path``, or None after printing its one-line error (scripts exit 2)."""
    try:
        return load_bench(path)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return None


def start_script(config: Path, bad: str | None = None) -> dict[str, Any] | None:
    """The start of a bench script (bench/soups.py, replicates.py, merges.py): None after one line on
    stderr (``bad``, the arguments' error, or CONFIG's; the script exits 2), else CONFIG loaded, with
    one torch thread for this process."""
    if bad:
        print(f"error: {bad}", file=sys.stderr)
        return None
    bench = load_bench_or_say(config)
    if bench is not None:
        import torch

        torch.set_num_threads(1)
    return bench


def cells(bench: dict[str, Any]) -> list[tuple[str, str, int]]:
    """Every (task, method, seed), in the order they run: task, then seed, then method."""
    return [(t, m, s) for t in bench["tasks"] for s in bench["seeds"] for m in bench["methods"]]


def cell_config(bench: dict[str, Any], task: str, method: str, seed: int, model: str | None = None):
    """The experiment of one cell (an ExperimentConfig); ``model`` replaces the model (a built base)."""
    from llmzero.config import ConfigError, load_config

    overrides = dict(bench["overrides"])
    overrides.update(METHODS[method] or {})
    overrides.update({"seed": seed + bench.get("seed_offset", 0), "base_seed": seed})
    if method in LLM_METHODS:  # the config's llm settings, under the method's own (llm.tier)
        overrides.update({f"llm.{k}": v for k, v in bench["llm"].items()
                          if f"llm.{k}" not in (METHODS[method] or {})})
    if model is not None:
        overrides["model"] = model
    try:
        return load_config(repo_path(bench["experiment"].format(task=task)), overrides)
    except ConfigError as e:
        raise BenchError(f"{task}/{method}/seed{seed}: {e}") from None


def task_of(cfg):
    from llmzero.tasks import Sizes, TaskSpec

    t = cfg.task
    return TaskSpec(t.name, t.difficulty, Sizes(**t.sizes.model_dump()), t.data_seed,
                    tuple(sorted(t.config.items()))).build()


def base_dir(bench: dict[str, Any], cfg) -> str:
    """The base model's directory for a cell, built (or fetched from the cache) as the search would."""
    from llmzero.models.base import SFTSettings, build_base, check_model_dir
    from llmzero.models.tiny import PRESETS

    if cfg.model not in PRESETS:
        return str(check_model_dir(cfg.model).resolve())
    sft = SFTSettings(**bench["base_sft"]) if bench["base_sft"] is not None else SFTSettings()
    return build_base(task_of(cfg), cfg.model, cfg.base_seed, sft=sft).path


def resolved_config(bench: dict[str, Any], task: str, method: str, seed: int):
    """The cell's config with the base model given as a directory when the benchmark builds it."""
    cfg = cell_config(bench, task, method, seed)
    if bench["base_sft"] is not None:
        cfg = cell_config(bench, task, method, seed, model=base_dir(bench, cfg))
    return cfg


# -- running cells -------------------------------------------------------------------------------------


def run_dir(out: Path, task: str, method: str, seed: int) -> Path:
    return out / task / method / f"seed{seed}"


def _journal_state(d: Path) -> tuple[str, dict | None]:
    """("done", summary) | ("started", None) | ("new", None) from a cell's journal."""
    from llmzero.search import JOURNAL, Journal

    if not (d / JOURNAL).is_file():
        return "new", None
    j = Journal(d / JOURNAL)
    try:
        finished = [p for _, _, _, _, p in j.events("run_finished")]
        started = any(True for _ in j.events("run_started"))
    finally:
        j.close()
    if finished:  # a continued cell finished more than once: its wall time is every run's
        return "done", {**finished[-1], "wall_seconds": round(sum(p.get("wall_seconds", 0) for p in finished), 1)}
    return ("started" if started else "new"), None


def cell_state(d: Path, method: str) -> tuple[str, dict | None]:
    if METHODS[method] is None:
        f = d / "summary.json"
        return ("done", json.loads(f.read_text())) if f.is_file() else ("new", None)
    return _journal_state(d)


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def run_base(bench: dict[str, Any], task: str, seed: int, d: Path) -> dict[str, Any]:
    """The base model without search: scored on val and test with the code and lengths the search uses."""
    from llmzero.tasks import task_space
    from llmzero.training.evaluate import evaluate_checkpoint

    t0 = time.time()
    cfg = resolved_config(bench, task, "base", seed)
    path = base_dir(bench, cfg)
    t = task_of(cfg)
    params = task_space(t).validate(cfg.params)
    length = int(params["max_completion_length"])
    val = evaluate_checkpoint(t, path, "val", length)
    test = evaluate_checkpoint(t, path, "test", length)
    summary = {"run": str(d), "method": "base", "task": task, "best_node": None, "best_val": val,
               "base_val": val, "test_score": test, "base_test_score": test, "relative_improvement": 0.0,
               "budget_spent": 0, "budget_total": cfg.budget.compute, "nodes": 0,
               "wall_seconds": round(time.time() - t0, 1), "base_dir": path,
               "config": cfg.model_dump(mode="json"), "llm_calls": 0, "llm_prompt_tokens": 0,
               "llm_completion_tokens": 0, "llm_seconds": 0.0}
    _write_json(d / "summary.json", summary)
    return summary


def run_search_cell(bench: dict[str, Any], task: str, method: str, seed: int, d: Path, state: str) -> dict:
    from llmzero.search import SearchRun

    if state == "started":
        r = SearchRun(None, d, resume=True)
    else:
        r = SearchRun(resolved_config(bench, task, method, seed), d)
    try:
        return r.run()
    finally:
        r.close()


def _stored_config(d: Path, method: str) -> dict | None:
    """The experiment a cell ran (or began) with: from the base cell's summary, or the journal."""
    if METHODS[method] is None:
        f = d / "summary.json"
        return json.loads(f.read_text()).get("config") if f.is_file() else None
    from llmzero.search import JOURNAL, Journal

    if not (d / JOURNAL).is_file():
        return None
    j = Journal(d / JOURNAL)
    try:
        return next((p["config"] for _, _, _, _, p in j.events("run_started")), None)
    finally:
        j.close()


def check_cells(bench: dict[str, Any], out: Path) -> None:
    """Refuse to mix runs of another benchmark config into this one's results."""
    for t, m, s in cells(bench):
        d = run_dir(out, t, m, s)
        stored = _stored_config(d, m)
        if stored is None:
            continue
        from llmzero.config import ConfigError, parse_config

        try:  # through the model again, so that fields added to the config since compare as their defaults
            stored = parse_config(stored).model_dump(mode="json")
        except ConfigError as e:
            raise BenchError(f"{d} holds an experiment this llmzero does not accept: {e}") from None
        want = cell_config(bench, t, m, s).model_dump(mode="json")
        if bench["base_sft"] is not None:  # the stored model is the base directory built from the preset
            stored = {k: v for k, v in stored.items() if k != "model"}
            want = {k: v for k, v in want.items() if k != "model"}
        diff = sorted(k for k in set(stored) | set(want) if stored.get(k) != want.get(k))
        if diff:
            raise BenchError(f"{d} was run with another experiment (differs in {', '.join(diff)}): use "
                             "another --out, or delete that directory to run it again")


def unspent(bench: dict[str, Any], task: str, method: str, seed: int, summary: dict | None) -> bool:
    """A finished tree-search cell that left more than 5% of its budget unspent."""
    return (METHODS[method] is not None and summary is not None
            and summary.get("budget_spent", 0) < 0.95 * summary.get("budget_total", 0)
            and cell_config(bench, task, method, seed).search.method in ("mcts", "skill"))


def run_cells(bench: dict[str, Any], out: Path, results: Path, only_task=None, only_method=None,
              only_seed=None, config_path: str = "", continue_unspent: bool = False) -> None:
    """Run the cells not done yet (resuming started ones). ``continue_unspent`` also resumes the
    finished tree searches that left budget unspent, so that a search that can now spend it does."""
    for arg, allowed, name in ((only_task, bench["tasks"], "only-task"),
                               (only_method, bench["methods"], "only-method"),
                               (only_seed, bench["seeds"], "only-seed")):
        bad = [v for v in arg or [] if v not in allowed]
        if bad:
            raise BenchError(f"--{name}={bad[0]!r} is not allowed: expected one of {allowed} "
                             "(from the config)")
    todo = [(t, m, s) for t, m, s in cells(bench) if (not only_task or t in only_task)
            and (not only_method or m in only_method) and (not only_seed or s in only_seed)]
    check_cells(bench, out)
    write_results(bench, out, results, config_path)
    for t, m, s in todo:
        d = run_dir(out, t, m, s)
        state, summary = cell_state(d, m)
        t0 = time.time()
        if state == "done" and continue_unspent and unspent(bench, t, m, s, summary):
            how, summary = "continued", run_search_cell(bench, t, m, s, d, "started")
        elif state == "done":
            how = "done before"
            if METHODS[m] is not None and not (d / "summary.json").is_file():
                _write_json(d / "summary.json", summary)  # killed between the journal and the file
        elif METHODS[m] is None:
            how, summary = "new", run_base(bench, t, s, d)
        else:
            how = "resumed" if state == "started" else "new"
            summary = run_search_cell(bench, t, m, s, d, state)
        print(f"{t:15s} {m:14s} seed {s}: test {_f(summary.get('test_score'))} "
              f"val {_f(summary.get('best_val'))} "
              f"spent {summary.get('budget_spent', 0):,}/{summary.get('budget_total', 0):,} "
              f"wall {time.time() - t0:.1f} s ({how})", flush=True)
        if how != "done before":
            write_results(bench, out, results, config_path)
    write_results(bench, out, results, config_path)


def _f(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


# -- collecting results --------------------------------------------------------------------------------


def stage_progress(d: Path) -> list[tuple[int, float | None]]:
    """(cumulative compute, val score or None for a failed stage) after each stage, in journal order (a
    sibling soup or a scaled update counts as a stage that costs nothing)."""
    from llmzero.search import JOURNAL, Journal

    j = Journal(d / JOURNAL)
    out, total = [], 0
    try:
        for _, _, kind, _, p in j.events():
            if kind in ("stage_finished", "stage_failed", "sibling_soup", "scaled_update"):
                total += int((p.get("cost") or {}).get("generated_tokens", 0))
                out.append((total, p.get("val_score") if kind != "stage_failed" else None))
    finally:
        j.close()
    return out


def first_reach(curve: list, method: str, base_val: float | None, target: float | None) -> int | None:
    """The compute after the first stage of ``curve`` ((compute, val) pairs) whose val is at least
    ``target``; None: never. The base model has no stages: 0 if its own val is already there."""
    if target is None:
        return None
    if METHODS[method] is None:
        return 0 if base_val is not None and base_val >= target else None
    return next((compute for compute, val in curve if val is not None and val >= target), None)


def compute_to_reach(d: Path, method: str, base_val: float | None, target: float | None) -> int | None:
    return first_reach(stage_progress(d) if METHODS[method] is not None else [], method, base_val, target)


def cpu() -> dict[str, Any]:
    """The CPU's model, torch's kernel level and its vector extensions: the same seeds trained other
    base models on a second machine with another CPU (likely its float kernels; not pinned down)."""
    import torch

    model, flags = None, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model is None:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile")
    return {"cpu_model": model, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_flags": [f for f in wanted if f in flags]}


def packages() -> dict[str, str | None]:
    """Versions of the packages a cell's numbers depend on."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in ("transformers", "trl", "accelerate", "tokenizers", "reasoning-gym", "numpy",
                 "llama-cpp-python"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def machine(results: Path | None = None) -> dict[str, Any]:
    """The machine, the packages and the commit; ``llmzero_dirty`` says whether tracked files differ
    from it, the ``results`` file being written not counted (a committed file that a run extends)."""
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        skip = [f":(exclude){results.resolve().relative_to(REPO)}"] if results and _inside(results) else []
        status = ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *skip]
        found = subprocess.run(status, cwd=REPO, capture_output=True, text=True, timeout=10).stdout
        dirty = bool(found.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            **cpu(), "python": platform.python_version(), "torch": torch.__version__,
            "packages": packages(),
            "torch_threads_per_worker": 1,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "llmzero_commit": commit, "llmzero_dirty": dirty,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def _inside(path: Path) -> bool:
    try:
        path.resolve().relative_to(REPO)
        return True
    except ValueError:
        return False


def _soup_fields(summary: dict[str, Any]) -> dict[str, Any]:
    """With search.soup: the best node's own test score and the soup's nodes (None: the best node alone)."""
    soup = summary.get("soup")
    if not soup:
        return {}
    return {"best_node_test_score": summary.get("best_node_test_score"),
            "soup": soup["nodes"] if soup.get("path") else None}


def collect(bench: dict[str, Any], out: Path) -> list[dict[str, Any]]:
    """One record per finished cell, in the benchmark's order."""
    records = []
    for t, m, s in cells(bench):
        d = run_dir(out, t, m, s)
        state, summary = cell_state(d, m)
        if state != "done":
            continue
        llm_tokens = int(summary.get("llm_prompt_tokens", 0)) + int(summary.get("llm_completion_tokens", 0))
        records.append({"task": t, "method": m, "seed": s, "test_score": summary.get("test_score"),
                        "base_test_score": summary.get("base_test_score"),
                        "best_val": summary.get("best_val"),
                        "base_val": summary.get("base_val"), "budget_spent": summary.get("budget_spent", 0),
                        "budget_total": summary.get("budget_total"), "llm_tokens": llm_tokens,
                        "llm_calls": int(summary.get("llm_calls", 0)),
                        "llm_seconds": float(summary.get("llm_seconds", 0.0)),
                        "wall_seconds": summary.get("wall_seconds"), "nodes": summary.get("nodes", 0),
                        "stop_reason": summary.get("stop_reason"), "compute_to_grid_best": None,
                        "val_curve": [] if METHODS[m] is None else [list(x) for x in stage_progress(d)],
                        "run": str(d.relative_to(out)), **(agent_choices(d) if m in LLM_METHODS else {}),
                        **_soup_fields(summary)})
    grid_best = {(r["task"], r["seed"]): r["best_val"] for r in records if r["method"] == "grid"}
    for r in records:
        r["compute_to_grid_best"] = first_reach(r["val_curve"], r["method"], r["base_val"],
                                                grid_best.get((r["task"], r["seed"])))
    return records


def agent_choices(d: Path) -> dict[str, Any]:
    """What the LLM agent's answers in one run chose: menu options by number (in the order the skill
    library lists them) and decisions, counted over its proposal events; and how many answers picked
    other options than the menu's first n for an answer of n picks: the no-LLM ablation's proposals
    at the same node. (Before the menu shuffled the small moves with the ablation's random stream,
    results files older than ``sameshuffle.json``, the two also differed where the agent took the
    first n.)"""
    from llmzero.agents.llm import journaled_answers
    from llmzero.search import JOURNAL, Journal

    picks: Counter[str] = Counter()
    decisions: Counter[str] = Counter()
    own = 0
    j = Journal(d / JOURNAL)
    try:
        for _, answer in journaled_answers(j):
            chosen = [p.option for p in answer.proposals if p.option is not None]
            picks.update(str(o) for o in chosen)
            own += set(chosen) != set(range(1, len(chosen) + 1))
            decisions[answer.decision] += 1
    finally:
        j.close()
    return {"llm_picks": dict(sorted(picks.items())), "llm_decisions": dict(sorted(decisions.items())),
            "llm_own_picks": own}


def dynamics(bench: dict[str, Any], out: Path) -> dict[str, Any] | None:
    """The pooled parameter dynamics of the finished llmzero runs (llmzero.analysis, as `llmzero analyze`)."""
    from llmzero.analysis import analysed_paths, analyze_runs, summarize
    from llmzero.search import JOURNAL, Journal
    from llmzero.space import DEFAULT_SPACE

    trees, runs = [], []
    for t, m, s in cells(bench):
        d = run_dir(out, t, m, s)
        if m != "llmzero" or cell_state(d, m)[0] != "done":
            continue
        j = Journal(d / JOURNAL)
        trees.append(j.replay())
        j.close()
        runs.append(str(d.relative_to(out)))
    paths = sum(len(analysed_paths(tr, TOP_K)) for tr in trees)
    if not paths:
        return None
    # Roles are the same in every task's space (a task only changes defaults), so the default space serves.
    found = analyze_runs(trees, DEFAULT_SPACE, k=TOP_K)
    return {"runs": runs, "top_k": TOP_K, "paths": paths, "parameters": [p.to_dict() for p in found],
            "summary": summarize(found).to_dict()}


def stage_gains(trees: list[Any], capacity: set[str]) -> list[dict[str, Any]]:
    """What one stage adds to its parent's validation score, by depth, pooled over the given trees.

    Rows by (depth, whether the stage raised a capacity parameter above its parent's value: a larger
    response length, group or difficulty, which makes a step dearer): stages scored, mean validation gain
    over the parent (the root is the base model), mean generated tokens, and how many trees' best node
    is such a stage. Failed stages and stages whose parent has no score are left out.
    """
    from llmzero.search.tree import NodeState

    rows: dict[tuple[int, bool], dict[str, Any]] = {}
    for tree in trees:
        best = tree.best()
        for node in tree.stages():
            parent = tree.nodes[node.parent_id]
            if node.state is NodeState.FAILED or node.val_score is None or parent.val_score is None:
                continue
            raised = any(node.params[k] > parent.params[k] for k in capacity
                         if k in node.params and k in parent.params)
            r = rows.setdefault((node.depth, raised), {"depth": node.depth, "capacity_raised": raised,
                                                       "stages": 0, "gain": 0.0, "tokens": 0, "best_of": 0})
            r["stages"] += 1
            r["gain"] += node.val_score - parent.val_score
            r["tokens"] += node.compute
            r["best_of"] += best is not None and best.id == node.id
    return [{"depth": r["depth"], "capacity_raised": r["capacity_raised"], "stages": r["stages"],
             "mean_gain": r["gain"] / r["stages"], "mean_tokens": r["tokens"] / r["stages"],
             "best_of": r["best_of"]} for _, r in sorted(rows.items())]


def searched_trees(bench: dict[str, Any], out: Path) -> list[Any]:
    """The trees of every finished searched cell (every method but base), replayed from their journals."""
    from llmzero.search import JOURNAL, Journal

    trees = []
    for t, m, s in cells(bench):
        d = run_dir(out, t, m, s)
        if METHODS.get(m) is None or cell_state(d, m)[0] != "done":
            continue
        j = Journal(d / JOURNAL)
        trees.append(j.replay())
        j.close()
    return trees


def _capacity_names() -> set[str]:
    # Roles are the same in every task's space (a task only changes defaults), so the default space serves.
    from llmzero.space import DEFAULT_SPACE, Role

    return {p.name for p in DEFAULT_SPACE.by_role(Role.CAPACITY)}


def write_results(bench: dict[str, Any], out: Path, results: Path, config_path: str = "") -> dict[str, Any]:
    try:
        runs_dir = str(out.resolve().relative_to(REPO))
    except ValueError:
        runs_dir = str(out.resolve())
    obj = {"machine": machine(results), "config_file": config_path, "config": bench, "runs_dir": runs_dir,
           "records": collect(bench, out), "dynamics": dynamics(bench, out),
           "stage_gains": stage_gains(searched_trees(bench, out), _capacity_names())}
    _write_json(results, obj)
    return obj


# -- the table -----------------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f}%"


def bootstrap_ci(diffs: list[float], n: int = 10_000, seed: int = 0) -> tuple[float, float] | None:
    """95% percentile bootstrap interval of the mean of paired differences (over seeds)."""
    if len(diffs) < 2:
        return None
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(diffs) for _ in diffs) / len(diffs) for _ in range(n))
    return means[int(0.025 * n)], means[int(0.975 * n) - 1]


class Stats:
    """Per (task, method): the numbers of the table, from the records."""

    def __init__(self, records: list[dict[str, Any]]):
        self.by: dict[tuple[str, str], list[dict]] = {}
        for r in records:
            self.by.setdefault((r["task"], r["method"]), []).append(r)
        self.grid_spent = {(r["task"], r["seed"]): r["budget_spent"] for r in records
                           if r["method"] == "grid"}

    def tests(self, task: str, method: str) -> list[float]:
        return [r["test_score"] for r in self.by.get((task, method), []) if r["test_score"] is not None]

    def test_mean(self, task: str, method: str) -> float | None:
        return _mean(self.tests(task, method))

    def rel_base(self, task: str, method: str) -> float | None:
        return _mean([r["test_score"] / r["base_test_score"] - 1 for r in self.by.get((task, method), [])
                      if r["test_score"] is not None and r["base_test_score"]])

    def rel(self, task: str, method: str, other: str) -> float | None:
        a, b = self.test_mean(task, method), self.test_mean(task, other)
        return a / b - 1 if a is not None and b else None

    def paired(self, task: str, method: str, other: str) -> list[float]:
        b = {r["seed"]: r["test_score"] for r in self.by.get((task, other), [])
             if r["test_score"] is not None}
        return [r["test_score"] - b[r["seed"]] for r in self.by.get((task, method), [])
                if r["test_score"] is not None and r["seed"] in b]

    def shares(self, task: str, method: str) -> list[float | None]:
        """Per seed: compute to grid's best as a share of grid's compute (None: never reached)."""
        out = []
        for r in self.by.get((task, method), []):
            if r.get("to_grid_unknown"):  # a joined file's record older than the curves: not measured
                continue
            g = self.grid_spent.get((task, r["seed"]))
            c = r["compute_to_grid_best"]
            out.append(None if c is None or not g else c / g)
        return out


def _paired_text(st: Stats, task: str, a: str, b: str) -> str:
    d = st.paired(task, a, b)
    if not d:
        return "no paired seeds"
    ci = bootstrap_ci(d)
    return (f"paired test difference {_mean(d):+.3f} over {len(d)} seed(s)"
            + (f", 95% bootstrap CI [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""))


def targets(res: dict[str, Any]) -> list[str]:
    st = Stats(res["records"])
    tasks = res["config"]["tasks"]
    lines = []

    def line(met: bool | None, text: str, details: list[str]) -> None:
        word = "n/a" if met is None else ("met" if met else "NOT met")
        lines.append(f"- **{word}**: {text}")
        lines.extend(f"  - {d}" for d in details)

    def have(*methods: str) -> list[str]:
        return [m for m in methods if not any(st.tests(t, m) for t in tasks)]

    def of(method: str) -> list[dict[str, Any]]:
        return [r for r in res["records"] if r["method"] == method]

    missing = have("llmzero", "grid")
    if missing:
        line(None, "LLMZero above grid search by >= 6% relative on every task, >= 15% on two",
             [f"no results for {', '.join(missing)}"])
    else:
        warn = soup_mismatch("llmzero", of("llmzero"), "grid", of("grid"))
        if warn:
            lines.append(f"- **{warn}**")
        rels = {t: st.rel(t, "llmzero", "grid") for t in tasks}
        details = [f"{t}: {_pct(rels[t])} ({_f(st.test_mean(t, 'llmzero'))} vs "
                   f"{_f(st.test_mean(t, 'grid'))}; "
                   f"{_paired_text(st, t, 'llmzero', 'grid')})" for t in tasks]
        line(all(r is not None and r >= 0.06 for r in rels.values()),
             "LLMZero above grid search by at least 6% relative on every task", details)
        big = [t for t, r in rels.items() if r is not None and r >= 0.15]
        line(len(big) >= 2, "LLMZero above grid search by at least 15% relative on at least two tasks",
             [f"{len(big)} of {len(tasks)} task(s): {', '.join(big) or 'none'}"])
    others = [m for m in ("random", "pbt", "skill") if any(st.tests(t, m) for t in tasks)]
    if have("llmzero") or not others:
        line(None, "LLMZero above random, pbt and skill on every task",
             ["no results for llmzero" if have("llmzero") else "none of random, pbt and skill was run"])
    else:
        details, ok = [], True
        for t in tasks:
            a = st.test_mean(t, "llmzero")
            for m in ("random", "pbt", "skill"):
                b = st.test_mean(t, m)
                won = a is not None and b is not None and a > b
                ok = ok and won
                details.append(f"{t} vs {m}: {_f(a)} vs {_f(b)} ({'above' if won else 'not above'})")
        miss = [m for m in ("random", "pbt", "skill") if m not in others]
        if miss:
            details.append(f"not run: {', '.join(miss)}")
        plain = [m for m in others if soup_mismatch("llmzero", of("llmzero"), m, of(m))]
        if plain:
            details.append(f"not like for like: llmzero's final model is a weight soup (search.soup); that of "
                           f"{', '.join(plain)} is the best node")
        line(ok and not miss, "LLMZero above random, pbt and skill on every task", details)
    missing = have("llmzero", "llmzero-noLLM")
    if missing:
        line(None, "LLMZero above its no-LLM ablation on at least three tasks",
             [f"no results for {', '.join(missing)}"])
    else:
        above = [t for t in tasks
                 if (st.test_mean(t, "llmzero") or 0) > (st.test_mean(t, "llmzero-noLLM") or 1)]
        line(len(above) >= 3, "LLMZero above its no-LLM ablation (llmzero-noLLM) on at least three tasks",
             [f"{len(above)} of {len(tasks)} task(s): {', '.join(above) or 'none'}"]
             + [f"{t}: {_f(st.test_mean(t, 'llmzero'))} vs {_f(st.test_mean(t, 'llmzero-noLLM'))}; "
                f"{_paired_text(st, t, 'llmzero', 'llmzero-noLLM')}" for t in tasks])
    missing = have("llmzero", "grid")
    if missing:
        line(None, "LLMZero reaches grid search's best validation score with at most 40% of grid's compute",
             [f"no results for {', '.join(missing)}"])
    else:
        details, ok = [], True
        for t in tasks:
            sh = st.shares(t, "llmzero")
            reached = [x for x in sh if x is not None]
            m = _mean(reached) if len(reached) == len(sh) and sh else None
            ok = ok and m is not None and m <= 0.40
            details.append(f"{t}: reached on {len(reached)} of {len(sh)} seed(s), mean share "
                           f"{_f(m, 2) if m is not None else 'undefined (not reached on every seed)'} "
                           f"(per seed: {', '.join('never' if x is None else f'{x:.2f}' for x in sh)})")
        line(ok, "LLMZero reaches grid search's best validation score with at most 40% of grid's compute "
             "(mean over seeds, every seed must reach it)", details)
    return lines


def _section(title: str, intro: str, columns: list[str], rows: list[str]) -> list[str]:
    """One section of the table's Markdown: a heading, a paragraph, then a table of ``rows``."""
    return ["", f"### {title}", "", intro, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
            *rows]


def agent_table(res: dict[str, Any]) -> list[str]:
    """Pooled over tasks and seeds: which menu options each LLM method's agent picked, and its decisions."""
    rows = []
    for method in res["config"]["methods"]:
        rs = [r for r in res["records"] if r["method"] == method and "llm_picks" in r]
        if not rs:
            continue
        picks: Counter[str] = sum((Counter(r["llm_picks"]) for r in rs), Counter())
        decisions: Counter[str] = sum((Counter(r["llm_decisions"]) for r in rs), Counter())
        n = sum(picks.values())
        share = ", ".join(f"{k}: {100 * v / n:.0f}%" for k, v in sorted(picks.items(), key=lambda kv: int(kv[0])))
        own = [r["llm_own_picks"] for r in rs if "llm_own_picks" in r]  # older results files lack it
        rows.append(f"| {method} | {sum(decisions.values())} | {share or '-'} | "
                    f"{sum(own) if len(own) == len(rs) else '-'} | "
                    f"{', '.join(f'{k} {v}' for k, v in sorted(decisions.items())) or '-'} |")
    if not rows:
        return []
    return _section("What the agent chose",
                    "The agent's menu lists the skill library's proposals in its order (remedies for "
                    "the findings first, then keep going and small moves in a shuffled order); the no-LLM "
                    "ablation takes the first ones. Answers off the menu's first options: those that "
                    "picked others; with the decisions, all by which the search can differ from its "
                    "ablation (in results older than sameshuffle.json the menu shuffled the small moves "
                    "with another random stream than the ablation's, so the two differed elsewhere too). "
                    "Pooled over tasks and seeds.",
                    ["method", "answers", "options picked (share of picks)",
                     "answers off the menu's first options", "decisions"], rows)


def headroom(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per task: how far above grid search a choice among every search's checkpoints gets.

    For each seed with a grid cell, the pooled pick is the searched cell (any method but base) with the
    highest best validation score, and its test score is what the pick reports: selected on
    validation, reported on test, as every method is, but with the compute of all the searched methods
    of that seed together. When it is not 6% above grid, no one search at 1/N of that compute is likely
    to be.
    """
    by_seed: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in records:
        if METHODS.get(r["method"]) is not None and r["test_score"] is not None and r["best_val"] is not None:
            by_seed.setdefault((r["task"], r["seed"]), []).append(r)
    out: dict[str, dict[str, Any]] = {}
    for (task, seed), rs in sorted(by_seed.items()):
        grid = next((r for r in rs if r["method"] == "grid"), None)
        if grid is None:
            continue
        pick = max(rs, key=lambda r: r["best_val"])  # the first in the benchmark's order on a tie
        t = out.setdefault(task, {"seeds": [], "grid": [], "pooled": [], "methods": [], "compute": [],
                                  "cells": [], "oracle": []})
        t["seeds"].append(seed)
        t["grid"].append(grid["test_score"])
        t["pooled"].append(pick["test_score"])
        t["methods"].append(pick["method"])
        t["cells"].append(len(rs))
        t["oracle"].append(max(r["test_score"] for r in rs))  # chosen on test: an upper bound, not a pick
        t["compute"].append(sum(r["budget_spent"] for r in rs) / max(grid["budget_spent"], 1))
    for t in out.values():
        t["rel"] = _mean(t["pooled"]) / _mean(t["grid"]) - 1 if _mean(t["grid"]) else None
        t["oracle_rel"] = _mean(t["oracle"]) / _mean(t["grid"]) - 1 if _mean(t["grid"]) else None
    return out


def read_results(path: str) -> dict[str, Any]:
    """A results file (a path, or one relative to the repository), with its records."""
    f = Path(path) if Path(path).is_file() else repo_path(path)
    try:
        res = json.loads(f.read_text())
        if not isinstance(res["records"], list):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise BenchError(f"results file {path!r} does not exist or holds no records") from None
    return res


def pooled_records(paths: list[str]) -> list[dict[str, Any]]:
    """Every record of the results files ``paths``, for the headroom over all of them (``_pool``)."""
    return [r for r, _ in _pool([(path, read_results(path)) for path in paths])]


def _pool(files: list[tuple[str, dict[str, Any]]]) -> list[tuple[dict[str, Any], str]]:
    """Every record of the read results ``files`` ((path, results) pairs), with the path it came from.
    The cells of one (task, seed) must share the base model (one machine and setting: the same base test
    score), and each (task, seed) may have one grid cell only, since picks and compute are measured
    against it."""
    pooled: list[tuple[dict[str, Any], str]] = []
    base: dict[tuple[str, int], tuple[Any, str]] = {}
    grid: dict[tuple[str, int], str] = {}
    for path, res in files:
        for r in res["records"]:
            cell = (r["task"], r["seed"])
            seen = base.setdefault(cell, (r["base_test_score"], path))
            if seen[0] != r["base_test_score"]:
                raise BenchError(f"{cell[0]} seed {cell[1]}: {path!r} and {seen[1]!r} do not share the base "
                                 f"model (base test {r['base_test_score']} vs {seen[0]}): pool the files of "
                                 "one machine")
            if r["method"] == "grid" and grid.setdefault(cell, path) != path:
                raise BenchError(f"{cell[0]} seed {cell[1]} has a grid cell in both {grid[cell]!r} and "
                                 f"{path!r}: pool one grid per seed")
            pooled.append((r, path))
    return pooled


def merged_results(paths: list[str]) -> dict[str, Any]:
    """One results object for ``table`` from several results files of one machine (a benchmark setting
    whose methods ran in more than one file): their records, a cell (task, method, seed) in one file
    only, the cells of a seed sharing the base model and one grid cell (``pooled_records``); the
    methods in the benchmark's order and the tasks in the files' order.

    Compute to grid's best is measured against the grid cell of the same seed, in whichever file it
    is: from the record's validation curve, or, for records older than the curves, as its own run
    measured it where that run had the grid cell; other records get none (``to_grid_unknown``: the
    table prints '-', not 'never'). A seed without a base cell gets one from the base scores its cells
    record: the same model, scored on the same splits by every cell of the seed. The dynamics stay
    per file (``dynamics_by_file``: those with llmzero runs); what a stage adds is pooled."""
    if len(paths) < 2:
        raise BenchError("joining results files needs two or more: A.json+B.json")
    files = [(path, read_results(path)) for path in paths]
    pooled = _pool(files)  # the base-model and one-grid checks
    seen: dict[tuple[str, str, int], str] = {}
    for r, path in pooled:
        cell = (r["task"], r["method"], r["seed"])
        if cell in seen:
            raise BenchError(f"{cell[0]} seed {cell[2]} of {cell[1]!r} is in both {seen[cell]!r} and "
                             f"{path!r}: join results files that hold different cells")
        seen[cell] = path
    cpus = {res["machine"].get("cpu_model") for _, res in files if res.get("machine")} - {None}
    if len(cpus) > 1:
        raise BenchError(f"the results files ran on {len(cpus)} CPUs ({'; '.join(sorted(cpus))}): join the "
                         "files of one machine")
    grid = {(r["task"], r["seed"]): (r, path) for r, path in pooled if r["method"] == "grid"}
    merged, first = [], {}
    for r, path in pooled:
        r, g = dict(r), grid.get((r["task"], r["seed"]))
        if g is not None and "val_curve" in r:
            r["compute_to_grid_best"] = first_reach(r["val_curve"], r["method"], r.get("base_val"),
                                                    g[0]["best_val"])
        elif g is not None and g[1] != path:
            r["compute_to_grid_best"], r["to_grid_unknown"] = None, True
        merged.append(r)
        first.setdefault((r["task"], r["seed"]), r)
    with_base = {(r["task"], r["seed"]) for r in merged if r["method"] == "base"}
    for (task, seed), r in first.items():
        if (task, seed) in with_base:
            continue
        g = grid.get((task, seed))
        merged.append({"task": task, "method": "base", "seed": seed, "test_score": r["base_test_score"],
                       "base_test_score": r["base_test_score"], "best_val": r.get("base_val"),
                       "base_val": r.get("base_val"), "budget_spent": 0, "budget_total": r.get("budget_total"),
                       "llm_tokens": 0, "llm_calls": 0, "llm_seconds": 0.0, "wall_seconds": None, "nodes": 0,
                       "val_curve": [], "compute_to_grid_best": first_reach(
                           [], "base", r.get("base_val"), g[0]["best_val"] if g else None)})
    methods = [m for m in METHODS if any(r["method"] == m for r in merged)]
    tasks = list(dict.fromkeys([t for _, res in files for t in res.get("config", {}).get("tasks", [])]
                               + [r["task"] for r in merged]))
    gains: dict[tuple[int, bool], dict[str, Any]] = {}
    for _, res in files:
        for row in res.get("stage_gains") or []:
            g = gains.setdefault((row["depth"], row["capacity_raised"]), {
                "depth": row["depth"], "capacity_raised": row["capacity_raised"], "stages": 0, "gain": 0.0,
                "tokens": 0.0, "best_of": 0})
            g["stages"] += row["stages"]
            g["gain"] += row["mean_gain"] * row["stages"]
            g["tokens"] += row["mean_tokens"] * row["stages"]
            g["best_of"] += row["best_of"]
    return {"machine": files[0][1].get("machine"),
            "files": [{"path": path, "commit": (res.get("machine") or {}).get("llmzero_commit"),
                       "date": (res.get("machine") or {}).get("date")} for path, res in files],
            "config": {"tasks": tasks, "methods": methods}, "records": merged,
            "dynamics_by_file": [(path, res["dynamics"]) for path, res in files if res.get("dynamics")
                                 and any(r["method"] == "llmzero" for r in res["records"])],
            "stage_gains": [{"depth": g["depth"], "capacity_raised": g["capacity_raised"], "stages": g["stages"],
                             "mean_gain": g["gain"] / g["stages"], "mean_tokens": g["tokens"] / g["stages"],
                             "best_of": g["best_of"]} for _, g in sorted(gains.items())]}


def pooled_headroom(paths: list[str]) -> str:
    """The headroom over every cell of several results files (one machine): per task, grid's mean test
    score, the pick among all their cells on validation, and the best cell on test (an upper bound of
    any pick among them)."""
    rooms = headroom(pooled_records(paths))
    lines = ["| task | seeds | cells pooled | grid test | pooled pick's test (vs grid) | best cell on test, "
             "an upper bound (vs grid) | compute (x grid's) |", "|---|---|---|---|---|---|---|"]
    for task, h in rooms.items():
        lines.append(f"| {task} | {len(h['seeds'])} | {sum(h['cells'])} | {_f(_mean(h['grid']))} | "
                     f"{_f(_mean(h['pooled']))} ({_pct(h['rel'])}) | {_f(_mean(h['oracle']))} "
                     f"({_pct(h['oracle_rel'])}) | {_mean(h['compute']):.1f}x |")
    return "\n".join(lines)


def headroom_table(res: dict[str, Any]) -> list[str]:
    rooms = headroom(res["records"])
    if not rooms:
        return []
    rows = []
    for task in res["config"]["tasks"]:
        if task not in rooms:
            continue
        h = rooms[task]
        picks = "; ".join(f"seed {s}: {_f(x)} ({m})" for s, x, m in zip(h["seeds"], h["pooled"], h["methods"]))
        rows.append(f"| {task} | {_f(_mean(h['grid']))} | {_f(_mean(h['pooled']))} | {_pct(h['rel'])} "
                    f"| {_mean(h['compute']):.1f}x | {picks} |")
    return _section("Headroom: the best of every search together",
                    "Per seed, the checkpoint with the best validation score among every searched cell of "
                    "that seed (every method but base), reported on test: a search with the compute of all "
                    "of them together. Compute is the pooled cells' spend over grid's.",
                    ["task", "grid test", "pooled pick's test", "vs grid", "compute (x grid's)",
                     "per seed: test (method)"], rows)


def gains_table(res: dict[str, Any]) -> list[str]:
    rows = res.get("stage_gains") or []
    if not rows:
        return []
    lines = [f"| {r['depth']} | {'yes' if r['capacity_raised'] else 'no'} | {r['stages']} "
             f"| {r['mean_gain']:+.3f} | {r['mean_tokens']:,.0f} | {r['best_of']} |" for r in rows]
    n_cells = sum(r["best_of"] for r in rows)
    return _section("What a stage adds",
                    "Every scored stage of every searched cell (every method but base), by depth: its "
                    "validation score minus its parent's (depth 1: minus the base model's), and whether it "
                    "raised a capacity parameter (response length, group size, difficulty) above its "
                    f"parent's. Best node: in how many of the {n_cells} cells the best node by validation is "
                    "such a stage.",
                    ["depth", "capacity raised", "stages", "mean val gain over the parent", "mean tokens",
                     "best node"], lines)


def selection_table(res: dict[str, Any]) -> list[str]:
    rows = []
    for method in res["config"]["methods"]:
        rs = [r for r in res["records"] if r["method"] == method and METHODS.get(method) is not None
              and r["best_val"] is not None and r["test_score"] is not None]
        if not rs:
            continue
        gaps = [r["best_val"] - r["test_score"] for r in rs]
        sd = _std(gaps)
        rows.append(f"| {method} | {len(rs)} | {_mean(gaps):+.3f} | {'-' if sd is None else f'{sd:.3f}'} "
                    f"| {_mean([r['nodes'] for r in rs]):.1f} |")
    if not rows:
        return []
    return _section("Selection: the picked node's validation score against its test score",
                    "Per searched cell, the best node's validation score minus its test score: what choosing "
                    "the best of many nodes on one validation split adds (mean), and how closely one node's "
                    "validation score predicts its test score (std).",
                    ["method", "cells", "mean val - test", "std", "nodes compared (mean)"], rows)


def table(res: dict[str, Any]) -> str:
    st = Stats(res["records"])
    cfg = res["config"]
    m = res["machine"]
    cpu_ = ""
    if m.get("cpu_model"):
        cpu_ = f" ({m['cpu_model']}; {m['cpu_capability']}, {' '.join(m['cpu_flags'])})"
    out = [f"machine: {m['processor']}{cpu_}, {m['cpu_count']} CPUs, {m['platform']}, Python {m['python']}, "
           f"torch {m['torch']}{', GPU ' + m['gpu'] if m.get('gpu') else ''}; llmzero "
           f"{(m.get('llmzero_commit') or '?')[:10]}{' (modified)' if m.get('llmzero_dirty') else ''}; "
           f"{m['date']}"]
    if res.get("files"):
        out.append("results files joined: " + "; ".join(
            f"{f['path']} (llmzero {(f['commit'] or '?')[:10]}, {f['date'] or '?'})" for f in res["files"]))
    out.append("")
    for task in cfg["tasks"]:
        out += [f"### {task}", "",
                "| method | test (mean ± std, seeds) | vs base | vs grid | compute spent | compute to grid's "
                "best (share of grid's) | LLM tokens | LLM s | wall s |",
                "|---|---|---|---|---|---|---|---|---|"]
        for method in cfg["methods"]:
            rs = st.by.get((task, method), [])
            if not rs:
                out.append(f"| {method} | not run yet | | | | | | | |")
                continue
            xs = st.tests(task, method)
            sd = _std(xs)
            spent = _mean([r["budget_spent"] for r in rs])
            total = _mean([r["budget_total"] or 0 for r in rs])
            measured = [r for r in rs if not r.get("to_grid_unknown")]
            reached = [r["compute_to_grid_best"] for r in measured if r["compute_to_grid_best"] is not None]
            shares = [x for x in st.shares(task, method) if x is not None]
            if not any((task, r["seed"]) in st.grid_spent for r in measured):
                to_grid = "-"
            elif reached:
                to_grid = (f"{_mean(reached):,.0f} ({_f(_mean(shares), 2)}; {len(reached)}/{len(measured)} seeds)")
            else:
                to_grid = f"never (0/{len(measured)} seeds)"
            vs_grid = "-" if method == "grid" else _pct(st.rel(task, method, "grid"))
            tokens = _mean([r["llm_tokens"] for r in rs])
            llm_s = _mean([r["llm_seconds"] for r in rs])
            walls = [r["wall_seconds"] for r in rs if r["wall_seconds"] is not None]
            out.append(f"| {method} | {_f(_mean(xs))} ± {_f(sd)} ({len(xs)}) "
                       f"| {_pct(st.rel_base(task, method))} | {vs_grid} | {spent:,.0f} of {total:,.0f} "
                       f"| {to_grid} | {tokens:,.0f} | {llm_s:.1f} | {_f(_mean(walls), 1)} |")
        out.append("")
    out += ["Test: greedy accuracy on the test split of the best node by validation (mean over seeds, "
            "sample std). vs base: mean over seeds of test / base test - 1; vs grid: test mean / grid's test "
            "mean - 1. Compute: generated tokens (the budget's meter), mean over seeds. Compute to grid's "
            "best: tokens until the first stage whose validation score reaches grid's best on the same seed "
            "(mean over the seeds that reach it; share of grid's compute in parentheses). LLM: prompt + "
            "completion tokens and seconds, mean over seeds."]
    if any("soup" in r for r in res["records"]):
        out[-1] += (" With search.soup, test is the final model's: the greedy weight soup of the best node "
                    "and the next best checkpoints (the best node alone: best_node_test_score in the file).")
    out += ["", "### Targets", ""]
    out += targets(res)
    out += headroom_table(res)
    out += selection_table(res)
    out += gains_table(res)
    out += agent_table(res)
    out += ["", "### Parameter dynamics of the LLMZero runs", ""]
    sources = res["dynamics_by_file"] if "dynamics_by_file" in res else [(None, res.get("dynamics"))]
    sources = [(path, dyn) for path, dyn in sources if dyn]
    if not sources:
        out.append("no finished llmzero run with a scored stage yet")
    for path, dyn in sources:
        if path is not None:
            out += [f"From {path}:", ""]
        out += _dynamics_lines(dyn) + [""]
    return "\n".join(out).rstrip("\n")


def _dynamics_lines(dyn: dict[str, Any]) -> list[str]:
    """The pooled parameter dynamics of one results file's llmzero runs: a table and the verdict."""
    out = [f"Pooled over {dyn['paths']} paths (the best and the top {dyn['top_k']} of each) of "
           f"{len(dyn['runs'])} run(s); means over the paths that change the parameter.", "",
           "| parameter | role | monotonicity | oscillation | paths that changed it | class | expected "
           "| matches the paper? |", "|---|---|---|---|---|---|---|---|"]
    for p in dyn["parameters"]:
        answer = {"match": "yes", "mismatch": "no"}.get(p["verdict"], p["verdict"])
        out.append(f"| {p['name']} | {p['role']} | {_f(p['monotonicity'], 2)} | {_f(p['oscillation'], 2)} "
                   f"| {p['changed']}/{p['paths']} | {p['class']} | {p['expected']} | {answer} |")
    s = dyn["summary"]
    counts = (f"{s['matched']} parameter(s) match, {s['mismatched']} do not, {s['unchanged']} unchanged or "
              "too short to judge")
    verdict = ("nothing to judge: no parameter changed along the analysed paths" if s["holds"] is None else
               f"the paper's pattern (capacity monotone, regularization oscillating) "
               f"{'holds' if s['holds'] else 'does NOT hold'}")
    return out + ["", f"verdict: {verdict} ({counts})"]


# -- status --------------------------------------------------------------------------------------------


# -- comparing results files ---------------------------------------------------------------------------


def _side(arg: str) -> tuple[str, list[dict[str, Any]], str]:
    """``RESULTS:METHOD``, where RESULTS may join several results files with ``+`` (the seeds of one
    setting run into more than one file); a cell found in two of them is refused. ``METHOD@node``: the
    best node's own test score in place of its final soup's (cells run with ``search.soup``)."""
    joined, sep, method = arg.rpartition(":")
    method, at, which = method.partition("@")
    paths = joined.split("+")
    if not sep or not joined or not method or "" in paths or (at and which != "node"):
        raise BenchError(f"{arg!r} is not allowed: expected RESULTS:METHOD or RESULTS:METHOD@node, e.g. "
                         "bench/results/search.json:grid (several results files joined with +)")
    records, seen, found = [], {}, set()
    for path in paths:
        f = repo_path(path) if not Path(path).is_file() else Path(path)
        if not f.is_file():
            raise BenchError(f"results file {path!r} does not exist")
        try:
            recs = json.loads(f.read_text())["records"]
            found |= {r["method"] for r in recs}
            recs = [r for r in recs if r["method"] == method]
        except (ValueError, KeyError, TypeError):
            raise BenchError(f"results file {path!r} is not a results file (no records)") from None
        for r in recs:
            cell = (r["task"], r["seed"])
            if cell in seen:
                raise BenchError(f"{cell[0]} seed {cell[1]} of {method!r} is in both {seen[cell]!r} and "
                                 f"{path!r}: join results files that hold different cells")
            seen[cell] = path
        records += recs
    if not records:
        raise BenchError(f"method {method!r} is not in {joined!r}: expected one of "
                         f"{', '.join(sorted(found))}")
    if at:
        if any("best_node_test_score" not in r for r in records):
            raise BenchError(f"{arg!r}: {method!r} in {joined!r} has cells without a final soup "
                             "(best_node_test_score): @node needs cells run with search.soup")
        records = [{**{k: v for k, v in r.items() if k not in ("best_node_test_score", "soup")},
                    "test_score": r["best_node_test_score"]} for r in records]
    return f"{'+'.join(Path(x).stem for x in paths)}:{method}{at}{which}", records, method


def final_soup(records: list[dict[str, Any]]) -> bool:
    """Whether these cells' final model is a weight soup (``search.soup``): their test score is the soup's,
    and the best node's own is kept beside it (``@node`` takes that one and is no longer a soup)."""
    return any("best_node_test_score" in r for r in records)


def soup_mismatch(a: str, recs_a: list[dict[str, Any]], b: str, recs_b: list[dict[str, Any]]) -> str | None:
    """A warning when one side's final model is a weight soup and the other's its best node: the soup adds
    up to several points by itself, so such a difference is not the searches'. None: like for like."""
    if final_soup(recs_a) == final_soup(recs_b):
        return None
    soup, node = (a, b) if final_soup(recs_a) else (b, a)
    return (f"Not like for like: {soup}'s final model is a weight soup (search.soup) and {node}'s its best "
            f"node, so part of the difference can be the soup's; run {node.removesuffix('@node')} with the same "
            "search.soup, or compare without the soup (METHOD@node).")


def compare(sides: list[tuple[str, list[dict[str, Any]], str]]) -> str:
    """The first side's test scores against each other side's, per task, paired by seed: ``sides`` are
    (label, records of a results file, method). Cells of two results files pair only if they share the
    base model (the same base test score): the same seed of the same benchmark setting."""
    (label_a, recs_a, method_a), *others = sides
    lines = []
    for label_b, recs_b, method_b in others:
        a = {(r["task"], r["seed"]): r for r in recs_a if r["method"] == method_a and r["test_score"] is not None}
        b = {(r["task"], r["seed"]): r for r in recs_b if r["method"] == method_b and r["test_score"] is not None}
        lines += [f"{label_a} against {label_b}", "",
                  "| task | seeds | A: mean test | B: mean test | A vs B "
                  "| paired difference (95% bootstrap CI) "
                  "| A's compute to B's best val (share of B's compute) |",
                  "|---|---|---|---|---|---|---|"]
        for task in dict.fromkeys(t for t, _ in a):
            keys = sorted(k for k in a if k[0] == task and k in b)
            for k in keys:
                if a[k]["base_test_score"] != b[k]["base_test_score"]:
                    raise BenchError(f"{task} seed {k[1]}: the two cells do not share the base model (base test "
                                     f"{a[k]['base_test_score']} vs {b[k]['base_test_score']}): not paired")
            if not keys:
                continue
            ma, mb = _mean([a[k]["test_score"] for k in keys]), _mean([b[k]["test_score"] for k in keys])
            d = [a[k]["test_score"] - b[k]["test_score"] for k in keys]
            lines.append(f"| {task} | {len(keys)} | {ma:.3f} | {mb:.3f} | {_pct(ma / mb - 1 if mb else None)} | "
                         f"{_mean_ci(d)} | {_reach_cell([a[k] for k in keys], [b[k] for k in keys], method_b)} |")
        warn = soup_mismatch(label_a, list(a.values()), label_b, list(b.values()))
        lines += ["", warn] if warn else []
        lines.append("")
    return "\n".join(lines)


def reach_share(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    """The compute at which cell ``a`` first reached cell ``b``'s best validation score, as a share of what
    ``b`` spent (``a``'s val_curve: compute and val after each stage); None: never. A base cell has no
    stages: 0 if its own val is already there."""
    c = first_reach(a["val_curve"], a["method"], a.get("base_val"), b["best_val"])
    return None if c is None or not b["budget_spent"] else c / b["budget_spent"]


def _reach_cell(a: list[dict[str, Any]], b: list[dict[str, Any]], method_b: str) -> str:
    """The compare table's last column: the median over seeds of A's compute to B's best validation score
    (a seed that never got there counts as the largest), how many seeds got there within 40% of B's
    compute, and how many never did; with B a grid file, grid's own share to its own best beside it.
    Cells written before the records kept their validation curves: '-'."""
    if any("val_curve" not in x for x in a):
        return "-"
    shares = [reach_share(x, y) for x, y in zip(a, b)]
    mid = statistics.median(float("inf") if x is None else x for x in shares)
    text = (f"median {'never' if mid == float('inf') else f'{mid:.2f}'}; at most 0.40 in "
            f"{sum(x is not None and x <= 0.4 for x in shares)} of {len(shares)}; never in "
            f"{shares.count(None)}")
    if method_b == "grid" and all(y.get("compute_to_grid_best") is not None and y["budget_spent"] for y in b):
        own = statistics.median(y["compute_to_grid_best"] / y["budget_spent"] for y in b)
        text += f" (grid's own: {own:.2f})"
    return text


def _mean_ci(d: list[float]) -> str:
    """Paired differences over seeds: their mean and 95% bootstrap interval (none for one seed)."""
    ci = bootstrap_ci(d)
    return f"{_mean(d):+.3f}" + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "")


def configs_table(bench: dict[str, Any], out: Path, method: str = "grid") -> str:
    """Each static configuration of the ``method`` cells (grid, fixed) under ``out``: its validation score
    after each stage, averaged over the seeds; paired by seed with the starting parameters' chain, its last
    stage against that chain's stage at the same depth, and its best stage against that chain's best (what
    grid's pick sees). A chain that early stopping pruned counts at the depths it reached."""
    from llmzero.search.journal import Journal
    from llmzero.space import params_key

    if method not in ("grid", "fixed"):
        raise BenchError(f"--method {method!r} is not allowed: expected grid or fixed (methods whose "
                         "configurations are static, the same on every seed)")
    depth = max(resolved_config(bench, t, method, s).search.depth for t, m, s in cells(bench) if m == method)
    lines = []
    for task in bench["tasks"]:
        runs = []
        for t, m, s in cells(bench):
            d = run_dir(out, t, m, s)
            if (t, m) == (task, method) and (d / "journal.sqlite").is_file():
                journal = Journal(d / "journal.sqlite")
                runs.append((s, journal.replay()))
                journal.close()
        if not runs:
            continue
        start_key = params_key(runs[0][1].root.params, 6)
        # {config key: [label, {seed: {depth: val}}, pruned count]}
        table: dict[tuple, list] = {}
        for seed, tree in runs:
            root = tree.root.params
            for n in tree.nodes.values():
                if n.chain is None or n.val_score is None:
                    continue
                key = params_key(n.params, 6)
                label = ", ".join(f"{k} {v:g}" for k, v in n.params.items() if root.get(k) != v)
                row = table.setdefault(key, [label or "the starting parameters", {}, 0])
                row[1].setdefault(seed, {})[n.depth] = n.val_score
                row[2] += n.state.value == "pruned"
        seeds = len({seed for _, by_seed, _ in table.values() for seed in by_seed})  # with a stage scored
        lines += [f"### {task}: {method}'s configurations, validation score after each stage "
                  f"({seeds} seed{'' if seeds == 1 else 's'})", "",
                  "| configuration | seeds | " + " | ".join(f"stage {k}" for k in range(1, depth + 1))
                  + " | last stage minus the starting parameters' at its depth [95% CI] | best stage minus "
                  "the starting parameters' best [95% CI] | pruned |",
                  "|---|---|" + "---|" * depth + "---|---|---|"]
        start = table.get(start_key, [None, {}, 0])[1]
        for key, (label, by_seed, pruned) in sorted(table.items(), key=lambda kv: kv[0] != start_key):
            cols = []
            for k in range(1, depth + 1):
                v = [x[k] for x in by_seed.values() if k in x]
                cols.append(f"{_mean(v):.3f} ({len(v)})" if v else "-")
            last = [x[max(x)] - start[s][max(x)] for s, x in by_seed.items() if max(x) in start.get(s, {})]
            best = [max(x.values()) - max(start[s].values()) for s, x in by_seed.items() if start.get(s)]
            diffs = ["-" if key == start_key or not d else f"{_mean_ci(d)} ({len(d)})" for d in (last, best)]
            lines.append(f"| {label} | {len(by_seed)} | " + " | ".join(cols + diffs) + f" | {pruned} |")
        lines.append("")
    return "\n".join(lines) if lines else f"no {method} cell has a journal under {out}"


def status(bench: dict[str, Any], out: Path) -> str:
    from llmzero.search.journal import RunLock

    counts: dict[str, int] = {"done": 0, "started": 0, "new": 0}
    lines, running = [], 0
    for t, m, s in cells(bench):
        d = run_dir(out, t, m, s)
        state, _ = cell_state(d, m)
        pid = RunLock.holder(d) if state != "done" else None
        if pid is not None:  # a cell with nothing recorded yet may be building its base model
            state = "started"
        counts[state] += 1
        running += pid is not None
        lines.append(f"{t:15s} {m:14s} seed {s}: {f'started (running now, pid {pid})' if pid else state}")
    stopped = counts["started"] - running
    how = "will resume" if not running else f"{running} running now" + (f", {stopped} will resume" if stopped else "")
    lines.append(f"{counts['done']} done, {counts['started']} started ({how}), {counts['new']} left "
                 f"of {sum(counts.values())} cells")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run (or resume) the benchmark's cells")
    r.add_argument("config")
    r.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="run directories (default bench/runs/search)")
    r.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    r.add_argument("--only-task", action="append")
    r.add_argument("--only-method", action="append")
    r.add_argument("--only-seed", action="append", type=int)
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an override of every cell's experiment, e.g. budget.compute=100000 (repeatable)")
    r.add_argument("--continue-unspent", action="store_true",
                   help="resume the finished tree-search cells (mcts, skill) that left more than 5%% of their "
                        "budget unspent: this llmzero's search may spend the rest")
    g = sub.add_parser("configs", help="each static configuration of the grid (or fixed) cells: its "
                                       "validation score after each stage, over the seeds")
    g.add_argument("config")
    g.add_argument("--out", type=Path, default=DEFAULT_OUT)
    g.add_argument("--method", default="grid")
    g.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    s = sub.add_parser("status", help="cells done, started and left")
    s.add_argument("config")
    s.add_argument("--out", type=Path, default=DEFAULT_OUT)
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    t = sub.add_parser("table", help="the markdown tables and targets from a results file, or from several "
                                     "of one machine joined with +")
    t.add_argument("--results", default=str(DEFAULT_RESULTS),
                   help="a results file, or A.json+B.json: the methods of one setting run into several files")
    c = sub.add_parser("compare", help="one method of one results file against others, paired by seed")
    c.add_argument("sides", nargs="+", metavar="RESULTS:METHOD",
                   help="e.g. bench/results/depth5.json:llmzero bench/results/search.json:grid (the first "
                        "against each of the others); a.json+b.json:grid joins two results files' seeds; "
                        "METHOD@node: the best node's test score, not its final soup's (search.soup)")
    h = sub.add_parser("headroom", help="the best of every cell of several results files (one machine), "
                                        "against grid")
    h.add_argument("results", nargs="+", help="results files whose cells share the base models (one machine)")
    a = ap.parse_args(argv)
    try:
        if a.cmd == "headroom":
            print(pooled_headroom(a.results))
            return 0
        if a.cmd == "compare":
            if len(a.sides) < 2:
                raise BenchError("compare needs two RESULTS:METHOD or more: the first against the others")
            print(compare([_side(x) for x in a.sides]))
            return 0
        if a.cmd == "table":
            paths = a.results.split("+")
            if "" in paths:
                raise BenchError(f"--results {a.results!r} is not allowed: expected a results file or "
                                 "several joined with +, e.g. A.json+B.json")
            if len(paths) > 1:
                print(table(merged_results(paths)))
                return 0
            if not Path(a.results).is_file():
                raise BenchError(f"results file {a.results!r} does not exist: run `bench/search.py run` first")
            print(table(json.loads(Path(a.results).read_text())))
            return 0
        from llmzero.runtime import configure_process

        configure_process(1)
        bench = load_bench(a.config, a.set)
        if a.cmd == "status":
            print(status(bench, a.out))
            return 0
        if a.cmd == "configs":
            print(configs_table(bench, a.out, a.method))
            return 0
        run_cells(bench, a.out, a.results, a.only_task, a.only_method, a.only_seed, str(a.config),
                  continue_unspent=a.continue_unspent)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `table ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 1
    except KeyboardInterrupt:  # Ctrl-C: finished cells are in the results file, the one in flight resumes
        print("stopped: run the same command again to continue where it stopped", file=sys.stderr)
        return 130
    except ValueError as e:  # ConfigError, ModelError, JournalError: one line, raised by a cell
        from llmzero.config import ConfigError
        from llmzero.models.tiny import ModelError
        from llmzero.search import JournalError

        if not isinstance(e, (ConfigError, ModelError, JournalError)):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"results: {a.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
