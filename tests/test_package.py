"""The package as people install it: `python -m build` makes an sdist and a wheel that `twine check --strict`
passes, with the license, py.typed, the shipped studies and one version; README links work on a package
index (absolute, into the repository that pyproject names)."""

import email
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import groklab

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_readme_links_are_absolute_and_point_into_the_repository():
    repo = PYPROJECT["project"]["urls"]["Repository"]
    links = re.findall(r"\]\(([^)]+)\)", (ROOT / "README.md").read_text())
    assert links, "the README links to its docs"
    for link in links:
        assert link.startswith(("https://", "http://")), f"{link}: relative links break on a package index"
        if "/docs/" in link or link.endswith(".md"):
            assert link.startswith(repo + "/blob/main/"), link
            assert (ROOT / link.removeprefix(repo + "/blob/main/").split("#")[0]).is_file(), link


def test_no_dependency_is_declared_that_the_code_does_not_import():
    imports = set()
    for path in (ROOT / "src" / "groklab").rglob("*.py"):
        imports |= set(re.findall(r"^\s*(?:from|import) ([A-Za-z_]\w*)", path.read_text(), re.M))
    module = {"safetensors": "safetensors", "torch": "torch", "matplotlib": "matplotlib", "tqdm": "tqdm"}
    for requirement in PYPROJECT["project"]["dependencies"]:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)
        assert module.get(name, name) in imports, f"{name} is declared but imported nowhere in src"


def test_sdist_and_wheel_build_and_pass_twine_check(tmp_path):
    pytest.importorskip("build")
    pytest.importorskip("twine")
    src = tmp_path / "src-tree"  # a copy: the build writes build/ and *.egg-info beside its sources
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist = tmp_path / "dist"
    # --no-isolation: the build backend installed here (setuptools>=77, as build-system.requires says), no index
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(src)],
                   check=True, capture_output=True, timeout=600)
    [wheel] = list(dist.glob("*.whl"))
    [sdist] = list(dist.glob("*.tar.gz"))
    check = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)],
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    assert wheel.name == f"groklab-{groklab.__version__}-py3-none-any.whl"  # one source for the version
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = email.message_from_bytes(z.read(f"groklab-{groklab.__version__}.dist-info/METADATA"))
    assert {"groklab/py.typed", "groklab/experiments/studies/seed-000.toml", "groklab/store/export.py",
            f"groklab-{groklab.__version__}.dist-info/licenses/LICENSE"} <= names
    assert not any(n.startswith("tests/") for n in names)
    assert meta["License-Expression"] == "MIT" and meta["Version"] == groklab.__version__
    requires = meta.get_all("Requires-Dist")
    assert not any(r.startswith("numpy") for r in requires)
    assert any(r.startswith("transformers") and 'extra == "hf"' in r for r in requires)
    assert "Typing :: Typed" in meta.get_all("Classifier")
    assert any(u.startswith("Repository, https://") for u in meta.get_all("Project-URL"))
