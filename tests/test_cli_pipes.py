"""A reader that closes the pipe (`groklab train ... | head -3`) does not kill the work: the console goes
quiet, the command finishes what it was doing and exits as it would have; the folders say everything."""

import json
import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")
TRAIN = ["--operators", "+", "--prime", "7", "--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--max_steps", "60",
         "--eval_interval", "2", "--log_interval", "1", "--checkpoint_interval", "7", "--no_plot", "--device", "cpu"]


def _head_1(argv: list[str]) -> tuple[int, str, str]:
    """`groklab ARGV | head -1`: the first line, then the pipe closed; (status, that line, stderr)."""
    p = subprocess.Popen([sys.executable, "-m", "groklab", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env={**os.environ, "PYTHONPATH": SRC})
    first = p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read()
    return p.wait(timeout=300), first, err


def test_training_goes_on_to_its_end_when_the_reader_leaves(tmp_path, reliability):
    code, first, err = _head_1(["train", *TRAIN, "--out_dir", str(tmp_path / "run")])
    assert first.startswith("training "), first
    assert code == 0 and "Broken pipe" not in err and "Traceback" not in err, err
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["steps"] == 60, summary
    reliability("console", "train | head -1 (the reader closes the pipe)", "trains to its end, exit 0")


def test_sample_and_evaluate_finish_quietly_when_the_reader_leaves(tiny_runs, reliability):
    for argv in (["sample", str(tiny_runs / "num"), "--prompts", ",".join(["1+2="] * 50)],
                 ["evaluate", str(tiny_runs / "num"), "--split", ",".join(["train", "val", "test"] * 20)]):
        code, first, err = _head_1(argv)
        assert first and code == 0 and err == "", (argv[0], code, err)
    reliability("console", "sample and evaluate | head -1", "exit 0, nothing on stderr")
