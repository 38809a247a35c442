"""The LLM agent with the embedded model: latency per proposal, repairs, and whether its changes
answer the findings.

    python bench/agent.py [--tier 0.5b] [--threads 1] [--rounds 2] [--compare]

Contexts are real stage histories of number_sorting (tests/fixtures/real_histories.json: a healthy
stage, lr 1e-3, a short max_completion_length, temperature 0.5, entropy_coef 0.1). For each, the
agent proposes 2 children, ``--rounds`` times with different seeds. Printed side by side with the
skill agent on the same contexts:

* median and max seconds per proposal round (goal for the embedded 0.5B: at most 5 s, 1 thread);
* share of rounds whose answer needed a repair or fell back to the skill agent;
* share of rounds where the agent closed the branch (stop or backup on a stage worse than its parent);
* share of findings that at least one proposal addresses (a change in a remedy's direction); in a
  round that closed the branch, the proposals its answer picked count.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import Counter
from pathlib import Path

from pydantic import ValidationError

from llmzero.agents._base import NodeView, ProposalContext
from llmzero.agents.diagnosis import diagnose
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
    secs, tokens, repaired, hits, total, closed = [], [], 0, 0, 0, 0
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
    return {"median_s": statistics.median(secs), "max_s": max(secs), "rounds": len(secs),
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tier", default="0.5b")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--record", help="Also write the embedded model's transcripts to this JSONL file.")
    ap.add_argument("--compare", action="store_true",
                    help="Also run the same rounds decoding each answer under one whole-schema grammar "
                         "(the way before filled answers), side by side.")
    a = ap.parse_args()
    from llmzero.agents import SkillProposer
    from llmzero.agents.llm import LLMProposer
    from llmzero.llm import get_llm

    llm = base = get_llm("llama", tier=a.tier, n_threads=a.threads)
    llm.load()
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode()
    simd = " ".join(f for f in ("AVX2", "AVX512", "AVX512_VNNI") if f"{f} = 1" in info)
    print(f"model load: {llm.load_seconds:.1f} s; llama.cpp {llama_cpp.__version__} built with {simd or 'no AVX'}")
    if a.record:
        from llmzero.llm.replay import RecordingLLM

        llm = RecordingLLM(llm, a.record)
    name = f"llm (embedded {a.tier}, {a.threads} thread)"
    rows = {name: run(LLMProposer(llm), a.rounds)}
    if a.compare:
        base.fill = False
        rows[name.replace(")", ", whole-schema grammar)")] = run(LLMProposer(llm), a.rounds)
        base.fill = True
    rows["skill (no LLM)"] = run(SkillProposer(), a.rounds)
    print("| agent | rounds | median s/round | max s | median prompt / answer tokens | needed repair or fallback "
          "| branch closed | findings addressed |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['rounds']} | {r['median_s']:.2f} | {r['max_s']:.2f} | "
              f"{r['prompt_tokens']:.0f} / {r['completion_tokens']:.0f} | {100 * r['repaired_share']:.0f}% "
              f"| {100 * r['closed_share']:.0f}% "
              f"| {100 * r['addressed_share']:.0f}% |")
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
        old = list(rows.values())[1]
        print(f"filled / whole-schema grammar: median {llm_row['median_s'] / old['median_s']:.2f}x, "
              f"answer tokens {llm_row['completion_tokens'] / max(1, old['completion_tokens']):.2f}x")
        print(free_text_step_cost(base))
    print(f"goal: median at most 5 s per proposal round -> {'met' if llm_row['median_s'] <= 5 else 'NOT met'}")


if __name__ == "__main__":
    main()
