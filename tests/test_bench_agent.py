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
