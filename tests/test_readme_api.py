"""The README's Python API is a promise: every `from groklab... import ...` line of its examples, and every
`groklab.module.name` it names in the text, resolves (a module moved into a layer left `groklab.export` and
`groklab.ops` pointing at nothing)."""

import importlib
import re
from pathlib import Path

import pytest

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
LAYOUT = README[README.index("<!-- layout:"):README.index("<!-- end of layout -->")]  # file paths, not API
TEXT = README.replace(LAYOUT, "")

IMPORTS = sorted({(m, n.strip()) for m, names in re.findall(r"^\s*from (groklab[\w.]*) import ([\w, ]+)$", TEXT, re.M)
                  for n in names.split(",")})
DOTTED = sorted(set(re.findall(r"\b(groklab(?:\.\w+)+)", TEXT)))


def _resolve(dotted: str) -> object:
    """The longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_the_readme_names_some_api():
    assert ("groklab.train", "train_runs") in IMPORTS and "groklab.export.to_lens" in DOTTED


@pytest.mark.parametrize("module, name", IMPORTS)
def test_every_import_in_the_readme_resolves(module, name):
    parent = importlib.import_module(module)
    if not hasattr(parent, name):  # `from groklab import results`: a submodule
        importlib.import_module(f"{module}.{name}")


@pytest.mark.parametrize("dotted", DOTTED)
def test_every_dotted_name_in_the_readme_resolves(dotted):
    _resolve(dotted)
