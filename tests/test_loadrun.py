"""Loading a run (groklab.store.loadrun): the weights and vocab.json must be the ones the run was trained
with. Checkpoints from another vocabulary, fuzzed by swapping files between tiny trained runs, are refused
with a CheckpointError naming what does not match (on the command line: one `groklab: error:` line, exit 2);
each case adds a row to docs/reliability.md."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from groklab.analysis.sample import evaluate_split
from groklab.data.tokenizer import CharTokenizer
from groklab.errors import CheckpointError, TokenizerError
from groklab.store import checkpoint as ckpt
from groklab.store.loadrun import load_run
from helpers import assert_clean_error, hide, run_cli


def copy_run(runs: Path, name: str, into: Path) -> Path:
    shutil.copytree(runs / name, into)
    return into


def test_a_checkpoint_from_a_different_vocabulary_is_refused(tiny_runs, tmp_path, capsys, reliability):
    """The weights and vocab.json must be the ones the run was trained with. Same-sized vocabularies ('+' and '/'
    runs both have 13 tokens) used to load silently and answer for the wrong operation."""
    cases = []

    def refused(name: str, run_dir: Path, message: str, command: str = "sample") -> None:
        with pytest.raises(CheckpointError, match=message) as err:
            evaluate_split(load_run(run_dir), "test") if command == "evaluate" else load_run(run_dir)
        argv = ["sample", str(run_dir), "--prompts", "1+2="] if command == "sample" else ["evaluate", str(run_dir)]
        code, _, cli_err = run_cli(capsys, argv)
        assert re.search(message, assert_clean_error(code, cli_err))
        cases.append(name)
        reliability("checkpoint vocabulary", name,
                    f"`groklab {command}` exit 2: {hide(str(err.value), tmp_path, tiny_runs)}")

    x = copy_run(tiny_runs, "plus", tmp_path / "a")
    CharTokenizer.for_equations("/").save(x / "vocab.json")
    refused("vocab.json of a '+' run replaced by the '/' vocabulary (same size, 13 tokens)", x,
            r"is not the vocabulary the weights in model.safetensors were trained with")

    x = copy_run(tiny_runs, "plus", tmp_path / "b")
    shutil.copy(tiny_runs / "div/model.safetensors", x / "model.safetensors")
    refused("model.safetensors of a '/' run copied into a '+' run (same shapes)", x,
            r"is not the vocabulary the weights in model.safetensors were trained with")

    x = copy_run(tiny_runs, "plus", tmp_path / "c")
    shutil.copy(tiny_runs / "num/model.safetensors", x / "model.safetensors")
    refused("model.safetensors of a number-tokenizer run (10 tokens) in a char run (13)", x,
            r"the weights have a vocabulary of 10 tokens but vocab.json has 13")

    x = copy_run(tiny_runs, "div", tmp_path / "d")
    for f in ("model.safetensors", "vocab.json"):
        shutil.copy(tiny_runs / "plus" / f, x / f)
    refused("weights and vocab.json of a '+' run copied together into a '/' run", x,
            r"does not match the run's data")

    x = copy_run(tiny_runs, "plus", tmp_path / "e")
    for f in ("model.safetensors", "vocab.json"):
        shutil.copy(tiny_runs / "num" / f, x / f)
    (x / "data" / "manifest.json").unlink()
    refused("weights and vocab.json of a number-tokenizer run in a char run without a dataset manifest", x,
            r"vocab.json holds a 'number' vocabulary but the run's config says tokenizer = 'char'")

    x = copy_run(tiny_runs, "plus", tmp_path / "f")
    for f in ("model.safetensors", "vocab.json"):
        shutil.copy(tiny_runs / "div" / f, x / f)
    (x / "data" / "manifest.json").unlink()
    refused("weights and vocab.json of a '/' run in a '+' run without a dataset manifest, then `evaluate`", x,
            r"does not match the run's data", command="evaluate")

    x = copy_run(tiny_runs, "plus", tmp_path / "g")
    (x / "vocab.json").write_text('{"kind": ' + "[" * 50_000 + "]" * 50_000 + "}")
    with pytest.raises(TokenizerError, match="not a readable tokenizer file"):
        load_run(x)
    (x / "vocab.json").write_text((tiny_runs / "plus" / "vocab.json").read_text())
    (x / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CheckpointError, match="not a valid JSON file") as err:
        load_run(x)
    reliability("checkpoint vocabulary", "vocab.json and config.json nested 50,000+ arrays deep",
                f"both refused (TokenizerError, CheckpointError): {hide(str(err.value), tmp_path)[:120]}")

    # checkpoints written before the weights named their vocabulary still load, and the genuine runs do
    x = copy_run(tiny_runs, "plus", tmp_path / "old")
    weights, meta = ckpt.load_weights(x / "model.safetensors")
    assert meta["vocab"] == CharTokenizer.for_equations("+").to_dict()
    ckpt.save_weights(x / "model.safetensors", weights, {"step": meta["step"]})
    assert load_run(x).tokenizer == CharTokenizer.for_equations("+")
    for name in ("plus", "div", "num"):
        assert evaluate_split(load_run(tiny_runs / name), "val")["examples"] > 0
    assert len(cases) == 6
