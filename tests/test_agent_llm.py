"""The LLM agent: prompt, schema, repairs, fallbacks and its place in the search (scripted LLMs)."""

import json
import random

import pytest

from llmzero.agents._base import NodeView, ProposalContext
from llmzero.agents.diagnosis import diagnose
from llmzero.agents.llm import STEP_FACTOR, LLMProposer, answer_schema, render_prompt, render_system, repair_changes
from llmzero.llm._base import LLMReply
from llmzero.space import DEFAULT_SPACE

SPACE = DEFAULT_SPACE.with_defaults(max_completion_length=18)
BASE = SPACE.defaults()


def collapsing_history(n=20):
    return tuple({"step": i + 1, "reward": 0.3 + 0.001 * i, "entropy": 0.5 * (0.85 ** i), "frac_reward_zero_std": 0.3 + 0.03 * i,
                  "completions/clipped_ratio": 0.0, "completions/mean_length": 10.0, "grad_norm": 0.5}
                 for i in range(n))


def context(siblings=(), val=0.41):
    root = NodeView("root", 0, dict(BASE), "complete", val_score=0.37)
    node = NodeView("n1", 1, dict(BASE), "complete", val_score=val, history=collapsing_history())
    return ProposalContext(space=SPACE, node=node, path=(root, node), siblings=tuple(siblings), best_val=0.41,
                           budget_left=0.6, max_depth=3, extra={"task": "number_sorting"})


class Scripted:
    """An LLM that answers what the test says, and remembers what it was asked."""

    name = "scripted"

    def __init__(self, answer):
        self.answer, self.calls = answer, []

    def complete(self, messages, schema, *, temperature=0.2, max_tokens=400, seed=None):
        self.calls.append((messages, schema))
        if isinstance(self.answer, Exception):
            return LLMReply(text="", parsed=None, error=str(self.answer), backend="scripted", seconds=0.01)
        text = self.answer if isinstance(self.answer, str) else json.dumps(self.answer)
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        return LLMReply(text=text, parsed=parsed, prompt_tokens=321, completion_tokens=45, seconds=0.5,
                        backend="scripted", model="m", error=None if parsed is not None else "invalid JSON")


def test_prompt_has_every_section():
    ctx = context(siblings=[NodeView("n2", 2, {**BASE, "temperature": 1.2}, "complete", val_score=0.40)])
    system = render_system(ctx)
    for part in ("Task: number_sorting", "learning_rate 1e-4 [1e-7, 0.01] R", "max_completion_length 18 [1, 4096] C",
                 "decision: expand, stop"):
        assert part in system, part
    text = render_prompt(ctx, diagnose(ctx.path), 2)
    for part in ("Now: all at start values", "0: base model | val 0.37", "1: no change | val 0.41",
                 "Trends: reward .3->.32, entropy .37->.032, zero_std", "entropy_collapse (", "Tried here: temperature "
                 "1->1.2: val 0.4", "Best val 0.41", "budget left 60%", "next stage 2/3",
                 "Give two proposals."):
        assert part in text, part
    moved = ProposalContext(space=SPACE, node=NodeView("n3", 2, {**BASE, "learning_rate": 3e-4}, "complete"),
                            path=ctx.path, max_depth=3)
    assert render_prompt(moved, [], 2).startswith("Now: learning_rate=3e-4, others at start\n")


def test_prompt_asks_for_the_count_in_words():
    """A digit in "Pick 2 options." was copied into the embedded model's first pick: the count is a word."""
    from llmzero.agents.llm import menu_options

    ctx = context()
    opts = menu_options(ctx, random.Random(0))
    assert render_prompt(ctx, [], 1, opts).endswith("\nPick one option.")
    assert render_prompt(ctx, [], 3, opts).endswith("\nPick three options.")
    assert render_prompt(ctx, [], 1).endswith("\nGive one proposal.")
    last = render_prompt(ctx, [], 2, opts).splitlines()[-1]
    assert last == "Pick two options." and not any(c.isdigit() for c in last)


def test_system_message_is_the_same_along_a_run():
    """The cacheable part: it names the start values, never the node's."""
    ctx = context()
    child = ProposalContext(space=SPACE, node=NodeView("c", 2, {**BASE, "temperature": 1.3}, "complete"),
                            path=(*ctx.path, NodeView("c", 2, {**BASE, "temperature": 1.3}, "complete")),
                            extra=ctx.extra)
    assert render_system(ctx) == render_system(child)


def test_schema_lists_every_parameter_and_k():
    s = answer_schema(SPACE, 3)
    props = s["properties"]["proposals"]
    assert props["maxItems"] == 3 and set(props["items"]["properties"]["changes"]["items"]["properties"]["name"]["enum"]) == set(SPACE.names)
    assert s["properties"]["decision"]["enum"] == ["expand", "stop", "backup"]


def test_a_menu_answer_is_asked_to_diagnose_the_nodes_findings_and_a_free_one_in_words():
    ctx = context()
    names = [f.name for f in diagnose(ctx.path)]
    assert "entropy_collapse" in names
    picks = [{"option": 1}, {"option": 2}]
    menu = Scripted({"diagnosis": names[0], "decision": "expand", "proposals": picks})
    out = LLMProposer(menu).propose(ctx, 2, random.Random(0))
    assert menu.calls[0][1]["properties"]["diagnosis"] == {"type": "string", "enum": names}
    assert out[0].reason.startswith(f"llm: {names[0]} |")
    assert "(the main finding by name, or none)" in menu.calls[0][0][0]["content"]
    node = NodeView("n1", 1, BASE, "complete", val_score=0.41)
    healthy = ProposalContext(space=SPACE, node=node, path=(ctx.path[0], node), max_depth=3)
    assert diagnose(healthy.path) == []
    LLMProposer(menu).propose(healthy, 2, random.Random(0))
    assert menu.calls[1][1]["properties"]["diagnosis"]["enum"] == ["none"]
    free = Scripted({"diagnosis": "anything", "decision": "expand", "proposals": []})
    LLMProposer(free, answer="free").propose(ctx, 2, random.Random(0))
    assert free.calls[0][1]["properties"]["diagnosis"] == {"type": "string", "maxLength": 80}
    assert "(the main finding in a few words)" in free.calls[0][0][0]["content"]


def test_repairs_drop_unknown_clamp_bounds_and_limit_steps():
    params, repairs = repair_changes(SPACE, BASE, {"learning_rate": 0.5, "bogus": 1, "temperature": 9.0,
                                                   "entropy_coef": 0.01})
    assert params["learning_rate"] == pytest.approx(BASE["learning_rate"] * STEP_FACTOR)  # 0.5 -> 1e-2 -> 1e-3
    assert params["temperature"] == 3.0 and params["entropy_coef"] == 0.01 and "bogus" not in params
    reasons = {r.param: r.reason for r in repairs}
    assert "dropped" in reasons["bogus"] and "clamped" in reasons["temperature"] and "step limited" in reasons["learning_rate"]


def test_good_answer_becomes_repaired_proposals_with_a_record():
    llm = Scripted({"diagnosis": "entropy is collapsing", "decision": "expand", "proposals": [
        {"changes": {"entropy_coef": 0.01, "temperature": 1.1}, "rationale": "more exploration", "expected_effect": "entropy up"},
        {"changes": {"learning_rate": 1.0}, "rationale": "faster", "expected_effect": "reward up"}]})
    agent = LLMProposer(llm)
    out = agent.propose(context(), 2, random.Random(0))
    assert [p.proposed_by for p in out] == ["llm", "llm"]
    assert out[0].params["entropy_coef"] == 0.01 and out[0].params["temperature"] == 1.1
    assert out[1].params["learning_rate"] == pytest.approx(1e-3) and out[1].repairs
    assert "entropy is collapsing" in out[0].reason and "more exploration" in out[0].reason
    rec = agent.last_record
    assert rec["llm"]["prompt_tokens"] == 321 and rec["repaired"] == 1 and rec["fallback"] is None
    assert "entropy_collapse" in rec["findings"] and "0: base model" in rec["prompt"]
    SPACE.validate(out[0].params) and SPACE.validate(out[1].params)


def test_noop_and_duplicate_proposals_are_replaced_by_fallbacks():
    sibling = NodeView("n2", 2, {**BASE, "entropy_coef": 0.01}, "complete", val_score=0.4)
    llm = Scripted({"diagnosis": "d", "decision": "expand", "proposals": [
        {"changes": {"learning_rate": BASE["learning_rate"]}, "rationale": "echo", "expected_effect": ""},
        {"changes": {"entropy_coef": 0.01}, "rationale": "same as sibling", "expected_effect": ""}]})
    agent = LLMProposer(llm)
    out = agent.propose(context(siblings=[sibling]), 2, random.Random(0))
    assert len(out) == 2 and all(p.proposed_by == "skill" for p in out)
    keys = {tuple(sorted(p.params.items())) for p in out}
    assert len(keys) == 2 and tuple(sorted(BASE.items())) not in keys and tuple(sorted(sibling.params.items())) not in keys
    assert agent.last_record["repaired"] == 2


def test_free_answers_no_ops_are_replaced_by_the_skill_agents_proposals():
    """With free answers there is no menu to fill in from: a no-op or duplicate proposal is replaced by
    what the skill agent proposes at the node (its remedies for the findings, as the ablation makes
    them), as a failed answer is, and not by the diverse fallbacks; the embedded 0.5B's free answers
    were no-ops at 4 of 10 contexts of bench/agent.py."""
    from llmzero.agents import SkillProposer

    sibling = NodeView("n2", 2, {**BASE, "entropy_coef": 0.01}, "complete", val_score=0.4)
    llm = Scripted({"diagnosis": "d", "decision": "expand", "proposals": [
        {"changes": {"learning_rate": BASE["learning_rate"]}, "rationale": "echo", "expected_effect": ""},
        {"changes": {"entropy_coef": 0.01}, "rationale": "same as sibling", "expected_effect": ""}]})
    agent = LLMProposer(llm, answer="free")
    out = agent.propose(context(siblings=[sibling]), 2, random.Random(0))
    skill = SkillProposer().propose(context(siblings=[sibling]), 2, random.Random(0))
    assert [p.params for p in out] == [p.params for p in skill]
    assert all(p.proposed_by == "skill" and "replaces a no-op or duplicate llm proposal" in p.reason for p in out)
    assert agent.last_record["repaired"] == 2
    # one kept proposal: the skill agent's first proposal that differs from it fills the second place
    llm = Scripted({"diagnosis": "d", "decision": "expand", "proposals": [
        {"changes": {"learning_rate": 5e-5}, "rationale": "lower", "expected_effect": ""},
        {"changes": {"entropy_coef": 0.01}, "rationale": "same as sibling", "expected_effect": ""}]})
    out = LLMProposer(llm, answer="free").propose(context(siblings=[sibling]), 2, random.Random(0))
    assert out[0].proposed_by == "llm" and out[0].params["learning_rate"] == 5e-5
    assert out[1].params == skill[0].params


@pytest.mark.parametrize("answer", ["this is not json", {"diagnosis": "x", "proposals": [], "decision": "expand"},
                                    RuntimeError("connection refused"), {"proposals": "nope"}])
def test_failed_or_garbage_answers_fall_back_to_the_skill_agent(answer):
    agent = LLMProposer(Scripted(answer))
    out = agent.propose(context(), 2, random.Random(0))
    assert len(out) == 2 and all(p.proposed_by == "skill" and "skill fallback" in p.reason for p in out)
    assert agent.last_record["fallback"]
    # entropy collapse is still answered, by the skills
    assert any(p.params["entropy_coef"] > 0 or p.params["temperature"] > 1 for p in out)


@pytest.mark.parametrize("decision", ["stop", "backup"])
def test_stop_and_backup_close_a_branch_that_stopped_improving(decision):
    answer = {"diagnosis": "dead", "decision": decision, "proposals": [
        {"changes": {"learning_rate": 5e-5}, "rationale": "r", "expected_effect": "e"}]}
    agent = LLMProposer(Scripted(answer))
    assert agent.propose(context(val=0.30), 2, random.Random(0)) == [] and "n1" in agent.closed
    assert agent.backup_to == (["root"] if decision == "backup" else [])
    # a branch that still improves on its parent is not abandoned: the decision is overruled, and recorded
    agent = LLMProposer(Scripted(answer))
    assert len(agent.propose(context(val=0.41), 2, random.Random(0))) == 2 and not agent.closed
    assert "overruled" in agent.last_record["overruled"] and not agent.backup_to


@pytest.mark.parametrize("vals, closes", [((0.30, 0.33, 0.35, 0.362, 0.358), False),  # +0.028 since n1
                                          ((0.30, 0.352, 0.355, 0.36, 0.358), True)])  # +0.006 since n1
def test_a_closure_is_overruled_while_the_path_still_rises_over_its_last_stages(vals, closes):
    """The embedded models answered "backup" nearly always, and closed a dive's leaf that fell a little
    below its parent on a path still rising over its last three stages, which the search had kept going
    (the diagnosis reads no plateau there either). Such a closure is overruled; a flat path is closed."""
    path = tuple(NodeView(f"n{i}" if i else "root", i, dict(BASE), "complete", val_score=v,
                          history=collapsing_history() if i else ()) for i, v in enumerate(vals))
    ctx = ProposalContext(space=SPACE, node=path[-1], path=path, best_val=max(vals), budget_left=0.5, max_depth=5)
    answer = {"diagnosis": "d", "decision": "backup", "proposals": [
        {"changes": {"learning_rate": 5e-5}, "rationale": "r", "expected_effect": "e"}]}
    agent = LLMProposer(Scripted(answer))
    out = agent.propose(ctx, 2, random.Random(0))
    assert (out == [] and agent.closed == {"n4"} and agent.backup_to == ["n3"]) if closes else (
        len(out) == 2 and not agent.closed and not agent.backup_to)
    overruled = agent.last_record["overruled"]
    assert overruled is None if closes else overruled == "backup overruled: the branch still improves (val 0.33 -> " \
        "0.358 since n1)"


def test_backup_makes_the_search_grow_the_parent_next():
    from llmzero.search.methods.tree_search import MCTS
    from llmzero.search.tree import Tree

    class Cfg:
        seed = 0

        class search:
            depth, branching, max_children, exploration, backup, lineages = 3, 2, 3, 0.3, "max", 1

    class Agent:
        name = "fake"
        closed: set = set()
        backup_to = ["n1"]

    from llmzero.search.methods._base import SearchContext

    tree = Tree()
    tree.apply("root", "root", {"params": dict(BASE), "val_score": 0.3})
    for i, val in ((1, 0.5), (2, 0.6)):
        tree.apply("node_created", f"n{i}", {"parent_id": "root" if i == 1 else "n1", "depth": i,
                                             "params": dict(BASE), "steps": 5})
        tree.apply("stage_finished", f"n{i}", {"val_score": val, "history": []})
    ctx = SearchContext(cfg=Cfg, space=SPACE, proposer=Agent())
    assert MCTS._backup_target(tree, ctx, {}) == "n1" and Agent.backup_to == []
    assert MCTS._backup_target(tree, ctx, {}) is None


# -- menu answers (the default for embedded models) ---------------------------------------------------------

def test_menu_options_are_legal_distinct_new_and_include_a_coordinated_move():
    from llmzero.agents.llm import MENU_SIZE, menu_options

    truncated = tuple({**r, "completions/clipped_ratio": 0.9} for r in collapsing_history())
    root = NodeView("root", 0, dict(BASE), "complete", val_score=0.37)
    node = NodeView("n1", 1, dict(BASE), "complete", val_score=0.41, history=truncated)
    sib = NodeView("n2", 2, {**BASE, "temperature": 1.2}, "complete", val_score=0.40)
    ctx = ProposalContext(space=SPACE, node=node, path=(root, node), siblings=(sib,))
    opts = menu_options(ctx, random.Random(0))
    keys = [tuple(sorted(o.params.items())) for o in opts]
    assert 2 <= len(opts) <= MENU_SIZE and len(set(keys)) == len(keys)
    assert tuple(sorted(sib.params.items())) not in keys
    for o in opts:
        SPACE.validate(o.params)
    assert opts[0].reason.startswith("coordinated:") and len(opts[0].findings) == 2  # both findings at once
    assert len({k for k, v in opts[0].params.items() if BASE[k] != v}) >= 2
    assert {"entropy_collapse", "truncation"} <= {f for o in opts for f in o.findings}


def test_menu_picks_become_the_listed_options_and_bad_picks_are_replaced():
    from llmzero.agents.llm import menu_options

    llm = Scripted({"diagnosis": "entropy falls", "decision": "expand", "proposals": [
        {"option": 2, "rationale": "explore", "expected_effect": "entropy up"},
        {"option": 2, "rationale": "again", "expected_effect": "same"}]})
    agent = LLMProposer(llm)
    out = agent.propose(context(), 2, random.Random(0))
    messages, schema = llm.calls[0]
    prompt = messages[1]["content"]
    n = schema["properties"]["proposals"]["items"]["properties"]["option"]["enum"]
    assert "Options:\n1: " in prompt and "Pick two options." in prompt
    assert "[1e-7, 0.01]" in messages[0]["content"]
    assert schema["properties"]["proposals"]["minItems"] == 2  # exactly k picks
    assert n == list(range(1, len(n) + 1)) and f"\n{len(n)}: " in prompt
    # the options are drawn from the proposer's rng: the same draw gives the same menu
    opts = menu_options(context(), random.Random(0))
    assert out[0].proposed_by == "llm" and out[0].params == opts[1].params and "option 2" in out[0].reason
    assert out[1].proposed_by == "skill" and out[1].params == opts[0].params  # the repeat: next option in order
    assert agent.last_record["repaired"] == 1 and agent.last_record["mode"] == "menu"


@pytest.mark.parametrize("history", ["healthy", "collapsing"])
@pytest.mark.parametrize("k", [1, 2])
def test_an_agent_that_takes_the_menus_first_options_proposes_what_the_ablation_proposes(history, k):
    """The no-LLM ablation is the skill agent with the same random stream: where the agent picks the
    menu's first k options, the two propose the same children (the small moves are shuffled alike)."""
    from llmzero.agents.skill import SkillProposer

    flat = tuple({**r, "entropy": 0.5, "frac_reward_zero_std": 0.1} for r in collapsing_history())
    ctx = context()
    if history == "healthy":  # no finding: every option is a small move, in the order the stream shuffles
        node = NodeView("n1", 1, dict(BASE), "complete", val_score=0.41, history=flat)
        ctx = ProposalContext(space=SPACE, node=node, path=(ctx.path[0], node), best_val=0.41)
    first = {"diagnosis": "d", "decision": "expand",
             "proposals": [{"option": i + 1, "rationale": "r", "expected_effect": "e"} for i in range(k)]}
    orders = set()
    for seed in range(6):
        agent = [p.params for p in LLMProposer(Scripted(first)).propose(ctx, k, random.Random(seed))]
        ablation = [p.params for p in SkillProposer().propose(ctx, k, random.Random(seed))]
        assert agent == ablation
        orders.add(tuple(tuple(sorted(p.items())) for p in ablation))
    # the stream does shuffle the small moves ("keep going" always comes first)
    assert history == "collapsing" or k == 1 or len(orders) > 1


def test_free_mode_asks_for_changes_with_bounds():
    llm = Scripted({"diagnosis": "d", "decision": "expand", "proposals": [
        {"changes": [{"name": "entropy_coef", "value": 0.01}], "rationale": "r", "expected_effect": "e"}]})
    agent = LLMProposer(llm, answer="free")
    out = agent.propose(context(), 1, random.Random(0))
    assert "learning_rate 1e-4 [1e-7, 0.01] R" in llm.calls[0][0][0]["content"]
    user = llm.calls[0][0][1]["content"]
    assert "Give one proposal." in user and "Options:" not in user
    assert "changes" in llm.calls[0][1]["properties"]["proposals"]["items"]["properties"]
    assert out[0].proposed_by == "llm" and out[0].params == {**BASE, "entropy_coef": 0.01}
    with pytest.raises(ValueError, match="answer='poem'"):
        LLMProposer(llm, answer="poem")


def test_curves_are_attached_as_a_png_when_asked():
    import base64

    llm = Scripted({"diagnosis": "d", "decision": "expand", "proposals": [
        {"option": 1, "rationale": "r", "expected_effect": "e"}, {"option": 2, "rationale": "r", "expected_effect": "e"}]})
    LLMProposer(llm, curves=True).propose(context(), 2, random.Random(0))
    text, image = llm.calls[0][0][1]["content"]
    assert text["type"] == "text" and text["text"].startswith("Now: ")
    url = image["image_url"]["url"]
    assert image["type"] == "image_url" and url.startswith("data:image/png;base64,")
    png = base64.b64decode(url.split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000  # a drawn figure, not an empty image
    LLMProposer(llm).propose(context(), 2, random.Random(0))
    assert isinstance(llm.calls[1][0][1]["content"], str)  # text only unless asked
    root = NodeView("root", 0, dict(BASE), "complete", val_score=0.37)  # nothing trained yet: no image
    LLMProposer(llm, curves=True).propose(ProposalContext(space=SPACE, node=root, path=(root,)), 2, random.Random(0))
    assert isinstance(llm.calls[2][0][1]["content"], str)


class Picker(Scripted):
    """A menu answer built from the prompt: ``pick(option_lines)`` gives the option numbers, and the
    decisions are taken in turn, one per call."""

    def __init__(self, pick, decisions=("expand",)):
        super().__init__(None)
        self.pick, self.decisions = pick, list(decisions)

    def complete(self, messages, schema, *, temperature=0.2, max_tokens=400, seed=None):
        lines = messages[1]["content"].split("Options:\n")[1].splitlines()[:-1]
        self.answer = {"diagnosis": "d", "decision": self.decisions[len(self.calls) % len(self.decisions)],
                       "proposals": [{"option": i, "rationale": "r", "expected_effect": "e"}
                                     for i in self.pick(lines)]}
        return super().complete(messages, schema, temperature=temperature, max_tokens=max_tokens, seed=seed)


def by_content(lines):
    """The remedies that move the temperature alone, then the entropy bonus alone, wherever they are listed."""
    moves = {int(x.split(":")[0]): x.split(": ", 1)[1].split(" (")[0] for x in lines if "(for " in x}
    return [next(i for i, m in moves.items() if m.startswith(name) and "," not in m)
            for name in ("temperature", "entropy_coef")]


def test_order_check_keeps_picks_that_survive_the_rotation():
    from llmzero.agents.llm import menu_options

    llm = Picker(by_content)
    agent = LLMProposer(llm, order_check=True)
    out = agent.propose(context(), 2, random.Random(0))
    assert len(llm.calls) == 2 and llm.calls[0][0][1]["content"] != llm.calls[1][0][1]["content"]
    assert [p.proposed_by for p in out] == ["llm", "llm"]
    assert out[0].params["temperature"] != BASE["temperature"]
    assert out[1].params["entropy_coef"] != BASE["entropy_coef"]
    rec = agent.last_record
    assert rec["llm"]["calls"] == 2 and rec["llm"]["prompt_tokens"] == 642 and rec["llm"]["seconds"] == 1.0
    opts = menu_options(context(), random.Random(random.Random(0).random()))
    assert rec["rotated"]["picked"] == sorted(by_content(render_prompt(
        context(), diagnose(context().path), 2, opts).split("Options:\n")[1].splitlines()[:-1]))
    # without the check the agent asks once
    llm = Picker(by_content)
    LLMProposer(llm).propose(context(), 2, random.Random(0))
    assert len(llm.calls) == 1


def test_order_check_leaves_picks_by_position_to_the_skill_library():
    from llmzero.agents.llm import menu_options

    opts = menu_options(context(val=0.30), random.Random(random.Random(0).random()))
    by_position = Picker(lambda lines: [1, 2], decisions=("backup", "expand"))
    agent = LLMProposer(by_position, order_check=True)
    out = agent.propose(context(val=0.30), 2, random.Random(0))
    # neither pick names the same option twice: the skill library's first two options, in its order
    assert [p.params for p in out] == [o.params for o in opts[:2]]
    assert all(p.proposed_by == "skill" and "did not confirm" in p.reason for p in out)
    # and the backup, not repeated by the rotated answer, does not close a branch that stopped improving
    assert not agent.closed and agent.last_record["decision"] == "expand"
    assert agent.last_record["rotated"]["picked"] == [3, 4]  # its options 1 and 2: the listed 3 and 4
    # a closure both answers make stands
    agent = LLMProposer(Picker(lambda lines: [1, 2], decisions=("backup",)), order_check=True)
    assert agent.propose(context(val=0.30), 2, random.Random(0)) == [] and "n1" in agent.closed


def _real(name):
    """A real stage history of number_sorting (tests/fixtures/real_histories.json) as a context."""
    from test_agent_transcripts import DATA
    from test_agent_transcripts import context as real_context

    return real_context(DATA["cases"][name])


class ByKind:
    """Answers a diagnosis-only question with ``lead`` and a menu with picks 1 and 2."""

    name = "scripted"

    def __init__(self, lead):
        self.lead, self.calls = lead, []

    def complete(self, messages, schema, *, temperature=0.2, max_tokens=400, seed=None):
        self.calls.append((messages, schema, seed))
        if "proposals" not in schema["properties"]:
            answer = {"diagnosis": self.lead}
        else:
            answer = {"diagnosis": schema["properties"]["diagnosis"]["enum"][0], "decision": "expand",
                      "proposals": [{"option": 1, "rationale": "r", "expected_effect": "e"},
                                    {"option": 2, "rationale": "r", "expected_effect": "e"}]}
        return LLMReply(text=json.dumps(answer), parsed=answer, prompt_tokens=100, completion_tokens=3,
                        seconds=0.5, backend="scripted", model="m")


def test_diagnose_first_puts_the_named_findings_remedies_first_and_leaves_the_stream_alone():
    """With a learning rate of 1e-3 the detectors rank all-same-reward groups first (a hotter rollout);
    the embedded model names the entropy blow-up, whose remedy lowers the learning rate."""
    from llmzero.agents.llm import menu_options

    ctx = _real("lr_1e-3")
    names = [f.name for f in diagnose(ctx.path)]
    assert names[0] == "zero_std_groups" and "entropy_blowup" in names[1:]
    plain_rng, first_rng = random.Random(3), random.Random(3)
    plain = LLMProposer(ByKind(None)).propose(ctx, 2, plain_rng)
    llm = ByKind("entropy_blowup")
    agent = LLMProposer(llm, diagnose_first=True)
    out = agent.propose(ctx, 2, first_rng)
    assert plain_rng.random() == first_rng.random()  # the proposer's stream goes on as without the question
    (ask, ask_schema, seed1), (menu, menu_schema_, seed2) = llm.calls
    assert ask_schema["properties"] == {"diagnosis": {"type": "string", "enum": names}}
    assert ask[1]["content"].endswith("\nName the main finding.") and "Options:" not in ask[1]["content"]
    assert menu_schema_["properties"]["diagnosis"]["enum"] == ["entropy_blowup"] and seed1 == seed2
    assert out[0].params["learning_rate"] < ctx.node.params["learning_rate"]  # entropy_blowup's remedy
    assert plain[0].params["learning_rate"] == ctx.node.params["learning_rate"]  # the severity order's
    assert menu_options(ctx, random.Random(3))[0].findings[0] == "zero_std_groups"
    assert menu_options(ctx, random.Random(3), lead="entropy_blowup")[0].findings[0] == "entropy_blowup"
    rec = agent.last_record
    assert rec["diagnosed_first"]["lead"] == "entropy_blowup" and rec["llm"]["calls"] == 2
    assert rec["llm"]["prompt_tokens"] == 200 and rec["llm"]["completion_tokens"] == 6


def test_diagnose_first_asks_nothing_more_below_two_findings_or_when_the_answer_fails():
    for name in ("healthy", "temperature_0.5"):  # no finding
        llm = ByKind("truncation")
        LLMProposer(llm, diagnose_first=True).propose(_real(name), 2, random.Random(0))
        assert len(llm.calls) == 1
    llm = ByKind("entropy_collapse")  # not among the node's findings: the menu keeps the detectors' order
    agent = LLMProposer(llm, diagnose_first=True)
    out = agent.propose(_real("lr_1e-3"), 2, random.Random(3))
    assert len(llm.calls) == 2 and agent.last_record["diagnosed_first"]["lead"] is None
    assert out == LLMProposer(ByKind(None)).propose(_real("lr_1e-3"), 2, random.Random(3))
