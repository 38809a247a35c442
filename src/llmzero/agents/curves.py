"""The node's training curves as a PNG, for LLMs that read images (``llm.curves: true``).

One small figure: a panel per metric (reward, entropy, share of all-same-reward groups, clipped
completions, mean length, KL), each stage of the path drawn after the one before with its
boundaries marked, so the agent sees what the text summary compresses to first->last.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from llmzero.agents._base import NodeView

PANELS = (("reward", "reward"), ("entropy", "entropy"), ("frac_reward_zero_std", "all-same-reward groups"),
          ("completions/clipped_ratio", "clipped"), ("completions/mean_length", "mean length"), ("kl", "KL"))


def curves_png(path: Sequence[NodeView], dpi: int = 60) -> bytes | None:
    """The curves along ``path`` (root first) as PNG bytes; None when no stage logged anything."""
    stages = [n for n in path if n.history]
    if not stages:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.4))
    axes = fig.subplots(2, 3).ravel()
    for ax, (key, title) in zip(axes, PANELS):
        step = 0
        for i, n in enumerate(stages):
            xs, ys = [], []
            for j, row in enumerate(n.history):
                v = row.get(key)
                if isinstance(v, (int, float)):
                    xs.append(step + j + 1)
                    ys.append(float(v))
            ax.plot(xs, ys, lw=1, color=f"C{i % 10}")
            step += len(n.history)
            ax.axvline(step, color="0.8", lw=0.5)
        ax.set_title(title, fontsize=8)
        ax.tick_params(labelsize=6)
    fig.suptitle(f"stages {stages[0].depth}-{stages[-1].depth}, one colour each", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()
