"""The layers hold: every import in src/groklab (those inside functions too) goes to the importer's own layer
or one below it, and no chain of imports comes back to where it started."""

import ast
from pathlib import Path

from groklab.layers import LAYERS, layer_of

SRC = Path(__file__).resolve().parent.parent / "src" / "groklab"


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, known: set[str]) -> list[tuple[int, str]]:
    """(line, groklab module) of every import in the file, wherever it stands; `from pkg import mod` counts as
    an import of pkg.mod when that is a module."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "groklab"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "groklab":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.append((node.lineno, sub if sub in known else node.module))
    return out


def graph() -> dict[str, list[tuple[int, str]]]:
    paths = sorted(SRC.rglob("*.py"))
    known = {module_name(p) for p in paths}
    return {module_name(p): imports(p, known) for p in paths}


def test_every_module_has_a_layer():
    unknown = [m for m in graph() if layer_of(m) is None]
    assert unknown == [], f"modules in no layer of groklab/layers.py: {unknown}"


def test_no_import_goes_up_a_layer():
    upward = []
    for module, targets in graph().items():
        mine = layer_of(module)
        for line, target in targets:
            theirs = layer_of(target)
            if theirs is not None and mine is not None and theirs > mine:
                upward.append(f"{module}:{line} imports {target} ({LAYERS[mine][0]} -> {LAYERS[theirs][0]})")
    assert upward == [], "\n".join(upward)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_closes_a_cycle():
    g = graph()
    edges = {m: {t for _, t in targets if t in g and t != m and not m.startswith(t + ".")} for m, targets in g.items()}
    # a package's __init__ is imported on the way to any of its modules: it must not import them back
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges) or [])


def test_the_walk_finds_imports_inside_functions(tmp_path):
    """The checker itself: a function-level import of a higher layer is caught, as at module level."""
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from groklab.training.loop import train_runs\n")
    assert imports(src, {"groklab.training.loop"}) == [(2, "groklab.training.loop")]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_readme_layout_is_the_one_the_layers_write():
    """README's Layout section is generated (`python scripts/layout.py`): it names every module."""
    import subprocess
    import sys

    root = SRC.parent.parent
    check = subprocess.run([sys.executable, str(root / "scripts" / "layout.py"), "--check"], capture_output=True)
    assert check.returncode == 0, "README.md's Layout is stale: run `python scripts/layout.py`"
    readme = (root / "README.md").read_text(encoding="utf-8")
    for module in graph():
        relative = module.removeprefix("groklab.").replace(".", "/")
        if module != "groklab" and not (SRC / relative).is_dir() and relative != "__main__":
            assert "`" + module.removeprefix("groklab.").replace(".", "/") + ".py`" in readme, module
