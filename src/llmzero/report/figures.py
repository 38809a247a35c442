"""The report's plots: the search tree, the training curves, the parameter trajectories.

Drawn through matplotlib's Agg canvas directly (as ``analysis.dynamics`` does), never pyplot, so no
global backend or figure registry is touched. The tree and the curves are returned as inline SVG
with text kept as text (node ids stay searchable in the page); the trajectories come from
:func:`llmzero.analysis.plot_trajectories` as a PNG.
"""

from __future__ import annotations

import io
import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from llmzero.analysis import analysed_paths, plot_trajectories
from llmzero.search import ROOT, Node, NodeState, Tree
from llmzero.space import Space

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap, Normalize
    from matplotlib.figure import Figure

# (TRL metric name, panel title): the dynamics the agent diagnoses, in the order it reads them.
CURVE_METRICS: tuple[tuple[str, str], ...] = (
    ("reward", "reward"),
    ("entropy", "entropy"),
    ("kl", "KL"),
    ("completions/mean_length", "mean completion length"),
    ("completions/clipped_ratio", "clipped ratio"),
    ("frac_reward_zero_std", "frac_reward_zero_std"),
)
BEST_COLOUR = "#d62728"
OTHER_COLOUR = "#7f7f7f"


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def to_svg(fig: Figure, salt: str) -> str:
    """The figure as an ``<svg>`` element to inline in HTML.

    Text stays text (``svg.fonttype: none``); ids inside the SVG are hashed with ``salt``, so two
    figures on one page never share an id and the output does not change between runs.
    """
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML declaration and doctype


# -- the tree ---------------------------------------------------------------------------------------------


def layout(tree: Tree) -> dict[str, tuple[float, float]]:
    """(x, y) of every node: leaves on consecutive x in creation order, a parent centred over its
    children, y = -depth (the base model on top)."""
    pos: dict[str, tuple[float, float]] = {}
    next_x = 0.0

    def place(node_id: str) -> float:
        nonlocal next_x
        node = tree.nodes[node_id]
        if node.children:
            xs = [place(c) for c in node.children]
            x = (xs[0] + xs[-1]) / 2
        else:
            x, next_x = next_x, next_x + 1
        pos[node_id] = (x, -float(node.depth))
        return x

    place(ROOT)
    return pos


def tree_figure(tree: Tree, best_path: list[str]) -> Figure:
    """Nodes coloured by validation score (colour bar), the best path in red, failed stages as red
    crosses, pruned ones hatched, pending or running ones hollow."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    pos = layout(tree)
    on_path = {ROOT, *best_path}
    leaves = sum(1 for n in tree.nodes.values() if not n.children)
    depth = max(n.depth for n in tree.nodes.values())
    width = min(max(7.0, 0.85 * leaves + 2.5), 28.0)
    fig = _new_figure(width, max(3.2, 1.25 * (depth + 1) + 1.0))
    ax = fig.add_subplot()
    cmap = _colormap()
    norm = _score_norm(tree)
    for n in tree.stages():
        (x0, y0), (x1, y1) = pos[n.parent_id], pos[n.id]  # type: ignore[index]
        best_edge = n.id in on_path
        ax.plot([x0, x1], [y0, y1], color=BEST_COLOUR if best_edge else "#b0b0b0",
                linewidth=3 if best_edge else 1, zorder=1)
    for n in tree.nodes.values():
        _draw_node(ax, n, pos[n.id], cmap, norm, n.id in on_path)
    fontsize = 8 if leaves <= 20 else 6
    for n in tree.nodes.values():
        x, y = pos[n.id]
        ax.annotate(f"{n.id}\n{_node_score(n)}", (x, y), xytext=(0, -14), textcoords="offset points",
                    ha="center", va="top", fontsize=fontsize,
                    fontweight="bold" if n.id in on_path else "normal")
    ax.set_yticks([-d for d in range(depth + 1)], ["base"] + [f"stage {d}" for d in range(1, depth + 1)])
    ax.set_xticks([])
    ax.set_xlim(-0.7, max(leaves - 0.3, 0.7))
    ax.set_ylim(-depth - 0.75, 0.35)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="validation score", shrink=0.85)
    handles = [
        Line2D([], [], color=BEST_COLOUR, linewidth=3, label="best path"),
        Line2D([], [], marker="o", linestyle="", markerfacecolor=cmap(0.7), markeredgecolor="black",
               markersize=9, label="complete (colour: val)"),
        Patch(facecolor=cmap(0.4), edgecolor="#555555", hatch="///", label="pruned"),
        Line2D([], [], marker="x", linestyle="", color="red", markeredgewidth=2.5, markersize=9,
               label="failed"),
        Line2D([], [], marker="o", linestyle="", markerfacecolor="white", markeredgecolor="#555555",
               markersize=9, label="pending / running"),
    ]
    fig.legend(handles=handles, loc="outside upper center", fontsize=7, frameon=False,
               ncols=len(handles))
    return fig


def _colormap() -> Colormap:
    import matplotlib

    return matplotlib.colormaps["viridis"]


def _score_norm(tree: Tree) -> Normalize:
    from matplotlib.colors import Normalize

    vals = [n.val_score for n in tree.nodes.values() if n.val_score is not None]
    lo, hi = (min(vals), max(vals)) if vals else (0.0, 1.0)
    if hi - lo < 1e-9:  # one score (or all equal): widen so the colour bar has a range
        lo, hi = lo - 0.01, hi + 0.01
    return Normalize(vmin=lo, vmax=hi)


def _node_score(n: Node) -> str:
    if n.state is NodeState.FAILED:
        return "failed"
    if n.val_score is None:
        return n.state.value
    return f"{n.val_score:.3f}" + (" (pruned)" if n.state is NodeState.PRUNED else "")


def _draw_node(ax: Axes, n: Node, xy: tuple[float, float], cmap: Colormap, norm: Normalize,
               on_path: bool) -> None:
    x, y = xy
    width = 2.5 if on_path else 0.8
    if n.state is NodeState.FAILED:
        ax.scatter([x], [y], marker="x", s=130, c="red", linewidths=3, zorder=3)
    elif n.val_score is None:  # pending or running
        ax.scatter([x], [y], s=220, c="white", edgecolors="#555555", linewidths=1.2, linestyle="--", zorder=3)
    elif n.state is NodeState.PRUNED:  # the hatch takes the edge colour
        ax.scatter([x], [y], s=260, color=cmap(norm(n.val_score)), hatch="///", edgecolors="#555555",
                   linewidths=width, zorder=3)
    else:
        ax.scatter([x], [y], s=260, color=cmap(norm(n.val_score)),
                   edgecolors=BEST_COLOUR if on_path else "black", linewidths=width, zorder=3)


# -- training curves ----------------------------------------------------------------------------------------


def step_offset(tree: Tree, node: Node) -> int:
    """GRPO steps trained before ``node`` along its path: where its curve starts on the shared x axis."""
    return sum(a.steps for a in tree.path(node.id)[1:-1])


def curves_figure(tree: Tree, best_path: list[str]) -> Figure:
    """Small multiples of the TRL metrics over cumulative step, one line per stage; the best path's
    stages thick and red, the others thin and grey, failed ones dashed. Metrics are logged every
    step, so a stage's i-th row is at step offset + i."""
    from matplotlib.lines import Line2D

    on_path = set(best_path)
    cols = 3
    rows = math.ceil(len(CURVE_METRICS) / cols)
    fig = _new_figure(4.0 * cols, 2.6 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    stages = [n for n in tree.stages() if n.history]
    # draw the best path last, so it lies on top
    stages.sort(key=lambda n: n.id in on_path)
    for ax, (metric, title) in zip(axes.flat, CURVE_METRICS):
        drawn = False
        for n in stages:
            xs, ys = _series(n, metric, step_offset(tree, n))
            if not xs:
                continue
            drawn = True
            best = n.id in on_path
            ax.plot(xs, ys, color=BEST_COLOUR if best else OTHER_COLOUR, linewidth=2 if best else 0.8,
                    alpha=1.0 if best else 0.55, linestyle="--" if n.state is NodeState.FAILED else "-",
                    zorder=2 if best else 1)
        for node_id in best_path[:-1]:  # stage boundaries along the best path
            n = tree.nodes[node_id]
            ax.axvline(step_offset(tree, n) + n.steps, color=BEST_COLOUR, linewidth=0.6, linestyle=":")
        if not drawn:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, fontsize=9,
                    color=OTHER_COLOUR)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("cumulative GRPO step", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(CURVE_METRICS):]:
        ax.set_axis_off()
    fig.legend(handles=[Line2D([], [], color=BEST_COLOUR, linewidth=2, label="best path"),
                        Line2D([], [], color=OTHER_COLOUR, linewidth=0.8, label="other stages"),
                        Line2D([], [], color=OTHER_COLOUR, linewidth=0.8, linestyle="--", label="failed")],
               loc="outside upper center", ncols=3, fontsize=8, frameon=False)
    return fig


def _series(n: Node, metric: str, offset: int) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for i, row in enumerate(n.history):
        v = row.get(metric)
        if isinstance(v, (int, float)) and math.isfinite(v):
            xs.append(offset + i + 1)
            ys.append(float(v))
    return xs, ys


# -- parameter trajectories -------------------------------------------------------------------------------


def trajectories_png(tree: Tree, space: Space, k: int = 3) -> bytes | None:
    """The PNG of :func:`plot_trajectories` for one run (best path and top k); None when no stage
    has been scored yet."""
    if not analysed_paths(tree, k):
        return None
    with tempfile.TemporaryDirectory(prefix="llmzero-report-") as tmp:
        path = Path(tmp) / "trajectories.png"
        plot_trajectories([tree], space, path, k=k)
        return path.read_bytes()
