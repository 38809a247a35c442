"""The search loop: ask the method for stages, run them in the worker pool, tell the results back.

Everything goes through the journal first (``Recorder``), so a search killed at any moment resumes
by replaying it: stages that were in flight are trained again, nothing else is.

Stages run in synchronous batches of up to ``workers`` stages, and their results are recorded in
submission order: the tree depends on the config and the seed only, never on which worker finished
first.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmzero.config import ConfigError, ExperimentConfig, TaskConfig
from llmzero.search.journal import Journal, JournalError, Recorder, RunLock
from llmzero.search.methods import MIN_STAGE_SHARE, SearchContext, StageSpec, get_method
from llmzero.search.tree import ROOT, Node, NodeState, node_order
from llmzero.strategy import Soup, Stage, StageMode, Strategy

log = logging.getLogger(__name__)

JOURNAL = "journal.sqlite"
MAX_FAILURES_IN_A_ROW = 8  # a method whose stages keep failing is stopped, not looped forever
SIBLING_SOUP_MAX = 4  # search.sibling_soup: the best siblings a soup may average
DRAWS_PROBE = 3  # search.draws_min_gain: the stages of several draws that decide whether draws pay
UPDATE_SCALES = (0.5, 1.5)  # search.scale_updates: a stage's update from its parent, halved or extended


@dataclass
class Status:
    """What the live view shows."""

    spent: int
    total: int
    nodes: int
    running: list[str]
    best_id: str | None
    best_val: float | None
    base_val: float | None
    failed: int
    pruned: int
    message: str = ""


def check_model(cfg: ExperimentConfig) -> Path:
    """The experiment's Hugging Face model directory, checked: it loads (a ModelError, one line, if not)
    and, for a chat task, its tokenizer has a chat template (a ConfigError, one line, if not)."""
    from llmzero.models.base import check_model_dir

    path = check_model_dir(cfg.model)
    if cfg.task.chat:
        from llmzero.models.tokenizer import NoChatTemplate, load_tokenizer, render_chat

        try:
            render_chat(load_tokenizer(str(path)), "", "")
        except NoChatTemplate as e:
            raise ConfigError(str(e)) from None
    return path


def task_spec(cfg: ExperimentConfig):
    """The experiment's task as a picklable :class:`~llmzero.tasks.TaskSpec`."""
    return spec_of_task(cfg.task)


def spec_of_task(t: TaskConfig):
    """A task config as a picklable :class:`~llmzero.tasks.TaskSpec`."""
    from llmzero.tasks import Sizes, TaskSpec

    return TaskSpec(t.name, t.difficulty, Sizes(**t.sizes.model_dump()), t.data_seed, tuple(sorted(t.config.items())),
                    chat=t.chat)


def node_stage(n: Node) -> Stage:
    """The stage that node ``n`` trains (a sibling soup: the best sibling's, merging the others; a
    scaled update: the sibling's, scaled)."""
    mode = StageMode(n.mode)
    return Stage(n.params, n.steps, mode, n.seed, n.draws,
                 tuple(Stage(m["params"], n.steps, mode, m["seed"], n.draws) for m in n.merge), n.scale)


def node_seed(seed: int, node_id: str) -> int:
    return zlib.crc32(f"{seed}:{node_id}".encode()) % (2**31)


class SearchRun:
    def __init__(self, cfg: ExperimentConfig | None, out: str | Path, *, resume: bool = False,
                 workers: int | None = None):
        """A new run (``cfg`` given) or a resumed one (``resume=True``: the config comes from the journal)."""
        self.out = Path(out).absolute()  # checkpoints record each other by path: valid from any directory
        if resume:
            self.journal = Journal(self.out / JOURNAL)
        else:
            self.out.mkdir(parents=True, exist_ok=True)
            self.journal = Journal(self.out / JOURNAL, create=True)
        try:
            self._lock = RunLock(self.out)  # before anything in the directory is read or changed
        except JournalError:
            self.journal.close()
            raise
        try:
            self._load(cfg, resume, workers)
        except BaseException:  # a bad config or a missing model: the journal and the lock are let go
            self.close()
            raise

    def _load(self, cfg: ExperimentConfig | None, resume: bool, workers: int | None) -> None:
        from llmzero.training import locate_checkpoint

        self.tree = self.journal.replay()
        for n in self.tree.stages():  # a journal written from another directory, or a run directory moved
            if n.checkpoint and not n.deleted:
                n.checkpoint = locate_checkpoint(n.checkpoint, self.out / "nodes")
        if resume:
            if not self.tree.meta:
                raise JournalError(f"journal in {str(self.out)!r} holds no run")
            from llmzero.config import parse_config

            cfg = parse_config(self.tree.meta["config"])
        if cfg is None:
            raise ValueError("a new search needs a config")
        self.cfg = cfg
        self.workers = workers or cfg.executor.workers
        self.record = Recorder(self.journal, self.tree)
        from llmzero.tasks import task_space

        self.task_spec = task_spec(self.cfg)
        self.task = self.task_spec.build()
        self.space = task_space(self.task)
        self.method = get_method(self.cfg.search.method)
        extra: dict[str, Any] = {"task": f"{self.task.name} ({getattr(self.task, 'description', '')})"}
        if self.cfg.search.prior:
            from llmzero.config import ConfigError
            from llmzero.transfer import TransferError, load_prior

            try:
                extra["prior"] = load_prior(self.cfg.search.prior)
            except TransferError as e:
                raise ConfigError(f"search.prior: {e}") from None
        self.ctx = SearchContext(cfg=self.cfg, space=self.space, proposer=self._proposer(), extra=extra)
        self.base_dir: str | None = self.tree.meta.get("base_dir")
        self.t0 = time.time()  # wall time counts this process only (a resumed run starts again at 0)
        self._pool = None

    # -- set-up -----------------------------------------------------------------------------------------

    def _proposer(self):
        method, name = self.cfg.search.method, self.cfg.search.proposer
        if method not in ("mcts", "skill"):
            return None
        from llmzero.agents import get_proposer

        if method == "skill" or name != "llm":
            return get_proposer("skill" if method == "skill" else name)
        from llmzero.agents.llm import LLMProposer
        from llmzero.llm import get_llm

        c = self.cfg.llm
        kw: dict[str, Any] = {
            "llama": {"tier": c.tier, "n_threads": c.n_threads},
            "openai": {"base_url": c.base_url, "model": c.model, "api_key_env": c.api_key_env,
                       "response_format": c.response_format, "timeout": c.timeout, "retries": c.retries},
            "replay": {"source": c.path, "strict": False},
        }[c.backend]
        llm = get_llm(c.backend, **kw)
        if c.backend == "llama":  # fail before training anything if the embedded model is missing
            from llmzero.config import ConfigError

            try:
                llm.load()
            except Exception as e:  # LocalModelError, or llama.cpp's own load error
                raise ConfigError(f"llm.backend='llama' cannot load the embedded model: {str(e).splitlines()[0]} "
                                  "(install it with `make local-llm`, or use search.proposer=skill)") from None
        answer = c.answer if c.answer != "auto" else ("free" if c.backend == "openai" else "menu")
        return LLMProposer(llm, temperature=c.temperature, max_tokens=c.max_tokens, answer=answer,
                           curves=c.curves, order_check=c.order_check, diagnose_first=c.diagnose_first)

    def _start(self, progress: Callable[[str], None]) -> None:
        from llmzero.models.base import build_base
        from llmzero.models.tiny import PRESETS
        from llmzero.training.evaluate import evaluate_checkpoint

        if self.tree.meta:
            return
        if self.cfg.model in PRESETS:
            progress("building the base model (SFT warm start; cached after the first time)")
            base = build_base(self.task, self.cfg.model, self.cfg.base_seed)
            base_dir = base.path
        else:
            base_dir = str(check_model(self.cfg).resolve())
        params = self.space.validate(self.cfg.params)
        progress("scoring the base model on the validation split")
        base_val = evaluate_checkpoint(self.task, base_dir, "val", int(params["max_completion_length"]))
        self.record("run_started", None, {"config": self.cfg.model_dump(mode="json"), "base_dir": base_dir})
        self.record("root", ROOT, {"params": params, "val_score": base_val})
        self.base_dir = base_dir

    def _requeue_in_flight(self) -> None:
        nodes = self.out / "nodes"
        for d in nodes.iterdir() if nodes.is_dir() else ():  # a sibling soup published but not journaled
            if d.name.split(".")[0] not in self.tree.nodes:
                shutil.rmtree(d, ignore_errors=True)
        for n in self.tree.in_state(NodeState.RUNNING, NodeState.PENDING):
            d = self.out / "nodes" / n.id
            shutil.rmtree(d, ignore_errors=True)  # published just before the kill but not journaled
            for tmp in d.parent.glob(f"{n.id}.tmp-*"):
                shutil.rmtree(tmp, ignore_errors=True)
            if n.state is NodeState.RUNNING:
                self.record("stage_requeued", n.id, {})

    # -- budget -------------------------------------------------------------------------------------------

    def tokens_per_completion(self) -> float:
        """Generated tokens per completion so far (before any stage: 60% of the length cap). A stage's
        ``cost.steps`` counts the steps of all its draws."""
        pps = self.cfg.training.prompts_per_step
        done = [n for n in self.tree.stages() if n.cost.get("steps")]
        completions = sum(n.cost["steps"] * pps * n.params["num_generations"] for n in done)
        if completions:
            return sum(n.compute for n in done) / completions
        return 0.6 * self.tree.root.params["max_completion_length"]

    def tokens_per_step(self, params: dict | None = None, draws: int | None = None) -> float:
        """Expected generated tokens per GRPO step of a stage with ``params`` (the group size counts, and
        the draws: a stage of several draws trains each of its steps that many times; by default those
        of the next stages, ``stage_draws``)."""
        p = params or self.tree.root.params
        return (self.cfg.training.prompts_per_step * p["num_generations"] * self.tokens_per_completion()
                * (draws or self.stage_draws()))

    def stage_draws(self) -> int:
        """GRPO draws of the next stages: ``search.draws``, or what ``search.draws_min_gain`` decided."""
        return self.tree.draws or self.cfg.search.draws

    def _decide_draws(self, say: Callable[[str], None]) -> None:
        """``search.draws_min_gain``: once the first ``DRAWS_PROBE`` stages of several draws have finished,
        keep the draws if their soups scored at least that much above their better draw on validation
        (on average), else train single draws from now on. Decided once and journaled."""
        s = self.cfg.search
        if s.draws_min_gain is None or s.draws == 1 or self.tree.draws is not None:
            return
        probe = sorted((n for n in self.tree.stages() if len(n.draw_scores) > 1 and n.val_score is not None),
                       key=lambda n: node_order(n.id))[:DRAWS_PROBE]
        if len(probe) < DRAWS_PROBE:
            return
        gain = sum(n.val_score - max(n.draw_scores) for n in probe) / len(probe)
        draws = s.draws if gain >= s.draws_min_gain else 1
        self.record("draws_decided", None, {"draws": draws, "gain": round(gain, 4),
                                            "nodes": [n.id for n in probe]})
        say(f"draws: the soups scored {gain:+.3f} above their better draw; {draws} per stage from now on")

    def stage_steps(self, params: dict) -> int:
        """GRPO steps of a full stage with ``params`` (``search.stage_compute``: the same steps, or the
        same generated tokens as a stage at the starting group size)."""
        steps = self.cfg.search.steps_per_stage
        if self.cfg.search.stage_compute == "tokens":
            steps = max(1, round(steps * self.tree.root.params["num_generations"] / params["num_generations"]))
        return steps

    def worst_step(self, params: dict) -> int:
        """Generated tokens of one GRPO step of one draw whose completions all run to the length cap: a
        stage's token cap stops it before a step that could cross the cap, so a cap below this would
        let its first step cross it."""
        return self.cfg.training.prompts_per_step * int(params["num_generations"]) * int(
            params["max_completion_length"])

    def stage_tokens(self, params: dict) -> float:
        """Expected generated tokens of a full stage with ``params``."""
        return self.stage_steps(params) * self.tokens_per_step(params)

    def _fit(self, specs: list[StageSpec]) -> list[tuple[StageSpec, int]]:
        """Give each stage its steps, shortening the last ones so that no method overspends. A stage
        that what is left cannot pay (a fifth of its steps, or its first step) is left out, and a later
        one that costs less per step may still run (a lineage with the starting group after one whose
        group the agent doubled), so that the end of the budget is not left unspent."""
        left = self.cfg.budget.compute - self.tree.spent()
        out = []
        draws = self.stage_draws()
        for spec in specs:
            per_step = self.tokens_per_step(spec.params)
            full = steps = self.stage_steps(spec.params)
            if steps * per_step > left:
                steps = int(left // per_step)
            too_short = steps < max(1, round(MIN_STAGE_SHARE * full))
            if too_short or steps * per_step < draws * self.worst_step(spec.params):  # its cap: not one step
                continue
            left -= steps * per_step
            out.append((spec, steps))
        return out

    def _token_limits(self, batch: list[Node], waiting: list[Node]) -> list[int]:
        """Hard caps that keep the batch within what is left of the budget: each stage may spend its
        expected share plus a proportional part of the slack (a stage whose completions run longer
        than expected ends early, with its checkpoint, instead of overspending). The stages ``waiting``
        for a later batch keep their shares of what is left. A stage trained again after a kill keeps
        the cap it started with, so that a resumed search spends as the uninterrupted one would."""
        left = max(0, self.cfg.budget.compute - self.tree.spent())
        expected = [n.steps * self.tokens_per_step(n.params, n.draws) for n in batch + waiting]
        total = sum(expected) or 1.0
        return [n.token_limit or max(1, int(e * left / total)) for n, e in zip(batch, expected)]

    # -- the loop ---------------------------------------------------------------------------------------

    def run(self, on_status: Callable[[Status], None] | None = None) -> dict[str, Any]:
        from llmzero.execution import RunnerSpec

        def say(msg: str) -> None:
            if on_status is not None:
                on_status(self.status(msg))

        failures = 0
        stop_reason = "budget spent"
        with self.open_executor() as pool:
            self._start(say)
            self._requeue_in_flight()
            carried, resumed = self._unfinished_batch()
            if carried and not resumed:  # killed after its stages, before the nodes built from them
                self._after_batch(carried, [], say)
                carried = []
            runner = RunnerSpec(self.task_spec, self.base_dir, _settings(self.cfg))
            while True:
                if self.cfg.budget.wall_seconds and self.elapsed() >= self.cfg.budget.wall_seconds:
                    stop_reason = "wall-clock limit"
                    break
                pending = sorted(self.tree.in_state(NodeState.PENDING), key=lambda n: int(n.id[1:]))
                if not pending:
                    self.ctx.budget_left = max(0.0, 1 - self.tree.spent() / self.cfg.budget.compute)
                    self.ctx.tokens_left = max(0.0, self.cfg.budget.compute - self.tree.spent())
                    self.ctx.stage_tokens = self.stage_tokens
                    specs = self._ask()
                    fitted = self._fit(specs)
                    if not fitted:  # "budget spent" only if what is left cannot pay the shortest stage
                        left = self.cfg.budget.compute - self.tree.spent()
                        shortest = MIN_STAGE_SHARE * self.cfg.search.steps_per_stage * self.tokens_per_step()
                        stop_reason = "budget spent" if specs or left < shortest else "nothing left to expand"
                        break
                    pending = [self._create(spec, steps) for spec, steps in fitted]
                batch = (resumed or pending)[: self.workers]  # a resumed batch first, as it was
                resumed = resumed[len(batch):]
                busy = {n.id for n in batch}
                waiting = list({n.id: n for n in resumed + pending if n.id not in busy}.values())
                futures = []
                for n, limit in zip(batch, self._token_limits(batch, waiting)):
                    self.record("stage_started", n.id, {"token_limit": limit})
                    parent = None if n.parent_id == ROOT else self.tree.nodes[n.parent_id].checkpoint
                    stage = node_stage(n)
                    futures.append(pool.submit(runner, parent, stage, str(self.out / "nodes" / n.id), n.seed,
                                               limit))
                say(f"training {', '.join(n.id for n in batch)}")
                for n, fut in zip(batch, futures):
                    res = fut.result()
                    failures = 0 if res.ok else failures + 1
                    self._tell(n, res)
                if resumed:  # the rest of a resumed batch trains before the nodes built after it
                    carried += batch
                    continue
                self._after_batch(carried, batch, say)
                carried = []
                say("")
                if failures >= MAX_FAILURES_IN_A_ROW:
                    stop_reason = f"{failures} stages failed in a row"
                    break
        self._pool = None  # closed
        return self._finish(stop_reason, say)

    def _after_batch(self, carried: list[Node], batch: list[Node], say: Callable[[str], None]) -> None:
        """What follows a batch of stages: the nodes built from its complete stages (scaled updates, then
        sibling soups; ``carried``: stages of the same batch from before a resume), the draws decision
        (``search.draws_min_gain``), garbage collection, and ``batch_done``, which tells a resumed run
        that this batch needs nothing more."""
        done = sorted((n for n in carried + batch if n.state is NodeState.COMPLETE),
                      key=lambda n: node_order(n.id))
        if self.cfg.search.scale_updates:
            for n in done:
                self._scale_update(n, say)
        if self.cfg.search.sibling_soup:
            for parent_id in dict.fromkeys(n.parent_id for n in done):
                self._soup_siblings(parent_id, say)
        self._decide_draws(say)
        self._collect_garbage()
        self.record("batch_done", None, {"nodes": [n.id for n in carried + batch]})

    def _unfinished_batch(self) -> tuple[list[Node], list[Node]]:
        """On resume, the batch a kill interrupted: the stages started after the last ``batch_done``, as
        (those that finished, those requeued). The requeued ones train first, as one batch; then the nodes
        built from the whole batch are made, as an uninterrupted run would have made them."""
        last = max((seq for seq, *_ in self.journal.events("batch_done")), default=-1)
        started = dict.fromkeys(i for seq, _, _, i, _ in self.journal.events("stage_started") if seq > last)
        nodes = [self.tree.nodes[i] for i in started]
        return ([n for n in nodes if n.state is not NodeState.PENDING],
                [n for n in nodes if n.state is NodeState.PENDING])

    def open_executor(self):
        """The executor the config names, started: a cluster that cannot be joined raises a ConfigError
        here, before anything is trained. ``run`` opens it if the caller has not, and closes it."""
        if self._pool is None:
            from llmzero.execution import make_executor
            from llmzero.runtime import use_device

            pool = make_executor(self.cfg.executor, self.workers)
            pool.start()
            # The search's own scoring (the base model, the final soup, the test split): on CUDA if this
            # process sees one, unless the config says cpu (on a cluster the driver may have no GPU).
            use_device("cpu" if self.cfg.executor.device == "cpu" else "auto")
            self._pool = pool
        return self._pool

    def _ask(self) -> list[StageSpec]:
        """The method's next stages. The events it queued (a proposal that closed its node, reopened
        branches) are journaled first; a method that queued some and has no stage yet is asked again,
        since the tree changed (each round closes or reopens nodes for good, so this ends)."""
        while True:
            specs = self.method.ask(self.tree, self.workers, self.ctx)
            events, self.ctx.events[:] = list(self.ctx.events), []
            for kind, node_id, payload in events:
                self.record(kind, node_id, payload)
            if specs or not events:
                return specs

    def _create(self, spec: StageSpec, steps: int) -> Node:
        node_id = f"n{len(self.tree.nodes)}"
        parent = self.tree.nodes[spec.parent_id]
        if spec.proposal_record is not None:
            self.record("proposal", spec.parent_id, spec.proposal_record)
        self.record("node_created", node_id, {
            "parent_id": spec.parent_id, "depth": parent.depth + 1, "params": spec.params, "steps": steps,
            "mode": spec.mode, "seed": node_seed(self.cfg.seed, node_id), "chain": spec.chain,
            "transition": spec.transition(parent.params),
            **({"draws": self.stage_draws()} if self.stage_draws() > 1 else {})})
        return self.tree.nodes[node_id]

    def _tell(self, n: Node, res) -> None:
        steps = res.end_step - res.start_step  # along the path: a stage of several draws costs more
        payload = {"history": res.history, "val_score": res.val_score, "cost": res.cost.__dict__,
                   "checkpoint": res.checkpoint, "error": res.error, "steps": steps or n.steps,
                   "val_samples": res.val_samples, **({"draws": res.draws} if res.draws else {})}
        self.record("stage_finished" if res.ok else "stage_failed", n.id, payload)
        if res.ok:
            self._tensorboard(n)
        es = self.cfg.search.early_stop
        if res.ok and es.enabled and n.depth >= es.min_depth:
            best = self.tree.best_at_depth(n.depth)
            if best is not None and res.val_score < best - es.margin:
                remaining = max(0, self.ctx.max_depth(self.tree) - n.depth)
                saved = int(remaining * self.stage_tokens(n.params))
                self.record("node_pruned", n.id, {"reason": f"val {res.val_score:.3f} < best at depth {n.depth} "
                                                  f"{best:.3f} - {es.margin}", "saved_compute": saved})
        self._best_changed()

    def _best_changed(self) -> None:
        best = self.tree.best()
        if best is not None and best.id != self.tree.best_id:
            self.record("best_changed", best.id, {"val_score": best.val_score})

    def _soup_siblings(self, parent_id: str, say: Callable[[str], None]) -> None:
        """``search.sibling_soup``: the greedy weight soup of ``parent_id``'s best trained children (the
        same steps, mode and draws as the best; at most ``SIBLING_SOUP_MAX``). A soup that takes two or
        more (and not already made) becomes a complete child of ``parent_id`` that repeats the best
        sibling's stage and merges the others (``Node.merge``). Its checkpoint is the best sibling's
        with the soup's weights, so its children continue from the average. Siblings from one parent
        share its basin, and their parameters differ, so their average mixes what each stage learned
        (Wortsman et al. 2022 averaged fine-tunes with different hyperparameters). It costs a
        validation pass per sibling after the best, no training, so no budget. Each set of siblings
        is tried once (journaled)."""
        kids = [self.tree.nodes[c] for c in self.tree.trained_children(parent_id)]
        kids = sorted((c for c in kids if c.state is NodeState.COMPLETE and c.val_score is not None
                       and c.checkpoint and not c.deleted and Path(c.checkpoint).is_dir()),
                      key=lambda c: (-c.val_score, node_order(c.id)))
        if not kids:
            return
        best = kids[0]
        ids = [c.id for c in kids if (c.steps, c.mode, c.draws) == (best.steps, best.mode, best.draws)]
        ids = ids[:SIBLING_SOUP_MAX]
        if len(ids) < 2 or any(p["candidates"] == ids for *_, p in self.journal.events("sibling_soup_tried")):
            return
        from llmzero.training.soup import Souper, greedy_soup

        say(f"weight soup of the siblings {', '.join(ids)} (validation)")
        t = time.perf_counter()
        souper = Souper(self.task, {i: self.tree.nodes[i].checkpoint for i in ids},
                        int(best.params["max_completion_length"]))
        members, val = greedy_soup(ids, lambda s: best.val_score if s == [best.id] else souper.score(s))
        self.record("sibling_soup_tried", parent_id, {"candidates": ids, "nodes": members, "val_score": val})
        made = [self.tree.nodes[c].transition.get("soup_of") for c in self.tree.nodes[parent_id].children]
        if len(members) < 2 or sorted(members) in [sorted(m) for m in made if m]:
            return
        reason = (f"greedy weight soup of the siblings {', '.join(members)}: val {val:.3f} against "
                  f"{best.val_score:.3f} for {best.id} alone")
        merge = [{"node": i, "params": dict(self.tree.nodes[i].params), "seed": self.tree.nodes[i].seed}
                 for i in members[1:]]
        self._add_built("sibling_soup", best, {"merge": merge},
                        {"proposed_by": "soup", "reason": reason, "soup_of": members}, val,
                        [souper.weights[i] for i in members], None, t)

    def _scale_update(self, n: Node, say: Callable[[str], None]) -> None:
        """``search.scale_updates``: a line search along the update that node ``n``'s stage made to its
        parent's weights. Each of ``UPDATE_SCALES`` gives ``parent + scale * (n - parent)``; the best on
        validation, if above ``n``'s own score, becomes a complete sibling of ``n`` that repeats its
        stage with that ``scale`` (its checkpoint: ``n``'s with the scaled weights). A stage's best step
        size need not be the one it ran with: on a benchmark countdown tree, halving the updates of
        three deep stages, or extending two others' by half, scored higher on validation (5 of 9).
        It costs a validation pass per scale and no training, so no budget; each node is tried once
        (journaled)."""
        parent = self.tree.nodes[n.parent_id]
        parent_model = self.base_dir if n.parent_id == ROOT else parent.checkpoint
        if (n.free or n.val_score is None or not n.checkpoint or not parent_model
                or not Path(parent_model).is_dir() or not Path(n.checkpoint).is_dir()
                or any(p["node"] == n.id for *_, p in self.journal.events("update_scale_tried"))):
            return
        from llmzero.training.soup import Souper, scaled_coefs

        say(f"scaled updates of {n.id} (validation)")
        t = time.perf_counter()
        souper = Souper(self.task, {"stage": n.checkpoint, "parent": parent_model},
                        int(n.params["max_completion_length"]))
        vals = [souper.score(["stage", "parent"], "val", scaled_coefs(s)) for s in UPDATE_SCALES]
        self.record("update_scale_tried", n.parent_id, {"node": n.id, "scales": list(UPDATE_SCALES),
                                                        "val_scores": vals})
        val, scale = max(zip(vals, UPDATE_SCALES), key=lambda vs: (vs[0], -abs(vs[1] - 1)))
        if val <= n.val_score:
            return
        reason = (f"{n.id}'s update from its parent scaled by {scale:g}: val {val:.3f} against "
                  f"{n.val_score:.3f}")
        self._add_built("scaled_update", n, {"scale": scale},
                        {"proposed_by": "scale", "reason": reason, "scale_of": n.id}, val,
                        [souper.weights["stage"], souper.weights["parent"]], scaled_coefs(scale), t)

    def _add_built(self, kind: str, like: Node, fields: dict[str, Any], transition: dict[str, Any],
                   val: float, weights: list, coefs: list[float] | None, t: float) -> None:
        """A complete sibling of ``like`` built from checkpoints, not trained (``kind``: sibling_soup,
        scaled_update): ``like``'s stage with ``fields`` (merge, scale), ``like``'s checkpoint with the
        combination of ``weights`` (``coefs``; None: their average), published and then journaled by one
        event. It costs no budget."""
        from llmzero.training import STAGE_INFO
        from llmzero.training.soup import averaged_checkpoint

        node_id = f"n{len(self.tree.nodes)}"
        out = self.out / "nodes" / node_id
        payload = {
            "parent_id": like.parent_id, "depth": like.depth, "params": dict(like.params),
            "steps": like.steps, "mode": like.mode, "seed": like.seed, "draws": like.draws, **fields,
            "transition": {**like.transition, **transition},
            "history": like.history, "val_score": val, "checkpoint": str(out)}
        tmp = averaged_checkpoint(like.checkpoint, weights, out.parent / f"{node_id}.tmp-{kind}", coefs)
        info = json.loads((tmp / STAGE_INFO).read_text())
        info.update(stage=node_stage(Node(id=node_id, **payload)).to_dict(), val_score=val,
                    **{k: v for k, v in transition.items() if k not in ("reason", "proposed_by")})
        (tmp / STAGE_INFO).write_text(json.dumps(info, indent=1, default=str))
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
        cost = {"generated_tokens": 0, "steps": 0, "seconds": round(time.perf_counter() - t, 4)}
        self.record(kind, node_id, {**payload, "cost": cost})
        self._best_changed()

    def _tensorboard(self, n: Node) -> None:
        """One TensorBoard run per node, nested along its path (``tensorboard --logdir RUN`` shows the
        tree): every TRL metric by cumulative step, and the validation score at the stage's end."""
        from torch.utils.tensorboard import SummaryWriter

        run = self.out / "tensorboard" / "/".join(node.id for node in self.tree.path(n.id)[1:])
        with SummaryWriter(log_dir=str(run)) as w:
            for row in n.history:
                for key, value in row.items():
                    if key != "step":
                        w.add_scalar(key, value, int(row["step"]))
            if n.history and n.val_score is not None:
                w.add_scalar("val_score", n.val_score, int(n.history[-1]["step"]))

    # -- checkpoints ----------------------------------------------------------------------------------------

    def needed_checkpoints(self) -> set[str]:
        """Nodes whose checkpoints must stay: the best path, the top k, what the method may still
        expand, the parents of pending or running stages, and the KL references of all of those."""
        keep: set[str] = set()
        best = self.tree.best()
        if best is not None:
            keep |= {n.id for n in self.tree.path(best.id)}
        scored = sorted((n for n in self.tree.stages() if n.val_score is not None and n.checkpoint),
                        key=lambda n: -n.val_score)
        keep |= {n.id for n in scored[: max(self.cfg.storage.keep_top_k, self.cfg.search.soup)]}
        keep |= self.method.expandable(self.tree, self.ctx)
        keep |= {n.parent_id for n in self.tree.in_state(NodeState.PENDING, NodeState.RUNNING)}
        by_path = {n.checkpoint: n.id for n in self.tree.stages() if n.checkpoint}
        from llmzero.training import locate_checkpoint, read_stage_info

        for node_id in list(keep):
            n = self.tree.nodes.get(node_id)
            if n is None or not n.checkpoint or n.deleted:
                continue
            try:
                ref = read_stage_info(n.checkpoint).get("reference")
            except ValueError:
                continue
            ref = locate_checkpoint(ref, self.out / "nodes") if ref else ref
            if ref in by_path:
                keep.add(by_path[ref])
        keep.discard(ROOT)
        return keep

    def _collect_garbage(self) -> None:
        keep = self.needed_checkpoints()
        for n in self.tree.stages():
            if n.checkpoint and not n.deleted and n.id not in keep:
                shutil.rmtree(n.checkpoint, ignore_errors=True)
                self.record("checkpoint_deleted", n.id, {})

    def disk_bytes(self) -> int:
        root = self.out / "nodes"
        return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0

    # -- results ------------------------------------------------------------------------------------------

    def elapsed(self) -> float:
        return time.time() - self.t0

    def strategy(self, node_id: str) -> Strategy:
        stages = tuple(node_stage(n) for n in self.tree.path(node_id)[1:])
        return Strategy(stages, meta={"task": self.cfg.task.name,
                                      "task_config": self.cfg.task.model_dump(mode="json"),
                                      "method": self.cfg.search.method,
                                      "model": self.cfg.model, "base_seed": self.cfg.base_seed,
                                      "training": self.cfg.training.model_dump(),
                                      "node": node_id, "val_score": self.tree.nodes[node_id].val_score})

    def soup_recipe(self, soup: dict[str, Any]) -> Soup:
        """The soup as a schedule that ``llmzero train`` rebuilds: its members' strategies, best first."""
        first = self.strategy(soup["nodes"][0])
        members = tuple(Strategy(self.strategy(i).stages, meta={"node": i,
                                                                 "val_score": self.tree.nodes[i].val_score})
                        for i in soup["nodes"])
        meta = {k: v for k, v in first.meta.items() if k not in ("node", "val_score")}
        return Soup(members, meta={**meta, "nodes": soup["nodes"], "val_score": soup["val_score"]})

    def status(self, message: str = "") -> Status:
        best = self.tree.best()
        return Status(spent=self.tree.spent(), total=self.cfg.budget.compute, nodes=len(self.tree.stages()),
                      running=[n.id for n in self.tree.in_state(NodeState.RUNNING)],
                      best_id=best.id if best else None, best_val=best.val_score if best else None,
                      base_val=self.tree.root.val_score if ROOT in self.tree.nodes else None, failed=len(self.tree.in_state(NodeState.FAILED)),
                      pruned=len(self.tree.in_state(NodeState.PRUNED)), message=message)

    def _finish(self, stop_reason: str, say: Callable[[str], None]) -> dict[str, Any]:
        from llmzero.training.evaluate import evaluate_checkpoint

        best = self.tree.best()
        soup = self._soup(best, say) if best is not None else None
        made = soup["nodes"] if soup and soup["path"] else None  # a soup of one node is that node
        scored = [p for _, _, _, _, p in self.journal.events("test_scored")]
        test = base_test = best_test = None
        if scored and best is not None and scored[-1]["node"] == best.id and scored[-1].get("soup") == made:
            test, base_test = scored[-1]["test_score"], scored[-1]["base_test_score"]
            best_test = scored[-1].get("best_node_test_score", test)
        elif best is not None:
            length = int(best.params["max_completion_length"])
            say(f"scoring the best node {best.id}{' and its soup' if made else ''} on the test split (once)")
            best_test = evaluate_checkpoint(self.task, best.checkpoint, "test", length)
            test = evaluate_checkpoint(self.task, soup["path"], "test", length) if made else best_test
            base_test = evaluate_checkpoint(self.task, self.base_dir, "test",
                                            int(self.tree.root.params["max_completion_length"]))
            self.record("test_scored", best.id, {"node": best.id, "soup": made, "test_score": test,
                                                 "best_node_test_score": best_test,
                                                 "base_test_score": base_test})
        strategy = self.strategy(best.id) if best is not None else None
        if strategy is not None:
            strategy.save(self.out / "strategy.yaml")
        if made:
            self.soup_recipe(soup).save(self.out / "soup.yaml")
        summary = {
            "run": str(self.out), "method": self.cfg.search.method, "task": self.cfg.task.name,
            "best_node": best.id if best else None, "best_val": best.val_score if best else None,
            "base_val": self.tree.root.val_score, "test_score": test, "base_test_score": base_test,
            "best_node_test_score": best_test, "soup": soup,
            "final_model": (soup["path"] if made else best.checkpoint) if best else None,
            "relative_improvement": (test / base_test - 1) if test is not None and base_test else None,
            "budget_spent": self.tree.spent(), "budget_total": self.cfg.budget.compute,
            "nodes": len(self.tree.stages()), "failed": len(self.tree.in_state(NodeState.FAILED)),
            "pruned": len(self.tree.in_state(NodeState.PRUNED)), "pruned_savings": self.tree.pruned_savings,
            "stop_reason": stop_reason, "wall_seconds": round(self.elapsed(), 1), "disk_bytes": self.disk_bytes(),
            "strategy": [s.to_dict() for s in strategy.stages] if strategy else [],
            **self.llm_totals(),
        }
        self.record("run_finished", None, summary)
        (self.out / "summary.json").write_text(json.dumps(summary, indent=1))
        return summary

    def _soup(self, best: Node, say: Callable[[str], None]) -> dict[str, Any] | None:
        """The greedy weight soup of the best kept checkpoints (``search.soup`` of them, the best node
        first), built once and journaled; None when off or with a single candidate. Its ``path`` is
        None when no other checkpoint raised the validation score: the best node stays the model."""
        top = self.cfg.search.soup
        if top < 2:
            return None
        from llmzero.training import locate_soup

        built = [p for _, _, _, _, p in self.journal.events("soup_built")]
        if built and built[-1]["best_node"] == best.id:
            path = locate_soup(built[-1]["path"], self.out)  # found again in a run directory moved since
            if path is None or Path(path).is_dir():
                return {**built[-1], "path": path}
        others = sorted((n for n in self.tree.stages() if n.id != best.id and n.val_score is not None
                         and n.checkpoint and not n.deleted and Path(n.checkpoint).is_dir()),
                        key=lambda n: (-n.val_score, int(n.id.lstrip("n"))))
        ids = [best.id] + [n.id for n in others[: top - 1]]
        if len(ids) < 2:
            return None
        from llmzero.training.soup import Souper

        say(f"weight soup of the best node {best.id} and up to {len(ids) - 1} more checkpoints (validation)")
        souper = Souper(self.task, {i: self.tree.nodes[i].checkpoint for i in ids},
                        int(best.params["max_completion_length"]))
        nodes, val = souper.greedy(ids)
        path = str(souper.save(nodes, self.out / "soup")) if len(nodes) > 1 else None
        rec = {"best_node": best.id, "candidates": ids, "nodes": nodes, "val_score": val, "path": path}
        self.record("soup_built", None, rec)
        return rec

    def llm_totals(self) -> dict[str, Any]:
        """LLM cost over the whole run, summed from the journal's proposal records (resumes included)."""
        from llmzero.llm._base import agent_totals

        return agent_totals(rec.get("agent") for *_, rec in self.journal.events("proposal"))

    def close(self) -> None:
        self.journal.close()
        self._lock.release()


def _settings(cfg: ExperimentConfig):
    from llmzero.training.grpo import TrainingSettings

    return TrainingSettings(prompts_per_step=cfg.training.prompts_per_step)
