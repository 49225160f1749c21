"""A missing optional package is one line naming the extra that installs it, said before anything runs."""

import sys

import pytest

from groklab.analysis import results
from groklab.cli import main
from groklab.errors import GroklabError
from helpers import tiny_spec

SPEC = tiny_spec("tb", """tensorboard = true
[grid]
seed = [1, 2]
""")


@pytest.fixture
def no_tensorboard(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed


def test_a_sweep_asking_for_tensorboard_without_it_refuses_before_training(tmp_path, no_tensorboard, capsys):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)  # asked for in the spec itself, not only on the command line
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == ("groklab: error: --tensorboard needs the tensorboard package: "
                                               "pip install 'groklab[tb]'")
    assert not (tmp_path / "out").exists()  # nothing written, no run marked failed


@pytest.mark.parametrize("command", [["train", "--operators", "+", "--prime", "7"], ["run"],
                                     ["reproduce", "seed-000", "--quick"]])
def test_train_run_and_reproduce_refuse_the_same_way(tmp_path, no_tensorboard, capsys, command):
    out = tmp_path / "out"
    flag = ["--out_dir", str(out)] if command[0] != "reproduce" else ["--out", str(out)]
    assert main([*command, *flag, "--tensorboard"]) == 2
    assert capsys.readouterr().err.strip().endswith("pip install 'groklab[tb]'")
    assert not out.exists()


def test_wandb_missing_refuses_the_sweep_the_same_way(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC.replace("tensorboard = true", ""))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--wandb"]) == 2
    assert capsys.readouterr().err.strip() == ("groklab: error: --wandb needs the wandb package: "
                                               "pip install 'groklab[wandb]'")
    assert not (tmp_path / "out").exists()


def test_results_load_without_pandas_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(GroklabError, match=r"^results.load needs pandas: pip install 'groklab\[parquet\]'$"):
        results.load(tmp_path)
