"""The report as data: sections of tables, figures and text, built once and rendered twice (HTML
and Markdown, see ``render.py``). Cells are plain strings; a newline in a cell is a line break."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Text:
    text: str
    note: bool = False
    """A caveat the reader must see (an unfinished run, a missing grid baseline)."""


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    caption: str = ""
    id: str | None = None
    highlight: frozenset[int] = frozenset()
    """Indices of rows to emphasise (the best path)."""


@dataclass(frozen=True)
class Figure:
    id: str
    caption: str
    svg: str | None = None
    """An inline ``<svg>`` element."""
    png: bytes | None = None


@dataclass(frozen=True)
class Details:
    """Long raw text (a prompt and its answer), folded away; HTML only."""

    summary: str
    body: str


Block = Text | Table | Figure | Details


@dataclass
class Section:
    id: str
    title: str
    level: int = 2
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Document:
    title: str
    sections: list[Section]
