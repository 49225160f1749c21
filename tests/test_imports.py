"""What importing groklab's entry points loads (issue 16): the command line starts without torch, so that
`groklab --help` and `--version` answer at once, and `groklab.results` (the pandas API) loads no training code.
Each check runs in a fresh interpreter: this one has long imported torch. (How fast `--help` is, is a
benchmark's business, not a test's.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import groklab

SRC = str(Path(groklab.__file__).resolve().parent.parent)  # the groklab these tests import, in the child too


def loaded_after(code: str) -> tuple[list[str], str]:
    """The modules a fresh interpreter holds after running `code` (which must exit normally), and what it printed."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    *printed, modules = done.stdout.splitlines()
    return json.loads(modules), "\n".join(printed)


def under(modules: list[str], *packages: str) -> list[str]:
    return [m for m in modules if any(m == p or m.startswith(p + ".") for p in packages)]


def test_the_children_import_this_groklab():
    modules, _ = loaded_after(f"import groklab; assert groklab.__file__ == {groklab.__file__!r}")
    assert "groklab" in modules


def test_importing_the_cli_does_not_import_torch():
    modules, _ = loaded_after("import groklab.cli")
    assert "groklab.cli" in modules and under(modules, "torch") == []


@pytest.mark.parametrize("argv, says", [(["--help"], "usage: groklab"),
                                        (["--version"], f"groklab {groklab.__version__}")])
def test_help_and_version_work_without_torch(argv, says):
    """As if torch were not installed at all: `groklab --help` and `--version` still answer, exit status 0."""
    code = ("sys.modules['torch'] = None  # any import of torch now fails\n"
            "from groklab.cli import main\n"
            "try:\n"
            f"    code = main({argv!r})\n"
            "except SystemExit as exc:\n"
            "    code = exc.code\n"
            "assert code in (0, None), code")
    modules, printed = loaded_after(code)
    assert printed.startswith(says) and under(modules, "torch") == ["torch"]  # the blocked entry, nothing more


def test_importing_results_loads_no_training_code():
    modules, _ = loaded_after("import groklab.results")
    assert under(modules, "torch", "groklab.training", "groklab.engine", "groklab.model") == []
