"""Methods under a budget too small for everything: grid runs the nearest configurations first, MCTS
keeps a reserve to extend its best node to the full depth."""

import math

from llmzero.config import parse_config
from llmzero.search.methods import SearchContext
from llmzero.search.methods._base import StageSpec
from llmzero.search.methods.chains import grid
from llmzero.search.tree import Tree
from llmzero.space import DEFAULT_SPACE


def test_grid_runs_the_default_then_its_neighbours_then_the_corners():
    cfg = parse_config({"task": {"name": "number_sorting"}, "budget": {"compute": 1000},
                        "search": {"method": "grid", "grid": {"learning_rate": [2.5e-5, 5e-5, 1e-4, 2e-4],
                                                              "entropy_coef": [0.0, 0.01]}}})
    tree = Tree()
    tree.apply("root", "root", {"params": DEFAULT_SPACE.defaults(), "val_score": 0.3})
    g, ctx = grid(), SearchContext(cfg=cfg, space=DEFAULT_SPACE)
    order = []
    c = 0
    while (first := g.first(c, ctx, tree)) is not None:
        order.append((first[0]["learning_rate"], first[0]["entropy_coef"]))
        c += 1
    assert len(order) == 8 and len(set(order)) == 8
    assert order[0] == (1e-4, 0.0)  # the starting parameters themselves
    # one step away, in the product's order: no rounding error in the logarithms decides
    assert order[1:4] == [(5e-5, 0.0), (1e-4, 0.01), (2e-4, 0.0)]
    assert order[-1] == (2.5e-5, 0.01)  # the far corner: two lr steps and one entropy step away


def test_mcts_keeps_a_reserve_to_extend_its_best_node_to_the_full_depth():
    from llmzero.search.methods.tree_search import MCTS

    cfg = parse_config({"task": {"name": "number_sorting"}, "budget": {"compute": 1000},
                        "search": {"depth": 3, "max_children": 3}})
    tree = Tree()
    tree.apply("root", "root", {"params": DEFAULT_SPACE.defaults(), "val_score": 0.3})
    for node_id, val in (("n1", 0.4), ("n2", 0.35)):
        tree.apply("node_created", node_id, {"parent_id": "root", "depth": 1, "params": DEFAULT_SPACE.defaults(),
                                             "steps": 10})
        tree.apply("stage_finished", node_id, {"val_score": val, "history": []})

    def target(tokens_left, planned=None, wanted="n2"):
        ctx = SearchContext(cfg=cfg, space=DEFAULT_SPACE, tokens_left=tokens_left, stage_tokens=lambda p: 10.0)
        specs = [StageSpec(parent_id=i, params=DEFAULT_SPACE.defaults(), reason="", proposed_by="test")
                 for i, k in (planned or {}).items() for _ in range(k)]
        return MCTS()._reserve(tree, ctx, planned or {}, specs, wanted)

    assert target(40) == "n2"  # 40 - 10 left: enough for the best node's two more stages
    assert target(25) == "n1"  # 25 - 10 < 20: the best node (n1, depth 1 of 3) is extended instead
    assert target(40, {"n1": 1}) == "n2"  # n1 is being extended: one more stage is needed, 40 - 20 >= 10
    assert target(25, {"n1": 1}) is None  # not even that: plan nothing more now
    assert target(25, wanted="n1") == "n1" and target(5, wanted=None) is None
    for i in (3, 4, 5):  # a best node that cannot grow any more keeps no reserve
        tree.apply("node_created", f"n{i}", {"parent_id": "n1", "depth": 2, "params": DEFAULT_SPACE.defaults(),
                                             "steps": 10})
        tree.apply("stage_finished", f"n{i}", {"val_score": 0.2, "history": []})
    assert target(25) == "n2"
    assert MCTS()._reserve(tree, SearchContext(cfg=cfg, space=DEFAULT_SPACE), {}, [], "n2") == "n2"  # no cost model


def test_mcts_trains_only_the_children_elsewhere_that_leave_the_reserve_at_their_own_cost():
    """Children proposed at once for a node other than the best are each checked against the reserve,
    at what their own parameters cost; the best node's own children against extending one of them."""
    from llmzero.search.methods.tree_search import MCTS

    cfg = parse_config({"task": {"name": "number_sorting"}, "budget": {"compute": 1000},
                        "search": {"depth": 3, "max_children": 3}})
    tree = Tree()
    d = DEFAULT_SPACE.defaults()
    tree.apply("root", "root", {"params": d, "val_score": 0.3})
    for node_id, val in (("n1", 0.4), ("n2", 0.35)):
        tree.apply("node_created", node_id, {"parent_id": "root", "depth": 1, "params": d, "steps": 10})
        tree.apply("stage_finished", node_id, {"val_score": val, "history": []})
    ctx = SearchContext(cfg=cfg, space=DEFAULT_SPACE, tokens_left=35,
                        stage_tokens=lambda p: 10.0 * p["num_generations"] / d["num_generations"])

    def child(parent, **changes):
        return StageSpec(parent_id=parent, params={**d, **changes}, reason="", proposed_by="test")

    same, wide = child("n2"), child("n2", num_generations=2 * d["num_generations"])
    m = MCTS()
    assert m._reserve(tree, ctx, {}, [], "n2") == "n2"  # 35 - 10 >= 20, kept for n1's two more stages
    assert m._affordable(tree, ctx, {}, [], "n2", [same, same]) == [same]  # the second: 35 - 20 < 20
    ctx.tokens_left = 60
    assert m._affordable(tree, ctx, {}, [], "n2", [same, same]) == [same, same]  # 60 - 20 >= 20
    assert m._affordable(tree, ctx, {}, [], "n2", [same, wide]) == [same, wide]  # 60 - 10 - 20 >= 20
    planned = [same, same]  # planned earlier in this round, at their own cost
    assert m._affordable(tree, ctx, {"n2": 2}, planned, "n2", [same, same]) == [same, same]  # 60 - 40 >= 20
    assert m._affordable(tree, ctx, {"n2": 2}, planned, "n2", [same, wide]) == [same]  # 60 - 30 - 20 < 20

    # the best node's own children: after the first, each leaves one more stage (depth 2 -> 3) at the
    # dearest kept child's cost, so that siblings do not spend what their own path needs
    first, wide1 = child("n1"), child("n1", num_generations=2 * d["num_generations"])
    assert m._affordable(tree, ctx, {}, planned, "n1", [first, wide1, first]) == [first]  # 40-10-20 < 20
    # 30-20 >= 10, then 30-30 < 10
    assert m._affordable(tree, ctx, {}, [same] * 3, "n1", [first] * 3) == [first, first]
    # 50-30 >= 20 (the wide child's cost), then 50-40 < 20
    assert m._affordable(tree, ctx, {}, [same], "n1", [wide1, first, first]) == [wide1, first]
    tree.apply("node_created", "n3", {"parent_id": "n1", "depth": 2, "params": d, "steps": 10})
    tree.apply("stage_finished", "n3", {"val_score": 0.5, "history": []})
    ctx.tokens_left = 15  # the best node n3 is one stage short of the full depth: its children are not limited
    assert m._affordable(tree, ctx, {}, [], "n3", [first, first, first]) == [first, first, first]


def test_stage_compute_tokens_gives_a_larger_group_fewer_steps_at_the_same_cost(tmp_path):
    """``search.stage_compute: tokens``: a child that doubles the group trains half the steps (the same
    generated tokens as a stage at the starting group size); ``steps`` (the default) keeps the steps."""
    from llmzero.search.loop import SearchRun

    def fitted(stage_compute, budget=1_000_000):
        cfg = parse_config({"task": {"name": "number_sorting", "sizes": {"train": 50, "val": 10, "test": 10}},
                            "budget": {"compute": budget},
                            "search": {"method": "mcts", "proposer": "skill", "steps_per_stage": 40,
                                       "stage_compute": stage_compute}})
        run = SearchRun(cfg, tmp_path / stage_compute / str(budget))
        run.record("root", "root", {"params": DEFAULT_SPACE.defaults(), "val_score": 0.3})
        g = run.tree.root.params["num_generations"]
        specs = [StageSpec(parent_id="root", params={**run.tree.root.params, "num_generations": n}, reason="",
                           proposed_by="test") for n in (g, 2 * g, g // 2)]
        return [s for _, s in run._fit(specs)], run

    assert fitted("steps")[0] == [40, 40, 40]
    steps, run = fitted("tokens")
    assert steps == [40, 20, 80]
    per_step = [run.tokens_per_step({**run.tree.root.params, "num_generations": n}) for n in (8, 16, 4)]
    assert len({round(s * p) for s, p in zip(steps, per_step)}) == 1  # the same cost each
    tight, run = fitted("tokens", budget=int(40 * per_step[0] + 10 * per_step[1]))  # the third does not fit
    assert tight == [40, 10]  # the second shortened to what is left (a quarter of its 20, above the minimum)


def test_a_stage_the_rest_of_the_budget_cannot_pay_does_not_keep_a_cheaper_one_from_running(tmp_path):
    """The end of the budget: a stage with a doubled group would get less than a fifth of its steps, so
    it is left out, and the next stage, at the starting group size, still trains on what is left."""
    from llmzero.search.loop import SearchRun

    def search(budget):
        cfg = parse_config({"task": {"name": "number_sorting", "sizes": {"train": 50, "val": 10, "test": 10}},
                            "budget": {"compute": budget},
                            "search": {"method": "mcts", "proposer": "skill", "steps_per_stage": 40}})
        run = SearchRun(cfg, tmp_path / str(budget))
        run.record("root", "root", {"params": DEFAULT_SPACE.defaults(), "val_score": 0.3})
        return run

    root = DEFAULT_SPACE.defaults()
    run = search(math.ceil(12 * search(1_000_000).tokens_per_step(root)))  # 6 steps of the wide stage, 12 of the other
    wide = StageSpec(parent_id="root", params={**root, "num_generations": 2 * root["num_generations"]}, reason="",
                     proposed_by="test")
    same = StageSpec(parent_id="root", params=dict(root), reason="", proposed_by="test")
    assert [(s.params["num_generations"], n) for s, n in run._fit([wide, same])] == [(root["num_generations"], 12)]
    assert [n for _, n in run._fit([same, wide])] == [12]  # the first takes what is left; the second gets nothing


def test_mcts_keeps_a_full_path_for_the_roots_first_children_before_any_stage_has_a_score():
    """Before any stage is scored the root is the best node: its first children, proposed together,
    may not spend what extending one of them to the full depth costs."""
    from llmzero.search.methods.tree_search import MCTS

    cfg = parse_config({"task": {"name": "number_sorting"}, "budget": {"compute": 1000},
                        "search": {"depth": 3, "max_children": 3}})
    tree = Tree()
    d = DEFAULT_SPACE.defaults()
    tree.apply("root", "root", {"params": d, "val_score": 0.3})
    ctx = SearchContext(cfg=cfg, space=DEFAULT_SPACE, tokens_left=50,
                        stage_tokens=lambda p: 10.0 * p["num_generations"] / d["num_generations"])
    same = StageSpec(parent_id="root", params=d, reason="", proposed_by="test")
    wide = StageSpec(parent_id="root", params={**d, "num_generations": 2 * d["num_generations"]}, reason="",
                     proposed_by="test")
    m = MCTS()
    assert tree.best() is None and m._reserve(tree, ctx, {}, [], "root") == "root"
    assert m._affordable(tree, ctx, {}, [], "root", [same, same, same]) == [same, same, same]  # 50-30 >= 2*10
    assert m._affordable(tree, ctx, {}, [], "root", [same, wide]) == [same]  # 50-30 < 2*20: no full 16-path
    ctx.tokens_left = 70
    assert m._affordable(tree, ctx, {}, [], "root", [same, wide, same]) == [same, wide]  # 70-30 >= 40 > 70-40


def test_mcts_spends_the_end_of_its_budget_where_a_path_can_still_reach_the_best_nodes_depth():
    """Late in the budget a node is not expanded if its child, with every stage the budget left could add
    below it, would end short of the best node's depth: UCT's pick (the root, with a large exploration
    constant) gives way to the deepest nodes; with budget for a whole path it stands."""
    from llmzero.agents.skill import SkillProposer
    from llmzero.search.methods.tree_search import MCTS

    cfg = parse_config({"task": {"name": "number_sorting"}, "budget": {"compute": 1000},
                        "search": {"depth": 4, "max_children": 3, "branching": 1, "exploration": 50.0}})
    d = DEFAULT_SPACE.defaults()
    tree = Tree()
    tree.apply("root", "root", {"params": d, "val_score": 0.3})
    for node_id, parent, depth, val in (("n1", "root", 1, 0.4), ("n2", "root", 1, 0.35), ("n3", "n1", 2, 0.45),
                                        ("n4", "n3", 3, 0.5)):
        tree.apply("node_created", node_id, {"parent_id": parent, "depth": depth, "params": d, "steps": 10})
        tree.apply("stage_finished", node_id, {"val_score": val, "history": [], "checkpoint": f"c/{node_id}"})

    def ctx(tokens_left):
        return SearchContext(cfg=cfg, space=DEFAULT_SPACE, proposer=SkillProposer(), tokens_left=tokens_left,
                             stage_tokens=lambda p: 10.0)

    m = MCTS()
    assert tree.best().id == "n4"
    late = ctx(15)  # one stage left (the last one may be shortened): only n3 and n4 can reach depth 3
    assert [i for i in ("root", "n1", "n2", "n3", "n4") if m._too_late(tree, late, [], i)] == ["root", "n1", "n2"]
    two = ctx(25)
    assert [i for i in ("root", "n1", "n2", "n3", "n4") if m._too_late(tree, two, [], i)] == ["root"]
    planned = [StageSpec(parent_id="n4", params=d, reason="", proposed_by="test")]
    assert m._too_late(tree, two, planned, "n1")  # what is planned is spent: 25 - 10 pays one stage
    assert m._too_late(tree, SearchContext(cfg=cfg, space=DEFAULT_SPACE), [], "root") is False  # no cost model

    assert m._target(tree, ctx(1000), {}, []) == "root"  # UCT's pick, with budget for a whole path
    assert [s.parent_id for s in m.ask(tree, 1, ctx(1000))] == ["root"]
    assert [s.parent_id for s in m.ask(tree, 1, late)][0] in ("n3", "n4")
    assert [s.parent_id for s in m.ask(tree, 1, two)][0] in ("n1", "n2", "n3", "n4")


def test_grid_ties_keep_the_products_order_and_no_rounding_error_decides():
    from llmzero.search.methods.chains import grid_configs

    start = DEFAULT_SPACE.defaults()
    lr, ent = [5e-5, 1e-4, 2e-4], [0.0, 0.01]
    by_lr = [(c["learning_rate"], c["entropy_coef"])
             for c in grid_configs({"learning_rate": lr, "entropy_coef": ent}, DEFAULT_SPACE, start)]
    by_ent = [(c["learning_rate"], c["entropy_coef"])
              for c in grid_configs({"entropy_coef": ent, "learning_rate": lr}, DEFAULT_SPACE, start)]
    assert by_lr[:4] == [(1e-4, 0.0), (5e-5, 0.0), (1e-4, 0.01), (2e-4, 0.0)]
    # one step away, as the product lists them (its first parameter varies slowest)
    assert by_ent[:4] == [(1e-4, 0.0), (5e-5, 0.0), (2e-4, 0.0), (1e-4, 0.01)]
    assert by_lr[4:] == [(5e-5, 0.01), (2e-4, 0.01)] and by_ent[4:] == [(5e-5, 0.01), (2e-4, 0.01)]


def _grid_run_out(lr: list[float], vals: dict[str, float], deepen: str = "exhausted", tokens_left: float = 10_000.0):
    """Grid with ``lr`` as its grid, depth 2, every configuration run to the full depth: chain i is
    n{2i+1} -> n{2i+2}, the second stage with validation score ``vals``."""
    cfg = parse_config({"task": {"name": "number_sorting"}, "budget": {"compute": 100_000},
                        "search": {"method": "grid", "depth": 2, "deepen": deepen, "grid": {"learning_rate": lr}}})
    tree = Tree()
    tree.apply("root", "root", {"params": DEFAULT_SPACE.defaults(), "val_score": 0.3})
    g, ctx = grid(), SearchContext(cfg=cfg, space=DEFAULT_SPACE, tokens_left=tokens_left, stage_tokens=lambda p: 1000.0)
    for c, params in enumerate(s.params for s in g.ask(tree, len(lr), ctx)):
        for depth in (1, 2):
            node_id = f"n{2 * c + depth}"
            tree.apply("node_created", node_id, {"parent_id": "root" if depth == 1 else f"n{2 * c + 1}",
                                                 "depth": depth, "params": params, "steps": 10, "chain": c})
            val = vals.get(node_id, 0.4)
            tree.apply("stage_finished", node_id, {"val_score": val, "history": [], "checkpoint": f"ckpt/{node_id}"})
    return g, ctx, tree


def _journal(tree: Tree, ctx: SearchContext) -> list[tuple]:
    events, ctx.events[:] = list(ctx.events), []
    for kind, node_id, payload in events:
        tree.apply(kind, node_id, payload)
    return events


def test_grid_with_every_configuration_run_deepens_its_best_runs_instead_of_leaving_budget_unspent():
    g, ctx, tree = _grid_run_out([5e-5, 1e-4, 2e-4], {"n2": 0.5, "n4": 0.6, "n6": 0.45})
    tree.apply("checkpoint_deleted", "n4", {})  # the best run's end, garbage-collected: it cannot go on
    assert g.expandable(tree, ctx) == {"n2"}  # the best run at the full depth that is still on disk
    assert g.ask(tree, 2, ctx) == []  # every configuration has run to the full depth
    (kind, _, payload), = _journal(tree, ctx)
    assert kind == "depth_extended" and payload["depth"] == 3
    assert payload["nodes"] == ["n2", "n6"]  # the best two runs whose checkpoints remain, the best first
    assert "10,000 tokens of budget left" in payload["reason"]
    specs = g.ask(tree, 2, ctx)
    assert [s.parent_id for s in specs] == ["n2", "n6"]
    assert all(s.params == tree.nodes[s.parent_id].params for s in specs)  # still static configurations
    assert [s.chain for s in specs] == [tree.nodes["n2"].chain, tree.nodes["n6"].chain]
    assert g.expandable(tree, ctx) >= {"n2", "n6"}
    # the two grow a stage each; only they, the best first, grow the next time
    for spec, (node_id, val) in zip(specs, {"n7": 0.52, "n8": 0.55}.items()):
        tree.apply("node_created", node_id, {"parent_id": spec.parent_id, "depth": 3, "params": spec.params,
                                             "steps": 10, "chain": spec.chain})
        tree.apply("stage_finished", node_id, {"val_score": val, "history": [], "checkpoint": f"ckpt/{node_id}"})
    assert g.ask(tree, 1, ctx) == []
    (kind, _, payload), = _journal(tree, ctx)
    assert payload["depth"] == 4 and payload["nodes"] == ["n8"]
    assert [s.parent_id for s in g.ask(tree, 2, ctx)] == ["n8"]


def test_grid_does_not_deepen_when_switched_off_or_without_a_stage_worth_of_budget():
    for deepen, left in (("off", 10_000.0), ("exhausted", 100.0)):
        g, ctx, tree = _grid_run_out([5e-5, 1e-4], {"n2": 0.5, "n4": 0.6}, deepen=deepen, tokens_left=left)
        assert g.ask(tree, 2, ctx) == [] and _journal(tree, ctx) == [] and tree.depth_limit is None
        assert ("n4" in g.expandable(tree, ctx)) == (deepen != "off")


def test_grid_does_not_deepen_while_a_configuration_or_a_run_is_left():
    g, ctx, tree = _grid_run_out([5e-5, 1e-4], {"n2": 0.5, "n4": 0.6})
    cfg3 = parse_config({"task": {"name": "number_sorting"}, "budget": {"compute": 100_000},
                         "search": {"method": "grid", "depth": 2, "grid": {"learning_rate": [5e-5, 1e-4, 2e-4]}}})
    ctx3 = SearchContext(cfg=cfg3, space=DEFAULT_SPACE, tokens_left=10_000.0, stage_tokens=lambda p: 1000.0)
    (spec,) = g.ask(tree, 1, ctx3)  # a third configuration starts from the base model
    assert spec.parent_id == "root" and spec.params["learning_rate"] == 2e-4 and not ctx3.events
    tree.apply("node_created", "n5", {"parent_id": "root", "depth": 1, "params": spec.params, "steps": 10,
                                      "chain": 2})
    tree.apply("stage_finished", "n5", {"val_score": 0.3, "history": [], "checkpoint": "ckpt/n5"})
    assert [s.parent_id for s in g.ask(tree, 2, ctx3)] == ["n5"] and not ctx3.events  # its run goes on first
