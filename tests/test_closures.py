"""Branches the agent closes: the closure is journaled (so a resumed search keeps it and its LLM call
counts), and a tree with nothing else to expand reopens them while budget is left; with nothing to
reopen either, it deepens."""

import random

import pytest

from llmzero.agents._base import Proposal
from llmzero.config import ConfigError, parse_config
from llmzero.search.methods import SearchContext
from llmzero.search.methods.tree_search import MCTS
from llmzero.search.tree import Tree
from llmzero.space import DEFAULT_SPACE
from llmzero.strategy import StageMode

CFG = parse_config({"task": {"name": "number_sorting"}, "budget": {"compute": 10_000},
                    "search": {"depth": 2, "branching": 2, "max_children": 2}})


class Closer:
    """An agent that says "stop" on the nodes in ``stops`` (after picking a learning rate) and
    proposes learning rates elsewhere, as the LLM agent does: ``closed``, ``last_picks``, ``last_record``."""

    name = "fake-llm"

    def __init__(self, stops=()):
        self.stops, self.closed, self.backup_to, self.calls = set(stops), set(), [], []

    def propose(self, ctx, k, rng):
        self.calls.append(ctx.node.id)
        picks = [Proposal({**ctx.node.params, "learning_rate": lr}, f"lr {lr}", "llm", StageMode.CONTINUE, (), ())
                 for lr in (2e-4, 5e-5, 3e-4)[:k]]
        self.last_picks = picks
        decision = "stop" if ctx.node.id in self.stops else "expand"
        self.last_record = {"decision": decision, "overruled": None,
                            "llm": {"prompt_tokens": 100, "completion_tokens": 10, "seconds": 1.0}}
        if decision == "stop":
            self.closed.add(ctx.node.id)
            return []
        return picks


def tree_with(children: dict[str, float]) -> Tree:
    """The root and finished depth-1 children with these validation scores."""
    tree = Tree()
    tree.apply("root", "root", {"params": DEFAULT_SPACE.defaults(), "val_score": 0.3})
    for node_id, val in children.items():
        tree.apply("node_created", node_id, {"parent_id": "root", "depth": 1, "params": DEFAULT_SPACE.defaults(),
                                             "steps": 10})
        tree.apply("stage_finished", node_id, {"val_score": val, "history": [], "checkpoint": f"ckpt/{node_id}"})
    return tree


def context(proposer, tokens_left=10_000.0) -> SearchContext:
    return SearchContext(cfg=CFG, space=DEFAULT_SPACE, proposer=proposer, tokens_left=tokens_left,
                         stage_tokens=lambda p: 1000.0)


def journal(tree: Tree, ctx: SearchContext) -> list[tuple]:
    """What the loop does with the queued events: apply them (the Recorder journals them too)."""
    events, ctx.events[:] = list(ctx.events), []
    for kind, node_id, payload in events:
        tree.apply(kind, node_id, payload)
    return events


def test_a_closing_answer_is_journaled_and_a_resumed_search_keeps_the_branch_closed():
    tree = tree_with({"n1": 0.5, "n2": 0.4})
    agent = Closer(stops={"n1"})
    ctx = context(agent)
    specs = MCTS().ask(tree, 2, ctx)
    assert specs and all(s.parent_id != "n1" for s in specs) and "n1" in agent.calls
    events = journal(tree, ctx)
    (kind, node_id, rec), = [e for e in events if e[0] == "proposal"]
    assert (kind, node_id, rec["closed"], rec["output"]) == ("proposal", "n1", True, [])
    assert rec["agent"]["decision"] == "stop"
    assert rec["agent"]["llm"]["prompt_tokens"] == 100  # its cost counts
    assert tree.closed == {"n1"}
    # a resumed search has a fresh agent that never saw the answer: the journal's closure still holds
    resumed = Closer()
    for _ in range(3):
        for s in MCTS().ask(tree, 2, context(resumed)):
            assert s.parent_id != "n1"
    assert "n1" not in resumed.calls
    # and the closed node's checkpoint is kept: the branch may be reopened
    assert "n1" in MCTS().expandable(tree, context(resumed))


def test_an_exhausted_tree_reopens_the_closed_branches_while_budget_is_left():
    tree = tree_with({"n1": 0.5, "n2": 0.4})
    # a failed child, never a parent (the root is full with max_children 2)
    tree.apply("node_created", "n3", {"parent_id": "root", "depth": 1, "params": DEFAULT_SPACE.defaults(),
                                      "steps": 10})
    tree.apply("stage_failed", "n3", {"val_score": None, "history": []})
    agent = Closer(stops={"n1", "n2"})
    ctx = context(agent)
    assert MCTS().ask(tree, 2, ctx) == []  # both branches closed: nothing to expand
    events = journal(tree, ctx)
    assert [e[0] for e in events] == ["proposal", "proposal", "branches_reopened"]
    assert tree.closed == {"n1", "n2"} and tree.reopened == {"n1", "n2"}
    assert events[-1][2]["nodes"] == ["n1", "n2"]
    # asked again (the loop does, since the tree changed): the agent still says stop, and is overruled
    specs = MCTS().ask(tree, 2, ctx)
    assert len(specs) == 2 and {s.parent_id for s in specs} <= {"n1", "n2"}
    assert [s.params["learning_rate"] for s in specs][:1] == [2e-4]  # what the answer picked before closing
    rec = specs[0].proposal_record
    assert "closed" not in rec and rec["agent"]["overruled"].startswith("stop overruled: the search reopened")
    assert not [e for e in journal(tree, ctx) if e[0] == "branches_reopened"]  # reopened once, not again


def test_no_reopening_without_a_stage_worth_of_budget_and_none_of_open_nodes():
    tree = tree_with({"n1": 0.5, "n2": 0.4, "n3": 0.45})
    ctx = context(Closer(stops={"n1", "n2", "n3"}), tokens_left=100.0)  # less than 20% of a 1,000-token stage
    assert MCTS().ask(tree, 2, ctx) == []
    assert [e[0] for e in journal(tree, ctx)] == ["proposal"] * 3 and not tree.reopened
    # an agent that closes nothing never triggers it either
    tree = tree_with({"n1": 0.5})
    ctx = context(Closer())
    assert MCTS().ask(tree, 2, ctx) and ctx.events == []


def test_a_garbage_collected_checkpoint_is_never_a_parent():
    tree = tree_with({"n1": 0.5, "n2": 0.4, "n3": 0.45})
    tree.apply("checkpoint_deleted", "n1", {})
    ctx = context(Closer())
    parents = []
    while specs := MCTS().ask(tree, 2, ctx):
        parents += [s.parent_id for s in specs]
        for i, s in enumerate(specs):  # pretend they ran, so that the search moves on
            node_id = f"n{len(tree.nodes)}"
            tree.apply("node_created", node_id, {"parent_id": s.parent_id, "depth": 2, "params": s.params,
                                                 "steps": 10})
            tree.apply("stage_finished", node_id, {"val_score": random.Random(i).random(), "history": []})
    assert len(parents) == 4 and set(parents) == {"n2", "n3"}  # the best node, n1, cannot be grown
    assert "n1" not in MCTS().expandable(tree, ctx)


def full_tree(vals: dict[str, float]) -> Tree:
    """A depth-2 tree with nothing left to grow (max_children 2 everywhere): n1, n2 under the root and
    two finished children under each, with these validation scores."""
    tree = tree_with({"n1": 0.5, "n2": 0.4})
    for i, (node_id, val) in enumerate(vals.items()):
        tree.apply("node_created", node_id, {"parent_id": "n1" if i < 2 else "n2", "depth": 2,
                                             "params": DEFAULT_SPACE.defaults(), "steps": 10})
        tree.apply("stage_finished", node_id, {"val_score": val, "history": [], "checkpoint": f"ckpt/{node_id}"})
    return tree


def test_an_exhausted_tree_deepens_from_its_kept_leaves_the_best_first():
    from llmzero.search.methods.tree_search import BestFirst

    for method in (MCTS(), BestFirst()):
        tree = full_tree({"n3": 0.55, "n4": 0.6, "n5": 0.45, "n6": 0.58})
        tree.apply("checkpoint_deleted", "n5", {})  # garbage-collected: it cannot be a parent
        ctx = context(Closer())
        assert method.ask(tree, 2, ctx) == []  # nothing to expand, and nothing closed to reopen
        (kind, _, payload), = journal(tree, ctx)
        assert kind == "depth_extended" and payload["depth"] == 3
        assert payload["nodes"] == ["n4", "n6", "n3"]  # the kept leaves, the best first
        assert tree.depth_limit == 3 and ctx.max_depth(tree) == 3
        specs = method.ask(tree, 2, ctx)
        assert [s.parent_id for s in specs] == ["n4", "n4"], method.name  # the best leaf grows first
        assert ctx.proposal_context(tree, "n4").max_depth == 3
        assert "n6" in method.expandable(tree, ctx) and "n5" not in method.expandable(tree, ctx)


def test_the_best_leaf_at_the_full_depth_is_kept_for_deepening():
    """Garbage collection keeps what ``expandable`` names: with the full-depth leaves not on the best
    path nor in the top k, it would delete them all, and an exhausted tree could not deepen."""
    tree = full_tree({"n3": 0.55, "n4": 0.6, "n5": 0.45, "n6": 0.58})
    keep = MCTS().expandable(tree, context(Closer()))
    assert "n4" in keep and not {"n3", "n5", "n6"} & keep  # full (no room), but the best leaf is kept
    tree.apply("checkpoint_deleted", "n4", {})
    assert "n6" in MCTS().expandable(tree, context(Closer()))  # the best leaf still on disk
    off = parse_config({"task": {"name": "number_sorting"}, "budget": {"compute": 10_000},
                        "search": {"depth": 2, "branching": 2, "max_children": 2, "deepen": False}})
    ctx = SearchContext(cfg=off, space=DEFAULT_SPACE, proposer=Closer(), stage_tokens=lambda p: 1000.0)
    assert not {"n3", "n4", "n5", "n6"} & MCTS().expandable(tree, ctx)


def test_no_deepening_when_switched_off_or_without_a_stage_worth_of_budget():
    off = parse_config({"task": {"name": "number_sorting"}, "budget": {"compute": 10_000},
                        "search": {"depth": 2, "branching": 2, "max_children": 2, "deepen": False}})
    for ctx in (SearchContext(cfg=off, space=DEFAULT_SPACE, proposer=Closer(), tokens_left=10_000.0,
                              stage_tokens=lambda p: 1000.0),
                context(Closer(), tokens_left=100.0)):
        tree = full_tree({"n3": 0.55, "n4": 0.6, "n5": 0.45, "n6": 0.58})
        assert MCTS().ask(tree, 2, ctx) == [] and journal(tree, ctx) == [] and tree.depth_limit is None


def test_deepen_improving_grows_the_path_whose_best_node_still_improves_before_the_tree_is_full():
    """``deepen: improving``: a best node at the full depth that beat its parent deepens the tree at
    once (other branches still have room); one that did not, or without a whole stage of budget, or
    with ``deepen: exhausted``, does not."""
    from llmzero.search.methods.tree_search import GROW_MARGIN, BestFirst

    def cfg(deepen):
        return parse_config({"task": {"name": "number_sorting"}, "budget": {"compute": 10_000},
                             "search": {"depth": 2, "branching": 2, "max_children": 2, "deepen": deepen}})

    assert cfg(True).search.deepen == "exhausted" and cfg(False).search.deepen == "off"
    for method in (MCTS(), BestFirst()):
        tree = tree_with({"n1": 0.5, "n2": 0.4})
        tree.apply("node_created", "n3", {"parent_id": "n1", "depth": 2, "params": DEFAULT_SPACE.defaults(),
                                          "steps": 10})
        tree.apply("stage_finished", "n3", {"val_score": 0.5 + 2 * GROW_MARGIN, "history": [], "checkpoint": "c"})
        ctx = SearchContext(cfg=cfg("improving"), space=DEFAULT_SPACE, proposer=Closer(), tokens_left=10_000.0,
                            stage_tokens=lambda p: 1000.0)
        assert method.ask(tree, 2, ctx) == []  # the loop journals the new depth and asks again
        (kind, _, payload), = journal(tree, ctx)
        assert kind == "depth_extended" and payload["depth"] == 3 and payload["nodes"] == ["n3"]
        assert "still improving" in payload["reason"]
        assert "n3" in method.expandable(tree, ctx)
        ctx.tokens_left = 1500.0  # MCTS's reserve now keeps a stage for the best node's new depth
        specs = method.ask(tree, 2, ctx)
        assert specs and {s.parent_id for s in specs} == {"n3"}, method.name  # the best node grows
        assert journal(tree, ctx) == [] and tree.depth_limit == 3  # once: n3 is no longer at the full depth

    for deepen, val, left in (("improving", 0.5 + GROW_MARGIN / 2, 10_000.0), ("improving", 0.6, 900.0),
                              ("exhausted", 0.6, 10_000.0)):
        tree = tree_with({"n1": 0.5, "n2": 0.4})
        tree.apply("node_created", "n3", {"parent_id": "n1", "depth": 2, "params": DEFAULT_SPACE.defaults(),
                                          "steps": 10})
        tree.apply("stage_finished", "n3", {"val_score": val, "history": [], "checkpoint": "c"})
        ctx = SearchContext(cfg=cfg(deepen), space=DEFAULT_SPACE, proposer=Closer(), tokens_left=left,
                            stage_tokens=lambda p: 1000.0)
        MCTS().ask(tree, 2, ctx)
        assert [k for k, _, _ in journal(tree, ctx)] == [] and tree.depth_limit is None, (deepen, val, left)


def dive_setup(val: float, **search) -> tuple[Tree, SearchContext]:
    """Depth-1 nodes n1 (0.5) and n2 (0.45), and n3 under n1 scored ``val``; ``search`` settings over
    depth 3, branching 2 and max_children 3, with budget for a wide tree."""
    cfg = parse_config({"task": {"name": "number_sorting"}, "budget": {"compute": 100_000},
                        "search": {"depth": 3, "branching": 2, "max_children": 3, **search}})
    tree = tree_with({"n1": 0.5, "n2": 0.45})
    tree.apply("node_created", "n3", {"parent_id": "n1", "depth": 2, "params": DEFAULT_SPACE.defaults(),
                                      "steps": 10})
    tree.apply("stage_finished", "n3", {"val_score": val, "history": [], "checkpoint": "c"})
    return tree, SearchContext(cfg=cfg, space=DEFAULT_SPACE, proposer=Closer(), tokens_left=100_000.0,
                               stage_tokens=lambda p: 1000.0)


def test_deepen_improving_dives_along_the_improving_best_node_before_the_tree_widens():
    """With budget for a wide tree, the best node that deepened the tree (or, one stage short of the
    full depth, improved on its parent) gets its children first, ``branching`` of them; one that did
    not improve, or ``deepen: exhausted``, leaves the choice to UCT."""
    from llmzero.search.methods.tree_search import GROW_MARGIN, BestFirst

    def setup(deepen, depth, val):
        return dive_setup(val, deepen=deepen, depth=depth)

    for method in (MCTS(), BestFirst()):
        tree, ctx = setup("improving", 2, 0.5 + 2 * GROW_MARGIN)
        assert method.ask(tree, 4, ctx) == [] and journal(tree, ctx)[0][0] == "depth_extended"
        specs = method.ask(tree, 4, ctx)
        assert [s.parent_id for s in specs[:2]] == ["n3", "n3"], method.name
        if method.name == "mcts":  # branching children, not max_children (best-first grows the best anyway)
            assert sum(s.parent_id == "n3" for s in specs) == 2
    # one stage short of the configured depth, improved: the same dive without a depth extension
    tree, ctx = setup("improving", 3, 0.5 + 2 * GROW_MARGIN)
    assert [s.parent_id for s in MCTS().ask(tree, 4, ctx)[:2]] == ["n3", "n3"] and journal(tree, ctx) == []
    for deepen, val in (("improving", 0.5 + GROW_MARGIN / 2), ("exhausted", 0.5 + 2 * GROW_MARGIN)):
        tree, ctx = setup(deepen, 3, val)
        specs = MCTS().ask(tree, 4, ctx)
        assert specs and specs[0].parent_id != "n3", (deepen, val, [s.parent_id for s in specs])


def test_dive_branching_makes_the_dive_the_whole_batch():
    """``search.dive_branching: 1``: the improving best node gets one child and the batch is that
    child alone (other workers wait); a best node that did not improve gets ``branching`` children
    and the batch fills elsewhere as before. Without ``deepen: improving`` the setting is refused."""
    from llmzero.search.methods.tree_search import GROW_MARGIN, BestFirst

    def setup(val, dive_branching):
        return dive_setup(val, deepen="improving", dive_branching=dive_branching)

    for method in (MCTS(), BestFirst()):
        tree, ctx = setup(0.5 + 2 * GROW_MARGIN, 1)
        assert [s.parent_id for s in method.ask(tree, 4, ctx)] == ["n3"], method.name
        tree, ctx = setup(0.5 + 2 * GROW_MARGIN, 2)
        assert [s.parent_id for s in method.ask(tree, 4, ctx)] == ["n3", "n3"], method.name
        tree, ctx = setup(0.5 + 2 * GROW_MARGIN, None)  # off: the dive's children, then elsewhere
        specs = method.ask(tree, 4, ctx)
        assert [s.parent_id for s in specs[:2]] == ["n3", "n3"] and len(specs) > 2, method.name
    tree, ctx = setup(0.5 + GROW_MARGIN / 2, 1)  # not improving: no dive, UCT fills the batch
    specs = MCTS().ask(tree, 4, ctx)
    assert len(specs) > 1 and specs[0].parent_id != "n3", [s.parent_id for s in specs]
    with pytest.raises(ConfigError, match=r"search\.dive_branching=1 is not allowed with search\.deepen="):
        parse_config({"task": {"name": "number_sorting"}, "budget": {"compute": 100},
                      "search": {"deepen": "exhausted", "dive_branching": 1}})


def test_dive_patience_goes_on_through_a_stage_that_stalled_within_a_rising_path():
    """``search.dive_patience: 1``: the best node n2 (depth 2) has a child n3 below it, so the dive
    stalls; n3 still beats its grandparent n1 by ``GROW_MARGIN``, so the tree deepens from n3 and n3
    gets its children first. Without patience, or when n3 is no better than n1, the tree does not
    deepen and the children go elsewhere."""
    from llmzero.search.methods.tree_search import GROW_MARGIN

    def setup(patience, leaf_val):
        cfg = parse_config({"task": {"name": "number_sorting"}, "budget": {"compute": 100_000},
                            "search": {"depth": 3, "branching": 2, "max_children": 3, "deepen": "improving",
                                       "dive_patience": patience}})
        tree = tree_with({"n1": 0.5, "n0": 0.45})
        for node_id, parent, depth, val in (("n2", "n1", 2, 0.53), ("n3", "n2", 3, leaf_val)):
            tree.apply("node_created", node_id, {"parent_id": parent, "depth": depth,
                                                 "params": DEFAULT_SPACE.defaults(), "steps": 10})
            tree.apply("stage_finished", node_id, {"val_score": val, "history": [], "checkpoint": f"c/{node_id}"})
        return tree, SearchContext(cfg=cfg, space=DEFAULT_SPACE, proposer=Closer(), tokens_left=100_000.0,
                                   stage_tokens=lambda p: 1000.0)

    tree, ctx = setup(1, 0.5 + 2 * GROW_MARGIN)
    assert tree.best().id == "n2" and MCTS().ask(tree, 2, ctx) == []
    (kind, _, payload), = journal(tree, ctx)
    assert kind == "depth_extended" and payload["depth"] == 4 and payload["nodes"] == ["n3"]
    assert "best leaf n3" in payload["reason"] and "since n1" in payload["reason"]
    assert [s.parent_id for s in MCTS().ask(tree, 2, ctx)] == ["n3", "n3"]
    for patience, val in ((0, 0.5 + 2 * GROW_MARGIN), (1, 0.5 + GROW_MARGIN / 2)):
        tree, ctx = setup(patience, val)
        specs = MCTS().ask(tree, 2, ctx)
        assert journal(tree, ctx) == [] and tree.depth_limit is None, (patience, val)
        assert specs and "n3" not in {s.parent_id for s in specs}, (patience, val)
    with pytest.raises(ConfigError, match=r"search\.dive_patience=1 is not allowed with search\.deepen="):
        parse_config({"task": {"name": "number_sorting"}, "budget": {"compute": 100},
                      "search": {"deepen": "off", "dive_patience": 1}})
