"""What a user reads while runs train: a short header instead of the config as JSON, --quiet and --verbose,
evaluation lines only where the bar cannot show them, lines written around the progress bar (never into it),
the Python API silent unless asked, and a sweep without a terminal saying how far it is at a steady interval."""

import io
import re
import sys

import pytest

from groklab.experiments import sweep as sweep_mod
from groklab.experiments.spec import load_spec
from groklab.experiments.sweep import LiveLine, run_sweep
from groklab.store.sweepdir import SweepRun
from groklab.training.loop import eval_steps, train_runs
from helpers import run_cli, tiny_config

TINY = ["--operators", "+", "--prime", "7", "--n_layer", "1", "--n_head", "2", "--n_embd", "16", "--batch_size", "8",
        "--eval_points_per_decade", "3", "--max_steps", "12", "--no-plot"]
EVAL = re.compile(r"^step [\d,]+: train loss")


class Terminal(io.StringIO):
    """stdout and stderr as one terminal: what a person would see, bar and lines interleaved."""

    def isatty(self) -> bool:
        return True


def test_the_python_api_prints_nothing_unless_asked(tmp_path, capsys):
    train_runs([tiny_config(tmp_path / "quiet", progress=True)])
    assert capsys.readouterr() == ("", "")
    lines = []
    train_runs([tiny_config(tmp_path / "asked")], log=lines.append)
    assert lines[0] == f"training {tmp_path / 'asked'} (config.json has every setting)"
    assert any(EVAL.match(line) for line in lines)  # the bar is off: each evaluation gets a line


def test_a_run_prints_a_short_header_evaluations_and_its_result(tmp_path, capsys):
    code, out, err = run_cli(capsys, ["train", *TINY, "--no-progress", "--out_dir", str(tmp_path / "r")])
    lines = out.splitlines()
    assert code == 0 and err == ""
    assert lines[0].startswith("training ") and [line.split()[0] for line in lines[1:5]] == [
        "data", "model", "optim", "device"]
    assert "addition (+) mod 7 · char tokens · 34 train, 7 val, 8 test examples" in lines[1]
    assert "1 layer, d 16, 2 heads · 3,600 parameters" in lines[2]
    assert "AdamW lr 0.001, wd 0.1, betas 0.9/0.95 · batch 8 · up to 12 steps · seed 42" in lines[3]
    assert not any("{" in line for line in lines)  # no config as JSON
    assert all(len(line) < 130 for line in lines[:5])
    assert len([line for line in lines if EVAL.match(line)]) == len(eval_steps(12, 3))  # the bar is off
    assert lines[-1].startswith(f"{tmp_path / 'r'}: did not grok")


def test_quiet_prints_the_result_only_and_verbose_the_whole_config(tmp_path, capsys):
    code, out, err = run_cli(capsys, ["train", *TINY, "-q", "--out_dir", str(tmp_path / "q")])
    assert code == 0 and err == "" and out.splitlines() == [out.strip()] and "did not grok" in out
    code, out, _ = run_cli(capsys, ["train", *TINY, "--verbose", "--out_dir", str(tmp_path / "v")])
    sections = [line.split(":")[0].strip() for line in out.splitlines() if line.startswith("  ") and ": {" in line]
    assert code == 0 and sections == ["data", "model", "optim", "train"]
    assert len([line for line in out.splitlines() if EVAL.match(line)]) == len(eval_steps(12, 3))


def test_lines_are_written_around_the_bar_and_evaluations_only_at_log_interval(tmp_path, capsys, monkeypatch):
    screen = Terminal()
    monkeypatch.setattr(sys, "stdout", screen)
    monkeypatch.setattr(sys, "stderr", screen)
    from groklab.cli import main

    assert main(["train", *TINY, "--log_interval", "4", "--out_dir", str(tmp_path / "bar")]) == 0
    text = screen.getvalue()
    assert "bar:" in text and "12/12" in text  # the bar was drawn, named after the run
    rows = text.split("\n")
    batch = [row for row in rows if "batch loss" in row]
    assert len(batch) == 3  # steps 4, 8, 12
    for row in batch:  # the bar was cleared first: the line starts at the left edge, nothing of the bar before it
        assert row.rsplit("\r", 1)[-1].startswith("step "), repr(row)
        assert row.split("\r")[-2].strip() == "", repr(row)  # the bar's clear: a row of blanks
    assert not any(EVAL.match(row.rsplit("\r", 1)[-1]) for row in rows)  # the bar shows the evaluations
    assert rows[-2].startswith(f"{tmp_path / 'bar'}: did not grok")


def _runs(tmp_path, n: int, steps: int = 100) -> list[SweepRun]:
    return [SweepRun(f"r{i}", "e", {}, tiny_config(tmp_path / f"r{i}", max_steps=steps), f"runs/r{i}")
            for i in range(n)]


def test_without_a_terminal_a_sweep_says_its_progress_every_interval(tmp_path):
    now = [0.0]
    lines: list[str] = []
    live = LiveLine("tiny", _runs(tmp_path, 4), lines.append, interval=30, clock=lambda: now[0])
    assert live.bar.disable  # pytest's stderr is no terminal
    live.started(live_configs := [tiny_config(tmp_path / "r0")])
    assert lines == ["sweep tiny: 0/4 done · 1 running · 0 failed"]
    for t in range(1, 100):  # steps arrive every second; a line every 30 s
        now[0] = float(t)
        live.run_steps(1)
    progress = lines[1:]
    assert len(progress) == 3, progress
    assert progress[0] == ("sweep tiny: 0/4 done · 1 running · 0 failed · 30/400 run-steps (8 %) · 30 s elapsed, "
                           "about 6 min left")
    live.finished(live_configs, [{"status": "done"}])
    assert lines[-1] == "sweep tiny: 1/4 done · 0 running · 0 failed"
    live.close()


def test_the_time_left_is_taken_from_the_steps_not_from_the_setup_before_them(tmp_path):
    """A GPU sweep spends its first minute compiling: 9 run-steps heard of at 44 s, then 1,000 a second. The
    estimate comes from the rate since the first steps (seen as 'about 4838.6 h left' before)."""
    now = [0.0]
    lines: list[str] = []
    live = LiveLine("tiny", _runs(tmp_path, 4, steps=100_000), lines.append, interval=30, clock=lambda: now[0])
    now[0] = 44.0
    live.run_steps(9)
    assert lines[-1] == "sweep tiny: 0/4 done · 0 running · 0 failed · 9/400,000 run-steps (0 %) · 44 s elapsed"
    now[0] = 74.0
    live.run_steps(30_000)
    assert lines[-1].endswith("30,009/400,000 run-steps (8 %) · 74 s elapsed, about 6 min left"), lines[-1]
    live.close()


def test_steps_reported_in_bursts_give_no_estimate_until_they_span_some_time(tmp_path):
    """Ray tasks report their steps when they end: two reports a second apart at 29 and 30 s say nothing of
    the rate (they said 'about 6 s left' of a sweep with about 300 s to go); once the reports span a quarter of
    the time so far, the estimate is the rate since the first."""
    now = [0.0]
    lines: list[str] = []
    live = LiveLine("tiny", _runs(tmp_path, 8, steps=1000), lines.append, interval=30, clock=lambda: now[0])
    for t in (29.0, 30.0):
        now[0] = t
        live.run_steps(1000)
    assert lines[-1].endswith("2,000/8,000 run-steps (25 %) · 30 s elapsed"), lines
    now[0] = 129.0
    live.run_steps(1000)  # 2,000 steps in the 100 s since the first report: 5,000 to go at 20 a second
    assert lines[-1].endswith("3,000/8,000 run-steps (38 %) · 2 min elapsed, about 4 min left"), lines
    live.close()


def test_a_sweep_bar_is_described(tmp_path, monkeypatch):
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    live = LiveLine("tiny", _runs(tmp_path, 2), lambda _: None)
    live.started([tiny_config(tmp_path / "r0")])
    live.run_steps(10)
    live.close()
    text = screen.getvalue()
    assert "sweep tiny: 0/2 done · 1 running · 0 failed |" in text and "| ," not in text and "10/200 run-steps" in text


def test_a_sweep_in_a_log_prints_progress_lines_and_quiet_only_its_result(tmp_path, monkeypatch):
    (tmp_path / "s.toml").write_text('name = "tiny"\n[base]\nop = "+"\np = 7\nn_layer = 1\nn_head = 2\nn_embd = 16\n'
                                     'max_steps = 40\nbatch_size = 8\neval_points_per_decade = 3\nplot = false\n'
                                     '[grid]\nseed = [1, 2]\n')
    monkeypatch.setattr(sweep_mod, "PROGRESS_INTERVAL", 0.0)
    lines: list[str] = []
    run_sweep(load_spec(tmp_path / "s.toml"), tmp_path / "out", echo=lines.append)
    steps = [line for line in lines if "run-steps" in line]
    assert lines[0].startswith("sweep tiny: 2 runs in ") and lines[-1].startswith("sweep tiny: 2 done, 0 failed")
    assert steps and all(re.search(r"· [\d,]+/80 run-steps \(\d+ %\)", line) for line in steps)
    assert "about" in steps[-1] and "left" in steps[-1]
    log = (tmp_path / "out" / "sweep.log").read_text()
    assert "training " in log and "step 40: train acc mean" in log  # the log keeps the groups' lines
    quiet: list[str] = []
    run_sweep(load_spec(tmp_path / "s.toml"), tmp_path / "q", {"verbosity": "quiet"}, echo=quiet.append)
    assert len(quiet) == 1 and quiet[0].startswith("sweep tiny: 2 done, 0 failed")
    assert "step 40: train acc mean" in (tmp_path / "q" / "sweep.log").read_text()  # the log stays whole


def test_verbosity_is_how_a_run_executes_so_a_resume_may_change_it(tmp_path, monkeypatch):
    import json

    from groklab.errors import GroklabError
    from helpers import stop_after

    stop = stop_after(monkeypatch, 5)
    with pytest.raises(GroklabError, match="interrupted"):
        train_runs([tiny_config(tmp_path / "r", verbosity="quiet")], stop=stop)
    monkeypatch.undo()
    lines: list[str] = []
    [done] = train_runs([tiny_config(tmp_path / "r", verbosity="verbose")], log=lines.append)
    resume = json.loads((tmp_path / "r" / "meta.json").read_text())["resumes"][-1]
    assert done["status"] == "done" and resume["changed"]["verbosity"] == ["quiet", "verbose"]
    assert lines[0] == "resuming 1 run(s) from step 5" and any(": {" in line for line in lines)
