"""The LLM agent: reads a node's training dynamics, diagnoses, and proposes coordinated changes.

One proposal round, top to bottom:

1. ``diagnose`` the path (the same detectors the skill agent uses) and render a prompt: the task,
   the parameter space with roles, bounds and current values, the path so far as a table, the
   findings with their numbers, the siblings already tried and how they did, the best score so far
   and the budget left.
2. Ask the LLM for one JSON object (``answer_schema``): a diagnosis, K proposals (changes,
   rationale, expected effect) and a decision (expand, stop this branch, back up to the parent).
3. Repair, explicitly and on the record: unknown parameters dropped, values clamped to bounds and
   to a sane step (log-scale parameters within x0.1 to x10 of the current value), no-op and
   duplicate proposals replaced by diverse fallbacks from the skill library. An LLM that fails or
   answers garbage never stops the search: the skill agent proposes instead, recorded as such.
4. With ``order_check`` (menu answers), ask again with the menu rotated: a pick stands only if the
   rotated answer picks the same option too, and the branch closes only if both answers close it.
   Small models pick by position, not by option; what does not survive the rotation is left to the
   skill library's order.

Everything the round saw and produced (prompt, raw answer, repairs, tokens, seconds) is kept in
``last_record`` for the journal.
"""

from __future__ import annotations

import base64
import math
import random
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from llmzero.agents._base import NodeView, Proposal, ProposalContext
from llmzero.agents.curves import curves_png
from llmzero.agents.diagnosis import Finding, diagnose, risen_from
from llmzero.agents.skill import SkillProposer, fallback_proposals
from llmzero.llm._base import LLM, LLMReply
from llmzero.space import Repair, Space, Value, params_key
from llmzero.strategy import StageMode

if TYPE_CHECKING:
    from llmzero.search.journal import Journal

STEP_FACTOR = 10.0  # a log-scale parameter moves at most x10 (or /10) in one stage
MAX_PROPOSALS = 8
DECISIONS = ("expand", "stop", "backup")
ANSWER_MODES = ("menu", "free")

# The method's part of the system message (``render_system`` adds the run's task and space). The system
# message is the same for a whole run, so llama.cpp's prompt cache reads it once; the per-node user
# message is kept short instead (on one CPU thread a prompt token costs ~12 ms).
SYSTEM = """You tune GRPO post-training stage by stage: diagnose the metrics, then propose changes for
the next stage as one JSON object. Remedies: entropy collapse -> raise entropy_coef (0.002-0.02) or
temperature (to 1.3); entropy blow-up or reward collapse -> lower learning_rate (x0.3-0.5),
entropy_coef or temperature; truncation -> raise max_completion_length; all-same-reward groups ->
more num_generations or higher temperature; KL blow-up -> lower learning_rate, raise beta; healthy
plateau -> move learning_rate x0.5 or x2. Each proposal changes 1-3 parameters, each to a new value;
never repeat a tried child."""


MAX_CHANGES = 3  # parameters one proposal may change: keeps answers short and proposals deliberate


class ProposalAnswer(BaseModel):
    option: int | None = None  # menu answers: the number of a listed option
    changes: dict[str, float] = Field(default_factory=dict)  # free answers: parameter -> new value
    rationale: str = ""
    expected_effect: str = ""

    @field_validator("changes", mode="before")
    @classmethod
    def _pairs(cls, v: Any) -> Any:
        """The schema asks for a list of {"name", "value"} pairs; a plain mapping is accepted too
        (OpenAI-style answers, older transcripts). A repeated name keeps its last value."""
        if isinstance(v, list):
            return {c["name"]: c["value"] for c in v if isinstance(c, dict) and "name" in c and "value" in c}
        return v


class Answer(BaseModel):
    diagnosis: str = ""
    proposals: list[ProposalAnswer] = Field(default_factory=list)
    decision: str = "expand"


def journaled_answers(journal: Journal) -> Iterator[tuple[dict[str, Any], Answer]]:
    """A search journal's agent answers, parsed, each with its proposal event's payload. Calls with no
    usable answer (failed, and fallen back to the skill agent) and other proposers' events are left out."""
    for *_, payload in journal.events("proposal"):
        try:
            answer = Answer.model_validate_json((payload.get("agent") or {}).get("answer") or "")
        except ValidationError:
            continue
        yield payload, answer


def _schema(pick: tuple[str, dict[str, Any]], k: int, lengths: tuple[int, int, int], min_k: int = 1,
            diagnosis: dict[str, Any] | None = None) -> dict[str, Any]:
    """An answer: a diagnosis, min_k..k proposals (``pick`` plus a rationale and an expected effect) and
    a decision. ``lengths`` caps the three strings (diagnosis, rationale, expected effect); ``diagnosis``
    replaces the diagnosis's free text with another rule."""
    name, rule = pick

    def text(n: int) -> dict[str, Any]:
        return {"type": "string", "maxLength": n}

    def obj(props: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}

    item = obj({name: rule, "rationale": text(lengths[1]), "expected_effect": text(lengths[2])})
    return obj({"diagnosis": diagnosis or text(lengths[0]),
                "proposals": {"type": "array", "minItems": max(1, min(min_k, k, MAX_PROPOSALS)),
                              "maxItems": max(1, min(k, MAX_PROPOSALS)),
                              "items": item},
                "decision": {"type": "string", "enum": list(DECISIONS)}})


def answer_schema(space: Space, k: int) -> dict[str, Any]:
    """The JSON schema of a free answer (also the decoding grammar for embedded models).

    Changes are a short list of {"name", "value"} pairs rather than an object with every parameter as
    an optional property: small models fill every optional property in schema order, which made
    answers long and turned most proposals into no-ops.
    """
    change = {"type": "object",
              "properties": {"name": {"type": "string", "enum": list(space.names)}, "value": {"type": "number"}},
              "required": ["name", "value"], "additionalProperties": False}
    return _schema(("changes", {"type": "array", "minItems": 1, "maxItems": MAX_CHANGES, "items": change}), k,
                   (80, 60, 40))


MENU_SIZE = 5  # options listed for a menu answer (each costs ~15 prompt tokens)

# The count asked for, in words. The embedded 0.5B model copied a digit into its first pick, whatever
# the options: asked "Pick 2 options." its first pick was option 2 in 41 of 48 answers, and asked
# "Pick 1 options." option 1 in 22 of 22 (bench/configs/rootreserve.yaml's searches).
COUNTS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight")


def _count(k: int, noun: str) -> str:
    """``k`` as a word with the noun in number: "one option", "two options"."""
    return f"{COUNTS[k] if 0 <= k < len(COUNTS) else k} {noun}{'' if k == 1 else 's'}"


NO_FINDING = "none"  # a menu answer's diagnosis where the detectors found nothing, as the prompt says


def menu_schema(n_options: int, k: int, findings: Sequence[str] = ()) -> dict[str, Any]:
    """The schema of a menu answer: the agent picks exactly ``k`` of ``n_options`` numbered options
    (a fixed count: left free, small models stopped after one pick).

    The diagnosis is one of the node's ``findings`` by name, or "none" when there are none (then it is
    fixed text, not sampled). Left free, the embedded 0.5B model named a finding in 219 of 225 answers
    where no detector had found one, and another than the node's in 12 of 30 where one had (LLMZero's
    journals on three tasks), and the journal, ``llmzero show`` and the report gave that text as the stage's
    diagnosis."""
    k = min(k, n_options)
    diagnosis = {"type": "string", "enum": list(dict.fromkeys(findings)) or [NO_FINDING]}
    option = {"type": "integer", "enum": list(range(1, n_options + 1))}
    return _schema(("option", option), k, (24, 20, 12), min_k=k, diagnosis=diagnosis)


def menu_options(ctx: ProposalContext, rng: random.Random, n: int = MENU_SIZE,
                 lead: str | None = None) -> list[Proposal]:
    """Candidate children for a menu answer: the skill library's, in its order (with two findings or more,
    a coordinated move that answers them at once first; then each finding's remedies, ``lead``'s first and
    the rest by severity), then diverse fallbacks; each legal, none a repeat of a sibling."""
    seen = {params_key(s.params) for s in ctx.siblings}
    out: list[Proposal] = []
    for p in SkillProposer().propose(ctx, n, rng, lead=lead):
        if params_key(p.params) not in seen:
            seen.add(params_key(p.params))
            out.append(p)
    return out[:n]


def rotate(options: list[Proposal]) -> list[Proposal]:
    """The menu rotated by half its length: with two options or more, no option keeps its number."""
    shift = len(options) // 2
    return options[shift:] + options[:shift]


# -- the prompt --------------------------------------------------------------------------------------

def _g(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def _summary(n: NodeView, key: str) -> str:
    vals = [r[key] for r in n.history if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    if not vals:
        return "-"
    q = max(1, len(vals) // 4)
    first, last = sum(vals[:q]) / q, sum(vals[-q:]) / q
    return f"{_short(first)}->{_short(last)}"


def _short(x: float) -> str:
    """Two significant digits and no leading zero (each digit is a token): .26, 12, 2e-3."""
    if x == 0 or abs(x) >= 0.01:
        return f"{x:.2g}".replace("0.", ".", 1) if abs(x) < 1 else f"{x:.2g}"
    m, e = f"{x:.0e}".split("e")
    return f"{m}e{int(e)}"


# Metric trends shown per stage: (TRL name, short label).
METRICS = (("reward", "reward"), ("entropy", "entropy"), ("frac_reward_zero_std", "zero_std"),
           ("completions/clipped_ratio", "clipped"), ("completions/mean_length", "length"), ("kl", "kl"))
# (grad_norm is left out: its spikes reach the agent as a finding)


def _num(v: Any) -> str:
    """A value in few tokens (every digit is a token): 0.0001 -> 1e-4, 0.26 -> 0.26, 18 -> 18."""
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) < 0.01:
            m, e = f"{v:.1e}".split("e")
            return f"{m.rstrip('0').rstrip('.')}e{int(e)}"
        return f"{v:.3g}"
    return _g(v)


def _moves(before: dict[str, Value], after: dict[str, Value]) -> str:
    return ", ".join(f"{n} {_num(before.get(n))}->{_num(v)}" for n, v in after.items() if before.get(n) != v)


def _start(ctx: ProposalContext) -> dict[str, Value]:
    """The run's starting parameters (the root's)."""
    return ctx.path[0].params if ctx.path else {}


def render_system(ctx: ProposalContext, task: str = "", menu: bool = True) -> str:
    """What stays the same for a whole run, sent as the system message: the method, the task, the
    parameter space (roles and bounds), a transfer prior, and how the user message reads. Backends
    that keep a prompt cache (llama.cpp) read it once per run."""
    start = _start(ctx)
    lines = [SYSTEM,
             f"Task: {task or ctx.extra.get('task', 'a reasoning task')}. Score: greedy val accuracy (0-1).",
             "Parameters, start value [min, max], C=capacity R=regularization: "
             + "; ".join(f"{p.name} {_num(start.get(p.name, p.default))} [{_num(p.low)}, {_num(p.high)}] "
                         f"{'C' if p.role.value == 'capacity' else 'R'}" for p in ctx.space)]
    if (prior := ctx.extra.get("prior")) is not None:
        lines.append(prior.text())
    lines.append("Each message gives the current values (those moved from the start), the path (stage: changes "
                 "| val), the last stage's metric trends (first->last), findings (severity 0-1), children already "
                 "tried, the budget" + (", and numbered options." if menu else "."))
    asked = "the asked number of different options by number" if menu else "the asked number of different proposals"
    diagnosis = "the main finding by name, or none" if menu else "the main finding in a few words"
    lines.append(f"Answer: a diagnosis ({diagnosis}), {asked}, each with a rationale and "
                 "expected effect, and a decision: expand, stop (hopeless branch) or backup (grow the parent).")
    return "\n".join(lines)


def render_prompt(ctx: ProposalContext, findings: list[Finding], k: int, options: list[Proposal] | None = None) -> str:
    """The node's situation in few tokens (on one CPU thread every prompt token costs ~12 ms):
    current values, the path as changes and scores, the last stage's metric trends, findings,
    siblings, budget, and for a menu answer the numbered options."""
    node = ctx.node
    start = _start(ctx)
    now = [f"{p.name}={_num(v)}" for p in ctx.space
           if (v := node.params.get(p.name, p.default)) != start.get(p.name, p.default)]
    lines = ["Now: " + ("; ".join(now) + ", others at start" if now else "all at start values")]
    lines.append("Path:")
    prev: dict[str, Value] | None = None
    for v in ctx.path:
        changed = "base model" if prev is None else (_moves(prev, v.params) or "no change")
        lines.append(f"{v.depth}: {changed} | val {_g(v.val_score)}")
        prev = v.params
    shown = ((label, t) for key, label in METRICS if (t := _summary(node, key)) not in ("-", "0->0"))
    if trends := ", ".join(f"{label} {t}" for label, t in shown):
        lines.append(f"Trends: {trends}")
    # names and severities only: the numbers behind them are the trends above
    lines.append("Findings: " + (", ".join(f"{f.name} ({f.severity:.1f})" for f in findings) or "none"))
    if ctx.siblings:
        lines.append("Tried here: " + "; ".join(
            f"{_moves(node.params, s.params) or 'no change'}: val {_g(s.val_score)}" for s in ctx.siblings))
    lines.append(f"Best val {_g(ctx.best_val)}, budget left {100 * ctx.budget_left:.0f}%, next stage "
                 f"{node.depth + 1}/{ctx.max_depth}.")
    if options:
        lines.append("Options:")
        lines += [f"{i}: {_moves(node.params, o.params) or 'same parameters, keep going'}"
                  + (f" (for {o.findings[0]})" if o.findings else "")
                  for i, o in enumerate(options, 1)]
        lines.append(f"Pick {_count(k, 'option')}.")
    else:
        lines.append(f"Give {_count(k, 'proposal')}.")
    return "\n".join(lines)


# -- repair ----------------------------------------------------------------------------------------------

def repair_changes(space: Space, current: dict[str, Value], changes: dict[str, Any]) -> tuple[dict[str, Value], list[Repair]]:
    """Full child parameters from an LLM's changes, made legal; every fix is a Repair."""
    legal, repairs = space.repair(changes, reason_prefix="llm answer: ")
    out = dict(current)
    for name, value in legal.items():
        p = space[name]
        cur = current.get(name, p.default)
        if p.log and isinstance(cur, (int, float)) and cur > 0:
            lo, hi = cur / STEP_FACTOR, cur * STEP_FACTOR
            stepped = min(max(value, lo), hi)
            stepped = int(round(stepped)) if p.type is int else stepped
            if stepped != value:
                repairs.append(Repair(name, value, stepped, f"llm answer: step limited to x{STEP_FACTOR:g} of {_g(cur)}"))
                value = stepped
        out[name] = value
    return out, repairs


class LLMProposer:
    """Proposals from an LLM, repaired and backed by the skill agent.

    ``answer="menu"`` (the default, made for small embedded models) lists numbered options from the
    skill library and asks the LLM to pick and justify ``k`` of them: a short answer, and every
    proposal sane. ``answer="free"`` asks for the changes themselves (for capable remote models).
    Either kind of answer is understood in either mode, so recorded transcripts always replay.
    """

    name = "llm"

    def __init__(self, llm: LLM, *, temperature: float = 0.2, max_tokens: int = 400, task: str = "",
                 answer: str = "menu", curves: bool = False, order_check: bool = False,
                 diagnose_first: bool = False):
        if answer not in ANSWER_MODES:
            raise ValueError(f"answer={answer!r} is not allowed: expected one of {', '.join(ANSWER_MODES)}")
        self.llm, self.temperature, self.max_tokens, self.task = llm, temperature, max_tokens, task
        self.answer = answer
        self.curves = curves  # attach the path's training curves as a PNG (vision-capable endpoints)
        self.order_check = order_check  # menu answers: a pick counts only if it survives the menu's rotation
        self.diagnose_first = diagnose_first  # menu answers: the named main finding's remedies lead the menu
        self.skill = SkillProposer()
        self.last_record: dict[str, Any] = {}
        self.closed: set[str] = set()  # nodes the agent decided to stop or back up from
        self.backup_to: list[str] = []  # parents the agent asked to grow instead, oldest first
        self.last_picks: list[Proposal] = []

    def propose(self, ctx: ProposalContext, k: int, rng: random.Random) -> list[Proposal]:
        findings = diagnose(ctx.path)
        # The menu shuffles the small moves with the proposer's own stream, as the skill agent does: its
        # first k options are then what the no-LLM ablation proposes at the same node, and the two
        # searches differ only where the agent picks otherwise or closes a branch.
        state = rng.getstate()
        options = menu_options(ctx, rng) if self.answer == "menu" else []
        seed = rng.randrange(2**31)
        system = render_system(ctx, self.task, menu=bool(options))
        names = [f.name for f in findings]
        first: dict[str, Any] | None = None
        if self.diagnose_first and options and len(findings) >= 2:
            first = self._diagnosis(ctx, findings, k, system, seed)
            if first["lead"] is not None:
                names = [first["lead"]]
                if first["lead"] != findings[0].name:  # that finding's remedies first; the proposer's
                    after = rng.getstate()  # stream goes on as it would without the diagnosis
                    rng.setstate(state)
                    options = menu_options(ctx, rng, lead=first["lead"])
                    rng.setstate(after)
        prompt = render_prompt(ctx, findings, k, options)
        schema = menu_schema(len(options), k, names) if options else answer_schema(ctx.space, k)
        content: str | list[dict[str, Any]] = prompt
        png = curves_png(ctx.path) if self.curves else None
        if png is not None:  # OpenAI's image part, a data URL: no file leaves the machine but the request
            url = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
            content = [{"type": "text", "text": prompt}, {"type": "image_url", "image_url": {"url": url}}]
        reply = self.llm.complete([{"role": "system", "content": system}, {"role": "user", "content": content}],
                                  schema, temperature=self.temperature, max_tokens=self.max_tokens, seed=seed)
        record: dict[str, Any] = {
            "system": system, "prompt": prompt, "curves_png_bytes": len(png) if png else 0, "answer": reply.text,
            "findings": [f.name for f in findings],
            "mode": "menu" if options else "free",
            "llm": {"backend": reply.backend, "model": reply.model, "prompt_tokens": reply.prompt_tokens,
                    "completion_tokens": reply.completion_tokens, "seconds": round(reply.seconds, 3),
                    "attempts": reply.attempts, "error": reply.error, "calls": 1},
        }
        if first is not None:
            call = record["llm"]
            call.update(prompt_tokens=call["prompt_tokens"] + first.pop("prompt_tokens"),
                        completion_tokens=call["completion_tokens"] + first.pop("completion_tokens"),
                        seconds=round(call["seconds"] + first.pop("seconds"), 3), calls=call["calls"] + 1)
            record["diagnosed_first"] = first
        check = None
        if self.order_check and len(options) >= 2 and reply.parsed is not None:
            check = self._rotated(ctx, findings, k, options, system, schema, seed, record)
        proposals, repaired, decision, fallback_reason = self._from_reply(ctx, reply, k, rng, options, check)
        self.last_picks = proposals  # what the answer proposed, kept even when the branch is closed
        overruled = None
        if decision in ("stop", "backup") and ctx.node.depth > 0:
            # A branch that still improves is not abandoned: the node beat its parent, or the path's val
            # rose as the diagnosis requires to read no plateau (over its last few stages). The small
            # models answered "backup" almost always, and closed dives that the search kept going.
            parent = ctx.path[-2]
            since = (parent if ctx.node.val_score is not None and parent.val_score is not None
                     and ctx.node.val_score > parent.val_score else risen_from(ctx.path))
            if since is not None:
                overruled = f"{decision} overruled: the branch still improves (val {_g(since.val_score)} -> " \
                            f"{_g(ctx.node.val_score)}{'' if since is parent else ' since ' + since.id})"
            else:
                self.closed.add(ctx.node.id)
                proposals = []
                if decision == "backup":
                    self.backup_to.append(parent.id)
        record.update(decision=decision, overruled=overruled, repaired=repaired, fallback=fallback_reason)
        self.last_record = record
        return proposals

    def _diagnosis(self, ctx: ProposalContext, findings: list[Finding], k: int, system: str,
                   seed: int) -> dict[str, Any]:
        """Ask for the main finding alone (one of ``findings``, by name), before the menu is made. The
        embedded 0.5B model names a finding by what it is, where it picks options by their place ("Does
        the embedded model choose at all?" in the README). Its answer's cost and the finding it named
        (``lead``, None when the answer failed) are returned for the record."""
        prompt = render_prompt(ctx, findings, k).rsplit("\n", 1)[0] + "\nName the main finding."
        names = [f.name for f in findings]
        schema = {"type": "object", "properties": {"diagnosis": {"type": "string", "enum": names}},
                  "required": ["diagnosis"], "additionalProperties": False}
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        reply = self.llm.complete(messages, schema, temperature=self.temperature, max_tokens=self.max_tokens,
                                  seed=seed)
        lead = reply.parsed.get("diagnosis") if isinstance(reply.parsed, dict) else None
        return {"prompt": prompt, "answer": reply.text, "error": reply.error,
                "lead": lead if lead in names else None,
                "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                "seconds": reply.seconds}

    def _rotated(self, ctx: ProposalContext, findings: list[Finding], k: int, options: list[Proposal],
                 system: str, schema: dict[str, Any], seed: int,
                 record: dict[str, Any]) -> tuple[set[str], bool]:
        """The same question with the menu rotated by half its length (no option keeps its number), with
        the same seed: the options it picks, and whether it closes the branch. Its cost joins the record's."""
        rotated = rotate(options)
        prompt = render_prompt(ctx, findings, k, rotated)
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        reply = self.llm.complete(messages, schema, temperature=self.temperature, max_tokens=self.max_tokens,
                                  seed=seed)
        call = record["llm"]
        call.update(prompt_tokens=call["prompt_tokens"] + reply.prompt_tokens, calls=call["calls"] + 1,
                    completion_tokens=call["completion_tokens"] + reply.completion_tokens,
                    seconds=round(call["seconds"] + reply.seconds, 3))
        picked: set[str] = set()
        closes = False
        try:
            answer = Answer.model_validate(reply.parsed) if reply.parsed is not None else None
        except ValidationError:
            answer = None
        if answer is not None:
            picked = {params_key(rotated[a.option - 1].params) for a in answer.proposals[:k]
                      if a.option is not None and 1 <= a.option <= len(rotated)}
            closes = answer.decision in ("stop", "backup")
        numbers = sorted(i for i, o in enumerate(options, 1) if params_key(o.params) in picked)
        record["rotated"] = {"prompt": prompt, "answer": reply.text, "error": reply.error, "picked": numbers}
        return picked, closes

    def _from_reply(self, ctx: ProposalContext, reply: LLMReply, k: int, rng: random.Random,
                    options: list[Proposal], check: tuple[set[str], bool] | None = None,
                    ) -> tuple[list[Proposal], int, str, str | None]:
        answer: Answer | None = None
        if reply.parsed is not None:
            try:
                answer = Answer.model_validate(reply.parsed)
            except ValidationError as e:
                reply.error = f"answer does not match the schema: {e.errors()[0]['msg']}"
        if answer is None or not answer.proposals:
            why = reply.error or "no proposals in the answer"
            props = options[:k] or self.skill.propose(ctx, k, rng)
            return ([Proposal(p.params, f"skill fallback (llm: {why}): {p.reason}", "skill", p.mode, p.repairs,
                              p.findings) for p in props], 0, "expand", why)
        decision = answer.decision if answer.decision in DECISIONS else "expand"
        if check is not None and not check[1]:
            decision = "expand"  # the rotated answer did not close the branch: the closure is not confirmed
        unconfirmed = 0
        current = {p.name: ctx.node.params.get(p.name, p.default) for p in ctx.space}
        seen = {params_key(s.params) for s in ctx.siblings}
        out: list[Proposal] = []
        repaired = 0
        for a in answer.proposals[:k]:
            why = f"{a.rationale} (expected: {a.expected_effect})" if a.expected_effect else a.rationale
            if a.option is not None:  # a menu pick
                if not 1 <= a.option <= len(options) or params_key(options[a.option - 1].params) in seen:
                    repaired += 1
                    continue  # not a listed option, or picked twice: replaced below
                o = options[a.option - 1]
                if check is not None and params_key(o.params) not in check[0]:
                    unconfirmed += 1
                    continue  # picked by its position, not for itself: the skill library's order decides
                seen.add(params_key(o.params))
                out.append(Proposal(o.params, f"llm: {answer.diagnosis[:150]} | {why} | option {a.option}: "
                                    f"{_moves(current, o.params) or 'keep going'}"[:600], "llm", o.mode, o.repairs,
                                    o.findings))
                continue
            params, repairs = repair_changes(ctx.space, current, a.changes)
            if params_key(params) == params_key(current) or params_key(params) in seen:
                repaired += 1
                continue  # a no-op or a duplicate: replaced by a fallback below
            seen.add(params_key(params))
            repaired += bool(repairs)
            out.append(Proposal(params, f"llm: {answer.diagnosis[:150]} | {why}"[:600], "llm", StageMode.CONTINUE,
                                tuple(repairs), ()))
        for o in options:  # a menu answer short of k picks: the next options in the skill library's order
            if len(out) >= k:
                break
            if params_key(o.params) not in seen:
                seen.add(params_key(o.params))
                why = ("an llm pick the rotated menu did not confirm" if unconfirmed
                       else "a repeated or unlisted llm pick")
                unconfirmed = max(0, unconfirmed - 1)
                out.append(Proposal(o.params, f"replaces {why}: {o.reason}", "skill", o.mode, o.repairs,
                                    o.findings))
        if len(out) < k and not options:  # a free answer short of k: the skill agent's proposals, as for a failed one
            for o in self.skill.propose(ctx, k, rng):
                if len(out) < k and params_key(o.params) not in seen and params_key(o.params) != params_key(current):
                    seen.add(params_key(o.params))
                    out.append(Proposal(o.params, f"replaces a no-op or duplicate llm proposal: {o.reason}", "skill",
                                        o.mode, o.repairs, o.findings))
        if len(out) < k:
            extra = fallback_proposals(ctx, k - len(out), rng, exclude=[current, *(p.params for p in out)],
                                       proposed_by="skill")
            out += [Proposal(p.params, f"replaces a no-op or duplicate llm proposal: {p.reason}", p.proposed_by,
                             p.mode, p.repairs, p.findings) for p in extra]
        return out, repaired, decision, None
