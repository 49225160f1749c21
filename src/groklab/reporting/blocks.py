"""The report as data: a list of blocks (headings, paragraphs, lists, code, tables, figures, folded parts)
that both writers render, so that report.html and report.md always say the same thing; and tables.md's
Markdown read back into blocks, so a study's tables appear in the report as they are written."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Union


@dataclass
class Heading:
    level: int
    text: str
    anchor: str | None = None


@dataclass
class Para:
    text: str  # plain text; `code` spans and [label](#anchor) links allowed


@dataclass
class Items:
    items: list[str]


@dataclass
class Code:
    text: str
    label: str = ""


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    strong: set[int] = field(default_factory=set)  # rows to emphasise (mean ± std)
    kind: str = ""  # a CSS class and a name a reader (or a test) can find the table by


@dataclass
class Figure:
    name: str  # file name under report_files/
    png: bytes
    caption: str
    alt: str


@dataclass
class Details:
    summary: str
    blocks: list["Block"]


Block = Union[Heading, Para, Items, Code, Table, Figure, Details]


def figures(blocks: Sequence[Block]) -> list[Figure]:
    """Every figure, folded parts included, in reading order."""
    out: list[Figure] = []
    for b in blocks:
        if isinstance(b, Figure):
            out.append(b)
        elif isinstance(b, Details):
            out += figures(b.blocks)
    return out


def _cells(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [c.strip().replace("\\|", "|") for c in cells]


def markdown_blocks(text: str, shift: int = 0, kind: str = "") -> list[Block]:
    """Blocks from the Markdown groklab writes (tables.md): `#` headings (`shift` levels deeper), pipe
    tables, `- ` lists and paragraphs; **bold** and *italics* keep their text."""
    blocks: list[Block] = []
    para: list[str] = []
    table: list[list[str]] = []
    items: list[str] = []

    def flush() -> None:
        if para:
            blocks.append(Para(" ".join(para)))
            para.clear()
        if table:
            body = [r for r in table[1:] if not all(re.fullmatch(r":?-+:?", c) for c in r)]
            blocks.append(Table(table[0], body, kind=kind))
            table.clear()
        if items:
            blocks.append(Items(list(items)))
            items.clear()

    for raw in text.splitlines():
        line = re.sub(r"\*\*([^*]+)\*\*|\*([^*]+)\*", lambda m: m.group(1) or m.group(2), raw.rstrip())
        heading = re.match(r"(#{1,6})\s+(.*)", line)
        kind_now = "table" if line.startswith("|") else "item" if line.startswith("- ") else "text"
        if not line.strip() or heading or (kind_now == "table") != bool(table) or (kind_now == "item") != bool(items):
            flush()
        if heading:
            blocks.append(Heading(min(len(heading.group(1)) + shift, 6), heading.group(2)))
        elif kind_now == "table":
            table.append(_cells(line))
        elif kind_now == "item":
            items.append(line[2:])
        elif line.strip():
            para.append(line.strip())
    flush()
    return blocks
