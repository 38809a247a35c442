"""What the report says: runs in, a :class:`Document` out.

Sections, in order: an overview of the runs, the comparison of methods per task (when there are
several runs), then per run its tree, discovered schedule, training curves, parameter trajectories,
the agent's proposals and the cost. The first run's sections have the bare ids (``tree``,
``schedule``, ``curves``, ``trajectories``, ``proposals``, ``cost``); the n-th run's end in ``-n``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from llmzero.analysis import analyze_runs
from llmzero.llm._base import agent_totals
from llmzero.report import figures
from llmzero.report.compare import GRID, MethodRow, RunResult, compare
from llmzero.report.document import Block, Details, Document, Figure, Section, Table, Text
from llmzero.report.runs import AgentCall, Run
from llmzero.search import Node, NodeState

TOP_K = 3  # paths analysed besides the best one, as `llmzero analyze` does by default


# -- formatting ------------------------------------------------------------------------------------------


def score(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def value(v: Any) -> str:
    """A parameter value: 3 significant digits for floats, as `llmzero show` prints them."""
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def percent(v: float | None, missing: str = "-") -> str:
    return missing if v is None else f"{100 * v:+.1f}%"


def params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={value(v)}" for k, v in params.items())


def changes_text(node: Node) -> str:
    changes = node.transition.get("changes", {})
    return "\n".join(f"{k} {value(c['from'])} -> {value(c['to'])}" for k, c in changes.items()) or "no change"


def repairs_text(repairs: Sequence[dict[str, Any]]) -> str:
    return "\n".join(f"{r.get('param')} {value(r.get('before'))} -> {value(r.get('after'))}: "
                     f"{r.get('reason', '')}" for r in repairs)


def section_id(key: str, run_index: int) -> str:
    return key if run_index == 0 else f"{key}-{run_index + 1}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "task"


# -- the document -----------------------------------------------------------------------------------------


def build(runs: Sequence[Run]) -> Document:
    sections = [overview(runs)]
    if len(runs) > 1:
        sections.append(comparison(runs))
    for i, run in enumerate(runs):
        sections += run_sections(run, i)
    tasks = sorted({r.task for r in runs})
    return Document(title=f"LLMZero report: {', '.join(tasks)}", sections=sections)


def overview(runs: Sequence[Run]) -> Section:
    rows = []
    for i, r in enumerate(runs):
        s = r.summary or {}
        best = r.best
        status = f"finished: {s.get('stop_reason', '')}" if r.finished else "unfinished"
        rows.append((f"{i + 1}", str(r.path), r.task, r.method, str(r.config.seed), status,
                     best.id if best else "-", score(best.val_score if best else None),
                     score(r.tree.root.val_score), score(s.get("test_score")),
                     score(s.get("base_test_score")), percent(s.get("relative_improvement"))))
    table = Table(("#", "run", "task", "method", "seed", "status", "best node", "best val", "base val",
                   "test", "base test", "vs base model"), rows, id="runs",
                  caption="validation (val) and held-out test accuracy; the test split is scored once, on "
                          "the best node")
    blocks: list[Block] = [table]
    unfinished = [str(r.path) for r in runs if not r.finished]
    if unfinished:
        blocks.append(Text(f"Not finished: {', '.join(unfinished)}. No run_finished event in the journal "
                           "(the search is still running or was stopped; llmzero search --resume RUN "
                           "continues it): no test score yet, and the best node is the best so far.",
                           note=True))
    return Section("overview", "Overview", 2, blocks)


def comparison(runs: Sequence[Run]) -> Section:
    results = [RunResult(task=r.task, method=r.method, seed=r.config.seed,
                         test_score=(r.summary or {}).get("test_score"),
                         base_test_score=(r.summary or {}).get("base_test_score"),
                         relative_improvement=(r.summary or {}).get("relative_improvement")) for r in runs]
    section = Section("comparison", "Comparison of methods", 2)
    section.blocks.append(Text("Per method: the test score's mean and spread (sample standard deviation) "
                               "over seeds, the mean relative improvement over the base model (test against "
                               "base test) and the relative improvement of the mean test score over grid "
                               "search's on the same task."))
    for task, rows in compare(results).items():
        section.blocks.append(_comparison_table(task, rows))
        if not any(row.method == GRID and row.scored for row in rows):
            section.blocks.append(Text(f"No finished grid run on {task} among the inputs: 'vs grid search' "
                                       "is n/a.", note=True))
    return section


def _comparison_table(task: str, rows: Sequence[MethodRow]) -> Table:
    body = [(row.method, str(row.runs), ", ".join(map(str, row.seeds)), score(row.test_mean),
             score(row.test_std), score(row.base_test_mean), percent(row.vs_base, "n/a"),
             percent(row.vs_grid, "n/a")) for row in rows]
    return Table(("method", "runs", "seeds", "test (mean)", "spread (std)", "base test", "vs base model",
                  "vs grid search"), body, id=f"comparison-{_slug(task)}",
                 caption=f"{task}: test accuracy by method")


def run_sections(run: Run, i: int) -> list[Section]:
    best_path = [n.id for n in run.best_path]
    return [
        _run_header(run, i),
        Section(section_id("tree", i), "Search tree", 3, [
            Figure(section_id("tree-plot", i), "Every stage trained, coloured by validation score; the best "
                   "path in red; failed stages as red crosses, pruned ones hatched, pending or running ones "
                   "hollow.",
                   svg=figures.to_svg(figures.tree_figure(run.tree, best_path), f"tree-{i}"))]),
        Section(section_id("schedule", i), "Discovered schedule", 3, [schedule_table(run, i)]),
        Section(section_id("curves", i), "Training curves", 3, [
            Figure(section_id("curves-plot", i), "TRL metrics of every stage over the cumulative GRPO step; "
                   "the best path thick and red, dotted lines at its stage boundaries.",
                   svg=figures.to_svg(figures.curves_figure(run.tree, best_path), f"curves-{i}"))]),
        Section(section_id("trajectories", i), "Parameter trajectories", 3, _trajectory_blocks(run, i)),
        Section(section_id("proposals", i), "Diagnoses and proposals", 3, _proposal_blocks(run, i)),
        Section(section_id("cost", i), "Cost", 3, [cost_table(run, i)]),
    ]


def _run_header(run: Run, i: int) -> Section:
    cfg, s = run.config, run.summary or {}
    blocks: list[Block] = [Text(
        f"{run.path}: {run.method} on {run.task} (difficulty {cfg.task.difficulty}), seed {cfg.seed}, model "
        f"{cfg.model}; budget {cfg.budget.compute:,} generated tokens; depth {cfg.search.depth}, "
        f"{cfg.search.steps_per_stage} GRPO steps per stage"
        + (" at the starting group size (every stage costs the same tokens)." if cfg.search.stage_compute == "tokens"
           else "."))]
    best = run.best
    if best is not None:
        result = (f"Best node {best.id}: val {score(best.val_score)} "
                  f"(base model {score(run.tree.root.val_score)})")
        if run.finished:
            result += (f"; test {score(s.get('test_score'))} against the base model's "
                       f"{score(s.get('base_test_score'))} ({percent(s.get('relative_improvement'))}).")
        blocks.append(Text(result + ("" if run.finished else ".")))
        soup = s.get("soup") if run.finished else None
        if soup and soup.get("path"):
            blocks.append(Text(f"The final model is a weight soup of {', '.join(soup['nodes'])} "
                               f"(search.soup): val {score(soup['val_score'])}, test "
                               f"{score(s.get('test_score'))}; the best node alone scores "
                               f"{score(s.get('best_node_test_score'))} on test. Rebuild it with llmzero "
                               f"train --schedule {run.path}/soup.yaml."))
    if not run.finished:
        blocks.append(Text("This run has not finished: its journal has no run_finished event. The tree, "
                           "curves and schedule show it as it stands; there is no test score yet.",
                           note=True))
    return Section(section_id("run", i), f"Run {i + 1}: {run.method} on {run.task}, seed {cfg.seed}", 2,
                   blocks)


def schedule_table(run: Run, i: int) -> Table:
    rows = [(str(k + 1), n.id, str(n.steps), n.mode, changes_text(n), params_text(n.params),
             score(n.val_score)) for k, n in enumerate(run.best_path)]
    return Table(("stage", "node", "steps", "mode", "changed parameters", "parameters", "val"), rows,
                 id=section_id("schedule-table", i),
                 caption="the best node's path from the base model: replay it with llmzero train --schedule "
                         f"{run.path}/strategy.yaml")


def _trajectory_blocks(run: Run, i: int) -> list[Block]:
    png = figures.trajectories_png(run.tree, run.space, TOP_K)
    if png is None:
        return [Text("No stage has been scored yet: no trajectory to draw.", note=True)]
    dynamics = analyze_runs([run.tree], run.space, k=TOP_K)
    rows = [(d.name, d.role.value, _num(d.monotonicity), _num(d.oscillation), f"{d.changed}/{d.paths}",
             d.classification, d.verdict) for d in dynamics]
    return [Figure(section_id("trajectories-plot", i), "Each parameter along the best path and the top "
                   f"{TOP_K} paths (one line per path), by stage.", png=png),
            Table(("parameter", "role", "monotonicity", "oscillation", "paths that changed it", "class",
                   "the paper's pattern"), rows, id=section_id("dynamics", i),
                  caption="capacity should grow monotonically, regularization oscillate (llmzero analyze)")]


def _num(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.2f}"  # nan: no path to measure it on


def _proposal_blocks(run: Run, i: int) -> list[Block]:
    on_path = {n.id for n in run.best_path}
    stages = run.tree.stages()
    rows = [_proposal_row(n, run.proposed_by.get(n.id)) for n in stages]
    highlight = frozenset(k for k, n in enumerate(stages) if n.id in on_path)
    blocks: list[Block] = [Table(
        ("node", "parent", "proposed by", "findings", "diagnosis / decision", "change", "rationale / reason",
         "repairs", "val"), rows, id=section_id("proposals-table", i), highlight=highlight,
        caption="every stage: who proposed it from its parent, on what diagnosis, and why (best path "
                "highlighted)")]
    calls = [c for c in run.calls if c.agent and c.agent.get("llm")]
    if calls:
        blocks.append(_calls_table(calls, i))
        blocks += [_transcript(k, c) for k, c in enumerate(calls)]
    return blocks


def _transcript(k: int, call: AgentCall) -> Details:
    agent = call.agent or {}
    children = ", ".join(call.children) or "no child"
    return Details(f"#{k + 1} from {call.parent} ({children}): prompt and answer",
                   f"PROMPT\n{agent.get('prompt', '')}\n\nANSWER\n{agent.get('answer', '')}")


def _proposal_row(n: Node, call: AgentCall | None) -> tuple[str, ...]:
    agent = call.agent if call else None
    findings = list(n.transition.get("findings", []))
    findings += [f for f in (agent or {}).get("findings", []) if f not in findings]
    diagnosis = ""
    if agent:
        diagnosis = f"{call.diagnosis}\ndecision: {agent.get('decision', '-')}"  # type: ignore[union-attr]
        if agent.get("fallback"):
            diagnosis += f"\nfell back to skills: {agent['fallback']}"
    val = score(n.val_score) if n.val_score is not None else n.state.value
    if n.state is NodeState.PRUNED:
        val += " (pruned)"
    if n.error:
        val += f": {n.error[:160]}"
    return (n.id, n.parent_id or "-", n.transition.get("proposed_by", ""), ", ".join(findings), diagnosis,
            changes_text(n), n.transition.get("reason", ""), repairs_text(n.transition.get("repairs", [])),
            val)


def _calls_table(calls: Sequence[AgentCall], i: int) -> Table:
    rows = []
    for k, c in enumerate(calls):
        agent = c.agent or {}
        llm = agent.get("llm") or {}
        decision = str(agent.get("decision", ""))
        if c.closed:
            decision += " (closed the branch)"
        elif agent.get("overruled"):
            decision += " (overruled)"
        rows.append((str(k + 1), c.parent, ", ".join(c.children) or "-",
                     f"{llm.get('backend', '')} / {llm.get('model', '')}", str(llm.get("prompt_tokens", "")),
                     str(llm.get("completion_tokens", "")), f"{llm.get('seconds', 0.0):.1f}",
                     decision, str(agent.get("repaired", "")),
                     str(agent.get("fallback") or "")))
    return Table(("#", "from node", "children", "backend / model", "prompt tokens", "completion tokens",
                  "seconds", "decision", "repaired", "fell back because"), rows,
                 id=section_id("agent-calls", i),
                 caption="each call of the LLM agent")


# -- cost ----------------------------------------------------------------------------------------------------


def llm_totals(calls: Sequence[AgentCall]) -> dict[str, Any]:
    """The LLM's cost summed over the proposal records, as the search's summary sums it."""
    return agent_totals(c.agent for c in calls)


def cost_table(run: Run, i: int) -> Table:
    tree, s = run.tree, run.summary
    spent = s["budget_spent"] if s else tree.spent()
    total = s["budget_total"] if s else run.config.budget.compute
    llm = {k: s[k] for k in llm_totals([]) if k in s} if s else {}
    llm = {**llm_totals(run.calls), **llm}
    failed = len(tree.in_state(NodeState.FAILED))
    pruned = len(tree.in_state(NodeState.PRUNED))
    train_seconds = sum(float(n.cost.get("seconds", 0.0)) for n in tree.stages())
    rows = [
        ("compute", f"{spent:,} of {total:,} generated tokens ({100 * spent / total:.0f}%)"),
        ("stages", f"{len(tree.stages())} ({failed} failed, {pruned} pruned)"),
        ("saved by pruning", f"~{tree.pruned_savings:,} generated tokens"),
        ("GRPO steps", f"{sum(n.steps for n in tree.stages() if n.state is not NodeState.PENDING):,}"),
        ("stage time (sum over workers)", f"{train_seconds:.0f} s"),
        ("wall time", f"{s['wall_seconds']} s" if s else "- (unfinished)"),
        ("stop reason", str(s.get("stop_reason", "")) if s else "- (unfinished)"),
        ("LLM calls", str(llm["llm_calls"])),
        ("LLM tokens", f"{llm['llm_prompt_tokens']:,} prompt + {llm['llm_completion_tokens']:,} completion"),
        ("LLM seconds", f"{llm['llm_seconds']:.1f} s"),
        ("proposals repaired", str(llm["proposals_repaired"])),
        ("LLM failures (fell back to skills)", str(llm["llm_failures"])),
    ]
    if s and "disk_bytes" in s:
        rows.append(("checkpoints on disk", f"{s['disk_bytes'] / 1e6:.1f} MB"))
    return Table(("what", "amount"), rows, id=section_id("cost-table", i),
                 caption="compute is counted in generated tokens, the meter every method pays with")
