"""``search.lineages``: the tree search grows several lineages from the base model side by side, the
agent proposing each lineage's next stage, so that the final soup can average lineages trained apart
(as grid's soup averages its runs)."""

import pytest

from llmzero.config import ConfigError, parse_config
from llmzero.search.methods import SearchContext
from llmzero.search.methods.tree_search import MCTS, BestFirst
from llmzero.search.tree import ROOT, Tree
from llmzero.space import DEFAULT_SPACE
from test_closures import Closer, journal


def context(proposer, lineages=2, **search) -> SearchContext:
    cfg = parse_config({"task": {"name": "number_sorting"}, "budget": {"compute": 100_000},
                        "search": {"depth": 1, "lineages": lineages, **search}})
    return SearchContext(cfg=cfg, space=DEFAULT_SPACE, proposer=proposer, tokens_left=100_000.0,
                         stage_tokens=lambda p: 1000.0)


def grown(tree: Tree, nodes: dict[str, tuple[str, float | None, str]]) -> Tree:
    """Add ``nodes`` (id: (parent, val score or None while pending, end state)) to ``tree``."""
    for node_id, (parent, val, end) in nodes.items():
        tree.apply("node_created", node_id, {"parent_id": parent, "depth": tree.nodes[parent].depth + 1,
                                             "params": DEFAULT_SPACE.defaults(), "steps": 10})
        if end == "complete":
            tree.apply("stage_finished", node_id, {"val_score": val, "history": [], "checkpoint": f"c/{node_id}"})
        elif end == "failed":
            tree.apply("stage_failed", node_id, {"error": "boom", "history": []})
        elif end == "pruned":
            tree.apply("stage_finished", node_id, {"val_score": val, "history": [], "checkpoint": f"c/{node_id}"})
            tree.apply("node_pruned", node_id, {"reason": "behind", "saved_compute": 0})
    return tree


def root() -> Tree:
    tree = Tree()
    tree.apply("root", ROOT, {"params": DEFAULT_SPACE.defaults(), "val_score": 0.3})
    return tree


@pytest.mark.parametrize("method", [MCTS(), BestFirst()], ids=["mcts", "skill"])
def test_lineages_start_from_the_base_model_and_each_grows_one_stage_from_its_last(method):
    agent = Closer()
    ctx = context(agent, lineages=2)
    tree = root()
    specs = method.ask(tree, 2, ctx)
    assert [s.parent_id for s in specs] == [ROOT, ROOT] and agent.calls == [ROOT]  # one question, two options
    assert specs[0].params != specs[1].params
    # n1 (0.5) and n2 (0.4) are done: each lineage gets one child, the shortest lineage first
    tree = grown(tree, {"n1": (ROOT, 0.5, "complete"), "n2": (ROOT, 0.4, "complete")})
    assert [s.parent_id for s in method.ask(tree, 2, ctx)] == ["n1", "n2"]
    assert [s.parent_id for s in method.ask(tree, 1, ctx)] == ["n1"]
    # n1's lineage is training n3: only n2's lineage grows, though n1 scores higher and a worker is free
    tree = grown(tree, {"n3": ("n1", None, "pending")})
    assert [s.parent_id for s in method.ask(tree, 2, ctx)] == ["n2"]
    # n3 done, n2's lineage now shorter: it grows first; then n3, the end of n1's lineage (not n1)
    tree.apply("stage_finished", "n3", {"val_score": 0.6, "history": [], "checkpoint": "c/n3"})
    assert [s.parent_id for s in method.ask(tree, 2, ctx)] == ["n2", "n3"]
    assert method.expandable(tree, ctx) == {"n3", "n2"}  # the lineages' ends keep their checkpoints
    assert journal(tree, ctx) == []


def test_a_lineage_that_failed_or_was_pruned_is_replaced_by_a_new_one_from_the_base_model():
    agent = Closer()
    ctx = context(agent, lineages=3)
    tree = grown(root(), {"n1": (ROOT, 0.5, "complete"), "n2": (ROOT, 0.4, "complete"),
                          "n3": (ROOT, 0.3, "complete"), "n4": ("n2", None, "failed"), "n5": ("n3", 0.1, "pruned")})
    specs = MCTS().ask(tree, 3, ctx)
    assert [s.parent_id for s in specs] == ["n1", ROOT, ROOT]


def test_a_lineage_the_agent_stops_is_reopened_and_grown_with_the_options_it_picked():
    agent = Closer(stops={"n2"})
    ctx = context(agent, lineages=2)
    tree = grown(root(), {"n1": (ROOT, 0.5, "complete"), "n2": (ROOT, 0.4, "complete")})
    assert [s.parent_id for s in MCTS().ask(tree, 2, ctx)] == ["n1"]
    kinds = [(k, p.get("nodes")) for k, _, p in journal(tree, ctx)]
    assert ("branches_reopened", ["n2"]) in kinds and tree.reopened == {"n2"}
    specs = MCTS().ask(tree, 2, ctx)  # the closure is overruled: n2's lineage goes on
    assert [s.parent_id for s in specs] == ["n1", "n2"]


def test_backup_answers_do_not_branch_a_lineage():
    agent = Closer()
    ctx = context(agent, lineages=2)
    tree = grown(root(), {"n1": (ROOT, 0.5, "complete"), "n2": (ROOT, 0.4, "complete"),
                          "n3": ("n1", 0.55, "complete")})
    agent.backup_to.append("n1")
    assert [s.parent_id for s in MCTS().ask(tree, 2, ctx)] == ["n2", "n3"] and agent.backup_to == []


def test_lineages_grow_while_the_budget_lasts_unless_deepen_is_off():
    agent = Closer()
    tree = grown(root(), {"n1": (ROOT, 0.5, "complete"), "n2": (ROOT, 0.4, "complete"),
                          "n3": ("n1", 0.55, "complete"), "n4": ("n2", 0.45, "complete")})
    ctx = context(agent, lineages=2)
    assert ctx.max_depth(tree) == 3  # what the agent reads as the stages planned: one past the deepest
    assert [s.parent_id for s in MCTS().ask(tree, 2, ctx)] == ["n3", "n4"]
    ctx = context(agent, lineages=2, depth=2, deepen="off")  # both at the depth bound: new lineages start
    assert ctx.max_depth(tree) == 2
    assert [s.parent_id for s in MCTS().ask(tree, 2, ctx)] == [ROOT, ROOT]


def test_lineage_start_trains_every_first_stage_with_the_starting_parameters_without_asking_the_agent():
    agent = Closer()
    ctx = context(agent, lineages=3, lineage_start="start")
    tree = root()
    specs = MCTS().ask(tree, 2, ctx)  # two workers: two of the three lineages start now
    assert agent.calls == [] and [s.parent_id for s in specs] == [ROOT, ROOT]
    assert all(s.params == tree.root.params for s in specs) and {s.proposed_by for s in specs} == {"lineages"}
    assert ["lineage 1 starts" in specs[0].reason, "lineage 2 starts" in specs[1].reason] == [True, True]
    # the first stages are done: the agent proposes each lineage's second stage from its curves,
    # and the third lineage starts like the others (the base model has still nothing to read)
    tree = grown(tree, {"n1": (ROOT, 0.5, "complete"), "n2": (ROOT, 0.4, "complete")})
    specs = MCTS().ask(tree, 3, ctx)
    assert [s.parent_id for s in specs] == ["n1", "n2", ROOT] and agent.calls == ["n1", "n2"]
    assert specs[2].params == tree.root.params and "lineage 3 starts" in specs[2].reason


def test_lineage_start_follows_a_prior_first_move_in_every_lineage():
    from llmzero.transfer import Move, Prior, apply_move

    prior = Prior(source="runs/src", task="countdown", val_score=0.5, pattern="",
                  moves=(Move({"learning_rate": (1e-4, 2e-4)}, steps=30),))
    agent = Closer()
    ctx = context(agent, lineages=2, lineage_start="start")
    ctx.extra["prior"] = prior
    tree = root()
    specs = MCTS().ask(tree, 2, ctx)
    moved = apply_move(DEFAULT_SPACE, tree.root.params, prior.moves[0])[0]
    assert agent.calls == [] and [s.params for s in specs] == [moved, moved]
    assert moved["learning_rate"] == 2 * tree.root.params["learning_rate"]
    assert all("prior from countdown" in s.reason for s in specs)


def test_lineage_start_grid_starts_lineage_i_with_the_grid_configuration_grid_search_runs_i_th():
    agent = Closer()
    ctx = context(agent, lineages=2, lineage_start="grid",
                  grid={"learning_rate": [5e-5, 1e-4, 2e-4], "entropy_coef": [0.0, 0.01]})
    tree = root()
    specs = MCTS().ask(tree, 2, ctx)
    start = tree.root.params
    assert agent.calls == [] and {s.proposed_by for s in specs} == {"lineages"}
    # grid search's first two runs: the starting parameters, then the first one step away in the
    # product's order
    assert specs[0].params == start
    assert specs[1].params == {**start, "learning_rate": 5e-5}
    assert "lineage 2 starts with grid configuration 2/6" in specs[1].reason
    # a lineage that failed is replaced by one that starts with the next configuration
    tree = grown(tree, {"n1": (ROOT, 0.5, "complete"), "n2": (ROOT, 0.4, "complete"), "n3": ("n2", None, "failed")})
    specs = MCTS().ask(tree, 2, ctx)
    assert [s.parent_id for s in specs] == ["n1", ROOT] and agent.calls == ["n1"]
    assert specs[1].params == {**start, "entropy_coef": 0.01} and "grid configuration 3/6" in specs[1].reason


@pytest.mark.parametrize("search, words", [
    ({"method": "grid", "lineages": 2}, "search.lineages=2 is not allowed with search.method='grid'"),
    ({"lineages": 2, "sibling_soup": True}, "search.sibling_soup=true is not allowed with search.lineages=2"),
    ({"lineages": 2, "deepen": "improving", "dive_patience": 1},
     "search.dive_patience=1 is not allowed with search.lineages=2"),
    ({"lineages": 0}, "search.lineages=0"),
    ({"lineage_start": "start"}, "search.lineage_start='start' is not allowed with search.lineages=1"),
    ({"lineages": 2, "lineage_start": "first"}, "search.lineage_start"),
    ({"lineages": 2, "lineage_start": "grid", "prior": "runs/src"},
     "search.lineage_start='grid' is not allowed with search.prior"),
])
def test_lineages_reject_settings_they_do_not_use(search, words):
    with pytest.raises(ConfigError) as e:
        parse_config({"task": {"name": "countdown"}, "budget": {"compute": 1000}, "search": search})
    assert words in str(e.value) and "\n" not in str(e.value)
