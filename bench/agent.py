"""The LLM agent with the embedded model: latency per proposal, repairs, and whether its changes
answer the findings.

    python bench/agent.py [--tier 0.5b] [--threads 1] [--rounds 2] [--compare] [--diagnose-first] [--free]
    python bench/agent.py --order [--tier 0.5b] [--rounds 4]   # does it pick an option or a position?
    python bench/agent.py --score [--tier 0.5b] [--rounds 4]   # can it judge one option put alone?
    python bench/agent.py --picks RUNS_DIR [RUNS_DIR ...]      # first picks in searches, by count asked,
                                                               # and what their diagnoses name

Contexts are real stage histories of number_sorting (tests/fixtures/real_histories.json: a healthy
stage, lr 1e-3, a short max_completion_length, temperature 0.5, entropy_coef 0.1). For each, the
agent proposes 2 children, ``--rounds`` times with different seeds. Printed side by side with the
skill agent on the same contexts:

* median and max seconds per proposal round (goal for the embedded 0.5B: at most 5 s, 1 thread);
* share of rounds whose answer needed a repair or fell back to the skill agent;
* share of rounds where the agent closed the branch (stop or backup on a stage worse than its parent);
* share of findings that at least one proposal addresses (a change in a remedy's direction); in a
  round that closed the branch, the proposals its answer picked count;
* in the four histories made with a known cause, the rounds whose first proposal undoes it.

``--diagnose-first`` adds the agent with ``llm.diagnose_first`` (the main finding asked for first);
``--free`` adds it with ``llm.answer: free`` (the changes written by the agent, not picked from a menu).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import time
from collections import Counter
from pathlib import Path

from pydantic import ValidationError

from llmzero.agents._base import NodeView, ProposalContext
from llmzero.agents.diagnosis import DETECTORS, diagnose
from llmzero.agents.llm import Answer
from llmzero.space import DEFAULT_SPACE

FIXTURE = Path(__file__).parent.parent / "tests" / "fixtures" / "real_histories.json"

# finding -> changes that answer it: (parameter, +1 for up / -1 for down / 0 for any change)
ANSWERS = {
    "entropy_collapse": [("entropy_coef", 1), ("temperature", 1), ("epsilon_high", 1)],
    "entropy_blowup": [("entropy_coef", -1), ("temperature", -1), ("learning_rate", -1)],
    "kl_blowup": [("learning_rate", -1), ("beta", 1)],
    "grad_norm_spike": [("learning_rate", -1)],
    "clip_saturation": [("learning_rate", -1), ("epsilon_high", 1)],
    "truncation": [("max_completion_length", 1)],
    "length_explosion": [("max_completion_length", -1), ("entropy_coef", -1), ("learning_rate", -1)],
    "length_collapse": [("max_completion_length", 1), ("learning_rate", -1)],
    "zero_std_groups": [("num_generations", 1), ("temperature", 1), ("difficulty", 0)],
    "reward_plateau": [("learning_rate", 0), ("difficulty", 0), ("entropy_coef", 1)],
    "reward_collapse": [("learning_rate", -1), ("entropy_coef", -1), ("temperature", -1)],
    "reward_hacking": [("beta", 1), ("learning_rate", -1)],
}


def addressed(finding: str, before: dict, proposals: list) -> bool:
    for name, sign in ANSWERS.get(finding, []):
        for p in proposals:
            d = p.params.get(name, before[name]) - before[name]
            if (sign == 0 and d != 0) or d * sign > 0:
                return True
    return False


def contexts() -> list[tuple[str, ProposalContext]]:
    data = json.loads(FIXTURE.read_text())
    space = DEFAULT_SPACE.with_defaults(max_completion_length=18)
    out = []
    for name, case in data["cases"].items():
        root = NodeView("root", 0, data["base_params"], "complete", val_score=data["base_val"])
        node = NodeView("n1", 1, case["params"], "complete", val_score=case["val_score"], history=tuple(case["history"]))
        out.append((name, ProposalContext(space=space, node=node, path=(root, node), best_val=case["val_score"],
                                          budget_left=0.5, max_depth=3, extra={"task": "number_sorting"})))
    return out


def run(proposer, rounds: int) -> dict:
    secs, tokens, repaired, hits, total, closed, undone, caused = [], [], 0, 0, 0, 0, 0, 0
    picks, decisions = Counter(), Counter()
    # Rounds outside, contexts inside: as in a search, consecutive calls are about different nodes
    # and share only the run's system message in llama.cpp's prompt cache.
    for r in range(rounds):
        for name, ctx in contexts():
            findings = [f.name for f in diagnose(ctx.path)]
            t = time.perf_counter()
            props = proposer.propose(ctx, 2, random.Random(r))
            secs.append(time.perf_counter() - t)
            rec = getattr(proposer, "last_record", {}) or {}
            if rec.get("llm"):
                tokens.append((rec["llm"]["prompt_tokens"], rec["llm"]["completion_tokens"]))
            repaired += bool(rec.get("repaired") or rec.get("fallback"))
            try:  # which menu options the answer picked, by number, and its decision
                answer = Answer.model_validate_json(rec.get("answer") or "")
                picks.update(p.option for p in answer.proposals if p.option is not None)
                decisions[answer.decision] += 1
            except ValidationError:
                pass  # no answer: a failed call, fallen back to the skill agent
            if not props:  # the agent closed the branch (stop or backup on a stage that got worse)
                closed += 1
            props = props or getattr(proposer, "last_picks", [])  # what it picked before closing
            hits += sum(addressed(f, ctx.node.params, props) for f in findings)
            total += len(findings)
            if name in CAUSES and props:  # a history made with a known cause: does the first proposal undo it
                caused += 1
                undone += undoes(ctx, props[0].params, CAUSES[name])
    return {"undone": undone, "caused": caused,
            "median_s": statistics.median(secs), "max_s": max(secs), "rounds": len(secs),
            "prompt_tokens": statistics.median(t[0] for t in tokens) if tokens else 0,
            "completion_tokens": statistics.median(t[1] for t in tokens) if tokens else 0,
            "picks": dict(sorted(picks.items(), key=str)), "decisions": dict(decisions),
            "repaired_share": repaired / len(secs), "closed_share": closed / len(secs), "addressed_share": hits / total if total else float("nan")}


def free_text_step_cost(llm, n: int = 20, repeats: int = 3) -> str:
    """Milliseconds per decoding step of free text with and without a grammar for JSON string
    characters, from the same prompt, side by side (why filled answers sample free text without one)."""
    from llama_cpp import LlamaGrammar

    from llmzero.agents.llm import render_system

    llama = llm._llama
    prompt = llama.tokenize(render_system(contexts()[0][1]).encode() + b'\n{"diagnosis":"', add_bos=False)
    grammar = LlamaGrammar.from_string('root ::= [^"\\\\\\x7F\\x00-\\x1F]{0,400} "\\""', verbose=False)
    llama.create_completion(prompt=prompt, max_tokens=1)  # the prompt read once, for both
    ms = {"grammar": [], "none": []}
    for r in range(repeats):
        for name, g in (("grammar", grammar), ("none", None)):
            t = time.perf_counter()
            out = llama.create_completion(prompt=prompt, grammar=g, max_tokens=n, temperature=0.7, seed=r)
            ms[name].append(1000 * (time.perf_counter() - t) / max(1, out["usage"]["completion_tokens"]))
    g, f = statistics.median(ms["grammar"]), statistics.median(ms["none"])
    return (f"free text, median ms per decoding step ({n} tokens, {repeats} repeats): with a string grammar "
            f"{g:.0f}, without {f:.0f} ({g / f:.2f}x)")


def order_probe(llm, rounds: int) -> dict:
    """Does the agent choose an option or a position? Each menu is asked twice: as listed, and rotated
    by half its length (no option keeps its number). A first pick that names the same option both times
    follows the content; one that keeps its number follows the position. The same for the diagnosis
    where a node has two findings or more: the findings listed in the prompt (and offered as the
    diagnosis) as the detectors order them, and rotated by half."""
    from llmzero.agents.llm import menu_options, menu_schema, render_prompt, render_system, rotate
    from llmzero.space import params_key

    def ask(ctx, findings, opts, r):
        reply = llm.complete([{"role": "system", "content": render_system(ctx)},
                              {"role": "user", "content": render_prompt(ctx, findings, 2, opts)}],
                             menu_schema(len(opts), 2, [f.name for f in findings]), temperature=0.2,
                             max_tokens=400, seed=r)
        try:
            return Answer.model_validate_json(reply.text)
        except ValidationError:
            return None

    out = Counter(menus=0, same_option=0, same_number=0, diagnoses=0, same_finding=0, same_place=0)
    for r in range(rounds):
        for _, ctx in contexts():
            options = menu_options(ctx, random.Random(r))
            if len(options) < 2:
                continue
            findings = diagnose(ctx.path)
            first = []
            for opts in (options, rotate(options)):
                answer = ask(ctx, findings, opts, r)
                pick = answer.proposals[0].option if answer and answer.proposals else None
                first.append((pick, params_key(opts[pick - 1].params) if pick else None))
            if first[0][0] is not None and first[1][0] is not None:
                out["menus"] += 1
                out["same_option"] += first[0][1] == first[1][1]
                out["same_number"] += first[0][0] == first[1][0]
            if len(findings) < 2:
                continue
            names = []
            for listed in (findings, rotate(findings)):
                answer = ask(ctx, listed, options, r)
                names.append([f.name for f in listed].index(answer.diagnosis) if answer else None)
            if None not in names:
                out["diagnoses"] += 1
                out["same_finding"] += findings[names[0]].name == rotate(findings)[names[1]].name
                out["same_place"] += names[0] == names[1]
    return out


# The cause each real history was made with, and the move that undoes it: (parameter, direction).
CAUSES = {"lr_1e-3": ("learning_rate", -1), "short_length": ("max_completion_length", 1),
          "temperature_0.5": ("temperature", 1), "entropy_coef_0.1": ("entropy_coef", -1)}


def undoes(ctx: ProposalContext, params: dict, cause: tuple[str, int]) -> bool:
    """Whether ``params`` move the cause's parameter back from the node's value."""
    name, sign = cause
    return (params[name] - ctx.node.params[name]) * sign > 0


def score_probe(llm, rounds: int) -> dict:
    """Can the model judge an option at all, with no list to pick from? Each option of a menu is put to it
    alone ("Will this change raise the val score? Answer yes or no.") and scored by P(yes) from the
    next-token logits. For the histories made with a known cause (``CAUSES``), counted: menus whose
    best-scored option undoes the cause, against the skill library's first option, and the spread of
    P(yes) within a menu."""
    import numpy as np

    from llmzero.agents.llm import _moves, menu_options, render_prompt, render_system

    llama = llm._llama
    words = {w: [llama.tokenize(v.encode(), add_bos=False, special=False)[0] for v in (w, w.capitalize())]
             for w in ("yes", "no")}

    def p_yes(tokens: list[int]) -> float:
        have, same = llama.input_ids[:llama.n_tokens], 0
        while same < min(len(have), len(tokens) - 1) and have[same] == tokens[same]:
            same += 1
        llama.n_tokens = same  # the shared prefix stays in the context; eval drops the rest
        llama.eval(tokens[same:])
        logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama.n_vocab(),))
        e = np.exp(logits - logits.max())
        yes, no = e[words["yes"]].sum(), e[words["no"]].sum()
        return float(yes / (yes + no)) if yes + no > 0 else 0.5

    menus = llm_hits = skill_hits = 0
    spreads = []
    for r in range(rounds):
        for name, ctx in contexts():
            options = menu_options(ctx, random.Random(r))
            if name not in CAUSES or not any(undoes(ctx, o.params, CAUSES[name]) for o in options):
                continue
            findings = diagnose(ctx.path)
            head = render_prompt(ctx, findings, 2).rsplit("\n", 1)[0]  # the situation, without "Give k ..."
            scores = []
            for o in options:
                q = (f"{head}\nProposed change for the next stage: {_moves(ctx.node.params, o.params) or 'keep going'}"
                     ".\nWill this change raise the val score? Answer yes or no.")
                msgs = [{"role": "system", "content": render_system(ctx, menu=False)}, {"role": "user", "content": q}]
                scores.append(p_yes(llm._chat_prompt(llama, msgs)))
            best = options[max(range(len(options)), key=scores.__getitem__)]
            menus += 1
            llm_hits += undoes(ctx, best.params, CAUSES[name])
            skill_hits += undoes(ctx, options[0].params, CAUSES[name])
            spreads.append(max(scores) - min(scores))
    return {"menus": menus, "llm_hits": llm_hits, "skill_hits": skill_hits,
            "spread": statistics.median(spreads) if spreads else float("nan")}


def _answers(dirs: list[str]):
    """Every proposal answer journaled under ``dirs`` (benchmark runs directories, searched for
    journals), with its proposal event's payload."""
    from llmzero.agents.llm import journaled_answers
    from llmzero.search import JOURNAL, Journal

    for path in sorted(p for d in dirs for p in Path(d).rglob(JOURNAL)):
        j = Journal(path)
        try:
            yield from journaled_answers(j)
        finally:
            j.close()


def first_picks(dirs: list[str]) -> dict[int, Counter]:
    """Per count asked (k): the agent's first menu pick in every proposal answer journaled under ``dirs``."""
    out: dict[int, Counter] = {}
    for payload, answer in _answers(dirs):
        if answer.proposals and answer.proposals[0].option is not None:
            out.setdefault(payload["k"], Counter())[answer.proposals[0].option] += 1
    return out


def named_findings(text: str) -> set[str]:
    """The detectors' findings a diagnosis names, whatever its spelling: "entropy blow-up" names
    entropy_blowup, "Truncation" truncation."""
    flat = re.sub(r"[^a-z]", "", text.lower())
    return {n for n in DETECTORS if n.replace("_", "") in flat}


def diagnoses(dirs: list[str]) -> Counter:
    """Over the menu answers journaled under ``dirs``: those at a node without findings, and how many of
    their diagnoses name a finding anyway; those with findings, and how many name one of them, and how
    many name another; with ``llm.diagnose_first``, the nodes where it asked for the main finding, and
    how often the finding named was the detectors' most severe one or another (the only case where the
    agent's menu differs from its ablation's)."""
    out: Counter = Counter()
    for payload, answer in _answers(dirs):
        if not answer.proposals or answer.proposals[0].option is None:
            continue  # a free answer
        found, named = set(payload["agent"].get("findings") or []), named_findings(answer.diagnosis)
        if not found:
            out["none"] += 1
            out["none_named"] += bool(named)
        else:
            out["found"] += 1
            out["found_named"] += bool(named & found)
            out["found_other"] += bool(named - found)
        first = payload["agent"].get("diagnosed_first")
        if first is not None:  # llm.diagnose_first asked for the main finding (two findings or more)
            listed = payload["agent"].get("findings") or []
            lead = first.get("lead")
            out["asked_first"] += 1
            out["lead_most_severe"] += bool(listed) and lead == listed[0]
            out["lead_other"] += lead is not None and bool(listed) and lead != listed[0]
    return out


def confirmed_picks(dirs: list[str]) -> Counter:
    """Over the answers asked again with the menu rotated (``llm.order_check``): menu picks, those the
    rotated answer picked too, and closing decisions, those the rotated answer made too."""
    out: Counter = Counter()
    for payload, answer in _answers(dirs):
        rotated = payload["agent"].get("rotated")
        if rotated is None:
            continue
        try:
            again = Answer.model_validate_json(rotated.get("answer") or "")
        except ValidationError:
            again = None
        picks = [a.option for a in answer.proposals[:payload["k"]] if a.option is not None]
        out["answers"] += 1
        out["picks"] += len(picks)
        out["confirmed"] += sum(o in rotated["picked"] for o in picks)
        if answer.decision in ("stop", "backup"):
            out["closing"] += 1
            out["closing_confirmed"] += again is not None and again.decision in ("stop", "backup")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tier", default="0.5b")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--record", help="Also write the embedded model's transcripts to this JSONL file.")
    ap.add_argument("--compare", action="store_true",
                    help="Also run the same rounds decoding each answer under one whole-schema grammar "
                         "(the way before filled answers), side by side.")
    ap.add_argument("--diagnose-first", action="store_true",
                    help="Add a row for the agent with llm.diagnose_first (the main finding asked first).")
    ap.add_argument("--free", action="store_true",
                    help="Add a row for the agent with llm.answer: free (it writes the changes itself instead of "
                         "picking from the skill library's menu).")
    ap.add_argument("--order", action="store_true",
                    help="Only the order probe: is the first pick the same option, or the same number, when the "
                         "menu is rotated?")
    ap.add_argument("--score", action="store_true",
                    help="Only the scoring probe: P(yes) for each option put alone; does the best one undo the "
                         "history's known cause?")
    ap.add_argument("--picks", nargs="+", metavar="RUNS_DIR",
                    help="Only count, in the searches journaled under these directories, the agent's first "
                         "menu pick by the number of picks asked for, and with llm.order_check the picks and "
                         "closing decisions the rotated menu confirmed, and which findings the answers' "
                         "diagnoses name (no model is loaded).")
    a = ap.parse_args()
    if a.picks:
        for k, c in sorted(first_picks(a.picks).items()):
            n = sum(c.values())
            shares = ", ".join(f"option {o}: {v}" for o, v in sorted(c.items()))
            print(f"asked for {k}: {n} answers, first pick {shares}")
        if (c := confirmed_picks(a.picks))["answers"]:
            print(f"asked again rotated (llm.order_check): {c['answers']} answers; the rotated answer "
                  f"picked {c['confirmed']} of their {c['picks']} picks and repeated "
                  f"{c['closing_confirmed']} of their {c['closing']} closing decisions")
        d = diagnoses(a.picks)
        print(f"diagnoses: at {d['none']} nodes without findings, {d['none_named']} name a finding anyway; "
              f"at {d['found']} with findings, {d['found_named']} name one of them and {d['found_other']} "
              f"name another")
        if d["asked_first"]:
            print(f"diagnosed first (llm.diagnose_first): at {d['asked_first']} nodes with two findings or "
                  f"more, the main finding named was the most severe at {d['lead_most_severe']}, another at "
                  f"{d['lead_other']}, none at {d['asked_first'] - d['lead_most_severe'] - d['lead_other']}")
        return
    from llmzero.agents import SkillProposer
    from llmzero.agents.llm import LLMProposer
    from llmzero.llm import get_llm

    llm = base = get_llm("llama", tier=a.tier, n_threads=a.threads)
    llm.load()
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    simd = " ".join(f for f in ("AVX2", "AVX512", "AVX512_VNNI") if f"{f} = 1" in info)
    print(f"model load: {llm.load_seconds:.1f} s; llama.cpp {llama_cpp.__version__} built with {simd or 'no AVX'}")
    if a.order:
        o = order_probe(llm, a.rounds)
        print(f"order probe ({a.tier}, {o['menus']} menus, each asked as listed and rotated by half): the first pick "
              f"is the same option in {o['same_option']}, the same number in {o['same_number']}")
        print(f"diagnosis ({o['diagnoses']} nodes with two findings or more, listed as found and rotated by "
              f"half): the same finding in {o['same_finding']}, the same place in the list in "
              f"{o['same_place']}")
        return
    if a.score:
        o = score_probe(llm, a.rounds)
        print(f"score probe ({a.tier}, {o['menus']} menus of histories with a known cause): the option with the "
              f"highest P(yes) undoes the cause in {o['llm_hits']}, the skill library's first option in "
              f"{o['skill_hits']}; median spread of P(yes) within a menu {o['spread']:.2f}")
        return
    if a.record:
        from llmzero.llm.replay import RecordingLLM

        llm = RecordingLLM(llm, a.record)
    name = f"llm (embedded {a.tier}, {a.threads} thread)"
    rows = {name: run(LLMProposer(llm), a.rounds)}
    if a.diagnose_first:
        rows[name.replace(")", ", diagnosis first)")] = run(LLMProposer(llm, diagnose_first=True), a.rounds)
    if a.free:
        rows[name.replace(")", ", free answers)")] = run(LLMProposer(llm, answer="free"), a.rounds)
    if a.compare:
        base.fill = False
        whole = name.replace(")", ", whole-schema grammar)")
        rows[whole] = run(LLMProposer(llm), a.rounds)
        base.fill = True
    rows["skill (no LLM)"] = run(SkillProposer(), a.rounds)
    print("| agent | rounds | median s/round | max s | median prompt / answer tokens | needed repair or fallback "
          "| branch closed | findings addressed | first proposal undoes the history's cause |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['rounds']} | {r['median_s']:.2f} | {r['max_s']:.2f} | "
              f"{r['prompt_tokens']:.0f} / {r['completion_tokens']:.0f} | {100 * r['repaired_share']:.0f}% "
              f"| {100 * r['closed_share']:.0f}% "
              f"| {100 * r['addressed_share']:.0f}% | {r['undone']} of {r['caused']} |")
    for name, r in rows.items():
        if r["picks"]:
            print(f"{name}: options picked {r['picks']}, decisions {r['decisions']}")
    from llmzero.agents.llm import render_system

    llama = base._llama
    ctx = contexts()[0][1]
    n_sys = len(llama.tokenize(render_system(ctx).encode(), add_bos=False, special=False))
    print(f"of the prompt tokens, {n_sys} are the run's system message, read once and then kept in llama.cpp's "
          "prompt cache")
    llm_row = next(iter(rows.values()))
    if a.compare:
        old = rows[whole]
        print(f"filled / whole-schema grammar: median {llm_row['median_s'] / old['median_s']:.2f}x, "
              f"answer tokens {llm_row['completion_tokens'] / max(1, old['completion_tokens']):.2f}x")
        print(free_text_step_cost(base))
    print(f"goal: median at most 5 s per proposal round -> {'met' if llm_row['median_s'] <= 5 else 'NOT met'}")


if __name__ == "__main__":
    main()
