"""The report of finished searches: one self-contained HTML page and a Markdown summary.

:func:`write_report` reads one or more run directories (their journals alone), builds one
:class:`~llmzero.report.document.Document` (``content.py``) and renders it twice (``render.py``):
``report.html`` (the tree, the schedule, training curves, parameter trajectories, the agent's
diagnoses and proposals, cost, and the comparison of methods per task; plots inline, no external
URL, no script) and ``report.md`` (the same tables and text).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from llmzero.config import ConfigError
from llmzero.report.content import build
from llmzero.report.render import to_html, to_markdown
from llmzero.report.runs import Run, load_run

HTML = "report.html"
MARKDOWN = "report.md"


def load_runs(run_dirs: Sequence[Path]) -> list[Run]:
    """Every run directory read and checked before anything is written."""
    if not run_dirs:
        raise ConfigError("runs are missing: expected one or more search run directories")
    seen: set[Path] = set()
    for d in run_dirs:
        key = Path(d).resolve()
        if key in seen:
            raise ConfigError(f"run={str(d)!r} is not allowed: it is given twice")
        seen.add(key)
    return [load_run(Path(d)) for d in run_dirs]


def write_report(run_dirs: Sequence[Path], out: Path | None = None) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` into ``out`` (default: the first run directory),
    each atomically; return their paths. Bad input raises ConfigError, one line naming the path."""
    runs = load_runs(run_dirs)
    out_dir = Path(out) if out is not None else Path(run_dirs[0])
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"out={str(out_dir)!r} is not allowed: it is a file, expected a directory")
    doc = build(runs)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, md_path = out_dir / HTML, out_dir / MARKDOWN
    _write_atomically(html_path, to_html(doc))
    _write_atomically(md_path, to_markdown(doc))
    return html_path, md_path


def _write_atomically(path: Path, text: str) -> None:
    """A reader sees the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a report is for sharing
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["HTML", "MARKDOWN", "Run", "load_run", "load_runs", "write_report"]
