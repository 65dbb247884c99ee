"""A report as one list of sections, rendered twice: to markdown and to a self-contained HTML page.

Each section holds a title and blocks (text, bullet list, table, figure); the two renderers
are the only places that know either format, so the markdown and the HTML cannot drift apart.
"""
from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field


@dataclass
class Text:
    """A paragraph; markdown inline code (`x`) and bold (**x**) are kept in both formats."""

    text: str


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Cell:
    """A table entry with emphasis; ``colour`` (a CSS colour) shades it in the HTML only."""

    text: str
    bold: bool = False
    italic: bool = False
    colour: str | None = None


@dataclass
class Table:
    columns: list[str]
    rows: list[list]  # entries are str or Cell
    text_columns: int = 1  # leading columns of names, left-aligned in the HTML (numbers align right)


@dataclass
class Figure:
    filename: str
    png: bytes
    alt: str
    min_width: int | None = None  # HTML width in px for figures that must stay readable (curves)


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)
    level: int = 3


def _cell(entry) -> Cell:
    return entry if isinstance(entry, Cell) else Cell("" if entry is None else str(entry))


# ---- markdown ----------------------------------------------------------------------------------------

def markdown_table(table: Table) -> str:
    def entry(c: Cell) -> str:
        text = c.text
        if text and c.bold:
            text = f"**{text}**"
        if text and c.italic:
            text = f"*{text}*"
        return f" {text} " if text else " "

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["|" + "|".join(entry(_cell(c)) for c in row) + "|" for row in table.rows]
    return "\n".join(lines) + "\n"


def _markdown_block(block) -> str:
    if isinstance(block, Text):
        return block.text.rstrip("\n") + "\n"
    if isinstance(block, Bullets):
        return "\n".join(f"- {item}" for item in block.items) + "\n"
    if isinstance(block, Table):
        return markdown_table(block)
    if isinstance(block, Figure):
        return f"![{block.alt}]({block.filename})\n"
    raise TypeError(f"unknown report block {type(block).__name__}")


def to_markdown(sections: list[Section]) -> str:
    parts = []
    for section in sections:
        parts.append(f"{'#' * section.level} {section.title}\n")
        parts += [_markdown_block(b) for b in section.blocks]
    return "\n".join(parts)


# ---- HTML --------------------------------------------------------------------------------------------

_INLINE = [(re.compile(r"\*\*(.+?)\*\*"), r"<b>\1</b>"), (re.compile(r"`(.+?)`"), r"<code>\1</code>")]


def _inline(text: str) -> str:
    out = html.escape(text)
    for pattern, repl in _INLINE:
        out = pattern.sub(repl, out)
    return out


def html_table(table: Table) -> str:
    def entry(tag: str, c: Cell, i: int) -> str:
        text = html.escape(c.text)
        if c.bold:
            text = f"<b>{text}</b>"
        if c.italic:
            text = f"<i>{text}</i>"
        styles = [f"background:{c.colour}"] if c.colour else []
        if 0 < i < table.text_columns:  # the first column is left-aligned by the page's style
            styles.append("text-align:left")
        style = f' style="{";".join(styles)}"' if styles else ""
        return f"<{tag}{style}>{text}</{tag}>"

    rows = ["<tr>" + "".join(entry("th", Cell(c), i) for i, c in enumerate(table.columns)) + "</tr>"]
    rows += ["<tr>" + "".join(entry("td", _cell(c), i) for i, c in enumerate(row)) + "</tr>" for row in table.rows]
    return "<table>" + "".join(rows) + "</table>"


def _html_block(block) -> str:
    if isinstance(block, Text):
        return f"<p>{_inline(block.text)}</p>"
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in block.items) + "</ul>"
    if isinstance(block, Table):
        return html_table(block)
    if isinstance(block, Figure):
        style = f' style="min-width:{block.min_width}px"' if block.min_width else ""
        return f'<img src="data:image/png;base64,{base64.b64encode(block.png).decode()}"{style}/>'
    raise TypeError(f"unknown report block {type(block).__name__}")


_STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
          "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
          "img{max-width:100%}")


def to_html(sections: list[Section], title: str = "tokenprune report") -> str:
    body = []
    for section in sections:
        body.append(f"<h{section.level}>{html.escape(section.title)}</h{section.level}>")
        body += [_html_block(b) for b in section.blocks]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>" + "\n".join(body) + "</body></html>")


def figures(sections: list[Section]) -> list[Figure]:
    """Every figure of the report (written next to report.md, which links them)."""
    return [b for s in sections for b in s.blocks if isinstance(b, Figure)]
