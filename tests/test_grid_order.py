"""Grid search under a budget that cannot pay for the whole grid: nearest configurations first."""

from llmzero.config import parse_config
from llmzero.search.methods import SearchContext
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
    assert set(order[1:4]) == {(5e-5, 0.0), (2e-4, 0.0), (1e-4, 0.01)}  # one step away
    assert order[-1] == (2.5e-5, 0.01)  # the far corner: two lr steps and one entropy step away
