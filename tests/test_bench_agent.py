"""``bench/agent.py --picks``: the agent's first menu pick in journaled searches, by the count asked."""

import importlib.util
import json
from pathlib import Path

from llmzero.search import JOURNAL, Journal

BENCH = Path(__file__).parent.parent / "bench"
spec = importlib.util.spec_from_file_location("bench_agent", BENCH / "agent.py")
agent = importlib.util.module_from_spec(spec)
spec.loader.exec_module(agent)


def answer(*options: int) -> str:
    picks = [{"option": o, "rationale": "r", "expected_effect": "e"} for o in options]
    return json.dumps({"diagnosis": "d", "decision": "expand", "proposals": picks})


def test_first_picks_are_counted_per_count_asked_across_runs(tmp_path):
    for run, events in {"a/seed0": [(2, answer(2, 3)), (1, answer(1)), (2, "not json")],
                        "b/seed1": [(2, answer(1, 2)), (2, answer(2, 5)), (1, None)]}.items():
        (tmp_path / run).mkdir(parents=True)
        j = Journal(tmp_path / run / JOURNAL, create=True)
        for k, text in events:  # None: the skill proposer (no agent record)
            j.append("proposal", "n1", {"k": k, **({"agent": {"answer": text}} if text is not None else {})})
        j.append("stage_finished", "n1", {"k": 9, "agent": {"answer": answer(4)}})  # not a proposal
        j.close()
    picks = agent.first_picks([str(tmp_path / "a"), str(tmp_path / "b")])
    assert picks == {1: {1: 1}, 2: {2: 2, 1: 1}}  # the unparsable answer and the skill proposal left out
    assert agent.first_picks([str(tmp_path / "b")]) == {2: {1: 1, 2: 1}}


def test_confirmed_picks_count_what_the_rotated_menu_repeated(tmp_path):
    def rotated(picked, decision="expand", text=None):
        return {"picked": picked, "answer": text if text is not None else json.dumps(
            {"diagnosis": "d", "decision": decision, "proposals": []})}

    backup = json.loads(answer(1, 2)) | {"decision": "backup"}
    j = Journal(tmp_path / JOURNAL, create=True)
    for k, text, rot in [(2, answer(1, 2), rotated([2, 4])),  # one of two picks confirmed
                         (2, json.dumps(backup), rotated([3, 4], "backup")),  # none; the backup repeated
                         (1, json.dumps(backup | {"proposals": backup["proposals"][:1]}),
                          rotated([1], text="junk")),  # confirmed; the rotated answer unparsable
                         (2, answer(3, 5), None)]:  # asked once: not counted
        j.append("proposal", "n1", {"k": k, "agent": {"answer": text, **({"rotated": rot} if rot else {})}})
    j.close()
    c = agent.confirmed_picks([str(tmp_path)])
    assert (c["answers"], c["picks"], c["confirmed"], c["closing"], c["closing_confirmed"]) == (3, 5, 2, 2, 1)


def test_diagnoses_are_counted_against_the_findings_the_detectors_made(tmp_path):
    def event(diagnosis, findings, option=1):
        pick = {"option": option} if option is not None else {"changes": [{"name": "beta", "value": 0.1}]}
        text = json.dumps({"diagnosis": diagnosis, "decision": "expand", "proposals": [pick]})
        return {"k": 1, "agent": {"answer": text, "findings": findings}}

    j = Journal(tmp_path / JOURNAL, create=True)
    for payload in (event("entropy blow-up or", []), event("none", []), event("The entropy of the", []),
                    event("truncation", ["truncation"]), event("Entropy_Collapse ->", ["truncation"]),
                    event("reward plateau, truncation", ["truncation", "zero_std_groups"]),
                    event("entropy collapse", [], option=None)):  # a free answer: left out
        j.append("proposal", "n1", payload)
    j.close()
    assert agent.named_findings("KL blow-up and grad-norm spike") == {"kl_blowup", "grad_norm_spike"}
    assert agent.diagnoses([str(tmp_path)]) == {"none": 3, "none_named": 1, "found": 3, "found_named": 2,
                                                 "found_other": 2}


def test_main_findings_asked_first_are_counted_against_the_most_severe(tmp_path):
    def event(findings, lead):
        text = json.dumps({"diagnosis": lead or "none", "decision": "expand", "proposals": [{"option": 1}]})
        return {"k": 1, "agent": {"answer": text, "findings": findings,
                                  "diagnosed_first": {"prompt": "Name the main finding.", "lead": lead}}}

    j = Journal(tmp_path / JOURNAL, create=True)
    for payload in (event(["zero_std_groups", "truncation"], "zero_std_groups"),
                    event(["truncation", "zero_std_groups"], "zero_std_groups"),
                    event(["truncation", "zero_std_groups"], "truncation"),
                    event(["truncation", "zero_std_groups"], None)):  # the question failed
        j.append("proposal", "n1", payload)
    j.append("proposal", "n2", {"k": 1, "agent": {"answer": answer(1), "findings": ["truncation"]}})
    j.close()
    d = agent.diagnoses([str(tmp_path)])
    assert (d["asked_first"], d["lead_most_severe"], d["lead_other"]) == (4, 2, 1)
