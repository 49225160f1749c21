"""The benchmarks import: they are run by hand on a GPU, so nothing else notices when code they use moves
(bench_grokfast.py imported `collect` from where it no longer lived)."""

import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.parametrize("name", sorted(p.stem for p in BENCHMARKS.glob("*.py")))
def test_every_benchmark_imports(name, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr(sys, "argv", [name])  # a module that parsed its flags at import would see none
    importlib.import_module(name)
