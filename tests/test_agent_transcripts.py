"""The LLM agent replaying real transcripts of the embedded Qwen2.5-Coder-0.5B (recorded by
``python bench/agent.py --rounds 2 --record tests/fixtures/agent_transcripts.jsonl``)."""

import json
import random
from pathlib import Path

import pytest

from llmzero.agents._base import NodeView, ProposalContext
from llmzero.agents.llm import LLMProposer
from llmzero.llm.replay import ReplayLLM
from llmzero.space import DEFAULT_SPACE

FIXTURES = Path(__file__).parent / "fixtures"
DATA = json.loads((FIXTURES / "real_histories.json").read_text())
SPACE = DEFAULT_SPACE.with_defaults(max_completion_length=18)


def context(case: dict) -> ProposalContext:
    root = NodeView("root", 0, DATA["base_params"], "complete", val_score=DATA["base_val"])
    node = NodeView("n1", 1, case["params"], "complete", val_score=case["val_score"], history=tuple(case["history"]))
    return ProposalContext(space=SPACE, node=node, path=(root, node), best_val=case["val_score"], budget_left=0.5,
                           max_depth=3, extra={"task": "number_sorting"})


@pytest.mark.parametrize("name", list(DATA["cases"]))
def test_recorded_answers_replay_into_legal_proposals(name):
    agent = LLMProposer(ReplayLLM(FIXTURES / "agent_transcripts.jsonl", strict=True))
    ctx = context(DATA["cases"][name])
    out = agent.propose(ctx, 2, random.Random(0))
    rec = agent.last_record
    assert rec["llm"]["error"] is None or "no transcript" not in rec["llm"]["error"], rec["llm"]["error"]
    assert rec["llm"]["prompt_tokens"] > 300 and rec["llm"]["seconds"] > 0  # real counts from the real model
    if rec["decision"] in ("stop", "backup") and not rec["overruled"]:  # the branch got worse: closed
        assert out == [] and ctx.node.id in agent.closed
        return
    assert len(out) == 2 and out[0].params != out[1].params
    for p in out:
        SPACE.validate(p.params)
        assert p.proposed_by in ("llm", "skill")
        if p.params == dict(ctx.node.params):  # only the menu's "keep going" option may keep every value
            assert "keep going" in p.reason
