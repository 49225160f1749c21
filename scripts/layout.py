"""Write the README's "Layout" section from groklab/layers.py and each module's own docstring:

    python scripts/layout.py          # rewrite README.md between the layout markers
    python scripts/layout.py --check  # exit 1 if README.md is not what this would write (tests run it)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "groklab"
sys.path.insert(0, str(ROOT / "src"))
from groklab.layers import LAYERS  # noqa: E402

START, END = "<!-- layout: written by scripts/layout.py -->", "<!-- end of layout -->"


def summary(path: Path) -> str:
    """The first sentence of a module's docstring, on one line."""
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    return first.split(". ")[0].rstrip(".") if first else "–"


def modules(member: str) -> list[tuple[str, Path]]:
    package = SRC / member
    if package.is_dir():
        return [(f"{member}/{p.stem}", p) for p in sorted(package.glob("*.py")) if p.stem != "__init__"]
    return [(member, SRC / f"{member}.py")] if (SRC / f"{member}.py").exists() else []


def layout() -> str:
    lines = [START, "", "Data flows one way: each layer imports only from itself and the layers listed before it "
             "(`tests/test_layers.py` walks every import, those inside functions too, and fails on one that goes "
             "the other way or closes a cycle). Under `src/groklab/`:", ""]
    for n, (name, members, what) in enumerate(LAYERS):
        lines.append(f"{n + 1}. **{name}**: {what}")
        for member in members:
            for label, path in modules(member):
                lines.append(f"   - `{label}.py`: {summary(path)}")
    lines += ["", END]
    return "\n".join(lines)


def main() -> int:
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    if START not in text or END not in text:
        print(f"README.md has no layout markers ({START} ... {END})", file=sys.stderr)
        return 1
    new = text[: text.index(START)] + layout() + text[text.index(END) + len(END):]
    if "--check" in sys.argv:
        if new != text:
            print("README.md's Layout is stale: run `python scripts/layout.py`", file=sys.stderr)
        return 0 if new == text else 1
    readme.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
