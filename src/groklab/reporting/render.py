"""The report's two writers: `to_html` (one self-contained page, figures inline, no scripts, nothing fetched)
and `to_markdown` (figures as files beside it), both from the same blocks."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence

from groklab.reporting.blocks import Block, Code, Details, Figure, Heading, Items, Para, Table
from groklab.store import rundir
from groklab.tables import md_table

FILES_DIR = rundir.REPORT_FILES[2]
MARKER = rundir.REPORT_MARKER  # the last line of report.md: how a rerun (and a run folder's restart) knows it is ours


def _inline_html(text: str) -> str:
    """Plain text with `code` spans and [label](#anchor) links, escaped."""
    out = []
    for i, part in enumerate(text.split("`")):
        if i % 2:
            out.append(f"<code>{html.escape(part)}</code>")
        else:
            esc = html.escape(part)
            out.append(re.sub(r"\[([^\]]+)\]\((#[A-Za-z0-9._-]+)\)", r'<a href="\2">\1</a>', esc))
    return "".join(out)


CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1a1a1a; margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 1.5em 2em 4em; }
h1 { font-size: 1.7em; margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .8em 0 1.2em; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #bbb; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #eef1f5; } tr.strong td { font-weight: 600; background: #f6f3e8; }
table.facts td:first-child { color: #444; }
figure { margin: 1em 0 1.6em; } figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 13px; color: #333; margin-top: .3em; }
details { margin: .4em 0; } summary { cursor: pointer; color: #0b4f8a; }
pre { background: #f5f5f5; border: 1px solid #ddd; padding: .6em; overflow-x: auto; font-size: 12px; }
code { font-size: .92em; } .label { font-size: 12px; color: #555; margin: .6em 0 0; }
@media print { details > *:not(summary) { display: block; } main { max-width: none; } }
"""


def to_html(title: str, blocks: Sequence[Block]) -> str:
    def render(b: Block) -> str:
        if isinstance(b, Heading):
            anchor = f' id="{html.escape(b.anchor)}"' if b.anchor else ""
            return f"<h{b.level}{anchor}>{_inline_html(b.text)}</h{b.level}>"
        if isinstance(b, Para):
            return f"<p>{_inline_html(b.text)}</p>"
        if isinstance(b, Items):
            return "<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b.items) + "</ul>"
        if isinstance(b, Code):
            label = f'<p class="label">{html.escape(b.label)}</p>' if b.label else ""
            return f"{label}<pre><code>{html.escape(b.text)}</code></pre>"
        if isinstance(b, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.header) if any(b.header) else ""
            body = "".join(
                ('<tr class="strong">' if i in b.strong else "<tr>")
                + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>" for i, row in enumerate(b.rows))
            head = f"<thead><tr>{head}</tr></thead>" if head else ""
            return f'<table class="{b.kind}">{head}<tbody>{body}</tbody></table>'
        if isinstance(b, Figure):
            data = base64.b64encode(b.png).decode("ascii")
            return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b.alt)}">'
                    f"<figcaption>{_inline_html(b.caption)}</figcaption></figure>")
        if isinstance(b, Details):
            return (f"<details><summary>{_inline_html(b.summary)}</summary>"
                    + "\n".join(render(x) for x in b.blocks) + "</details>")
        raise TypeError(b)

    body = "\n".join(render(b) for b in blocks)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n"
            f"<body><main>\n{body}\n</main></body></html>\n")


def to_markdown(blocks: Sequence[Block], files_dir: str = FILES_DIR) -> str:
    def render(b: Block) -> str:
        if isinstance(b, Heading):  # an explicit anchor: the links of the contents list work on any host
            return (f'<a id="{b.anchor}"></a>\n\n' if b.anchor else "") + "#" * b.level + " " + b.text
        if isinstance(b, Para):
            return b.text
        if isinstance(b, Items):
            return "\n".join(f"- {i}" for i in b.items)
        if isinstance(b, Code):
            fence = "````" if "```" in b.text else "```"
            return (f"*{b.label}:*\n\n" if b.label else "") + f"{fence}\n{b.text.rstrip()}\n{fence}"
        if isinstance(b, Table):
            rows = [[f"**{c}**" if i in b.strong and c else c for c in row] for i, row in enumerate(b.rows)]
            return md_table(b.header, rows)
        if isinstance(b, Figure):
            return f"![{b.alt}]({files_dir}/{b.name})\n\n*{b.caption}*"
        if isinstance(b, Details):
            inner = "\n\n".join(render(x) for x in b.blocks)
            return f"<details><summary>{html.escape(b.summary)}</summary>\n\n{inner}\n\n</details>"
        raise TypeError(b)

    return "\n\n".join(render(b) for b in blocks) + f"\n\n{MARKER}\n"
