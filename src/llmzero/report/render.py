"""A :class:`Document` as one self-contained HTML page (inline CSS, inline SVG, PNG as data URIs;
no script, no external URL) and as Markdown (the tables and text; figures point to the HTML)."""

from __future__ import annotations

import base64
from html import escape

from llmzero.report.document import Block, Document, Figure, Section, Table, Text

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 1.5rem 2rem 3rem; color: #1f2328; line-height: 1.45; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #d0d7de; padding-bottom: .3rem; }
h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
h3 { font-size: 1.05rem; margin-top: 1.6rem; }
nav ul { font-size: .9rem; } nav li { margin-bottom: .2rem; } nav .sub { font-size: .85rem; }
table { border-collapse: collapse; font-size: .82rem; margin: .6rem 0 1rem; width: 100%; }
caption { caption-side: top; text-align: left; color: #57606a; font-size: .85rem; padding-bottom: .3rem; }
th, td { border: 1px solid #d0d7de; padding: .25rem .45rem; vertical-align: top; text-align: left;
         overflow-wrap: break-word; }
th { white-space: nowrap; }
th { background: #f6f8fa; }
tr.best td { background: #fff1f0; font-weight: 600; }
figure { margin: .6rem 0 1rem; } figure svg, figure img { max-width: 100%; height: auto; }
figcaption { color: #57606a; font-size: .85rem; }
p.note { background: #fff8c5; border-left: 4px solid #d4a72c; padding: .4rem .7rem; }
details { font-size: .8rem; margin: .3rem 0; } details pre { white-space: pre-wrap; background: #f6f8fa;
          padding: .6rem; border: 1px solid #d0d7de; }
"""


# -- HTML --------------------------------------------------------------------------------------------------


def to_html(doc: Document) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{escape(doc.title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
             f"<h1>{escape(doc.title)}</h1>", _toc(doc.sections)]
    parts += [_html_section(s) for s in doc.sections]
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _toc(sections: list[Section]) -> str:
    """One line per top-level section, its subsections as links on the line below."""
    items: list[tuple[str, list[str]]] = []
    for s in sections:
        link = f'<a href="#{escape(s.id)}">{escape(s.title)}</a>'
        if s.level <= 2 or not items:
            items.append((link, []))
        else:
            items[-1][1].append(link)
    lines = "".join(f"<li>{top}" + (f'<br><span class="sub">{" · ".join(subs)}</span>' if subs else "")
                    + "</li>" for top, subs in items)
    return f'<nav id="contents"><ul>{lines}</ul></nav>'


def _html_section(s: Section) -> str:
    body = "\n".join(_html_block(b) for b in s.blocks)
    return f'<section id="{escape(s.id)}">\n<h{s.level}>{escape(s.title)}</h{s.level}>\n{body}\n</section>'


def _html_block(b: Block) -> str:
    if isinstance(b, Text):
        return f'<p class="note">{_cell(b.text)}</p>' if b.note else f"<p>{_cell(b.text)}</p>"
    if isinstance(b, Table):
        return _html_table(b)
    if isinstance(b, Figure):
        return _html_figure(b)
    return (f"<details><summary>{escape(b.summary)}</summary>"  # Details
            f"<pre>{escape(b.body)}</pre></details>")


def _cell(text: str) -> str:
    return escape(text).replace("\n", "<br>")


def _html_table(t: Table) -> str:
    ident = f' id="{escape(t.id)}"' if t.id else ""
    caption = f"<caption>{escape(t.caption)}</caption>" if t.caption else ""
    head = "".join(f"<th>{escape(h)}</th>" for h in t.headers)
    rows = []
    for k, row in enumerate(t.rows):
        cls = ' class="best"' if k in t.highlight else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{_cell(c)}</td>" for c in row) + "</tr>")
    return (f"<table{ident}>{caption}<thead><tr>{head}</tr></thead><tbody>\n" + "\n".join(rows)
            + "\n</tbody></table>")


def _html_figure(f: Figure) -> str:
    if f.svg is not None:
        content = f.svg
    elif f.png is not None:
        data = base64.b64encode(f.png).decode("ascii")
        content = f'<img src="data:image/png;base64,{data}" alt="{escape(f.caption)}">'
    else:
        content = ""
    return f'<figure id="{escape(f.id)}">{content}<figcaption>{escape(f.caption)}</figcaption></figure>'


# -- Markdown ----------------------------------------------------------------------------------------------


def to_markdown(doc: Document) -> str:
    parts = [f"# {doc.title}", ""]
    for s in doc.sections:
        parts += [f"{'#' * s.level} {s.title}", ""]
        for b in s.blocks:
            text = _md_block(b)
            if text:
                parts += [text, ""]
    return "\n".join(parts)


def _md_block(b: Block) -> str:
    if isinstance(b, Text):
        return f"> **Note.** {b.text}" if b.note else b.text
    if isinstance(b, Table):
        return _md_table(b)
    if isinstance(b, Figure):
        return f"*Figure in report.html (#{b.id}): {b.caption}*"
    return ""  # Details: the raw prompts stay in the HTML and the journal


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", "<br>")


def _md_table(t: Table) -> str:
    lines = [f"*{t.caption}*", ""] if t.caption else []
    lines.append("| " + " | ".join(_md_cell(h) for h in t.headers) + " |")
    lines.append("|" + "---|" * len(t.headers))
    for k, row in enumerate(t.rows):
        cells = [_md_cell(c) for c in row]
        if k in t.highlight:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
