"""The command line: the only place that prints, draws progress or exits.

Bad input ends with one line, ``error: ...``, naming the field, the value and what is allowed, and
exit code 2. Nothing is written before the input has been checked.
"""

from __future__ import annotations

import inspect
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from llmzero.config import METHODS, ConfigError
from llmzero.models.tiny import PRESETS, ModelError
from llmzero.search.journal import JournalError
from llmzero.space import SpaceError
from llmzero.strategy import Soup, StrategyError, load_schedule, schedule_meta
from llmzero.tasks import BUILTIN, TaskError, TaskSpec, task_space
from llmzero.training._base import CheckpointError, check_checkpoint
from llmzero.transfer import TransferError

try:  # typer >= 0.20 vendors click; its exceptions are not click's
    from typer._click.exceptions import UsageError
except ImportError:  # pragma: no cover - older typer on real click
    from click.exceptions import UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="LLMZero: discover multi-stage GRPO training strategies.")
out = Console()
err = Console(stderr=True)

USER_ERRORS = (SpaceError, StrategyError, TaskError, ModelError, CheckpointError, ConfigError, JournalError,
               TransferError)


class BadInput(ValueError):
    """A CLI argument that is not allowed."""


def _task_spec(task: str, difficulty: int) -> TaskSpec:
    spec = TaskSpec(name=task, difficulty=difficulty)
    spec.build()  # validates name and difficulty now, before anything is written
    return spec


def _train_task(task: str | None, difficulty: int | None, meta: dict[str, Any]) -> TaskSpec:
    """``llmzero train``'s task: ``--task``, else the one a search's export names; a search's export of that
    task gives its whole config (``--difficulty`` overrides its level)."""
    name = task or meta.get("task")
    if not isinstance(name, str):
        raise BadInput("--task is missing: the schedule names no task (a search's export does): give --task NAME")
    exported = meta.get("task_config")
    if not isinstance(exported, dict) or exported.get("name") != name:
        return _task_spec(name, 2 if difficulty is None else difficulty)
    from pydantic import ValidationError

    from llmzero.config import TaskConfig, one_line
    from llmzero.search.loop import spec_of_task

    try:
        cfg = TaskConfig.model_validate({**exported, **({} if difficulty is None else {"difficulty": difficulty})})
    except ValidationError as e:
        raise BadInput(one_line(e, "task_config.", TaskConfig)) from None
    spec = spec_of_task(cfg)
    spec.build()  # validates it now, before anything is written
    return spec


def _base(spec: TaskSpec, model: str, seed: int, progress: Progress | None = None) -> tuple[str, float | None]:
    """The base model directory and its test accuracy (None for a user's model, scored later)."""
    from llmzero.models.base import build_base, check_model_dir

    if model in PRESETS:
        task_id = None
        if progress is not None:
            task_id = progress.add_task(f"base model for {spec.name} (SFT warm start, cached)", total=None)
        info = build_base(spec.build(), model, seed,
                          progress=(lambda s, a: progress.update(task_id, description=f"base model SFT step {s}: val "
                                                                 f"accuracy {a:.3f}")) if progress else None)
        if progress is not None:
            progress.remove_task(task_id)
        return info.path, info.test_accuracy
    return str(check_model_dir(model)), None


def _progress() -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                    transient=True)


@app.command("tasks")
def tasks_cmd(all_: Annotated[bool, typer.Option("--all", help="Also list every reasoning-gym dataset.")] = False):
    """List the built-in tasks (and, with --all, the reasoning-gym datasets usable as rg:<name>)."""
    table = Table(title="built-in tasks")
    for col in ("task", "what", "max_completion_length", "difficulties"):
        table.add_column(col)
    for name, spec in BUILTIN.items():
        table.add_row(name, spec["description"], str(spec["default_max_completion_length"]),
                      ", ".join(map(str, spec["levels"])))
    out.print(table)
    if all_:
        import reasoning_gym

        names = sorted(reasoning_gym.factory.DATASETS)
        out.print(f"{len(names)} reasoning-gym datasets, usable as --task rg:<name>:")
        out.print(", ".join(names))


@app.command("base")
def base_cmd(
    task: Annotated[str, typer.Option(help="Task name (see `llmzero tasks`).")],
    model: Annotated[str, typer.Option(help=f"Tiny-model preset ({', '.join(PRESETS)}).")] = "s",
    seed: Annotated[int, typer.Option(help="Seed of the initialisation and SFT.")] = 0,
    difficulty: Annotated[int, typer.Option(help="Task difficulty of val and test.")] = 2,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
):
    """Build (or fetch from the cache) the base model of a task: a supervised warm start."""
    from llmzero.runtime import configure_process

    if model not in PRESETS:
        raise BadInput(f"model={model!r} is not allowed: expected one of {', '.join(PRESETS)}")
    spec = _task_spec(task, difficulty)
    configure_process(1)
    from llmzero.models.base import build_base

    with _progress() as progress:
        tid = progress.add_task(f"building the base model for {task}", total=None)
        info = build_base(spec.build(), model, seed,
                          progress=lambda s, a: progress.update(tid, description=f"SFT step {s}: val accuracy {a:.3f}"))
    if json_:
        print(json.dumps(info.__dict__))
        return
    out.print(f"base model for [bold]{task}[/]: {info.path}")
    out.print(f"  SFT steps {info.sft_steps}, val accuracy {info.val_accuracy:.3f}, "
              f"test accuracy {info.test_accuracy:.3f}{' (cached)' if info.cached else ''}")


@app.command("train")
def train_cmd(
    schedule: Annotated[Path, typer.Option(help="A schedule YAML file (stages with steps and params), or a "
                                            "weight soup of several (a search's soup.yaml).")],
    task: Annotated[str | None, typer.Option(
        help="Task name (see `llmzero tasks`); default: the task a search's exported schedule names, with its "
             "whole config (sizes, data seed, reasoning-gym config, chat).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory; must not exist yet.")] = Path("runs/train"),
    model: Annotated[str | None, typer.Option(
        help="Tiny-model preset or a Hugging Face model directory (default: a search's export's model, else "
             "s).")] = None,
    parent: Annotated[str | None, typer.Option(help="Start from this stage checkpoint instead of the base.")] = None,
    seed: Annotated[int | None, typer.Option(
        help="Seed of the base model, and of stages that name none (default: a search's export's base seed, "
             "else 0).")] = None,
    difficulty: Annotated[int | None, typer.Option(
        help="Task difficulty of val and test (default: the export's, else 2).")] = None,
    workers: Annotated[int, typer.Option(help="Worker processes (0 runs stages in this process).")] = 1,
    device: Annotated[str, typer.Option(help="Where stages train: auto (CUDA if visible, else the CPU), cpu or "
                                        "cuda (as executor.device).")] = "auto",
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON summary object on stdout.")] = False,
):
    """Train a fixed multi-stage schedule (or rebuild a search's weight soup) and report each stage's
    scores and key metrics. A search's strategy.yaml or soup.yaml replays as the search trained it: its
    task, model and base seed are the defaults."""
    meta = schedule_meta(schedule)
    spec = _train_task(task, difficulty, meta)
    model = model or meta.get("model") or "s"
    seed = seed if seed is not None else int(meta.get("base_seed", 0))
    strategy = load_schedule(schedule, space=task_space(spec.build()))
    members = strategy.members if isinstance(strategy, Soup) else (strategy,)
    if model not in PRESETS:
        from llmzero.models.base import check_model_dir

        check_model_dir(model)
    if parent is not None:
        for mode in dict.fromkeys(m.stages[0].mode for m in members):
            check_checkpoint(parent, mode)
    if workers < 0:
        raise BadInput(f"workers={workers} is not allowed: expected an integer >= 0")
    from llmzero.runtime import DeviceError, resolve_device

    try:
        resolve_device(device, field="device")
    except DeviceError as e:
        raise BadInput(str(e)) from None
    from llmzero.config import TrainingConfig, one_line
    from pydantic import ValidationError

    try:  # a strategy exported by a search carries the fixed training settings it was found with
        training = TrainingConfig.model_validate(strategy.meta.get("training", {}))
    except ValidationError as e:
        raise BadInput(f"{schedule.name}: {one_line(e, 'training.', TrainingConfig)}") from None
    if out_dir.exists() and any(out_dir.iterdir()):
        raise BadInput(f"out={str(out_dir)!r} is not allowed: the directory exists and is not empty "
                       "(results are never overwritten)")

    from llmzero.runtime import configure_process

    configure_process(1)
    from llmzero.training.schedule import train_schedule, train_soup

    train = train_soup if isinstance(strategy, Soup) else train_schedule
    with _progress() as progress:
        base_dir, base_test = _base(spec, model, seed, progress)
        tid = progress.add_task("training", total=None)
        summary = train(spec, strategy, out_dir, base_dir, base_test=base_test, parent=parent, seed=seed,
                        workers=workers, device=device, prompts_per_step=training.prompts_per_step,
                        on_stage=lambda i, res: _print_stage(i, res, quiet=json_),
                        say=lambda msg: progress.update(tid, description=msg))
    if json_:
        print(json.dumps(summary))
    else:
        _print_summary(summary)
    if summary["failed"]:
        raise typer.Exit(1)


@app.command("search")
def search_cmd(
    config: Annotated[Path | None, typer.Argument(help="Experiment file (YAML); see examples/.")] = None,
    method: Annotated[str | None, typer.Option(help=f"One of {', '.join(METHODS)} (overrides search.method).")] = None,
    budget: Annotated[int | None, typer.Option(help="Compute budget in generated tokens (overrides budget.compute).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the search (overrides seed).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (overrides executor.workers).")] = None,
    device: Annotated[str | None, typer.Option(
        help="Where stages train: auto, cpu or cuda (overrides executor.device).")] = None,
    soup: Annotated[int | None, typer.Option(
        help="Final model: a greedy weight soup of up to this many of the best checkpoints (overrides "
             "search.soup; 0: the best node).")] = None,
    draws: Annotated[int | None, typer.Option(
        help="GRPO draws of every stage, averaged into its checkpoint (overrides search.draws; "
             "1: off).")] = None,
    draws_min_gain: Annotated[float | None, typer.Option(
        help="With --draws > 1: single draws after the first three stages of draws unless their soups "
             "beat the better draw by this much on validation (overrides search.draws_min_gain).")] = None,
    sibling_soup: Annotated[bool | None, typer.Option(
        "--sibling-soup/--no-sibling-soup", help="Average a node's best children into a free child the "
        "search can grow from (overrides search.sibling_soup; mcts and skill).")] = None,
    scale_updates: Annotated[bool | None, typer.Option(
        "--scale-updates/--no-scale-updates", help="Try each stage's update from its parent halved and "
        "extended by half; the better, if above the stage, is a free sibling the search can grow from "
        "(overrides search.scale_updates; mcts and skill).")] = None,
    lineages: Annotated[int | None, typer.Option(
        help="Grow this many lineages from the base model side by side, the agent proposing each one's next "
             "stage, for the final soup to average (overrides search.lineages; mcts and skill; 1: the "
             "tree).")] = None,
    lineage_start: Annotated[str | None, typer.Option(
        help="With --lineages: 'start' trains every lineage's first stage with the starting parameters, "
             "'grid' lineage i's with search.grid's i-th configuration nearest to them, and the agent proposes "
             "from the second stage on; 'agent': the agent proposes the first stages too "
             "(overrides search.lineage_start).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Run directory (default runs/<task>-<method>-s<seed>).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Resume the run in this directory from its journal.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object on stdout.")] = False,
    report: Annotated[bool, typer.Option(help="Write RUN/report.html and RUN/report.md at the end.")] = True,
):
    """Search for a multi-stage training strategy by growing a tree of real checkpoints."""
    from llmzero.config import load_config
    from llmzero.search import JOURNAL, SearchRun

    if workers is not None and workers < 1:
        raise BadInput(f"workers={workers} is not allowed: expected an integer >= 1")
    if resume is not None:
        given = (seed, device, soup, draws, draws_min_gain, sibling_soup, scale_updates, lineages, lineage_start)
        if config is not None or method or budget or any(v is not None for v in given):
            raise BadInput("resume takes its config from the run's journal: pass only --resume RUN (and --workers)")
        if not (resume / JOURNAL).is_file():
            raise BadInput(f"resume={str(resume)!r} is not allowed: no {JOURNAL} in that directory")
        run_dir = resume
        cfg = None
    else:
        if config is None:
            raise BadInput("CONFIG is missing: give an experiment file, or --resume RUN")
        cfg = load_config(config, {"search.method": method, "budget.compute": budget, "seed": seed,
                                   "executor.workers": workers, "executor.device": device,
                                   "search.soup": soup, "search.draws": draws,
                                   "search.draws_min_gain": draws_min_gain,
                                   "search.sibling_soup": sibling_soup,
                                   "search.scale_updates": scale_updates, "search.lineages": lineages,
                                   "search.lineage_start": lineage_start})
        run_dir = out_dir or Path("runs") / f"{cfg.task.name.replace(':', '_')}-{cfg.search.method}-s{cfg.seed}"
        if run_dir.exists() and any(run_dir.iterdir()):
            raise BadInput(f"out={str(run_dir)!r} is not allowed: the directory exists and is not empty "
                           "(use --resume to continue it)")
        if cfg.model not in PRESETS:  # before the run directory exists: a bad model leaves nothing
            from llmzero.search.loop import check_model

            check_model(cfg)

    from llmzero.runtime import configure_process

    configure_process(1)
    existed = run_dir.exists()  # a new run's directory is absent or empty (checked above)
    try:
        run = SearchRun(cfg, run_dir, resume=resume is not None, workers=workers)
    except BaseException:  # a bad prior, say: a new run leaves no directory behind, nor anything in it
        if resume is None:
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
            if existed:
                run_dir.mkdir()
        raise

    def close_dropping_a_run_not_started() -> bool:
        """Close the run; a new one with nothing recorded yet is removed (no half-made run left behind)."""
        run.close()
        if resume is None and not run.tree.meta:
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
            return True
        return False

    try:
        run.open_executor()
        summary = _live_search(run, transient=json_)
    except ConfigError:  # the executor cannot be had (a Ray cluster out of reach): nothing was trained
        close_dropping_a_run_not_started()
        raise
    except KeyboardInterrupt:  # Ctrl-C: the journal holds every finished stage, the workers end with us
        if close_dropping_a_run_not_started():
            print("stopped before the search started: nothing was kept", file=sys.stderr)
        else:
            print(f"stopped: continue with `llmzero search --resume {run_dir}` (the stages in flight train "
                  "again)", file=sys.stderr)
        raise typer.Exit(130) from None
    run.close()
    if report:
        from llmzero.report import write_report

        summary["report"] = str(write_report([run_dir])[0])
    if json_:
        print(json.dumps(summary))
        return
    out.print(f"\n[bold]{summary['method']}[/] on {summary['task']}: best node {summary['best_node']} "
              f"(val {_fmt(summary['best_val'])}), test {_fmt(summary['test_score'])} vs base "
              f"{_fmt(summary['base_test_score'])}")
    if summary.get("soup"):
        out.print(_soup_line(summary))
    if summary["relative_improvement"] is not None:
        out.print(f"relative improvement over the base model: {100 * summary['relative_improvement']:+.1f}%")
    out.print(f"spent {summary['budget_spent']:,} of {summary['budget_total']:,} tokens; {summary['nodes']} stages "
              f"({summary['failed']} failed, {summary['pruned']} pruned, ~{summary['pruned_savings']:,} tokens "
              f"saved by pruning); {summary['stop_reason']}; {summary['wall_seconds']} s; "
              f"checkpoints on disk {summary['disk_bytes'] / 1e6:.1f} MB")
    if summary["llm_calls"]:
        out.print(f"LLM agent: {summary['llm_calls']} calls, {summary['llm_prompt_tokens']:,} prompt + "
                  f"{summary['llm_completion_tokens']:,} completion tokens, {summary['llm_seconds']:.0f} s; "
                  f"{summary['proposals_repaired']} proposals repaired, {summary['llm_failures']} fell back to skills")
    _print_strategy(summary["strategy"])
    soup = f"   soup: {summary['run']}/soup.yaml" if (summary.get("soup") or {}).get("path") else ""
    out.print(f"strategy: {summary['run']}/strategy.yaml{soup}   tree: llmzero show {summary['run']}")
    if report:
        out.print(f"report: {summary['report']} (and report.md beside it)")


def _live_search(run, transient: bool = False) -> dict[str, Any]:
    """Run a search with a live view on stderr (spinner, budget, tree, best, running stages)."""
    from rich.console import Group
    from rich.live import Live

    spinner = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err)
    tid = spinner.add_task(f"{run.cfg.search.method} search on {run.cfg.task.name}", total=None)

    def view(st) -> Table:
        t = Table(box=None, show_header=False)
        t.add_row("budget", f"{st.spent:,} / {st.total:,} generated tokens ({100 * st.spent / st.total:.0f}%)")
        t.add_row("tree", f"{st.nodes} stages, {st.failed} failed, {st.pruned} pruned")
        t.add_row("best", f"{st.best_id or '-'}: val {_fmt(st.best_val)} (base {_fmt(st.base_val)})")
        t.add_row("running", ", ".join(st.running) or "-")
        return t

    with Live(Group(spinner, view(run.status())), console=err, refresh_per_second=4, transient=transient) as live:
        def on_status(st) -> None:
            if st.message:
                spinner.update(tid, description=st.message)
            live.update(Group(spinner, view(st)))

        return run.run(on_status)


def _print_strategy(stages: list[dict[str, Any]]) -> None:
    """The discovered schedule: one row per stage, every parameter that differs from the stage before."""
    t = Table(title="discovered strategy", box=None)
    for col in ("stage", "steps", "mode", "parameters (changes from the previous stage)"):
        t.add_column(col)
    prev: dict[str, Any] | None = None
    for i, st in enumerate(stages):
        p = st["params"]
        shown = p if prev is None else {k: v for k, v in p.items() if prev.get(k) != v}
        draws = f" x {st['draws']} draws" if st.get("draws", 1) > 1 else ""
        merged = f" (averaged with {len(st['merge'])} sibling stage(s))" if st.get("merge") else ""
        merged += f" (its update scaled by {st['scale']:g})" if st.get("scale", 1.0) != 1.0 else ""
        t.add_row(str(i + 1), f"{st['steps']}{draws}", st["mode"],
                  (", ".join(f"{k}={_short(v)}" for k, v in shown.items()) or "(no change)") + merged)
        prev = p
    out.print(t)


RUN_KINDS = ("a run directory of llmzero search (journal.sqlite), llmzero train (stages.json and summary.json) "
             "or llmzero transfer (transfer.json)")


def _run_kind(d: Path) -> str | None:
    """What made the directory ``d``: search, train or transfer; None: none of them (yet)."""
    from llmzero.search import JOURNAL

    if (d / JOURNAL).is_file():
        return "search"
    if (d / "transfer.json").is_file():
        return "transfer"
    if (d / "summary.json").is_file() and (d / "stages.json").is_file():
        return "train"
    return None


def _not_a_run(d: Path, field: str = "run") -> BadInput:
    """The one-line error for a directory that holds no run of the kind asked."""
    if not d.is_dir():
        return BadInput(f"{field}={str(d)!r} is not allowed: no such directory")
    return BadInput(f"{field}={str(d)!r} is not allowed: expected {RUN_KINDS}, and it holds none of them")


def _need_search(d: Path, field: str = "run") -> None:
    """``d`` must be a search run directory; a transfer's or a trained schedule's gets a pointer."""
    kind = _run_kind(d)
    if kind == "search":
        return
    if kind == "transfer":
        parts = [str(d / p) for p in ("search", "noprior", "fixed") if _run_kind(d / p) == "search"]
        raise BadInput(f"{field}={str(d)!r} is not allowed: it is a transfer directory (llmzero show prints its "
                       f"table); its searches are {', '.join(parts) if parts else 'not run yet'}")
    if kind == "train":
        raise BadInput(f"{field}={str(d)!r} is not allowed: it is a trained schedule (llmzero train; llmzero show "
                       "prints its stages), not a search run directory")
    if not d.is_dir():
        raise _not_a_run(d, field)
    raise BadInput(f"{field}={str(d)!r} is not allowed: expected a search run directory (made by llmzero "
                   "search) holding journal.sqlite, and there is none")


@app.command("show")
def show_cmd(run_dir: Annotated[Path, typer.Argument(
        metavar="RUN", help="A run directory: a search's (its tree), a trained schedule's (llmzero train: its "
                            "stages) or a transfer's (its table).")]):
    """Print a run: a search's tree with the best path marked with *, a trained schedule's stages, or a
    transfer's table."""
    kind = _run_kind(run_dir)
    if kind is None:
        raise _not_a_run(run_dir)
    if kind == "transfer":
        _print_transfer(json.loads((run_dir / "transfer.json").read_text()), run_dir)
        return
    if kind == "train":
        _show_trained(run_dir)
        return
    from rich.markup import escape
    from rich.tree import Tree as RichTree

    from llmzero.search import JOURNAL, ROOT, Journal

    journal = Journal(run_dir / JOURNAL)
    tree = journal.replay()
    journal.close()
    if not tree.nodes:
        raise BadInput(f"run={str(run_dir)!r} holds no tree yet")
    best = tree.best()
    on_path = {n.id for n in tree.path(best.id)} if best else set()

    def label(n) -> str:
        mark = "[bold green]*[/] " if n.id in on_path else "  "
        if n.id == ROOT:
            return f"{mark}root (base model): val {_fmt(n.val_score)}"
        changes = ", ".join(f"{k} {_short(a)}->{_short(b)}" for k, (a, b) in
                            ((k, (v['from'], v['to'])) for k, v in n.transition.get("changes", {}).items()))
        state = n.state.value + (", checkpoint deleted" if n.deleted else "")
        by = n.transition.get("proposed_by", "")
        why = n.transition.get("reason", "").removeprefix(f"{by}: ")  # reasons may start with their proposer
        text = (f"{n.id} [{state}] val {_fmt(n.val_score)} steps {n.steps} | {changes or 'no change'} | "
                f"{by}: {why[:90]}")
        return mark + escape(text + (f" | error: {n.error[:80]}" if n.error else ""))

    def add(rt, node_id: str) -> None:
        for c in tree.nodes[node_id].children:
            add(rt.add(label(tree.nodes[c])), c)

    rt = RichTree(label(tree.root))
    add(rt, ROOT)
    out.print(rt)
    if tree.finished:
        f = tree.finished
        out.print(f"best {f.get('best_node')}: val {_fmt(f.get('best_val'))}, test {_fmt(f.get('test_score'))} "
                  f"(base {_fmt(f.get('base_test_score'))}); {f.get('stop_reason')}")
        if f.get("soup"):
            from llmzero.training import locate_soup

            here = locate_soup(f["soup"]["path"], run_dir)  # where the soup is now, if the run was moved
            out.print(_soup_line({**f, "soup": {**f["soup"], "path": here}}))


def _transfer_path(d: Path, spec: TaskSpec, cfg: Any, strategy: Any, quiet: bool) -> dict[str, Any]:
    """One path of a transfer (the replay or its control) trained in ``d``, or its summary if done (the same
    stages only: a path trained from other parameters is not reused)."""
    if (d / "summary.json").is_file():
        from llmzero.strategy import Strategy

        done = Strategy.load(d / "strategy.yaml") if (d / "strategy.yaml").is_file() else None
        if done is not None and [x.to_dict() for x in done.stages] != [x.to_dict() for x in strategy.stages]:
            raise BadInput(f"out={str(d.parent)!r} is not allowed: its {d.name} trained other stages than this "
                           "transfer's (another source, target or --param): give another --out")
        return json.loads((d / "summary.json").read_text())
    import shutil

    from llmzero.training.schedule import train_schedule

    shutil.rmtree(d, ignore_errors=True)  # an interrupted path starts again
    with _progress() as progress:
        base_dir, base_test = _base(spec, cfg.model, cfg.base_seed, progress)
        tid = progress.add_task(f"training {d.name}", total=None)
        return train_schedule(spec, strategy, d, base_dir, base_test=base_test, seed=cfg.seed,
                              executor=cfg.executor, prompts_per_step=cfg.training.prompts_per_step,
                              on_stage=lambda i, res: _print_stage(i, res, quiet=quiet),
                              say=lambda msg: progress.update(tid, description=f"{d.name}: {msg}"))


def _path_result(s: dict[str, Any], d: Path, spec: TaskSpec, soup: int) -> dict[str, Any]:
    """A transfer path's result; with ``soup`` > 1 (the source's ``search.soup``) its final model is the
    greedy soup of its stages, as the search and fixed parts' is (``path_test_score``: its last stage's)."""
    res = {"test_score": s["test_score"], "base_test_score": s["base_test_score"],
           "val_score": (s["val_scores"] or [None])[-1], "compute": s["generated_tokens"], "run": str(d)}
    if soup > 1 and s["test_score"] is not None:
        from llmzero.training.soup import path_soup

        made = path_soup(spec.build(), d, soup)
        if made is not None:
            res.update(path_test_score=s["test_score"], test_score=made["test_score"], soup=made)
    return res


def _param_values(pairs: list[str]) -> dict[str, Any]:
    """``--param NAME=VALUE`` options as the target's starting parameters, each value read as YAML."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise BadInput(f"param={pair!r} is not allowed: expected NAME=VALUE, e.g. temperature=0.5")
        try:
            out[name.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise BadInput(f"param={pair!r} is not allowed: {value!r} is not a value") from None
    return out


@app.command("transfer")
def transfer_cmd(
    source: Annotated[Path, typer.Option("--from", help="A finished search run directory (the source).")],
    task: Annotated[str, typer.Option(help="The target task (see `llmzero tasks`).")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output directory (default "
                                                 "runs/transfer-<source>-to-<task>); re-running resumes it.")] = None,
    only: Annotated[list[str] | None, typer.Option(help="Run only these parts: replay, default, search, noprior, "
                                                   "fixed (repeatable; default all but noprior, the search "
                                                   "without the prior).")] = None,
    model: Annotated[str | None, typer.Option(help="Model for the target task (default: the source's).")] = None,
    budget: Annotated[int | None, typer.Option(help="Compute budget of the searches (default: the source's).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default: the source's).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: the source's).")] = None,
    param: Annotated[list[str] | None, typer.Option(help="A starting parameter of the target, NAME=VALUE "
                                                    "(repeatable; default: the target task's own).")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
):
    """Carry a discovered strategy to another task: replay it beside its control (the same stages with the
    target's starting parameters), and search with it as the agent's prior; all against the target task's
    fixed schedule, on the test split."""
    from llmzero.search import JOURNAL, SearchRun
    from llmzero.search.loop import task_spec
    from llmzero.transfer import (DEFAULT_PARTS, PARTS, default_strategy, fixed_config, load_prior, map_strategy,
                                  noprior_config, relative, target_config)

    parts = list(dict.fromkeys(only or DEFAULT_PARTS))
    for p in parts:
        if p not in PARTS:
            raise BadInput(f"only={p!r} is not allowed: expected one of {', '.join(PARTS)}")
    params = _param_values(param or [])
    prior = load_prior(source)
    cfg = target_config(prior, task, {"model": model, "budget.compute": budget, "seed": seed,
                                      "executor.workers": workers,
                                      **{f"params.{k}": v for k, v in params.items()}})
    spec = task_spec(cfg)
    space = task_space(spec.build())
    out_dir = out_dir or Path("runs") / f"transfer-{source.name}-to-{task.replace(':', '_')}"

    from llmzero.runtime import configure_process

    configure_process(1)
    results: dict[str, dict[str, Any]] = {}
    start = space.validate(cfg.params)
    strategy, repairs = map_strategy(prior, space, start)
    control = default_strategy(strategy, start)

    def wanted(part: str, d: Path) -> bool:  # --only says what to run; a part done before is reported too
        return part in parts or (d / "summary.json").is_file()

    for part, schedule in (("replay", strategy), ("default", control)):
        d = out_dir / part
        if part == "default" and [s.params for s in strategy.stages] == [s.params for s in control.stages]:
            # the replay keeps the target's starting parameters throughout: it is its own control
            d, schedule = out_dir / "replay", strategy
        if not wanted(part, d):
            continue
        s = _transfer_path(d, spec, cfg, schedule, json_)
        results[part] = _path_result(s, d, spec, cfg.search.soup)
        if d.name != part:
            results[part]["same_as"] = d.name
        if part == "replay":
            results[part]["repairs"] = [r.__dict__ for r in repairs]
    for part in ("search", "noprior", "fixed"):
        d = out_dir / part
        if not wanted(part, d):
            continue
        if (d / "summary.json").is_file():
            s = json.loads((d / "summary.json").read_text())
        else:
            run_cfg = (cfg if part == "search" else noprior_config(cfg) if part == "noprior"
                       else fixed_config(cfg, prior))
            run = SearchRun(None if (d / JOURNAL).is_file() else run_cfg, d, resume=(d / JOURNAL).is_file())
            s = _live_search(run, transient=json_)
            run.close()
        results[part] = {"test_score": s["test_score"], "base_test_score": s["base_test_score"],
                         "val_score": s["best_val"], "compute": s["budget_spent"], "run": str(d),
                         "llm_calls": s.get("llm_calls", 0)}
    for r in results.values():
        r["vs_base"] = relative(r["test_score"], r["base_test_score"])
        for ref in ("default", "noprior", "fixed"):
            r[f"vs_{ref}"] = relative(r["test_score"], results.get(ref, {}).get("test_score"))
    report = {"source": str(source), "source_task": prior.task, "task": task, "method": cfg.search.method,
              "params": params,  # --param: the target's start
              "prior": prior.to_dict(), "results": results}
    tmp = out_dir / "transfer.json.tmp"  # written whole or not at all
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(out_dir / "transfer.json")
    if json_:
        print(json.dumps(report))
        return
    _print_transfer(report, out_dir)


def _print_transfer(report: dict[str, Any], out_dir: Path) -> None:
    """A transfer's table (its ``transfer.json``): each part's test score against the base and the controls."""
    results, task = report["results"], report["task"]
    base = dict.fromkeys(r["base_test_score"] for r in results.values())  # one base model: all parts alike
    t = Table(title=f"transfer {report['source_task']} -> {task} (test split; base model "
                    f"{' / '.join(_fmt(b) for b in base)})",
              box=None, pad_edge=False)  # nine columns in 80 characters: no cell is cut short
    refs = [ref for ref in ("default", "noprior", "fixed") if ref in results]
    for col in ("part", "test", "vs\nbase", *[f"vs\n{ref}" for ref in refs], "val", "compute"):
        t.add_column(col, justify="left" if col == "part" else "right", no_wrap=True)
    pct = (lambda x: "-" if x is None else f"{100 * x:+.1f}%")
    for part, r in results.items():
        name = f"{part} = {r['same_as']}" if r.get("same_as") else part
        t.add_row(name, _fmt(r["test_score"]), pct(r["vs_base"]), *[pct(r.get(f"vs_{ref}")) for ref in refs],
                  _fmt(r["val_score"]), f"{r['compute']:,}")
    out.print(t)
    start = "".join(f", {k}={v}" for k, v in report.get("params", {}).items())
    out.print(f"compute: generated tokens. replay: the source's moves as ratios (a move back toward a default "
              f"only where {task} departs from it) from {task}'s defaults{start}; default: "
              f"the replay's stages with {task}'s starting parameters throughout (same steps and seed: its paired "
              f"control); search: "
              f"{report.get('method', 'the search')} with the strategy and its dynamics as the agent's prior "
              f"(noprior: the same search without it); fixed: {task}'s default schedule under the search's budget. "
              f"Details: {out_dir}/transfer.json")


def _show_trained(run_dir: Path) -> None:
    """A trained schedule's stages (``llmzero train``, or a transfer's replay), its summary and path soup."""
    from llmzero.training._base import StageResult
    from llmzero.training.soup import PATH_SOUP

    for i, st in enumerate(json.loads((run_dir / "stages.json").read_text())):
        _print_stage(i, StageResult.from_dict(st), quiet=False)
    _print_summary(json.loads((run_dir / "summary.json").read_text()))
    if (run_dir / PATH_SOUP).is_file():
        soup = json.loads((run_dir / PATH_SOUP).read_text())
        out.print(f"final model: weight soup of {', '.join(soup['stages'])} (val {_fmt(soup['val_score'])}, "
                  f"test {_fmt(soup['test_score'])}; built by llmzero transfer from the best of "
                  f"{', '.join(soup['candidates'])})")


@app.command("analyze")
def analyze_cmd(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN", help="One or more search run directories.")],
    top_k: Annotated[int, typer.Option(help="Besides the best path, analyse the paths to the k best "
                                       "stages.")] = 3,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of every analysed path's parameters "
                                              "here.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
):
    """Check the paper's pattern on finished runs: capacity grows monotonically, regularization oscillates."""
    from llmzero.analysis import analysed_paths, analyze_runs, plot_trajectories, summarize
    from llmzero.search import JOURNAL, Journal
    from llmzero.space import DEFAULT_SPACE

    if top_k < 0:
        raise BadInput(f"top-k={top_k} is not allowed: expected an integer >= 0")
    for run in runs:
        _need_search(run)
    if plot is not None and not plot.parent.is_dir():
        raise BadInput(f"plot={str(plot)!r} is not allowed: the directory {str(plot.parent)!r} "
                       "does not exist")
    trees = []
    for run in runs:
        journal = Journal(run / JOURNAL)
        trees.append(journal.replay())
        journal.close()
    n_paths = sum(len(analysed_paths(t, top_k)) for t in trees)
    if n_paths == 0:
        raise BadInput("the runs hold no scored stage yet: nothing to analyse")
    # Roles are the same in every task's space (a task only changes defaults), so the default space serves.
    dynamics = analyze_runs(trees, DEFAULT_SPACE, k=top_k)
    summary = summarize(dynamics)
    if plot is not None:
        plot_trajectories(trees, DEFAULT_SPACE, plot, k=top_k)
    if json_:
        print(json.dumps({"runs": [str(r) for r in runs], "top_k": top_k, "paths": n_paths,
                          "parameters": [d.to_dict() for d in dynamics], "summary": summary.to_dict(),
                          "plot": str(plot) if plot is not None else None}))
        return

    def num(x: float) -> str:
        return "-" if x != x else f"{x:.2f}"  # nan: no path to measure it on

    t = Table(title=f"parameter dynamics over {n_paths} paths (best and top {top_k}) of {len(runs)} run(s)",
              caption="(C) capacity, (R) regularization; means over the paths that change the parameter; paths of "
                      "one stage are not judged", box=None, pad_edge=False)  # 80 characters, no cell cut short
    for col in ("parameter (role)", "mono-\ntonicity", "oscil-\nlation", "paths\nchanged", "class",
                "the paper's\npattern?"):
        t.add_column(col, no_wrap=True)
    for d in dynamics:
        answer = {"match": "[green]yes[/]", "mismatch": "[red]no[/]"}.get(d.verdict, d.verdict)
        t.add_row(f"{d.name} ({d.role.value[0].upper()})", num(d.monotonicity), num(d.oscillation),
                  f"{d.changed}/{d.paths}", d.classification, answer)
    out.print(t)
    counts = (f"{summary.matched} parameter(s) match, {summary.mismatched} do not, "
              f"{summary.unchanged} unchanged or too short to judge")
    if summary.holds is None:
        out.print(f"verdict: nothing to judge, no parameter changed along the analysed paths ({counts})")
    else:
        out.print(f"verdict: the paper's pattern (capacity grows monotonically, regularization oscillates) "
                  f"{'holds' if summary.holds else 'does not hold'}: {counts}")
    if plot is not None:
        out.print(f"plot: {plot}")


@app.command("report")
def report_cmd(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN", help="One or more search run directories.")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Directory for report.html and report.md "
                                                 "(default: the first run's directory).")] = None,
):
    """Write a self-contained HTML report and a Markdown summary of one or more search runs."""
    from llmzero.report import write_report

    for run in runs:
        _need_search(run)
    html_path, md_path = write_report(runs, out_dir)
    print(html_path)
    print(md_path)


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _fmt(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _print_stage(i: int, res, quiet: bool) -> None:
    if quiet:
        return
    if not res.ok:
        err.print(f"[red]stage {i + 1} failed:[/] {res.error}")
        return
    from llmzero.training.grpo import describe

    m = describe(res)
    t = Table(show_header=(i == 0), box=None, pad_edge=False)
    for col in ("stage", "steps", "val", "reward", "entropy", "zero-std", "clipped", "length", "seconds"):
        t.add_column(col, justify="right", min_width=8)
    t.add_row(str(i + 1), f"{res.start_step}->{res.end_step}", _fmt(res.val_score), _fmt(m.get("reward")),
              _fmt(m.get("entropy")), _fmt(m.get("frac_reward_zero_std")), _fmt(m.get("completions/clipped_ratio")),
              _fmt(m.get("completions/mean_length"), 1), _fmt(res.cost.seconds, 1))
    out.print(t)


def _soup_line(s: dict[str, Any]) -> str:
    """What the weight soup made of a finished search (its summary ``s``)."""
    soup = s["soup"]
    if not soup["path"]:
        return (f"weight soup: no other checkpoint of {', '.join(soup['candidates'][1:])} raised the "
                f"validation score; the final model is the best node {s['best_node']}")
    return (f"final model: weight soup of {', '.join(soup['nodes'])} (val {_fmt(soup['val_score'])} vs "
            f"{_fmt(s['best_val'])}, test {_fmt(s['test_score'])} vs {_fmt(s['best_node_test_score'])} "
            f"for the best node alone) in {soup['path']}")


def _print_summary(s: dict[str, Any]) -> None:
    out.print(f"\n[bold]{s['task']}[/]: test accuracy {_fmt(s['test_score'])} "
              f"(base model {_fmt(s['base_test_score'])}) after {s['steps']} GRPO steps, "
              f"{s['generated_tokens']:,} generated tokens, {s['wall_seconds']} s")
    if s["test_score"] is not None and s["base_test_score"]:
        out.print(f"relative change over the base model: {100 * (s['test_score'] / s['base_test_score'] - 1):+.1f}%")
    if "members" in s:  # a weight soup
        out.print(f"weight soup of {s['members']} members: val {_fmt(s['soup_val_score'])} (the members "
                  f"{', '.join(_fmt(v) for v in s['val_scores'])})")
        out.print(f"results in {s['out']}/ (stages.json, summary.json, soup.yaml, one checkpoint per stage, "
                  "the soup in soup/)")
        return
    out.print(f"results in {s['out']}/ (stages.json, summary.json, strategy.yaml, one checkpoint per stage)")


def _reflow_command_help() -> None:
    """A command's help is its docstring, wrapped at the source's line length; rich's command list keeps those
    line breaks, so the listing of `llmzero --help` broke mid-sentence. Each paragraph becomes one line, which
    rich wraps at the terminal's width."""
    for info in app.registered_commands:
        doc = info.help or (info.callback.__doc__ if info.callback else None)
        if doc:
            info.help = "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(doc).split("\n\n"))


_reflow_command_help()


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        rc = app(args=argv, standalone_mode=False)
    except UsageError as e:
        print(f"error: {e.format_message()}", file=sys.stderr)
        sys.exit(2)
    except (*USER_ERRORS, BadInput) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    if isinstance(rc, int) and rc:
        sys.exit(rc)


if __name__ == "__main__":
    main()
